//! The text domain of suite.
