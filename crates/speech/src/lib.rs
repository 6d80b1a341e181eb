//! The speech domain of suite.
