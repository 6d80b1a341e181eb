//! Data-quality checks behind `suite inspect`, over plain numbers and strings (domains supply the model outputs and
//! the texts): [`label_issues`] finds likely mislabelled examples by confident learning, exactly as cleanlab ranks
//! them; [`minhash`] finds near-duplicate strings with MinHash and LSH banding, confirmed by exact Jaccard.

pub mod label_issues;
pub mod minhash;
