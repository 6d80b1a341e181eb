//! The domain-free core of suite: a trainer (optimizers, schedules, accumulation, clipping, evaluation, early
//! stopping, checkpoints with exact resume), data loading on worker threads, PEFT-ready layers, weight loading from
//! safetensors, torch pickles and the Hugging Face hub, generic metrics and run folders.
//! [`peft`] puts parameter-efficient methods (LoRA, DoRA, (IA)³, prefix tuning, P-tuning v2, adapters, BitFit) into
//! any model built from those layers and saves them as small adapter files.
//!
//! Nothing here knows about images, text or audio: domains implement [`data::Dataset`] and [`train::TrainModel`].

pub mod cache;
pub mod config;
pub mod data;
pub mod device;
pub mod dist;
pub mod metrics;
pub mod nn;
pub mod optim;
pub mod peft;
pub mod predict;
pub mod profile;
pub mod python;
pub mod quality;
pub mod quant;
pub mod runs;
pub mod tracking;
pub mod train;
pub mod weights;
