//! Data-quality checks behind `suite inspect`, over plain numbers and strings (domains supply the model outputs and
//! the texts): [`label_issues`] finds likely mislabelled examples by confident learning, exactly as cleanlab ranks
//! them; [`minhash`] finds near-duplicate strings with MinHash and LSH banding, confirmed by exact Jaccard;
//! [`duplicates`] groups duplicates and separates leakage across splits from copies within one; [`report`] is the
//! report every domain fills and its terminal, JSON and HTML forms.

pub mod duplicates;
pub mod label_issues;
pub mod minhash;
pub mod probe;
pub mod report;
#[cfg(test)]
mod report_tests;
