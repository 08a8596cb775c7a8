//! The error envelope of the Gemini image guide: `{"error": "<code>", "message",
//! "details", "request_id"}`, with the guide's codes and statuses. A validation error
//! names its field in `details.field`; a 500 says nothing internal (the cause is logged
//! with the request id).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

/// One API error.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiError {
    /// HTTP status.
    #[serde(skip)]
    pub status: StatusCode,
    /// `invalid_request`, `unauthorized`, `not_found`, …
    pub error: &'static str,
    /// What went wrong, for a person.
    pub message: String,
    /// Machine-readable details (`field`, limits, lines).
    #[serde(skip_serializing_if = "Value::is_null")]
    pub details: Value,
    /// The request's id (also in the `x-request-id` header).
    pub request_id: String,
    /// Seconds to wait (429), sent as `Retry-After`.
    #[serde(skip)]
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, error: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            error,
            message: message.into(),
            details: Value::Null,
            request_id: String::new(),
            retry_after: None,
        }
    }

    /// 400 naming `field`.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::BAD_REQUEST, "invalid_request", message);
        e.details = json!({ "field": field });
        e
    }

    /// 400 from a `field: message` text (validation, the lifecycle, the URL checks, the
    /// spec parser), blaming the field it names.
    pub fn from_message(text: impl Into<String>) -> Self {
        let text = text.into();
        match field_of(&text).map(str::to_string) {
            Some(f) => Self::field(&f, text),
            None => Self::invalid(text),
        }
    }

    /// 400 without one field to blame.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// 401.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or unknown API token: send `Authorization: Bearer <token>`",
        )
    }

    /// 404 (also what another project's resources answer: they are not revealed).
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    /// 409.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 413: a file or body over its limit.
    pub fn too_large(field: &str, size: u64, limit: u64) -> Self {
        let mut e = Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "file_too_large",
            format!("{field} is {size} bytes; the limit is {limit} bytes"),
        );
        e.details = json!({ "field": field, "max_bytes": limit, "current_bytes": size });
        e
    }

    /// 422: the model refused on policy grounds.
    pub fn blocked(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "content_blocked", reason)
    }

    /// 429 with `Retry-After`.
    pub fn rate_limited(message: impl Into<String>, retry_after: u64) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_exceeded",
            message,
        );
        e.retry_after = Some(retry_after);
        e
    }

    /// 500: `message` is for the log only; the client learns the request id.
    pub fn internal(message: impl std::fmt::Display) -> Self {
        tracing::error!(error = %message, "API request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "internal error; quote the request_id when reporting it",
        )
    }

    /// 500 for a job that failed: its error is the user's to read.
    pub fn job_failed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    /// The same with `details`.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    /// The same, blaming `to` where it blamed `from` (the guide's `image` for the job's
    /// `images[0]`).
    pub fn rename_field(mut self, from: &str, to: &str) -> Self {
        if self.details.get("field").and_then(Value::as_str) == Some(from) {
            self.details["field"] = json!(to);
        }
        self
    }

    /// The same with another message.
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }

    /// The same, stamped with the request's id.
    pub fn for_request(mut self, id: &str) -> Self {
        self.request_id = id.to_string();
        self
    }
}

/// The field a `field: message` text blames (`images[0]: …`, or the spec parser's
/// "unknown field `x`, expected …"), when it names one.
pub fn field_of(text: &str) -> Option<&str> {
    if let Some(f) = text
        .strip_prefix("unknown field `")
        .and_then(|r| r.split('`').next())
    {
        return Some(f);
    }
    text.split_once(": ")
        .map(|(f, _)| f.trim_start_matches('.'))
        .filter(|f| !f.is_empty() && !f.contains(' '))
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(&self)).into_response();
        if let Some(s) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_blamed_field_is_read_from_the_message() {
        assert_eq!(field_of("images[0]: not an image"), Some("images[0]"));
        assert_eq!(
            field_of("unknown field `colour`, expected one of `v`"),
            Some("colour")
        );
        assert_eq!(field_of("the body has no jobs: none"), None);
        assert_eq!(
            ApiError::from_message("model: unknown").details["field"],
            "model"
        );
    }
}
