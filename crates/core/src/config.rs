//! Typed TOML configs with errors that name the file and field.
