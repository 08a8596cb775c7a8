//! `Settings`: one typed tree loaded with the `config` crate from `config/default.toml`
//! (embedded) → an optional file → `IMAGEGEN__SECTION__KEY` environment variables, then
//! validated with errors that name the key.
//!
//! This is the only module that reads configuration environment variables; components
//! take their sub-struct (`ProjectConfig`, `WorkerConfig`, …).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::catalog::Backend;

/// The embedded defaults; `config/default.toml` documents every key.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

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
    /// Tenants by name.
    #[serde(default)]
    pub projects: BTreeMap<String, ProjectConfig>,
}

/// `[redis]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// Redis URL.
    pub url: String,
    /// Prefix of every key.
    pub key_prefix: String,
}

/// `[output]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// An `object_store` URL.
    pub url: String,
    /// How image files are named inside `{project}/{batch}/`: placeholders `{seq}`
    /// (the job's position, 6 digits), `{line}` (4 digits), `{slug}` (of the prompt),
    /// `{index}`, `{job}`, `{model}`; the extension is added.
    pub name_template: String,
    /// object_store options for the URL's store (`aws_endpoint`, `aws_region`, …);
    /// values may be `env:VAR` or `file:PATH`.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

impl OutputConfig {
    /// The options with `env:`/`file:` values resolved.
    pub fn resolved_options(&self) -> Result<Vec<(String, String)>, ConfigError> {
        use secrecy::ExposeSecret as _;
        self.options
            .iter()
            .map(|(k, v)| {
                let value = if v.starts_with("env:") || v.starts_with("file:") {
                    read_secret(&format!("output.options.{k}"), v)?
                        .expose_secret()
                        .to_string()
                } else {
                    v.clone()
                };
                Ok((k.clone(), value))
            })
            .collect()
    }
}

/// `[worker]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    /// Jobs in flight per worker process.
    pub concurrency: u32,
    /// Client-side deadline of one provider call, seconds.
    pub request_timeout_s: u64,
    /// A claimed job not extended for this long is taken over by another worker.
    pub visibility_timeout_s: u64,
    /// Deliveries without a settle (crashes, lost leases) before a job is dead-lettered.
    pub max_deliveries: u32,
    /// Provider attempts a job may spend on transient errors before it fails.
    pub max_attempts: u32,
    /// First retry delay, milliseconds (doubles each attempt, full jitter).
    pub retry_min_ms: u64,
    /// Cap on one retry delay, milliseconds.
    pub retry_max_ms: u64,
    /// On SIGTERM/SIGINT: seconds to let running jobs finish before releasing them.
    pub shutdown_grace_s: u64,
    /// Seconds a finished job's or batch's record is kept in Redis.
    pub retention_s: u64,
    /// A job still not run this many seconds after it was enqueued (waiting for
    /// capacity, deferred by 429s, parked) fails with a clear reason; 0 = no deadline.
    pub max_wait_s: u64,
    /// AIMD: effective concurrency is multiplied by this on a 429.
    pub aimd_decrease: f64,
    /// AIMD: at most one decrease per this many milliseconds.
    pub aimd_interval_ms: u64,
    /// Pause of a lane after a 429 that advised no delay, milliseconds.
    pub pause_default_ms: u64,
    /// When daily quotas reset (`HH:MM` UTC; Google resets at midnight Pacific time):
    /// a lane parked by a spent daily quota that advised no delay waits until then.
    pub quota_reset_utc: String,
}

/// `[webhooks]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Delay before each attempt (humantime strings: `0s`, `5m`, `2h`).
    pub retry_schedule: Vec<String>,
    /// One attempt's timeout, seconds.
    pub timeout_s: u64,
    /// Response bytes read at most.
    pub max_response_bytes: usize,
    /// Deliveries in flight per worker.
    pub concurrency: usize,
    /// Allow every destination (private networks included).
    pub allow_private_networks: bool,
    /// Private ranges allowed anyway.
    #[serde(default)]
    pub allow_cidrs: Vec<String>,
    /// Signed output URL lifetime, seconds.
    pub signed_url_ttl_s: u64,
}

impl WebhooksConfig {
    /// The retry schedule as durations.
    pub fn schedule(&self) -> Result<Vec<std::time::Duration>, ConfigError> {
        if self.retry_schedule.is_empty() {
            return Err(invalid(
                "webhooks.retry_schedule",
                "needs at least one entry (the first attempt's delay, usually \"0s\")",
            ));
        }
        self.retry_schedule
            .iter()
            .enumerate()
            .map(|(i, s)| {
                humantime::parse_duration(s.trim()).map_err(|e| {
                    invalid(
                        format!("webhooks.retry_schedule[{i}]"),
                        format!("`{s}` is not a duration like \"5s\", \"30m\", \"2h\": {e}"),
                    )
                })
            })
            .collect()
    }

    /// The destination policy.
    pub fn policy(&self) -> Result<crate::netguard::NetPolicy, ConfigError> {
        net_policy("webhooks", self.allow_private_networks, &self.allow_cidrs)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.schedule()?;
        self.policy()?;
        if !(1..=300).contains(&self.timeout_s) {
            return Err(invalid("webhooks.timeout_s", "must be between 1 and 300"));
        }
        if self.concurrency == 0 {
            return Err(invalid("webhooks.concurrency", "must be at least 1"));
        }
        if self.signed_url_ttl_s == 0 || self.signed_url_ttl_s > 604_800 {
            return Err(invalid(
                "webhooks.signed_url_ttl_s",
                "must be between 1 and 604800 (7 days, the longest S3 and GCS sign for)",
            ));
        }
        Ok(())
    }
}

/// `[inputs]`: how workers fetch input images given by URL.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputsConfig {
    /// Allow every destination (private networks included).
    pub allow_private_networks: bool,
    /// Private ranges allowed anyway.
    #[serde(default)]
    pub allow_cidrs: Vec<String>,
    /// One fetch's timeout, seconds.
    pub timeout_s: u64,
    /// Redirects followed at most (each hop checked again); 0 follows none.
    pub max_redirects: usize,
}

impl InputsConfig {
    /// The destination policy.
    pub fn policy(&self) -> Result<crate::netguard::NetPolicy, ConfigError> {
        net_policy("inputs", self.allow_private_networks, &self.allow_cidrs)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.policy()?;
        if !(1..=600).contains(&self.timeout_s) {
            return Err(invalid("inputs.timeout_s", "must be between 1 and 600"));
        }
        if self.max_redirects > 10 {
            return Err(invalid("inputs.max_redirects", "must be at most 10"));
        }
        Ok(())
    }
}

fn net_policy(
    section: &'static str,
    allow_private_networks: bool,
    cidrs: &[String],
) -> Result<crate::netguard::NetPolicy, ConfigError> {
    let allow_cidrs = cidrs
        .iter()
        .enumerate()
        .map(|(i, c)| {
            c.trim().parse::<ipnet::IpNet>().map_err(|_| {
                invalid(
                    format!("{section}.allow_cidrs[{i}]"),
                    format!("`{c}` is not a CIDR range like \"10.20.0.0/16\""),
                )
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(crate::netguard::NetPolicy {
        allow_private_networks,
        allow_cidrs,
        section,
    })
}

/// `[emulator]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmulatorConfig {
    /// Scenario file for the in-process emulator; empty for defaults.
    pub scenario: String,
}

/// `[projects.<name>]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectConfig {
    /// Which Google API.
    pub backend: Backend,
    /// GCP project id (Vertex).
    #[serde(default)]
    pub gcp_project: Option<String>,
    /// Vertex location.
    #[serde(default = "default_location")]
    pub location: String,
    /// API version; defaults per backend.
    #[serde(default)]
    pub api_version: Option<String>,
    /// Base URL override (emulator, proxy).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Credentials source string (see `providers::auth::CredentialSource`).
    #[serde(default = "default_credentials")]
    pub credentials: String,
    /// Model used when a job names none.
    #[serde(default)]
    pub default_model: Option<String>,
    /// Cluster-wide in-flight requests.
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
    /// Cluster-wide requests per minute.
    #[serde(default)]
    pub rpm: Option<u32>,
    /// Fair-share weight.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Per-model limits.
    #[serde(default)]
    pub models: BTreeMap<String, ModelLimits>,
    /// Output location override.
    #[serde(default)]
    pub output_url: Option<String>,
    /// Default webhook URL for this project's jobs.
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// Webhook signing secret source: `env:VAR` or `file:PATH`.
    #[serde(default)]
    pub webhook_secret: Option<String>,
    /// API bearer tokens source: `env:VAR` or `file:PATH` (comma-separated tokens).
    #[serde(default)]
    pub api_tokens: Option<String>,
}

/// `[projects.<name>.models."<model>"]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelLimits {
    /// In-flight requests for this model.
    #[serde(default)]
    pub concurrency: Option<u32>,
    /// Requests per minute for this model.
    #[serde(default)]
    pub rpm: Option<u32>,
}

fn default_location() -> String {
    "global".into()
}
fn default_credentials() -> String {
    "adc".into()
}
fn default_concurrency() -> u32 {
    8
}
fn default_weight() -> u32 {
    1
}

/// A configuration problem, naming the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The layers could not be read or merged (the message says which key).
    #[error("configuration: {0}")]
    Load(String),
    /// A value is invalid.
    #[error("configuration key `{key}`: {message}")]
    Invalid {
        /// Dotted key, e.g. `projects.acme.gcp_project`.
        key: String,
        /// What is wrong.
        message: String,
    },
}

impl From<config::ConfigError> for ConfigError {
    fn from(e: config::ConfigError) -> Self {
        ConfigError::Load(with_suggestion(&e.to_string()))
    }
}

/// serde's "unknown field `x`, expected one of `a`, `b`" with the nearest valid name
/// named first (a typo is the usual cause), and unknown keys of the top level said as
/// sections.
fn with_suggestion(message: &str) -> String {
    let Some(rest) = message.strip_prefix("unknown field `") else {
        return message.to_string();
    };
    let Some((name, tail)) = rest.split_once('`') else {
        return message.to_string();
    };
    let expected: Vec<&str> = tail
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| !s.is_empty())
        .collect();
    let nearest = expected
        .iter()
        .map(|e| (strsim::damerau_levenshtein(name, e), *e))
        .min()
        .filter(|(d, e)| *d <= (e.len() / 2).max(2));
    // The config crate appends " for key `worker`" (or nothing at the top level).
    let (section, top) = match tail.rsplit_once(" for key `") {
        Some((_, k)) => (format!("{}.", k.trim_end_matches('`')), false),
        None => (String::new(), true),
    };
    let what = if top { "section" } else { "key" };
    let mut out = format!("unknown {what} `{section}{name}`");
    match nearest {
        Some((_, e)) => out.push_str(&format!(" (did you mean `{section}{e}`?)")),
        None => out.push_str(&format!(
            " (valid: {})",
            expected
                .iter()
                .map(|e| format!("`{e}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
    out
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
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
        let settings: Settings = builder.build()?.try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks cross-field rules and value ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.worker.concurrency == 0 {
            return Err(invalid("worker.concurrency", "must be at least 1"));
        }
        if self.worker.request_timeout_s == 0 {
            return Err(invalid("worker.request_timeout_s", "must be at least 1"));
        }
        if self.worker.visibility_timeout_s < 2 {
            return Err(invalid("worker.visibility_timeout_s", "must be at least 2"));
        }
        if self.worker.max_deliveries == 0 {
            return Err(invalid("worker.max_deliveries", "must be at least 1"));
        }
        if self.worker.max_attempts == 0 {
            return Err(invalid("worker.max_attempts", "must be at least 1"));
        }
        if self.worker.retry_min_ms > self.worker.retry_max_ms {
            return Err(invalid(
                "worker.retry_min_ms",
                "must not exceed worker.retry_max_ms",
            ));
        }
        if self.worker.retention_s == 0 {
            return Err(invalid("worker.retention_s", "must be at least 1"));
        }
        if !(self.worker.aimd_decrease > 0.0 && self.worker.aimd_decrease < 1.0) {
            return Err(invalid(
                "worker.aimd_decrease",
                "must be between 0 and 1 (exclusive)",
            ));
        }
        let reset_ok = self
            .worker
            .quota_reset_utc
            .split_once(':')
            .and_then(|(h, m)| Some((h.parse::<u32>().ok()?, m.parse::<u32>().ok()?)))
            .is_some_and(|(h, m)| h < 24 && m < 60);
        if !reset_ok {
            return Err(invalid("worker.quota_reset_utc", "must be HH:MM (UTC)"));
        }
        check_store_url("output.url", &self.output.url)?;
        self.webhooks.validate()?;
        self.inputs.validate()?;
        let policy = self.webhooks.policy()?;
        for (name, p) in &self.projects {
            let key = format!("projects.{name}");
            p.validate(&key)?;
            if let Some(url) = &p.webhook_url {
                policy
                    .check_url(url)
                    .map_err(|e| invalid(format!("{key}.webhook_url"), e.to_string()))?;
                if p.webhook_secret.is_none() {
                    return Err(invalid(
                        format!("{key}.webhook_secret"),
                        "required when webhook_url is set: deliveries are signed (Standard Webhooks); generate one with `imagegen webhooks secret`",
                    ));
                }
            }
        }
        Ok(())
    }
}

fn check_store_url(key: &str, url: &str) -> Result<(), ConfigError> {
    let ok = [
        "file://",
        "memory://",
        "s3://",
        "gs://",
        "az://",
        "abfs://",
        "abfss://",
    ]
    .iter()
    .any(|s| url.starts_with(s));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!("`{url}` is not an object store URL (file://, memory://, s3://, gs://, az://)"),
        ))
    }
}

impl ProjectConfig {
    /// The API version to call, defaulted per backend.
    pub fn api_version(&self) -> &str {
        match (&self.api_version, self.backend) {
            (Some(v), _) => v,
            (None, Backend::Vertex) => "v1",
            (None, Backend::GeminiApi) => "v1beta",
        }
    }

    fn validate(&self, key: &str) -> Result<(), ConfigError> {
        let versions: &[&str] = match self.backend {
            Backend::Vertex => &["v1", "v1beta1"],
            Backend::GeminiApi => &["v1", "v1beta", "v1alpha"],
        };
        if !versions.contains(&self.api_version()) {
            return Err(invalid(
                format!("{key}.api_version"),
                format!(
                    "`{}` is not a {} API version (use {})",
                    self.api_version(),
                    self.backend.as_str(),
                    versions.join(" or ")
                ),
            ));
        }
        let api_key = self.credentials.starts_with("env:");
        if self.backend == Backend::Vertex
            && self.gcp_project.as_deref().unwrap_or("").is_empty()
            && !api_key
        {
            return Err(invalid(
                format!("{key}.gcp_project"),
                "required for backend \"vertex\" (unless credentials is an API key: express mode)",
            ));
        }
        if self.backend == Backend::GeminiApi && !api_key && self.credentials != "none" {
            return Err(invalid(
                format!("{key}.credentials"),
                "backend \"gemini-api\" needs an API key: credentials = \"env:VAR\"",
            ));
        }
        if self.location.is_empty()
            || !self
                .location
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(invalid(
                format!("{key}.location"),
                format!(
                    "`{}` is not a location (e.g. global, us-central1, us, eu)",
                    self.location
                ),
            ));
        }
        if let Some(ep) = &self.endpoint {
            url::Url::parse(ep).map_err(|e| {
                invalid(
                    format!("{key}.endpoint"),
                    format!("`{ep}` is not a URL: {e}"),
                )
            })?;
        }
        if self.concurrency == 0 {
            return Err(invalid(format!("{key}.concurrency"), "must be at least 1"));
        }
        if self.rpm == Some(0) {
            return Err(invalid(
                format!("{key}.rpm"),
                "must be at least 1 (omit it for no limit)",
            ));
        }
        if self.weight == 0 {
            return Err(invalid(format!("{key}.weight"), "must be at least 1"));
        }
        for (model, limits) in &self.models {
            if limits.concurrency == Some(0) || limits.rpm == Some(0) {
                return Err(invalid(
                    format!("{key}.models.\"{model}\""),
                    "limits must be at least 1",
                ));
            }
        }
        if let Some(url) = &self.output_url {
            check_store_url(&format!("{key}.output_url"), url)?;
        }
        for (field, value) in [
            ("webhook_secret", &self.webhook_secret),
            ("api_tokens", &self.api_tokens),
        ] {
            if let Some(v) = value
                && !(v.starts_with("env:") || v.starts_with("file:"))
            {
                return Err(invalid(
                    format!("{key}.{field}"),
                    "secrets are read from the environment or a file: write \"env:VAR\" or \"file:PATH\"",
                ));
            }
        }
        Ok(())
    }
}

impl ProjectConfig {
    /// The project's webhook signer, when it has a `webhook_secret` (read and checked
    /// now: a bad secret fails with its key named).
    pub fn webhook_signer(
        &self,
        name: &str,
    ) -> Result<Option<crate::webhooks::Signer>, ConfigError> {
        use secrecy::ExposeSecret as _;
        let Some(source) = &self.webhook_secret else {
            return Ok(None);
        };
        let key = format!("projects.{name}.webhook_secret");
        let text = read_secret(&key, source)?;
        crate::webhooks::Signer::parse(text.expose_secret())
            .map(Some)
            .map_err(|e| {
                invalid(
                    key,
                    format!(
                        "{e} (expected whsec_<base64>; several, space-separated, during a rotation)"
                    ),
                )
            })
    }
}

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
