//! Routing and generateContent validation answer Google's envelopes and name the field.

use imagegen::emulator::Scenario;
use serde_json::json;

use super::{Emu, detail, gc_body, png_b64};

/// The field named by the first `BadRequest` violation ("" when none).
pub fn violation_field(body: &serde_json::Value) -> String {
    detail(body, "BadRequest")
        .and_then(|d| d["fieldViolations"][0]["field"].as_str())
        .unwrap_or("")
        .to_string()
}

#[tokio::test]
async fn unknown_model_answers_404_not_found_on_both_surfaces() {
    let emu = Emu::start(Scenario::default()).await;
    let r = emu
        .vertex("gemini-9-image", "generateContent", &gc_body("x"))
        .await;
    assert_eq!(r.status, 404);
    let msg = r.json()["error"]["message"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(msg.starts_with("Publisher Model `projects/demo-proj/locations/us-central1/publishers/google/models/gemini-9-image`"), "{msg}");
    let r = emu
        .dev("gemini-9-image", "generateContent", &gc_body("x"))
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["status"], "NOT_FOUND");
    assert!(r.text.contains("models/gemini-9-image is not found for API version v1beta, or is not supported for generateContent."));
}

#[tokio::test]
async fn retired_models_answer_404_like_unknown_ones() {
    let scenario = Scenario {
        retired_models: vec!["imagen-4.0-generate-001".into()],
        ..Scenario::default()
    };
    let emu = Emu::start(scenario).await;
    let r = emu
        .vertex(
            "imagen-4.0-generate-001",
            "predict",
            &json!({"instances": [{"prompt": "x"}]}),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
    let r = emu
        .vertex(
            "imagen-4.0-fast-generate-001",
            "predict",
            &json!({"instances": [{"prompt": "x"}], "parameters": {"sampleCount": 1}}),
        )
        .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn unknown_paths_and_wrong_methods_are_refused_like_google() {
    let emu = Emu::start(Scenario::default()).await;
    let r = emu
        .post(
            "/v2/models/gemini-2.5-flash-image:generateContent",
            &gc_body("x"),
            None,
            Some("k"),
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["status"], "NOT_FOUND");
    let r = emu
        .vertex(
            "gemini-2.5-flash-image",
            "predict",
            &json!({"instances": [{"prompt": "x"}]}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r.text
            .contains("Gemini cannot be accessed through Vertex Predict/RawPredict API")
    );
    let r = emu
        .vertex("imagen-4.0-generate-001", "generateContent", &gc_body("x"))
        .await;
    assert_eq!(r.status, 400);
    let r = emu
        .dev(
            "imagen-3.0-capability-001",
            "predict",
            &json!({"instances": [{"prompt": "x"}]}),
        )
        .await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn unknown_field_is_rejected_with_its_path() {
    let emu = Emu::start(Scenario::default()).await;
    let mut body = gc_body("x");
    body["generationConfig"]["foo"] = json!(1);
    let r = emu
        .vertex("gemini-2.5-flash-image", "generateContent", &body)
        .await;
    assert_eq!(r.status, 400);
    let v = r.json();
    assert_eq!(
        v["error"]["message"],
        "Invalid JSON payload received. Unknown name \"foo\" at 'generation_config': Cannot find field."
    );
    assert_eq!(violation_field(&v), "generation_config");
}

#[tokio::test]
async fn snake_case_names_and_url_safe_unpadded_base64_are_accepted() {
    let emu = Emu::start(Scenario::default()).await;
    let data = png_b64(8, 8)
        .replace('+', "-")
        .replace('/', "_")
        .trim_end_matches('=')
        .to_string();
    let body = json!({"contents": [{"role": "user", "parts": [{"inline_data": {"mime_type": "image/png", "data": data}}, {"text": "edit"}]}],
                      "generation_config": {"thinking_config": {"thinking_level": "MINIMAL"}, "image_config": {"aspect_ratio": "1:1", "image_size": "512"}}});
    let r = emu
        .vertex("gemini-3.1-flash-image", "generateContent", &body)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test]
async fn image_config_errors_name_the_field() {
    let emu = Emu::start(Scenario::default()).await;
    let mut body = gc_body("x");
    body["generationConfig"]["imageConfig"] = json!({"aspectRatio": "1:8"});
    let r = emu
        .vertex("gemini-2.5-flash-image", "generateContent", &body)
        .await;
    assert_eq!(
        (r.status, violation_field(&r.json()).as_str()),
        (400, "generation_config.image_config.aspect_ratio")
    );
    body["generationConfig"]["imageConfig"] = json!({"aspectRatio": "1:1", "imageSize": "2K"});
    let r = emu
        .vertex("gemini-2.5-flash-image", "generateContent", &body)
        .await;
    assert_eq!(
        (r.status, violation_field(&r.json()).as_str()),
        (400, "generation_config.image_config.image_size")
    );
    body["generationConfig"]["imageConfig"] = json!({"personGeneration": "ALLOW_ALL"});
    let r = emu
        .dev("gemini-2.5-flash-image", "generateContent", &body)
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r.text
            .contains("Unknown name \\\"personGeneration\\\" at 'generation_config.image_config'"),
        "{}",
        r.text
    );
    body["generationConfig"]["imageConfig"] = json!({});
    body["generationConfig"]["candidateCount"] = json!(2);
    let r = emu
        .vertex("gemini-3-pro-image-preview", "generateContent", &body)
        .await;
    assert_eq!(
        (r.status, violation_field(&r.json()).as_str()),
        (400, "generation_config.candidate_count")
    );
    body["generationConfig"]["candidateCount"] = json!(1);
    body["generationConfig"]["responseModalities"] = json!(["AUDIO"]);
    let r = emu
        .vertex("gemini-2.5-flash-image", "generateContent", &body)
        .await;
    assert_eq!(
        (r.status, violation_field(&r.json()).as_str()),
        (400, "generation_config.response_modalities")
    );
    body["generationConfig"]["responseModalities"] = json!(["PICTURE"]);
    let r = emu
        .vertex("gemini-2.5-flash-image", "generateContent", &body)
        .await;
    assert_eq!(
        (r.status, violation_field(&r.json()).as_str()),
        (400, "generation_config.response_modalities[0]")
    );
}

#[tokio::test]
async fn input_images_are_checked_for_count_size_type_and_content() {
    let emu = Emu::start(Scenario::default()).await;
    let img = json!({"inlineData": {"mimeType": "image/png", "data": png_b64(4, 4)}});
    let four =
        json!({"contents": [{"role": "user", "parts": [img, img, img, img, {"text": "mix"}]}]});
    let r = emu
        .vertex("gemini-2.5-flash-image", "generateContent", &four)
        .await;
    assert_eq!(
        (r.status, violation_field(&r.json()).as_str()),
        (400, "contents")
    );
    assert_eq!(
        emu.vertex("gemini-3-pro-image", "generateContent", &four)
            .await
            .status,
        200
    );
    let gif = json!({"contents": [{"parts": [{"inlineData": {"mimeType": "image/gif", "data": "R0lGODlh"}}]}]});
    let r = emu
        .vertex("gemini-2.5-flash-image", "generateContent", &gif)
        .await;
    assert_eq!(
        (r.status, violation_field(&r.json()).as_str()),
        (400, "contents[0].parts[0].inline_data.mime_type")
    );
    let junk = json!({"contents": [{"parts": [{"inlineData": {"mimeType": "image/png", "data": "AAAAAAAA"}}]}]});
    let r = emu
        .vertex("gemini-2.5-flash-image", "generateContent", &junk)
        .await;
    assert_eq!(
        (r.status, violation_field(&r.json()).as_str()),
        (400, "contents[0].parts[0].inline_data.data")
    );
    let big = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        vec![0u8; 7_000_001],
    );
    let huge =
        json!({"contents": [{"parts": [{"inlineData": {"mimeType": "image/png", "data": big}}]}]});
    let r = emu
        .vertex("gemini-2.5-flash-image", "generateContent", &huge)
        .await;
    assert_eq!(r.status, 400);
    assert!(r.text.contains("maximum"), "{}", r.text);
}

#[tokio::test]
async fn contents_and_roles_are_validated() {
    let emu = Emu::start(Scenario::default()).await;
    let r = emu
        .dev(
            "gemini-2.5-flash-image",
            "generateContent",
            &json!({"contents": []}),
        )
        .await;
    assert_eq!(
        (r.status, violation_field(&r.json()).as_str()),
        (400, "contents")
    );
    let r = emu
        .vertex(
            "gemini-2.5-flash-image",
            "generateContent",
            &json!({"contents": [{"role": "robot", "parts": [{"text": "x"}]}]}),
        )
        .await;
    assert_eq!(
        (r.status, violation_field(&r.json()).as_str()),
        (400, "contents[0].role")
    );
    let r = emu
        .vertex(
            "gemini-2.5-flash-image",
            "generateContent",
            &json!({"contents": [{"role": "user", "parts": [{}]}]}),
        )
        .await;
    assert_eq!(
        (r.status, violation_field(&r.json()).as_str()),
        (400, "contents[0].parts[0].data")
    );
    let bad = json!({"contents": [{"role": "user", "parts": [{"text": "x"}]}], "safetySettings": [{"category": "HARM_CATEGORY_NICE", "threshold": "BLOCK_NONE"}]});
    let r = emu
        .vertex("gemini-2.5-flash-image", "generateContent", &bad)
        .await;
    assert_eq!(
        (r.status, violation_field(&r.json()).as_str()),
        (400, "safety_settings[0].category")
    );
}

/// Spec §11: Gemini 3 image models do not answer 400 when a later turn drops a
/// `thoughtSignature`; they lose the context. The emulator answers, and its image does
/// not build on the history's image: it is the image of the same turn with no history.
#[tokio::test]
async fn gemini3_history_without_thought_signature_is_answered_without_its_context() {
    let emu = Emu::start(Scenario::default()).await;
    let model_turn = json!({"role": "model", "parts": [{"inlineData": {"mimeType": "image/png", "data": png_b64(64, 64)}}]});
    let turn = json!({"role": "user", "parts": [{"text": "now make it red"}]});
    let body =
        json!({"contents": [{"role": "user", "parts": [{"text": "a boat"}]}, model_turn, turn]});
    let image_of = |r: &super::Reply| {
        super::first_inline(&r.json())["data"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let dropped = emu
        .vertex("gemini-3-pro-image", "generateContent", &body)
        .await;
    assert_eq!(dropped.status, 200, "{}", dropped.text);
    let alone = emu
        .vertex(
            "gemini-3-pro-image",
            "generateContent",
            &json!({"contents": [turn]}),
        )
        .await;
    assert_eq!(
        image_of(&dropped),
        image_of(&alone),
        "the history was not used"
    );
    let mut signed = body.clone();
    signed["contents"][1]["parts"][0]["thoughtSignature"] = json!("c2ln");
    let kept = emu
        .vertex("gemini-3-pro-image", "generateContent", &signed)
        .await;
    assert_eq!(kept.status, 200);
    assert_ne!(
        image_of(&kept),
        image_of(&alone),
        "with its signature, the turn builds on the history"
    );
    // Older models keep the context without signatures.
    let older = emu
        .vertex("gemini-2.5-flash-image", "generateContent", &body)
        .await;
    let older_alone = emu
        .vertex(
            "gemini-2.5-flash-image",
            "generateContent",
            &json!({"contents": [turn]}),
        )
        .await;
    assert_ne!(image_of(&older), image_of(&older_alone));
}

#[tokio::test]
async fn malformed_json_and_oversized_bodies_are_refused() {
    let scenario = Scenario {
        max_request_bytes: 2_000,
        ..Scenario::default()
    };
    let emu = Emu::start(scenario).await;
    let r = emu
        .http
        .post(emu.url("/v1beta/models/gemini-2.5-flash-image:generateContent"))
        .header("x-goog-api-key", "k")
        .body("{\"contents\": [")
        .send()
        .await
        .expect("send");
    let r = super::reply(r).await;
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("Invalid JSON payload received.")
    );
    let r = emu
        .dev(
            "gemini-2.5-flash-image",
            "generateContent",
            &gc_body(&"x".repeat(5_000)),
        )
        .await;
    assert_eq!(r.status, 413);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("2000 bytes")
    );
}
