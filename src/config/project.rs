//! `[projects.<name>]`: a tenant's backend, credentials, limits and outputs.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::sections::check_store_url;
use super::{ConfigError, invalid};
use crate::catalog::Backend;

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
    /// Tier for jobs that name none (`standard` when absent).
    #[serde(default)]
    pub tier: Option<crate::job::spec::Tier>,
    /// What the project may spend per UTC day (USD, the price table's costs): once
    /// spent, its work is held (`budget_exhausted`) until the next day or a larger
    /// budget.
    #[serde(default)]
    pub budget_usd_per_day: Option<f64>,
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
    /// What this model may spend per UTC day (USD), within the project's budget.
    #[serde(default)]
    pub budget_usd_per_day: Option<f64>,
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

impl ProjectConfig {
    /// The API version to call, defaulted per backend.
    pub fn api_version(&self) -> &str {
        match (&self.api_version, self.backend) {
            (Some(v), _) => v,
            (None, Backend::Vertex) => "v1",
            (None, Backend::GeminiApi) => "v1beta",
        }
    }

    pub(super) fn validate(&self, key: &str) -> Result<(), ConfigError> {
        self.validate_target(key)?;
        if let Some(ep) = &self.endpoint {
            url::Url::parse(ep).map_err(|e| {
                invalid(
                    format!("{key}.endpoint"),
                    format!("`{ep}` is not a URL: {e}"),
                )
            })?;
        }
        self.validate_limits(key)?;
        let budgets =
            std::iter::once((format!("{key}.budget_usd_per_day"), self.budget_usd_per_day)).chain(
                self.models.iter().map(|(m, l)| {
                    (
                        format!("{key}.models.\"{m}\".budget_usd_per_day"),
                        l.budget_usd_per_day,
                    )
                }),
            );
        for (field, budget) in budgets {
            if let Some(b) = budget
                && !(b.is_finite() && b > 0.0)
            {
                return Err(invalid(
                    field,
                    format!("must be a positive number of US dollars, got {b}"),
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

    /// Backend, API version, credentials and location agree.
    fn validate_target(&self, key: &str) -> Result<(), ConfigError> {
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
        Ok(())
    }

    /// Limits and weights are at least 1.
    fn validate_limits(&self, key: &str) -> Result<(), ConfigError> {
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
        Ok(())
    }
}
