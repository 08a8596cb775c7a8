//! Google's error envelope (`{"error": {code, message, status, details}}`, spec §6) and
//! the constructors the emulator uses for each kind of refusal.
//!
//! Only shapes errors; deciding *when* to fail belongs to the request handlers.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// An error answered with Google's envelope.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// `google.rpc.Code` name (`INVALID_ARGUMENT`, …).
    pub status: &'static str,
    /// Human-readable message.
    pub message: String,
    /// `google.rpc` detail objects (already carrying `@type`).
    pub details: Vec<Value>,
}

const TYPE_PREFIX: &str = "type.googleapis.com/google.rpc.";

impl ApiError {
    /// An error with the canonical status name for `code`.
    pub fn new(code: u16, message: impl Into<String>) -> Self {
        ApiError {
            code,
            status: status_name(code),
            message: message.into(),
            details: Vec::new(),
        }
    }

    /// Adds a detail of `google.rpc.<kind>` with the given fields.
    pub fn with_detail(mut self, kind: &str, mut fields: Value) -> Self {
        if let Some(map) = fields.as_object_mut() {
            map.insert(
                "@type".into(),
                Value::String(format!("{TYPE_PREFIX}{kind}")),
            );
        }
        self.details.push(fields);
        self
    }

    /// 400 INVALID_ARGUMENT naming `field` in a `BadRequest` field violation.
    pub fn field(field: &str, description: impl Into<String>) -> Self {
        let description = description.into();
        ApiError::new(400, description.clone()).with_detail(
            "BadRequest",
            json!({"fieldViolations": [{"field": field, "description": description}]}),
        )
    }

    /// 400 for a request body that is not the JSON the proto expects.
    pub fn invalid_json(field: Option<&str>, message: impl Into<String>) -> Self {
        let message = message.into();
        ApiError::new(400, message.clone()).with_detail(
            "BadRequest",
            json!({"fieldViolations": [{"field": field.unwrap_or(""), "description": message}]}),
        )
    }

    /// 404 NOT_FOUND.
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(404, message)
    }

    /// 400 FAILED_PRECONDITION.
    pub fn failed_precondition(message: impl Into<String>) -> Self {
        let mut e = ApiError::new(400, message);
        e.status = "FAILED_PRECONDITION";
        e
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        let mut error = json!({
            "code": self.code,
            "message": self.message,
            "status": self.status,
        });
        if !self.details.is_empty() {
            error["details"] = Value::Array(self.details.clone());
        }
        json!({ "error": error })
    }

    /// The numeric `google.rpc.Code` (used inside batch results).
    pub fn rpc_code(&self) -> u16 {
        match self.status {
            "CANCELLED" => 1,
            "UNKNOWN" => 2,
            "INVALID_ARGUMENT" => 3,
            "DEADLINE_EXCEEDED" => 4,
            "NOT_FOUND" => 5,
            "PERMISSION_DENIED" => 7,
            "RESOURCE_EXHAUSTED" => 8,
            "FAILED_PRECONDITION" => 9,
            "INTERNAL" => 13,
            "UNAVAILABLE" => 14,
            "UNAUTHENTICATED" => 16,
            _ => 2,
        }
    }
}

/// Canonical `google.rpc.Code` name for an HTTP status.
pub fn status_name(code: u16) -> &'static str {
    match code {
        400 | 413 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        402 | 429 => "RESOURCE_EXHAUSTED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        405 | 501 => "UNIMPLEMENTED",
        408 | 504 => "DEADLINE_EXCEEDED",
        409 => "ABORTED",
        412 => "FAILED_PRECONDITION",
        499 => "CANCELLED",
        500 => "INTERNAL",
        502 => "UNKNOWN",
        503 => "UNAVAILABLE",
        _ => "UNKNOWN",
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, axum::Json(self.body())).into_response()
    }
}

/// Formats a duration as a proto3 JSON `Duration` (`"7.5s"`, `"37s"`).
pub fn duration_string(secs: f64) -> String {
    let secs = secs.max(0.001);
    let mut s = format!("{secs:.3}");
    while s.ends_with('0') {
        s.pop();
    }
    if s.ends_with('.') {
        s.pop();
    }
    format!("{s}s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_trim_like_proto_json() {
        assert_eq!(duration_string(37.0), "37s");
        assert_eq!(duration_string(7.5), "7.5s");
        assert_eq!(duration_string(0.0), "0.001s");
    }

    #[test]
    fn field_violation_names_the_field() {
        let body = ApiError::field("generation_config.candidate_count", "bad").body();
        assert_eq!(body["error"]["status"], "INVALID_ARGUMENT");
        assert_eq!(
            body["error"]["details"][0]["fieldViolations"][0]["field"],
            "generation_config.candidate_count"
        );
        assert_eq!(
            body["error"]["details"][0]["@type"],
            "type.googleapis.com/google.rpc.BadRequest"
        );
    }
}
