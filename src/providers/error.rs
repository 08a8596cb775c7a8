//! `ProviderError` and `classify`: the ONE place where an HTTP status and body become an
//! outcome (spec §6.3): success, blocked (safety), transient (with Google's advised
//! delay), quota exhausted for the day, unauthenticated, or permanent.
//!
//! Error bodies are parsed leniently: the `{"error": …}` envelope, the one-element-array
//! form of streaming endpoints, and non-JSON bodies from proxies.

use std::time::Duration;

use serde::Deserialize;

use super::response::{self, ProviderOutput, ResponseKind};

/// Why a transient failure happened (each kind has its own retry budget).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransientKind {
    /// 429 per-minute quota or shared capacity (DSQ).
    RateLimited,
    /// 500/502/503/504/499.
    Server,
    /// 408 or a client-side timeout.
    Timeout,
    /// Connect/reset/IO errors.
    Connection,
    /// The model answered without an image (`NO_IMAGE`, `OTHER`, empty predictions).
    NoImage,
    /// A 200 whose body could not be parsed.
    Malformed,
}

impl TransientKind {
    /// Label for metrics and records.
    pub fn as_str(self) -> &'static str {
        match self {
            TransientKind::RateLimited => "rate_limited",
            TransientKind::Server => "server",
            TransientKind::Timeout => "timeout",
            TransientKind::Connection => "connection",
            TransientKind::NoImage => "no_image",
            TransientKind::Malformed => "malformed",
        }
    }
}

/// Every way a provider call can fail.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProviderError {
    /// Refused on safety/policy grounds; never retried.
    #[error("blocked: {reason}{}", message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Blocked {
        /// `PROHIBITED_CONTENT`, `IMAGE_SAFETY`, an Imagen RAI reason, …
        reason: String,
        /// Google's explanation, when given.
        message: Option<String>,
    },
    /// Worth retrying.
    #[error("transient {} error{}: {message}", kind.as_str(), status.map(|s| format!(" (HTTP {s})")).unwrap_or_default())]
    Transient {
        /// What happened.
        kind: TransientKind,
        /// HTTP status, when there was a response.
        status: Option<u16>,
        /// Google's message or the transport error.
        message: String,
        /// `RetryInfo.retryDelay` or `Retry-After`, when given.
        retry_after: Option<Duration>,
    },
    /// A daily quota is used up (`PerDay` quota id, or a limit of 0): park, don't retry.
    #[error("quota exhausted ({quota_id}): {message}")]
    QuotaExhausted {
        /// The `QuotaFailure` quota id, or metric.
        quota_id: String,
        /// Google's message.
        message: String,
        /// Advised delay, when given.
        retry_after: Option<Duration>,
    },
    /// Credentials could not be had: the token endpoint or metadata server is down or
    /// refuses, a key file is unreadable. Nothing of the project can run until it ends.
    #[error("credentials: {message}")]
    Credentials {
        /// What the credential source said.
        message: String,
    },
    /// 401: refresh credentials once, then give up.
    #[error("unauthenticated (HTTP 401): {message}")]
    Unauthenticated {
        /// Google's message.
        message: String,
    },
    /// Anything else: a bad request, permissions, unknown model, billing.
    #[error("HTTP {status} {code}: {message}")]
    Permanent {
        /// HTTP status (0 when the failure happened before a request).
        status: u16,
        /// Google's `status` (`INVALID_ARGUMENT`), or an `ErrorInfo.reason`.
        code: String,
        /// Google's message, with field violations appended.
        message: String,
    },
}

impl ProviderError {
    /// True when the job should be retried later.
    pub fn is_retryable(&self) -> bool {
        match self {
            ProviderError::Transient { .. } => true,
            ProviderError::Blocked { .. } => false,
            ProviderError::QuotaExhausted { .. } => false,
            ProviderError::Unauthenticated { .. } => false,
            ProviderError::Credentials { .. } => false,
            ProviderError::Permanent { .. } => false,
        }
    }

    /// Google's advised delay, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ProviderError::Transient { retry_after, .. }
            | ProviderError::QuotaExhausted { retry_after, .. } => *retry_after,
            ProviderError::Blocked { .. }
            | ProviderError::Unauthenticated { .. }
            | ProviderError::Credentials { .. }
            | ProviderError::Permanent { .. } => None,
        }
    }

    /// A bounded label for metrics (`blocked`, `rate_limited`, `permanent`, …).
    pub fn label(&self) -> &'static str {
        match self {
            ProviderError::Blocked { .. } => "blocked",
            ProviderError::Transient { kind, .. } => kind.as_str(),
            ProviderError::QuotaExhausted { .. } => "quota_exhausted",
            ProviderError::Unauthenticated { .. } => "unauthenticated",
            ProviderError::Credentials { .. } => "credentials",
            ProviderError::Permanent { .. } => "permanent",
        }
    }

    /// The outage this error is, if it is one: the hold it puts on the project
    /// (credentials) or on the model's lane (404, 403). A 403 names a model when its
    /// message does (Google: "... on resource '.../models/X'"), else the project.
    pub fn hold(&self) -> Option<crate::limits::HoldReason> {
        use crate::limits::HoldReason;
        match self {
            ProviderError::Credentials { .. } | ProviderError::Unauthenticated { .. } => {
                Some(HoldReason::CredentialsError)
            }
            ProviderError::Permanent { status: 404, .. } => Some(HoldReason::ModelUnavailable),
            ProviderError::Permanent {
                status: 403,
                message,
                ..
            } => Some(if message.contains("model") {
                HoldReason::PermissionDenied
            } else {
                HoldReason::CredentialsError
            }),
            _ => None,
        }
    }
}

/// Google's error envelope, leniently.
#[derive(Debug, Default, Deserialize)]
struct Envelope {
    #[serde(default)]
    error: ErrorBody,
}

#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    details: Vec<serde_json::Value>,
}

/// What the details of an error say, extracted once.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ErrorDetails {
    /// `RetryInfo.retryDelay`.
    pub retry_delay: Option<Duration>,
    /// `QuotaFailure.violations[].quotaId` (or `quotaMetric`, `subject`).
    pub quota_ids: Vec<String>,
    /// True when a violation has `quotaValue: "0"`.
    pub zero_quota: bool,
    /// `ErrorInfo.reason`.
    pub reason: Option<String>,
    /// `BadRequest.fieldViolations` as `field: description`.
    pub field_violations: Vec<String>,
}

/// Parses a protobuf Duration string: `"37s"`, `"45.837906927s"`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let secs: f64 = s.trim().strip_suffix('s')?.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

fn parse_details(details: &[serde_json::Value]) -> ErrorDetails {
    let mut out = ErrorDetails::default();
    for d in details {
        let ty = d.get("@type").and_then(|t| t.as_str()).unwrap_or("");
        let str_of =
            |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
        if ty.ends_with("RetryInfo") {
            out.retry_delay = d
                .get("retryDelay")
                .and_then(|v| v.as_str())
                .and_then(parse_duration);
        } else if ty.ends_with("QuotaFailure") {
            for v in d
                .get("violations")
                .and_then(|v| v.as_array())
                .into_iter()
                .flatten()
            {
                if let Some(id) = str_of(v, "quotaId")
                    .or_else(|| str_of(v, "quotaMetric"))
                    .or_else(|| str_of(v, "subject"))
                {
                    out.quota_ids.push(id);
                }
                let value = v.get("quotaValue");
                if value.and_then(|q| q.as_str()) == Some("0")
                    || value.and_then(|q| q.as_i64()) == Some(0)
                {
                    out.zero_quota = true;
                }
            }
        } else if ty.ends_with("ErrorInfo") {
            out.reason = str_of(d, "reason");
        } else if ty.ends_with("BadRequest") {
            for v in d
                .get("fieldViolations")
                .and_then(|v| v.as_array())
                .into_iter()
                .flatten()
            {
                let field = str_of(v, "field").unwrap_or_default();
                let desc = str_of(v, "description").unwrap_or_default();
                out.field_violations.push(format!("{field}: {desc}"));
            }
        }
    }
    out
}

/// "Please retry in 48.8s." in a message (the Developer API's wording).
fn delay_in_message(message: &str) -> Option<Duration> {
    let rest = &message[message.find("retry in ")? + "retry in ".len()..];
    let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let unit = &rest[end..];
    let n: f64 = rest[..end].parse().ok()?;
    let secs = if unit.starts_with("ms") {
        n / 1000.0
    } else if unit.starts_with('s') {
        n
    } else {
        return None;
    };
    Some(Duration::from_secs_f64(secs))
}

/// Parsed error body: (message, status name, details). Non-JSON bodies become the text.
pub fn parse_error_body(body: &[u8], http_status: u16) -> (String, String, ErrorDetails) {
    let value: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let value = match value {
        Some(serde_json::Value::Array(mut items)) if items.len() == 1 => items.pop(),
        other => other,
    };
    let envelope = value.and_then(|v| serde_json::from_value::<Envelope>(v).ok());
    match envelope {
        Some(e) if !e.error.message.is_empty() || !e.error.status.is_empty() => {
            let details = parse_details(&e.error.details);
            (e.error.message, e.error.status, details)
        }
        _ => {
            let text = String::from_utf8_lossy(body);
            let mut text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
            if text.len() > 300 {
                let cut = (0..=300)
                    .rev()
                    .find(|i| text.is_char_boundary(*i))
                    .unwrap_or(0);
                text.truncate(cut);
                text.push('…');
            }
            let reason = reqwest::StatusCode::from_u16(http_status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("")
                .to_string();
            (text, reason, ErrorDetails::default())
        }
    }
}

/// Classifies one HTTP response. `retry_after_header` is the raw `Retry-After` value.
pub fn classify(
    status: u16,
    retry_after_header: Option<&str>,
    body: &[u8],
    kind: ResponseKind,
) -> Result<ProviderOutput, ProviderError> {
    if (200..300).contains(&status) {
        return response::parse_success(body, kind);
    }
    let (message, code, details) = parse_error_body(body, status);
    let header_delay = retry_after_header.and_then(parse_retry_after);
    let retry_after = details
        .retry_delay
        .or(header_delay)
        .or_else(|| delay_in_message(&message));
    let transient = |kind| ProviderError::Transient {
        kind,
        status: Some(status),
        message: message.clone(),
        retry_after,
    };
    match status {
        401 => Err(ProviderError::Unauthenticated { message }),
        408 => Err(transient(TransientKind::Timeout)),
        429 => {
            let daily = details.quota_ids.iter().find(|q| q.contains("PerDay"));
            match (daily, details.zero_quota) {
                (Some(id), _) => Err(ProviderError::QuotaExhausted {
                    quota_id: id.clone(),
                    message,
                    retry_after,
                }),
                (None, true) => Err(ProviderError::QuotaExhausted {
                    quota_id: details
                        .quota_ids
                        .first()
                        .cloned()
                        .unwrap_or_else(|| "quota 0".into()),
                    message,
                    retry_after,
                }),
                (None, false) => Err(transient(TransientKind::RateLimited)),
            }
        }
        499 | 500 | 502 | 503 | 504 => Err(transient(TransientKind::Server)),
        _ => {
            let code = details
                .reason
                .clone()
                .filter(|_| code.is_empty() || code == "INVALID_ARGUMENT")
                .unwrap_or(code);
            let mut message = message;
            if !details.field_violations.is_empty() {
                message = format!("{message} [{}]", details.field_violations.join("; "));
            }
            Err(ProviderError::Permanent {
                status,
                code,
                message,
            })
        }
    }
}

/// `Retry-After`: delta seconds or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let delta = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests;
