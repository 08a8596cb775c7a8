//! `Settings`: one typed tree loaded with the `config` crate from `config/default.toml`
//! (embedded) → an optional file → `IMAGEGEN__SECTION__KEY` environment variables, then
//! validated with errors that name the key.
//!
//! This is the only module that reads configuration environment variables; components
//! take their sub-struct (`ProjectConfig`, `WorkerConfig`, …).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

mod error;
mod project;
mod secrets;
mod sections;

pub use error::{ConfigError, invalid};
pub use project::{ModelLimits, ProjectConfig};
pub use secrets::read_secret;
pub use sections::{
    ApiConfig, EmulatorConfig, InputsConfig, ModelPrices, ModelsConfig, OnRetired, OutputConfig,
    PricesConfig, RedisConfig, ResetTime, SessionsConfig, WebhooksConfig, WorkerConfig,
};

use sections::check_store_url;

/// The embedded defaults; `config/default.toml` documents every key.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

/// Everything imagegen can be configured with.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Redis connection.
    pub redis: RedisConfig,
    /// Default output location.
    pub output: OutputConfig,
    /// Worker process settings.
    pub worker: WorkerConfig,
    /// Webhook delivery.
    pub webhooks: WebhooksConfig,
    /// Fetching input images given by URL.
    pub inputs: InputsConfig,
    /// The in-process emulator used by `imagegen run` without projects.
    pub emulator: EmulatorConfig,
    /// Model lifecycle: retired models, and changes to the dates.
    pub models: ModelsConfig,
    /// The HTTP API.
    pub api: ApiConfig,
    /// Chat sessions.
    pub sessions: SessionsConfig,
    /// What jobs cost: tier multipliers and price overrides.
    pub prices: PricesConfig,
    /// Tenants by name.
    #[serde(default)]
    pub projects: BTreeMap<String, ProjectConfig>,
    /// What loading noticed and the user should hear once (renamed keys).
    #[serde(skip)]
    pub notices: Vec<String>,
}

impl Settings {
    /// Loads defaults → `file` (or `IMAGEGEN_CONFIG`) → environment, and validates.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::load_from(file, &env)
    }

    /// Like `load`, with the environment given (tests use this; nothing else reads env).
    pub fn load_from(file: Option<&Path>, env: &[(String, String)]) -> Result<Self, ConfigError> {
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let file: Option<PathBuf> = file.map(Path::to_path_buf).or_else(|| {
            get("IMAGEGEN_CONFIG")
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
        });
        let mut builder = config::Config::builder().add_source(config::File::from_str(
            DEFAULT_TOML,
            config::FileFormat::Toml,
        ));
        if let Some(path) = &file {
            if !path.exists() {
                return Err(invalid(
                    "--config",
                    format!("file `{}` does not exist", path.display()),
                ));
            }
            builder = builder.add_source(config::File::from(path.as_path()));
        }
        if let Some(url) = get("REDIS_URL").filter(|_| get("IMAGEGEN__REDIS__URL").is_none()) {
            builder = builder.set_override("redis.url", url)?;
        }
        let source: std::collections::HashMap<String, String> = env
            .iter()
            .filter(|(k, _)| k.starts_with("IMAGEGEN__"))
            .cloned()
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix("IMAGEGEN")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .source(Some(source)),
        );
        let mut settings: Settings = builder.build()?.try_deserialize()?;
        let mut notices = Vec::new();
        settings.worker.move_renamed(&mut notices);
        settings.webhooks.move_renamed(&mut notices);
        settings.inputs.move_renamed(&mut notices);
        settings.sessions.move_renamed(&mut notices);
        settings.notices = notices;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks cross-field rules and value ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.prices.check()?;
        if self.worker.concurrency == 0 {
            return Err(invalid("worker.concurrency", "must be at least 1"));
        }
        let w = &self.worker;
        if w.request_timeout < Duration::from_secs(1) {
            return Err(invalid("worker.request_timeout", "must be at least 1s"));
        }
        if w.visibility_timeout < Duration::from_secs(2) {
            return Err(invalid("worker.visibility_timeout", "must be at least 2s"));
        }
        if self.worker.max_deliveries == 0 {
            return Err(invalid("worker.max_deliveries", "must be at least 1"));
        }
        if self.worker.max_attempts == 0 {
            return Err(invalid("worker.max_attempts", "must be at least 1"));
        }
        if w.retry_min > w.retry_max {
            return Err(invalid(
                "worker.retry_min",
                "must not exceed worker.retry_max",
            ));
        }
        if w.retention < Duration::from_secs(1) {
            return Err(invalid("worker.retention", "must be at least 1s"));
        }
        if !(self.worker.aimd_decrease > 0.0 && self.worker.aimd_decrease < 1.0) {
            return Err(invalid(
                "worker.aimd_decrease",
                "must be between 0 and 1 (exclusive)",
            ));
        }
        check_store_url("output.url", &self.output.url)?;
        self.webhooks.validate()?;
        self.inputs.validate()?;
        self.models.validate()?;
        self.api.validate()?;
        for (name, p) in &self.projects {
            let key = format!("projects.{name}");
            p.validate(&key)?;
            if p.webhook_url.is_some() && p.webhook_secret.is_none() {
                return Err(invalid(
                    format!("{key}.webhook_secret"),
                    "required when webhook_url is set: deliveries are signed (Standard Webhooks); generate one with `imagegen webhooks secret`",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_load_without_any_file() {
        let s = Settings::load_from(None, &[]).unwrap();
        assert_eq!(s.output.url, "file://./imagegen-out");
        assert!(s.projects.is_empty());
    }

    #[test]
    fn env_overrides_reach_nested_project_keys() {
        let s = Settings::load_from(
            None,
            &env(&[
                ("IMAGEGEN__PROJECTS__ACME__BACKEND", "vertex"),
                ("IMAGEGEN__PROJECTS__ACME__GCP_PROJECT", "acme-prod"),
                ("IMAGEGEN__PROJECTS__ACME__CONCURRENCY", "4"),
                ("REDIS_URL", "redis://example:1"),
            ]),
        )
        .unwrap();
        assert_eq!(s.projects["acme"].concurrency, 4);
        assert_eq!(s.projects["acme"].api_version(), "v1");
        assert_eq!(s.redis.url, "redis://example:1");
    }

    #[test]
    fn invalid_values_name_their_key() {
        let err = Settings::load_from(
            None,
            &env(&[("IMAGEGEN__PROJECTS__ACME__BACKEND", "vertex")]),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("projects.acme.gcp_project"),
            "{err}"
        );
        let err =
            Settings::load_from(None, &env(&[("IMAGEGEN__WORKER__CONCURRENCY", "0")])).unwrap_err();
        assert!(err.to_string().contains("worker.concurrency"), "{err}");
        let err = Settings::load_from(None, &env(&[("IMAGEGEN__PROJECTS__X__BACKEND", "bedrock")]))
            .unwrap_err();
        assert!(err.to_string().contains("projects.x"), "{err}");
        let err = Settings::load_from(
            None,
            &env(&[("IMAGEGEN__MODELS__SEGMENT_MODEL", "gemini-3.1-flash-image")]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("models.segment_model"), "{err}");
        let s = Settings::load_from(None, &[]).unwrap();
        assert_eq!(s.models.segment_model, "gemini-3.5-flash");
    }

    #[test]
    fn a_config_file_layers_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[projects.b]\nbackend = \"gemini-api\"\ncredentials = \"env:KEY\"\nrpm = 60\n[projects.b.models.\"gemini-2.5-flash-image\"]\nconcurrency = 2\n",
        )
        .unwrap();
        let s = Settings::load_from(Some(&path), &[]).unwrap();
        assert_eq!(s.projects["b"].rpm, Some(60));
        assert_eq!(
            s.projects["b"].models["gemini-2.5-flash-image"].concurrency,
            Some(2)
        );
        assert_eq!(s.projects["b"].api_version(), "v1beta");
    }

    fn load_toml(text: &str) -> Result<Settings, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).unwrap();
        Settings::load_from(Some(&path), &[])
    }

    #[test]
    fn durations_are_durations_and_the_old_number_keys_still_work() {
        let s = Settings::load_from(
            None,
            &env(&[
                ("IMAGEGEN__WORKER__RETRY_MIN", "250ms"),
                ("IMAGEGEN__WORKER__SHUTDOWN_GRACE_S", "7"),
                ("IMAGEGEN__WORKER__AIMD_INTERVAL_MS", "1500"),
                ("IMAGEGEN__WEBHOOKS__TIMEOUT_S", "9"),
                ("IMAGEGEN__INPUTS__TIMEOUT", "2m"),
            ]),
        )
        .unwrap();
        assert_eq!(s.worker.retry_min, Duration::from_millis(250));
        assert_eq!(s.worker.request_timeout, Duration::from_secs(300));
        assert_eq!(s.worker.retention, Duration::from_secs(3 * 86_400));
        assert_eq!(s.worker.shutdown_grace, Duration::from_secs(7));
        assert_eq!(s.worker.aimd_interval, Duration::from_millis(1500));
        assert_eq!(s.webhooks.timeout, Duration::from_secs(9));
        assert_eq!(s.inputs.timeout, Duration::from_secs(120));
        let notices = s.notices.join("\n");
        assert!(
            notices.contains("worker.shutdown_grace_s is now worker.shutdown_grace")
                && notices.contains("shutdown_grace = \"7s\"")
                && notices.contains("aimd_interval = \"1s 500ms\"")
                && notices.contains("webhooks.timeout_s is now webhooks.timeout"),
            "{notices}"
        );
        assert_eq!(s.notices.len(), 3, "{notices}");
        // A number where a duration goes is refused naming the key and the fix.
        let err = Settings::load_from(None, &env(&[("IMAGEGEN__WORKER__MAX_WAIT", "60")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_wait") && err.contains("\"60s\""), "{err}");
        let err = Settings::load_from(None, &env(&[("IMAGEGEN__WORKER__RETRY_MAX", "soon")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("retry_max") && err.contains("not a duration"),
            "{err}"
        );
    }

    #[test]
    fn typos_anywhere_are_refused_naming_the_key_and_the_nearest_one() {
        for (text, key, nearest) in [
            (
                "[project.acme]\nbackend = \"vertex\"\n",
                "`project`",
                "`projects`",
            ),
            (
                "[worker]\nconcurency = 4\n",
                "`worker.concurency`",
                "`worker.concurrency`",
            ),
            (
                "[redis]\nulr = \"redis://x\"\n",
                "`redis.ulr`",
                "`redis.url`",
            ),
            ("[ouput]\nurl = \"file://x\"\n", "`ouput`", "`output`"),
            (
                "[projects.a]\nbackend = \"gemini-api\"\ncredentials = \"env:K\"\nconcurrencyy = 2\n",
                "concurrencyy",
                "concurrency",
            ),
        ] {
            let e = load_toml(text).unwrap_err().to_string();
            assert!(e.contains(key), "{text}: {e}");
            assert!(
                e.contains(&format!("did you mean {nearest}")) || e.contains(nearest),
                "{text}: {e}"
            );
            // Said once, not "X: X".
            let first = e.find(key).unwrap();
            assert!(!e[first + key.len()..].contains(key), "repeated: {e}");
        }
        let e = Settings::load_from(None, &env(&[("IMAGEGEN__WORKER__CONCURENCY", "4")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("worker.concurency") && e.contains("worker.concurrency"),
            "{e}"
        );
    }
}
