//! Secrets are never written in config files: `env:VAR` or `file:PATH`.

use super::{ConfigError, invalid};

/// Reads a secret named `env:VAR` or `file:PATH`; `key` names the config key in errors.
pub fn read_secret(key: &str, source: &str) -> Result<secrecy::SecretString, ConfigError> {
    let value = if let Some(var) = source.strip_prefix("env:") {
        std::env::var(var)
            .map_err(|_| invalid(key, format!("environment variable `{var}` is not set")))?
    } else if let Some(path) = source.strip_prefix("file:") {
        std::fs::read_to_string(path)
            .map_err(|e| invalid(key, format!("cannot read `{path}`: {e}")))?
    } else {
        return Err(invalid(key, "write \"env:VAR\" or \"file:PATH\""));
    };
    let value = value.trim().to_string();
    if value.is_empty() {
        return Err(invalid(key, format!("`{source}` is empty")));
    }
    Ok(secrecy::SecretString::from(value))
}
