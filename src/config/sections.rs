//! The sections besides projects: `[redis]`, `[output]`, `[worker]`, `[webhooks]`,
//! `[inputs]`, `[emulator]`.

use std::collections::BTreeMap;

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
    pub quota_reset_utc: ResetTime,
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

    /// The private ranges allowed anyway, parsed.
    pub fn cidrs(&self) -> Result<Vec<ipnet::IpNet>, ConfigError> {
        parse_cidrs("webhooks", &self.allow_cidrs)
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        self.schedule()?;
        self.cidrs()?;
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
    /// The private ranges allowed anyway, parsed.
    pub fn cidrs(&self) -> Result<Vec<ipnet::IpNet>, ConfigError> {
        parse_cidrs("inputs", &self.allow_cidrs)
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        self.cidrs()?;
        if !(1..=600).contains(&self.timeout_s) {
            return Err(invalid("inputs.timeout_s", "must be between 1 and 600"));
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
