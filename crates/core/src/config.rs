//! Typed TOML configs with errors that name the file, the line and the field.

use std::path::Path;

use anyhow::{Context, Result};
use serde::de::DeserializeOwned;

/// Reads `path` as TOML into `T`; an unknown key, a wrong type or a syntax error is reported with the file name,
/// line and column, and the field that is wrong.
pub fn load_toml<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config {}", path.display()))?;
    parse_toml(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Parses TOML text into `T`, with toml's located error messages.
pub fn parse_toml<T: DeserializeOwned>(text: &str) -> std::result::Result<T, String> {
    toml::from_str(text).map_err(|e| {
        let msg = e.message().to_string();
        match e.span() {
            Some(span) => {
                let start = span.start.min(text.len());
                let line = text[..start].matches('\n').count() + 1;
                let content = text.lines().nth(line - 1).unwrap_or("").trim();
                format!("line {line} `{content}`: {msg}")
            }
            None => msg,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::TrainConfig;

    #[test]
    fn errors_name_line_and_field() {
        let e = parse_toml::<TrainConfig>("epochs = 3\nlrr = 0.1\n").unwrap_err();
        assert!(e.contains("line 2") && e.contains("lrr"), "{e}");
        let e = parse_toml::<TrainConfig>("epochs = \"three\"\n").unwrap_err();
        assert!(e.contains("line 1") && e.contains("epochs") && e.contains("expected usize"), "{e}");
        let c: TrainConfig = parse_toml("epochs = 7\n[optimizer]\nname = \"sgd\"\nnesterov = true\n").unwrap();
        assert_eq!(c.epochs, 7);
        assert_eq!(c.optimizer, crate::optim::OptimizerConfig::Sgd { momentum: 0.9, nesterov: true });
    }
}
