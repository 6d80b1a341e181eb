//! The vision domain of suite.
pub mod models;
