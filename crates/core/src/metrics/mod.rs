//! Generic classification metrics.
