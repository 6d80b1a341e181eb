//! The vision domain of suite.
