use std::time::Duration;

use super::*;
use crate::providers::response::ResponseKind::{
    self, Content as GenerateContent, Images as Predict, Masks,
};

/// The synthetic responses recorded in `spec/captures` (status, Retry-After, body).
fn capture(name: &str) -> (u16, Option<String>, Vec<u8>) {
    let dir = std::env::var("IMAGEGEN_SHARED_DIR")
        .unwrap_or_else(|_| format!("{}/../shared", env!("CARGO_MANIFEST_DIR")));
    let text = std::fs::read_to_string(format!("{dir}/spec/captures/{name}.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let r = &v["requests"][0];
    let status = r["mock_status"].as_u64().unwrap() as u16;
    let retry_after = r["mock_response_headers"]["Retry-After"]
        .as_str()
        .map(str::to_string);
    let body = match &r["mock_response"] {
        serde_json::Value::String(s) => s.clone().into_bytes(),
        other => serde_json::to_vec(other).unwrap(),
    };
    (status, retry_after, body)
}

fn classify_capture(name: &str, method: ResponseKind) -> Result<ProviderOutput, ProviderError> {
    let (status, retry_after, body) = capture(name);
    classify(status, retry_after.as_deref(), &body, method)
}

fn envelope(code: u16, status: &str, details: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"error": {"code": code, "message": "m", "status": status, "details": details}})).unwrap()
}

#[test]
fn per_minute_429_is_transient_with_retry_info_delay() {
    let err = classify_capture("error_dev_generate_content_429", GenerateContent).unwrap_err();
    assert!(err.is_retryable());
    assert_eq!(err.label(), "rate_limited");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(37)));
}

#[test]
fn retry_info_wins_over_retry_after_header() {
    let err = classify_capture("error_429_default_no_retry", Predict).unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(2)));
    let err = classify(
        429,
        Some("3"),
        &envelope(429, "RESOURCE_EXHAUSTED", serde_json::json!([])),
        Predict,
    )
    .unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(3)));
}

#[test]
fn fractional_retry_delay_and_message_delay_are_parsed() {
    let body = envelope(
        429,
        "RESOURCE_EXHAUSTED",
        serde_json::json!([{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "45.5s"}]),
    );
    assert_eq!(
        classify(429, None, &body, GenerateContent)
            .unwrap_err()
            .retry_after(),
        Some(Duration::from_millis(45_500))
    );
    let body = br#"{"error":{"code":429,"message":"Quota exceeded. Please retry in 48.8s.","status":"RESOURCE_EXHAUSTED"}}"#;
    assert_eq!(
        classify(429, None, body, GenerateContent)
            .unwrap_err()
            .retry_after(),
        Some(Duration::from_millis(48_800))
    );
}

#[test]
fn shared_capacity_429_without_details_is_transient() {
    let body = br#"{"error":{"code":429,"message":"Resource has been exhausted (e.g. check quota).","status":"RESOURCE_EXHAUSTED"}}"#;
    let err = classify(429, None, body, GenerateContent).unwrap_err();
    assert_eq!(err.label(), "rate_limited");
    assert_eq!(err.retry_after(), None);
}

#[test]
fn per_day_or_zero_quota_429_is_quota_exhausted() {
    let daily = envelope(
        429,
        "RESOURCE_EXHAUSTED",
        serde_json::json!([{"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"quotaId": "GenerateRequestsPerDayPerProjectPerModel", "quotaValue": "2000"}]}]),
    );
    let err = classify(429, None, &daily, GenerateContent).unwrap_err();
    assert!(
        matches!(&err, ProviderError::QuotaExhausted { quota_id, .. } if quota_id.contains("PerDay"))
    );
    assert!(!err.is_retryable());
    let zero = envelope(
        429,
        "RESOURCE_EXHAUSTED",
        serde_json::json!([{"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier", "quotaValue": "0"}]}]),
    );
    assert_eq!(
        classify(429, None, &zero, GenerateContent)
            .unwrap_err()
            .label(),
        "quota_exhausted"
    );
}

#[test]
fn each_status_maps_to_its_class() {
    let cases: &[(u16, &str, &str)] = &[
        (400, "INVALID_ARGUMENT", "permanent"),
        (400, "FAILED_PRECONDITION", "permanent"),
        (401, "UNAUTHENTICATED", "unauthenticated"),
        (402, "RESOURCE_EXHAUSTED", "permanent"),
        (403, "PERMISSION_DENIED", "permanent"),
        (404, "NOT_FOUND", "permanent"),
        (408, "", "timeout"),
        (413, "", "permanent"),
        (499, "CANCELLED", "server"),
        (500, "INTERNAL", "server"),
        (502, "", "server"),
        (503, "UNAVAILABLE", "server"),
        (504, "DEADLINE_EXCEEDED", "server"),
    ];
    for (status, name, label) in cases {
        let err = classify(
            *status,
            None,
            &envelope(*status, name, serde_json::json!([])),
            GenerateContent,
        )
        .unwrap_err();
        assert_eq!(err.label(), *label, "HTTP {status}");
        assert_eq!(
            err.is_retryable(),
            matches!(*label, "timeout" | "server"),
            "HTTP {status}"
        );
    }
}

#[test]
fn non_json_and_array_wrapped_errors_are_read() {
    let err = classify_capture("error_503_non_json_body", Predict).unwrap_err();
    assert!(err.to_string().contains("Service Unavailable"), "{err}");
    assert!(err.is_retryable());
    let body = br#"[{"error":{"code":400,"message":"bad field","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.BadRequest","fieldViolations":[{"field":"generation_config.image_config.aspect_ratio","description":"unsupported"}]}]}}]"#;
    let err = classify(400, None, body, GenerateContent).unwrap_err();
    assert!(
        err.to_string()
            .contains("generation_config.image_config.aspect_ratio"),
        "{err}"
    );
}

#[test]
fn invalid_api_key_keeps_error_info_reason() {
    let body = envelope(
        400,
        "INVALID_ARGUMENT",
        serde_json::json!([{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com"}]),
    );
    assert!(
        matches!(classify(400, None, &body, GenerateContent), Err(ProviderError::Permanent { code, .. }) if code == "API_KEY_INVALID")
    );
}

#[test]
fn blocked_prompt_and_safety_finishes_are_blocked() {
    let err =
        classify_capture("mldev_generate_content_prompt_blocked", GenerateContent).unwrap_err();
    assert!(
        matches!(&err, ProviderError::Blocked { reason, .. } if reason == "PROHIBITED_CONTENT")
    );
    for reason in [
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "SAFETY",
        "PROHIBITED_CONTENT",
        "BLOCKLIST",
        "SPII",
        "RECITATION",
        "IMAGE_RECITATION",
        "MODEL_ARMOR",
    ] {
        let body =
            serde_json::json!({"candidates": [{"finishReason": reason, "finishMessage": "no"}]});
        let err = classify(200, None, body.to_string().as_bytes(), GenerateContent).unwrap_err();
        assert_eq!(err.label(), "blocked", "{reason}");
    }
    let err = classify_capture("vertex_generate_images_all_filtered", Predict).unwrap_err();
    assert_eq!(err.label(), "blocked");
}

#[test]
fn no_image_finishes_are_transient_and_others_permanent() {
    let err =
        classify_capture("mldev_generate_content_no_image_finish", GenerateContent).unwrap_err();
    assert_eq!(err.label(), "no_image");
    for reason in [
        "NO_IMAGE",
        "IMAGE_OTHER",
        "OTHER",
        "MALFORMED_RESPONSE",
        "STOP",
        "SOMETHING_NEW",
    ] {
        let body = serde_json::json!({"candidates": [{"finishReason": reason, "content": {"parts": [{"text": "t"}]}}]});
        assert_eq!(
            classify(200, None, body.to_string().as_bytes(), GenerateContent)
                .unwrap_err()
                .label(),
            "no_image",
            "{reason}"
        );
    }
    for reason in [
        "MAX_TOKENS",
        "LANGUAGE",
        "MISSING_THOUGHT_SIGNATURE",
        "FINISH_REASON_UNSPECIFIED",
    ] {
        let body = serde_json::json!({"candidates": [{"finishReason": reason}]});
        assert_eq!(
            classify(200, None, body.to_string().as_bytes(), GenerateContent)
                .unwrap_err()
                .label(),
            "permanent",
            "{reason}"
        );
    }
    assert_eq!(
        classify_capture("vertex_generate_images_empty_response", Predict)
            .unwrap_err()
            .label(),
        "no_image"
    );
    // Segmentation that finds nothing has answered: zero masks is a result.
    assert!(classify(200, None, b"{}", Masks).unwrap().images.is_empty());
}

#[test]
fn malformed_success_body_is_transient() {
    let err = classify(200, None, b"{\"candidates\": [", GenerateContent).unwrap_err();
    assert_eq!(err.label(), "malformed");
}

#[test]
fn images_are_extracted_skipping_thoughts_and_positive_prompt() {
    let png = "iVBORw0KGgoAAAANSUhEUgAAAAQAAAAECAIAAAAmkwkpAAAAEElEQVR4nGM4IScHRwzEcQCxYxBBO0tjggAAAABJRU5ErkJggg==";
    let body = serde_json::json!({"candidates": [{"content": {"role": "model", "parts": [
        {"text": "thinking", "thought": true},
        {"inlineData": {"mimeType": "image/png", "data": png}, "thought": true},
        {"text": "Here it is"},
        {"inlineData": {"mimeType": "image/png", "data": png}, "thoughtSignature": "c2ln"}]}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": "12", "candidatesTokenCount": 1290, "totalTokenCount": 1302}});
    let out = classify(200, None, body.to_string().as_bytes(), GenerateContent).unwrap();
    assert_eq!(out.images.len(), 1);
    assert_eq!(out.text, ["Here it is"]);
    assert_eq!(out.usage.unwrap().prompt_token_count, 12);
    assert_eq!(
        out.model_turn.unwrap().parts[3]
            .thought_signature
            .as_deref(),
        Some("c2ln")
    );
    let body = serde_json::json!({"predictions": [
        {"contentType": "Positive Prompt", "safetyAttributes": {"categories": ["x"], "scores": [0.1]}},
        {"bytesBase64Encoded": png, "mimeType": "image/png", "prompt": "enhanced"},
        {"raiFilteredReason": "filtered one"}]});
    let out = classify(200, None, body.to_string().as_bytes(), Predict).unwrap();
    assert_eq!(out.images.len(), 1);
    assert_eq!(out.images[0].enhanced_prompt.as_deref(), Some("enhanced"));
    assert_eq!(out.rai_filtered_reasons, ["filtered one"]);
    assert!(out.prompt_safety_attributes.is_some());
}
