//! Safety outcomes and injected faults: which marker a prompt carries, which random fault
//! (if any) a request draws, and the exact bytes each fault answers with — Google's
//! envelopes, an HTML 503, a truncated JSON 200, or a connection reset.
//!
//! Chooses and shapes failures; admission, latency and stats are the dispatcher's.

use std::time::Duration;

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use crate::emulator::control::scenario::Scenario;
use crate::emulator::envelope::ApiError;

/// Safety outcome a prompt's markers select.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Normal answer.
    Normal,
    /// Prompt blocked (`promptFeedback.blockReason`; Imagen: RAI-filtered samples).
    Blocked,
    /// `finishReason: IMAGE_SAFETY` (Imagen: RAI-filtered samples).
    ImageSafety,
    /// `finishReason: NO_IMAGE` (Imagen: empty predictions).
    NoImage,
}

/// The outcome for a prompt under a scenario.
pub fn outcome(scenario: &Scenario, prompt: &str) -> Outcome {
    let has = |m: &str| !m.is_empty() && prompt.contains(m);
    if has(&scenario.blocked_marker) {
        Outcome::Blocked
    } else if has(&scenario.image_safety_marker) {
        Outcome::ImageSafety
    } else if has(&scenario.no_image_marker) {
        Outcome::NoImage
    } else {
        Outcome::Normal
    }
}

/// A fault to inject instead of the normal answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// An envelope with this HTTP status (500, 503, …).
    Status(u16),
    /// DSQ-style 429 without details.
    Shared429,
    /// Hold, then 504.
    Timeout,
    /// Abort the connection.
    Reset,
    /// 200 with truncated JSON.
    Malformed,
    /// 503 with an HTML body.
    NonJson,
}

/// The fault forced by a `[[fail:…]]` marker in the prompt, if markers are enabled.
pub fn marker_fault(scenario: &Scenario, prompt: &str) -> Option<Fault> {
    if !scenario.fault_markers {
        return None;
    }
    let start = prompt.find("[[fail:")? + "[[fail:".len();
    let rest = &prompt[start..];
    let name = &rest[..rest.find("]]")?];
    match name {
        "timeout" => Some(Fault::Timeout),
        "reset" => Some(Fault::Reset),
        "malformed" => Some(Fault::Malformed),
        "non_json" => Some(Fault::NonJson),
        "429" => Some(Fault::Shared429),
        code => code
            .parse::<u16>()
            .ok()
            .filter(|c| (400..600).contains(c))
            .map(Fault::Status),
    }
}

/// Draws a random fault from the scenario rates with one uniform sample.
pub fn random_fault(scenario: &Scenario, unit: f64) -> Option<Fault> {
    let f = &scenario.faults;
    let table = [
        (f.rate_500, Fault::Status(500)),
        (f.rate_503, Fault::Status(503)),
        (f.rate_429_shared, Fault::Shared429),
        (f.rate_timeout, Fault::Timeout),
        (f.rate_reset, Fault::Reset),
        (f.rate_malformed, Fault::Malformed),
        (f.rate_non_json, Fault::NonJson),
    ];
    let mut acc = 0.0;
    for (rate, fault) in table {
        acc += rate;
        if unit < acc {
            return Some(fault);
        }
    }
    None
}

/// How long a timeout fault holds: the scenario's `timeout_ms`, shortened by the
/// client's `X-Server-Timeout` (seconds) like Google's front end does.
pub fn timeout_hold(scenario: &Scenario, server_timeout_s: Option<f64>) -> Duration {
    let hold = Duration::from_millis(scenario.faults.timeout_ms);
    match server_timeout_s {
        Some(s) if s > 0.0 => hold.min(Duration::from_secs_f64(s)),
        _ => hold,
    }
}

/// The response a fault answers with (a timeout's hold happens before this).
pub fn fault_response(fault: Fault) -> Response {
    match fault {
        Fault::Status(code) => ApiError::new(code, status_message(code)).into_response(),
        Fault::Shared429 => {
            ApiError::new(429, "Resource has been exhausted (e.g. check quota).").into_response()
        }
        Fault::Timeout => {
            ApiError::new(504, "Deadline expired before operation could complete.").into_response()
        }
        Fault::NonJson => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/html; charset=UTF-8")],
            "<!DOCTYPE html>\n<html lang=en><meta charset=utf-8><title>Error 503 (Service Unavailable)!!1</title>\
             <p><b>503.</b> <ins>That's an error.</ins><p>Service Unavailable <ins>That's all we know.</ins></html>",
        )
            .into_response(),
        Fault::Malformed => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json; charset=UTF-8")],
            "{\n  \"candidates\": [\n    {\n      \"content\": {\n        \"role\": \"model\",\n        \"parts\": [\n          {\n            \"inlineData\": {\"mimeType\": \"image/png\", \"data\": \"iVBORw0KGgo",
        )
            .into_response(),
        Fault::Reset => reset_response(),
    }
}

/// A 200 whose body stream fails after the headers, so hyper aborts the connection.
fn reset_response() -> Response {
    let stream = futures::stream::iter([
        Ok::<Bytes, std::io::Error>(Bytes::from_static(b"{\"candidates\": [")),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "emulated connection reset",
        )),
    ]);
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    resp
}

fn status_message(code: u16) -> &'static str {
    match code {
        500 => "Internal error encountered.",
        502 => "Bad Gateway",
        503 => "The model is overloaded. Please try again later.",
        504 => "Deadline expired before operation could complete.",
        429 => "Resource exhausted. Please try again later.",
        408 => "Request timeout.",
        _ => "Injected fault.",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_force_faults_and_outcomes() {
        let s = Scenario::default();
        assert_eq!(
            marker_fault(&s, "a [[fail:503]] b"),
            Some(Fault::Status(503))
        );
        assert_eq!(marker_fault(&s, "[[fail:reset]]"), Some(Fault::Reset));
        assert_eq!(marker_fault(&s, "plain"), None);
        assert_eq!(outcome(&s, "x [[blocked]]"), Outcome::Blocked);
        assert_eq!(outcome(&s, "x [[no_image]]"), Outcome::NoImage);
    }

    #[test]
    fn random_fault_walks_the_cumulative_rates() {
        let mut s = Scenario::default();
        s.faults.rate_500 = 0.1;
        s.faults.rate_reset = 0.2;
        assert_eq!(random_fault(&s, 0.05), Some(Fault::Status(500)));
        assert_eq!(random_fault(&s, 0.25), Some(Fault::Reset));
        assert_eq!(random_fault(&s, 0.5), None);
    }
}
