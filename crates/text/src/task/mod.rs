//! Text tasks: classification, NER and extractive QA as trainable models for the core trainer.
