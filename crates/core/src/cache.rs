//! Where suite keeps what outlives a clone: `$SUITE_CACHE` (default `~/.cache/suite`) with the Python venv that
//! provides libtorch, the unpacked offline assets and prepared data sets.

use std::path::PathBuf;

/// `$SUITE_CACHE`, else `~/.cache/suite`.
pub fn cache_dir() -> PathBuf {
    match std::env::var_os("SUITE_CACHE") {
        Some(c) if !c.is_empty() => PathBuf::from(c),
        _ => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| ".".into())).join(".cache/suite"),
    }
}

/// Where `scripts/fetch_assets.sh` unpacks the offline assets: `<cache>/assets/<name>/`.
pub fn assets_dir() -> PathBuf {
    cache_dir().join("assets")
}

/// The unpacked asset `name` (see `datasets/assets.tsv`).
pub fn asset(name: &str) -> PathBuf {
    assets_dir().join(name)
}
