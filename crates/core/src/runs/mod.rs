//! Run folders: resolved config, metrics log, checkpoints and plots.
