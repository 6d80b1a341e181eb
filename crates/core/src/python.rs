//! The pinned Python environment that `scripts/setup.sh` installs (torch 2.13.0, torchvision, transformers…):
//! parity tests run their reference there, and `suite bench` times the same job in PyTorch eager.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The Python interpreter of suite's set-up: `$SUITE_PYTHON`, else `$SUITE_CACHE/py/bin/python`, else
/// `~/.cache/suite/py/bin/python`.
pub fn python_exe() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("SUITE_PYTHON") {
        return Ok(PathBuf::from(p));
    }
    let cache = match std::env::var("SUITE_CACHE") {
        Ok(c) => PathBuf::from(c),
        Err(_) => PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| ".".into())).join(".cache/suite"),
    };
    let exe = cache.join("py/bin/python");
    if !exe.exists() {
        bail!("no Python reference environment at {}: run scripts/setup.sh (or set SUITE_PYTHON)", exe.display());
    }
    Ok(exe)
}

/// Runs `code` with the reference Python and `args` as `sys.argv[1:]`; returns its stdout, or an error holding
/// its stderr.
pub fn run_python(code: &str, args: &[&str]) -> Result<String> {
    let exe = python_exe()?;
    let out = Command::new(&exe)
        .arg("-c")
        .arg(code)
        .args(args)
        .output()
        .with_context(|| format!("starting {}", exe.display()))?;
    if !out.status.success() {
        bail!("reference Python failed ({}):\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
