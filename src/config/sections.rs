//! The sections besides projects: `[redis]`, `[output]`, `[worker]`, `[webhooks]`,
//! `[inputs]`, `[emulator]`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, invalid, read_secret};

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

const SECOND: Duration = Duration::from_secs(1);

/// Durations in the files as humantime strings (`"300s"`, `"5m"`, `"1500ms"`, `"3d"`).
pub(super) mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    /// A string, or a number the environment parsed (refused: it has no unit).
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Number(i64),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = match Raw::deserialize(d)? {
            Raw::Text(text) => text,
            Raw::Number(n) => {
                return Err(serde::de::Error::custom(format!(
                    "`{n}` has no unit: write \"{n}s\" or \"{n}ms\""
                )));
            }
        };
        humantime::parse_duration(text.trim()).map_err(|e| {
            serde::de::Error::custom(format!(
                "`{text}` is not a duration like \"500ms\", \"30s\", \"5m\", \"2h\": {e}"
            ))
        })
    }
}

/// Moves a key renamed when durations became durations (`old` held a number of
/// `unit`s) to its new key, noting the rename; old files and environments keep working.
fn renamed(
    section: &str,
    (old, value): (&str, Option<u64>),
    (new, target): (&str, &mut Duration),
    unit: Duration,
    notices: &mut Vec<String>,
) {
    if let Some(n) = value {
        *target = Duration::from_millis(n.saturating_mul(unit.as_millis() as u64));
        let text = humantime::format_duration(*target);
        notices.push(format!(
            "{section}.{old} is now {section}.{new}, a duration: write {new} = \"{text}\""
        ));
    }
}

/// `[worker]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    /// Jobs in flight per worker process.
    pub concurrency: u32,
    /// Client-side deadline of one provider call.
    #[serde(deserialize_with = "duration::deserialize")]
    pub request_timeout: Duration,
    /// A claimed job not extended for this long is taken over by another worker.
    #[serde(deserialize_with = "duration::deserialize")]
    pub visibility_timeout: Duration,
    /// Deliveries without a settle (crashes, lost leases) before a job is dead-lettered.
    pub max_deliveries: u32,
    /// Provider attempts a job may spend on transient errors before it fails.
    pub max_attempts: u32,
    /// First retry delay (doubles each attempt, full jitter).
    #[serde(deserialize_with = "duration::deserialize")]
    pub retry_min: Duration,
    /// Cap on one retry delay.
    #[serde(deserialize_with = "duration::deserialize")]
    pub retry_max: Duration,
    /// On SIGTERM/SIGINT: how long running jobs may finish before they are released.
    #[serde(deserialize_with = "duration::deserialize")]
    pub shutdown_grace: Duration,
    /// How long a finished job's or batch's record is kept in Redis.
    #[serde(deserialize_with = "duration::deserialize")]
    pub retention: Duration,
    /// A job still not run this long after it was enqueued (waiting for capacity,
    /// deferred by 429s, parked) fails with a clear reason; `0s` = no deadline.
    #[serde(deserialize_with = "duration::deserialize")]
    pub max_wait: Duration,
    /// AIMD: effective concurrency is multiplied by this on a 429.
    pub aimd_decrease: f64,
    /// AIMD: at most one decrease per this interval.
    #[serde(deserialize_with = "duration::deserialize")]
    pub aimd_interval: Duration,
    /// Pause of a lane after a 429 that advised no delay.
    #[serde(deserialize_with = "duration::deserialize")]
    pub pause_default: Duration,
    /// A held project or lane (credentials failing, a model gone) sends one probe
    /// after this long, the wait doubling up to 5 minutes while it stays held.
    #[serde(deserialize_with = "duration::deserialize")]
    pub hold_probe: Duration,
    /// When daily quotas reset (`HH:MM` UTC; Google resets at midnight Pacific time):
    /// a lane parked by a spent daily quota that advised no delay waits until then.
    pub quota_reset_utc: ResetTime,
    /// Renamed keys (numbers of seconds or milliseconds), still read.
    #[serde(default)]
    pub(super) request_timeout_s: Option<u64>,
    #[serde(default)]
    pub(super) visibility_timeout_s: Option<u64>,
    #[serde(default)]
    pub(super) retry_min_ms: Option<u64>,
    #[serde(default)]
    pub(super) retry_max_ms: Option<u64>,
    #[serde(default)]
    pub(super) shutdown_grace_s: Option<u64>,
    #[serde(default)]
    pub(super) retention_s: Option<u64>,
    #[serde(default)]
    pub(super) max_wait_s: Option<u64>,
    #[serde(default)]
    pub(super) aimd_interval_ms: Option<u64>,
    #[serde(default)]
    pub(super) pause_default_ms: Option<u64>,
}

impl WorkerConfig {
    /// Moves the renamed keys to their new names.
    pub(super) fn move_renamed(&mut self, notices: &mut Vec<String>) {
        let (s, ms) = (SECOND, Duration::from_millis(1));
        let w = "worker";
        let mut mv = |old: (&str, Option<u64>), new: (&str, &mut Duration), unit| {
            renamed(w, old, new, unit, notices)
        };
        mv(
            ("request_timeout_s", self.request_timeout_s.take()),
            ("request_timeout", &mut self.request_timeout),
            s,
        );
        mv(
            ("visibility_timeout_s", self.visibility_timeout_s.take()),
            ("visibility_timeout", &mut self.visibility_timeout),
            s,
        );
        mv(
            ("retry_min_ms", self.retry_min_ms.take()),
            ("retry_min", &mut self.retry_min),
            ms,
        );
        mv(
            ("retry_max_ms", self.retry_max_ms.take()),
            ("retry_max", &mut self.retry_max),
            ms,
        );
        mv(
            ("shutdown_grace_s", self.shutdown_grace_s.take()),
            ("shutdown_grace", &mut self.shutdown_grace),
            s,
        );
        mv(
            ("retention_s", self.retention_s.take()),
            ("retention", &mut self.retention),
            s,
        );
        mv(
            ("max_wait_s", self.max_wait_s.take()),
            ("max_wait", &mut self.max_wait),
            s,
        );
        mv(
            ("aimd_interval_ms", self.aimd_interval_ms.take()),
            ("aimd_interval", &mut self.aimd_interval),
            ms,
        );
        mv(
            ("pause_default_ms", self.pause_default_ms.take()),
            ("pause_default", &mut self.pause_default),
            ms,
        );
    }
}

/// `[webhooks]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Delay before each attempt (humantime strings: `0s`, `5m`, `2h`).
    pub retry_schedule: Vec<String>,
    /// One attempt's timeout.
    #[serde(deserialize_with = "duration::deserialize")]
    pub timeout: Duration,
    /// Response bytes read at most.
    pub max_response_bytes: usize,
    /// Deliveries in flight per worker.
    pub concurrency: usize,
    /// Allow every destination (private networks included).
    pub allow_private_networks: bool,
    /// Private ranges allowed anyway.
    #[serde(default)]
    pub allow_cidrs: Vec<String>,
    /// Signed output URL lifetime.
    #[serde(deserialize_with = "duration::deserialize")]
    pub signed_url_ttl: Duration,
    /// Renamed keys (numbers of seconds), still read.
    #[serde(default)]
    pub(super) timeout_s: Option<u64>,
    #[serde(default)]
    pub(super) signed_url_ttl_s: Option<u64>,
}

impl WebhooksConfig {
    /// Moves the renamed keys to their new names.
    pub(super) fn move_renamed(&mut self, notices: &mut Vec<String>) {
        let old = ("timeout_s", self.timeout_s.take());
        renamed(
            "webhooks",
            old,
            ("timeout", &mut self.timeout),
            SECOND,
            notices,
        );
        let old = ("signed_url_ttl_s", self.signed_url_ttl_s.take());
        let new = ("signed_url_ttl", &mut self.signed_url_ttl);
        renamed("webhooks", old, new, SECOND, notices);
    }

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

    /// The private ranges allowed anyway, parsed.
    pub fn cidrs(&self) -> Result<Vec<ipnet::IpNet>, ConfigError> {
        parse_cidrs("webhooks", &self.allow_cidrs)
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        self.schedule()?;
        self.cidrs()?;
        if !(SECOND..=300 * SECOND).contains(&self.timeout) {
            return Err(invalid("webhooks.timeout", "must be between 1s and 5m"));
        }
        if self.concurrency == 0 {
            return Err(invalid("webhooks.concurrency", "must be at least 1"));
        }
        if !(SECOND..=7 * 86_400 * SECOND).contains(&self.signed_url_ttl) {
            return Err(invalid(
                "webhooks.signed_url_ttl",
                "must be between 1s and 7d (the longest S3 and GCS sign for)",
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
    /// One fetch's timeout.
    #[serde(deserialize_with = "duration::deserialize")]
    pub timeout: Duration,
    /// Redirects followed at most (each hop checked again); 0 follows none.
    pub max_redirects: usize,
    /// Renamed key (a number of seconds), still read.
    #[serde(default)]
    pub(super) timeout_s: Option<u64>,
}

impl InputsConfig {
    /// Moves the renamed key to its new name.
    pub(super) fn move_renamed(&mut self, notices: &mut Vec<String>) {
        let old = ("timeout_s", self.timeout_s.take());
        renamed(
            "inputs",
            old,
            ("timeout", &mut self.timeout),
            SECOND,
            notices,
        );
    }

    /// The private ranges allowed anyway, parsed.
    pub fn cidrs(&self) -> Result<Vec<ipnet::IpNet>, ConfigError> {
        parse_cidrs("inputs", &self.allow_cidrs)
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        self.cidrs()?;
        if !(SECOND..=600 * SECOND).contains(&self.timeout) {
            return Err(invalid("inputs.timeout", "must be between 1s and 10m"));
        }
        if self.max_redirects > 10 {
            return Err(invalid("inputs.max_redirects", "must be at most 10"));
        }
        Ok(())
    }
}

fn parse_cidrs(section: &str, cidrs: &[String]) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    cidrs
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
        .collect()
}

/// `[emulator]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmulatorConfig {
    /// Scenario file for the in-process emulator; empty for defaults.
    pub scenario: String,
}

/// `[sessions]`: chat sessions (`/v1/sessions`, `imagegen chat`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionsConfig {
    /// A session untouched this long (no message, no answer) is gone, its history
    /// with it (the images stay in the store).
    #[serde(deserialize_with = "duration::deserialize")]
    pub ttl: Duration,
    /// The same in seconds (the key's first name), still read.
    #[serde(default)]
    pub(super) ttl_s: Option<u64>,
}

impl SessionsConfig {
    /// Moves the key given in seconds to `ttl`.
    pub(super) fn move_renamed(&mut self, notices: &mut Vec<String>) {
        let old = ("ttl_s", self.ttl_s.take());
        renamed("sessions", old, ("ttl", &mut self.ttl), SECOND, notices);
    }
}

/// `[api]`: the HTTP API of `imagegen api` and `imagegen serve`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Address to listen on.
    pub listen: String,
    /// How long a sync request waits for its job before answering 202.
    #[serde(deserialize_with = "duration::deserialize")]
    pub sync_timeout: Duration,
    /// Largest uploaded file, bytes (the guide's 20 MB).
    pub max_file_bytes: u64,
    /// Largest request body, bytes.
    pub max_body_bytes: u64,
    /// Largest `/v1/batches` upload, bytes (streamed to disk, not held in memory).
    pub max_batch_bytes: u64,
    /// Requests per second per token, sustained (0: no limit).
    pub requests_per_second: f64,
    /// Requests a token may send at once above the rate.
    pub burst: u32,
    /// The API's URL as webhook receivers reach it: image links of API requests'
    /// webhooks go through it when the store cannot sign (empty: none).
    pub public_url: String,
}

impl ApiConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.sync_timeout.is_zero() || self.sync_timeout > 3600 * SECOND {
            return Err(invalid("api.sync_timeout", "must be between 1s and 1h"));
        }
        let url = &self.public_url;
        if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
            return Err(invalid(
                "api.public_url",
                "must be an http(s) URL (e.g. https://images.example.com) or empty",
            ));
        }
        if self.max_file_bytes == 0 || self.max_body_bytes < self.max_file_bytes {
            return Err(invalid(
                "api.max_body_bytes",
                "must be at least api.max_file_bytes (and both above 0)",
            ));
        }
        Ok(())
    }
}

pub(super) fn check_store_url(key: &str, url: &str) -> Result<(), ConfigError> {
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

/// A time of day in UTC (`HH:MM`, as `worker.quota_reset_utc` is written): when daily
/// quotas reset. Parsed once, when the configuration is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResetTime {
    /// 0..=23
    pub hour: u8,
    /// 0..=59
    pub minute: u8,
}

impl ResetTime {
    /// `HH:MM`, or `None`.
    pub fn parse(s: &str) -> Option<Self> {
        let (h, m) = s.trim().split_once(':')?;
        let (hour, minute) = (h.parse::<u8>().ok()?, m.parse::<u8>().ok()?);
        (hour < 24 && minute < 60).then_some(ResetTime { hour, minute })
    }

    /// The next occurrence after `now_ms` (unix ms).
    pub fn next_after(&self, now_ms: u64) -> u64 {
        let day = 86_400_000;
        let offset = (self.hour as u64 * 3600 + self.minute as u64 * 60) * 1000;
        let today = now_ms - now_ms % day + offset;
        if today > now_ms { today } else { today + day }
    }
}

impl<'de> Deserialize<'de> for ResetTime {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ResetTime::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!("`{s}` is not a time of day HH:MM (UTC)"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daily_reset_is_the_next_occurrence() {
        let day = 86_400_000;
        let t = 10 * day + 9 * 3_600_000; // 09:00 UTC
        let at = |s: &str| ResetTime::parse(s).unwrap().next_after(t);
        assert_eq!(at("08:00"), 11 * day + 8 * 3_600_000);
        assert_eq!(at("10:30"), 10 * day + 10 * 3_600_000 + 1_800_000);
        assert_eq!(ResetTime::parse("24:00"), None);
    }
}

/// `[models]`: what a job naming a retired model does, and changes to the lifecycle
/// table (`[models."<id>"]`: stage, dates, replacement).
#[derive(Debug, Clone, Deserialize)]
pub struct ModelsConfig {
    /// A job naming a model Google has shut down (on its project's backend).
    pub on_retired: OnRetired,
    /// The model a `segment` line naming a Gemini image model (or none) runs on.
    pub segment_model: String,
    /// Lifecycle changes by model id.
    #[serde(flatten)]
    pub lifecycle: BTreeMap<String, crate::catalog::lifecycle::LifeOverride>,
}

/// What a job naming a retired model does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnRetired {
    /// Runs on the replacement, with a warning and `model_requested` recorded.
    Migrate,
    /// Refuses the line, naming the replacement.
    Refuse,
}

impl ModelsConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let table = crate::catalog::Lifecycle::default();
        let known =
            |id: &str| crate::catalog::lookup_or_infer(id).is_some() || table.get(id).is_some();
        let segments = crate::catalog::lookup_or_infer(&self.segment_model).is_some_and(|m| {
            matches!(
                m.family,
                crate::catalog::Family::GeminiText | crate::catalog::Family::Segmentation
            )
        });
        if !segments {
            return Err(invalid(
                "models.segment_model",
                format!(
                    "`{}` does not segment: name a Gemini text model (gemini-3.5-flash) or image-segmentation-001",
                    self.segment_model
                ),
            ));
        }
        for (id, o) in &self.lifecycle {
            if !known(id) {
                return Err(invalid(
                    format!("models.\"{id}\""),
                    "not a model the catalog knows (a key of [models] other than on_retired names a model)",
                ));
            }
            if let Some(r) = &o.replacement
                && crate::catalog::lookup_or_infer(r).is_none()
            {
                return Err(invalid(
                    format!("models.\"{id}\".replacement"),
                    format!("`{r}` is not a model the catalog knows"),
                ));
            }
        }
        Ok(())
    }
}

/// One model's list prices (USD) at the standard tier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPrices {
    /// Per 1M input tokens (text and images alike).
    #[serde(default)]
    pub input_per_m: f64,
    /// Per 1M output text and thinking tokens.
    #[serde(default)]
    pub output_text_per_m: f64,
    /// Per 1M output image tokens.
    #[serde(default)]
    pub output_image_per_m: f64,
    /// Per output image, for models priced by the image (Imagen).
    #[serde(default)]
    pub per_image: f64,
}

/// `[prices]`: tier multipliers and per-model overrides of the list.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PricesConfig {
    /// Flex's share of the standard price.
    pub flex: f64,
    /// Priority's multiple of the standard price.
    pub priority: f64,
    /// Google Batch's share of the standard price.
    pub batch: f64,
    /// Per model: figures that replace (or add to) the built-in list.
    #[serde(default)]
    pub models: BTreeMap<String, ModelPrices>,
}

impl Default for PricesConfig {
    fn default() -> Self {
        PricesConfig {
            flex: 0.5,
            priority: 1.8,
            batch: 0.5,
            models: BTreeMap::new(),
        }
    }
}

impl PricesConfig {
    /// Refuses a multiplier that is not a positive number.
    pub fn check(&self) -> Result<(), ConfigError> {
        for (name, v) in [
            ("flex", self.flex),
            ("priority", self.priority),
            ("batch", self.batch),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(invalid(
                    format!("prices.{name}"),
                    format!("must be a positive number, got {v}"),
                ));
            }
        }
        for (model, p) in &self.models {
            let all = [
                p.input_per_m,
                p.output_text_per_m,
                p.output_image_per_m,
                p.per_image,
            ];
            if all.iter().any(|v| !(v.is_finite() && *v >= 0.0)) {
                return Err(invalid(
                    format!("prices.models.\"{model}\""),
                    "prices must be zero or more",
                ));
            }
        }
        Ok(())
    }
}
