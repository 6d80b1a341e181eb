//! The vision domain of suite.
pub mod data;
pub mod explain;
pub mod inspect;
pub mod models;
pub mod predict;
pub mod quality;
pub mod task;
