//! Start-up checks of the `[webhooks]` settings and the projects' webhook keys.

use super::{NetPolicy, Signer};
use crate::config::ConfigError;

/// The project's webhook signer, when it has a `webhook_secret` (read and checked
/// now: a bad secret fails with its key named).
pub fn project_signer(
    name: &str,
    p: &crate::config::ProjectConfig,
) -> Result<Option<Signer>, ConfigError> {
    use secrecy::ExposeSecret as _;
    let Some(source) = &p.webhook_secret else {
        return Ok(None);
    };
    let key = format!("projects.{name}.webhook_secret");
    let text = crate::config::read_secret(&key, source)?;
    Signer::parse(text.expose_secret()).map(Some).map_err(|e| {
        crate::config::invalid(
            key,
            format!("{e} (expected whsec_<base64>; several, space-separated, during a rotation)"),
        )
    })
}

/// Checks every project's `webhook_url` against the `[webhooks]` policy (literal
/// addresses; names are checked again when a delivery connects): a refused URL fails
/// at start-up naming its key.
pub fn check_settings(settings: &crate::config::Settings) -> Result<(), ConfigError> {
    let policy = NetPolicy::for_webhooks(&settings.webhooks)?;
    for (name, p) in &settings.projects {
        if let Some(url) = &p.webhook_url {
            policy.check_url(url).map_err(|e| {
                crate::config::invalid(format!("projects.{name}.webhook_url"), e.to_string())
            })?;
        }
    }
    Ok(())
}
