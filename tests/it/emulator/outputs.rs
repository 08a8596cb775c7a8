//! What the emulator answers: safety outcomes, deterministic images, dimensions per
//! operation, JPEG output and streaming.

use imagegen::emulator::Scenario;
use serde_json::json;

use super::{Emu, decode_image, first_inline, gc_body, png_b64};

const MODEL: &str = "gemini-2.5-flash-image";

#[tokio::test]
async fn safety_markers_block_filter_or_withhold_images() {
    let emu = Emu::start(Scenario::default()).await;
    let v = emu
        .vertex(MODEL, "generateContent", &gc_body("a cat [[blocked]]"))
        .await
        .json();
    assert_eq!(v["promptFeedback"]["blockReason"], "PROHIBITED_CONTENT");
    assert!(v.get("candidates").is_none());
    let v = emu
        .dev(MODEL, "generateContent", &gc_body("a cat [[image_safety]]"))
        .await
        .json();
    assert_eq!(v["candidates"][0]["finishReason"], "IMAGE_SAFETY");
    assert!(v["candidates"][0]["finishMessage"].is_string());
    assert!(v["candidates"][0]["content"].get("parts").is_none());
    let v = emu
        .vertex(MODEL, "generateContent", &gc_body("a cat [[no_image]]"))
        .await
        .json();
    assert_eq!(v["candidates"][0]["finishReason"], "NO_IMAGE");
    assert!(v["candidates"][0]["content"]["parts"][0]["text"].is_string());
    let imagen = |rai: bool| json!({"instances": [{"prompt": "fox [[blocked]]"}], "parameters": {"sampleCount": 2, "includeRaiReason": rai}});
    let v = emu
        .vertex("imagen-4.0-generate-001", "predict", &imagen(true))
        .await
        .json();
    assert_eq!(v["predictions"].as_array().map(Vec::len), Some(2));
    assert!(v["predictions"][0]["raiFilteredReason"].is_string());
    let v = emu
        .vertex("imagen-4.0-generate-001", "predict", &imagen(false))
        .await
        .json();
    assert_eq!(v, json!({}));
}

#[tokio::test]
async fn same_prompt_and_seed_give_identical_bytes_and_another_seed_does_not() {
    let emu = Emu::start(Scenario::default()).await;
    let body = |seed: i64| {
        let mut b = gc_body("a lighthouse");
        b["generationConfig"]["seed"] = json!(seed);
        b
    };
    let a = emu.vertex(MODEL, "generateContent", &body(1)).await.json();
    let b = emu.dev(MODEL, "generateContent", &body(1)).await.json();
    let c = emu.vertex(MODEL, "generateContent", &body(2)).await.json();
    assert_eq!(first_inline(&a)["data"], first_inline(&b)["data"]);
    assert_ne!(first_inline(&a)["data"], first_inline(&c)["data"]);
    let imagen = json!({"instances": [{"prompt": "fox"}], "parameters": {"sampleCount": 2, "seed": 9, "addWatermark": false}});
    let x = emu
        .vertex("imagen-4.0-generate-001", "predict", &imagen)
        .await
        .json();
    let y = emu
        .vertex("imagen-4.0-generate-001", "predict", &imagen)
        .await
        .json();
    assert_eq!(x, y);
    assert_ne!(
        x["predictions"][0]["bytesBase64Encoded"],
        x["predictions"][1]["bytesBase64Encoded"]
    );
}

#[tokio::test]
async fn gemini_response_carries_text_image_signature_and_usage() {
    let emu = Emu::start(Scenario::default()).await;
    let mut body = gc_body("tides");
    body["generationConfig"]["imageConfig"] = json!({"aspectRatio": "16:9", "imageSize": "2K"});
    let v = emu
        .vertex("gemini-3-pro-image-preview", "generateContent", &body)
        .await
        .json();
    let parts = v["candidates"][0]["content"]["parts"]
        .as_array()
        .expect("parts");
    assert!(parts[0]["text"].is_string());
    assert!(parts[1]["thoughtSignature"].is_string());
    let img = decode_image(parts[1]["inlineData"]["data"].as_str().expect("data"));
    assert_eq!((img.width(), img.height()), (2752, 1536));
    let usage = &v["usageMetadata"];
    assert_eq!(
        usage["candidatesTokensDetails"][0],
        json!({"modality": "IMAGE", "tokenCount": 1120})
    );
    assert_eq!(usage["trafficType"], "ON_DEMAND");
    assert!(v["createTime"].is_string());
    let mut image_only = gc_body("cube");
    image_only["generationConfig"]["responseModalities"] = json!(["IMAGE"]);
    let v = emu.dev(MODEL, "generateContent", &image_only).await.json();
    assert_eq!(
        v["candidates"][0]["content"]["parts"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    assert!(v.get("createTime").is_none(), "createTime is Vertex-only");
}

#[tokio::test]
async fn gemini_edit_keeps_the_input_shape_and_jpeg_output_is_honoured() {
    let emu = Emu::start(Scenario::default()).await;
    let body = json!({"contents": [{"role": "user", "parts": [
        {"inlineData": {"mimeType": "image/png", "data": png_b64(320, 180)}}, {"text": "make it night"}]}],
        "generationConfig": {"imageConfig": {"imageOutputOptions": {"mimeType": "image/jpeg", "compressionQuality": 60}}}});
    let v = emu.vertex(MODEL, "generateContent", &body).await.json();
    let inline = first_inline(&v);
    assert_eq!(inline["mimeType"], "image/jpeg");
    let img = decode_image(inline["data"].as_str().expect("data"));
    assert_eq!((img.width(), img.height()), (1344, 768));
}

#[tokio::test]
async fn imagen_edit_upscale_recontext_and_segment_have_the_documented_sizes() {
    let emu = Emu::start(Scenario::default()).await;
    let raw = json!({"referenceId": 1, "referenceType": "REFERENCE_TYPE_RAW", "referenceImage": {"bytesBase64Encoded": png_b64(300, 200), "mimeType": "image/png"}});
    let edit = json!({"instances": [{"prompt": "sunset", "referenceImages": [raw, {"referenceId": 2, "referenceType": "REFERENCE_TYPE_MASK", "maskImageConfig": {"maskMode": "MASK_MODE_BACKGROUND"}}]}],
                      "parameters": {"editMode": "EDIT_MODE_BGSWAP", "sampleCount": 2}});
    let v = emu
        .vertex("imagen-3.0-capability-001", "predict", &edit)
        .await
        .json();
    assert_eq!(v["predictions"].as_array().map(Vec::len), Some(2));
    let img = decode_image(
        v["predictions"][0]["bytesBase64Encoded"]
            .as_str()
            .expect("bytes"),
    );
    assert_eq!((img.width(), img.height()), (300, 200));
    let up = json!({"instances": [{"image": {"bytesBase64Encoded": png_b64(300, 200)}}],
                    "parameters": {"mode": "upscale", "upscaleConfig": {"upscaleFactor": "x3"}, "outputOptions": {"mimeType": "image/jpeg", "compressionQuality": 90}}});
    let v = emu
        .vertex("imagen-4.0-upscale-preview", "predict", &up)
        .await
        .json();
    assert_eq!(v["predictions"][0]["mimeType"], "image/jpeg");
    let img = decode_image(
        v["predictions"][0]["bytesBase64Encoded"]
            .as_str()
            .expect("bytes"),
    );
    assert_eq!((img.width(), img.height()), (900, 600));
    let tryon = json!({"instances": [{"personImage": {"image": {"bytesBase64Encoded": png_b64(8, 8)}}, "productImages": [{"image": {"bytesBase64Encoded": png_b64(8, 8)}}]}]});
    let v = emu
        .vertex("virtual-try-on-001", "predict", &tryon)
        .await
        .json();
    let img = decode_image(
        v["predictions"][0]["bytesBase64Encoded"]
            .as_str()
            .expect("bytes"),
    );
    assert_eq!((img.width(), img.height()), (1024, 1024));
    let seg = json!({"instances": [{"prompt": "cat, chair, table", "image": {"bytesBase64Encoded": png_b64(64, 48)}}], "parameters": {"mode": "semantic", "maxPredictions": 2}});
    let v = emu
        .vertex("image-segmentation-001", "predict", &seg)
        .await
        .json();
    let preds = v["predictions"].as_array().expect("predictions");
    assert_eq!(preds.len(), 2);
    assert_eq!(preds[1]["labels"][0]["label"], "chair");
    let mask = decode_image(preds[0]["bytesBase64Encoded"].as_str().expect("bytes"));
    assert_eq!(
        (mask.width(), mask.height(), mask.color()),
        (64, 48, image::ColorType::L8)
    );
}

#[tokio::test]
async fn imagen_rich_options_add_enhanced_prompt_safety_attributes_and_gcs_uris() {
    let emu = Emu::start(Scenario::default()).await;
    let body = json!({"instances": [{"prompt": "fox"}], "parameters": {"sampleCount": 2, "enhancePrompt": true, "includeSafetyAttributes": true, "storageUri": "gs://b/out/"}});
    let v = emu
        .vertex("imagen-4.0-generate-001", "predict", &body)
        .await
        .json();
    let preds = v["predictions"].as_array().expect("predictions");
    assert_eq!(preds.len(), 3);
    assert!(
        preds[0]["gcsUri"]
            .as_str()
            .is_some_and(|u| u.starts_with("gs://b/out/"))
    );
    assert!(
        preds[0]["prompt"]
            .as_str()
            .is_some_and(|p| p.starts_with("fox"))
    );
    assert_eq!(preds[2]["contentType"], "Positive Prompt");
}

#[tokio::test]
async fn stream_generate_content_answers_server_sent_events() {
    let emu = Emu::start(Scenario::default()).await;
    let path = "/v1beta/models/gemini-2.5-flash-image:streamGenerateContent?alt=sse";
    let r = emu
        .post(path, &gc_body("a lighthouse"), None, Some("k"))
        .await;
    assert_eq!(r.status, 200);
    assert!(r.content_type.starts_with("text/event-stream"));
    let event: serde_json::Value =
        serde_json::from_str(r.text.trim().trim_start_matches("data: ")).expect("event");
    assert_eq!(event["candidates"][0]["finishReason"], "STOP");
}
