//! `:predict` validation: Imagen parameters and input images answer 400 naming the field.

use imagegen::emulator::Scenario;
use serde_json::json;

use super::validation::violation_field;
use super::{Emu, png_b64};

#[tokio::test]
async fn imagen_parameters_are_validated_like_vertex() {
    let emu = Emu::start(Scenario::default()).await;
    let predict_body = |params: serde_json::Value| json!({"instances": [{"prompt": "a fox"}], "parameters": params});
    let ok = emu.vertex("imagen-4.0-generate-001", "predict", &predict_body(json!({"sampleCount": 1, "safetySetting": "block_medium_and_above", "personGeneration": "allow_adult"}))).await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    let cases = [
        (json!({"sampleCount": 5}), "parameters.sampleCount"),
        (
            json!({"sampleCount": 1, "aspectRatio": "2:1"}),
            "parameters.aspectRatio",
        ),
        (
            json!({"sampleCount": 1, "personGeneration": "sometimes"}),
            "parameters.personGeneration",
        ),
        (json!({"sampleCount": 1, "seed": 5}), "parameters.seed"),
        (
            json!({"sampleCount": 1, "seed": 5, "addWatermark": true}),
            "parameters.seed",
        ),
        (
            json!({"sampleCount": 1, "outputOptions": {"mimeType": "image/gif"}}),
            "parameters.outputOptions.mimeType",
        ),
    ];
    for (params, field) in cases {
        let r = emu
            .vertex(
                "imagen-4.0-generate-001",
                "predict",
                &predict_body(params.clone()),
            )
            .await;
        assert_eq!(
            (r.status, violation_field(&r.json())),
            (400, field.to_string()),
            "{params}"
        );
    }
}

#[tokio::test]
async fn imagen_seed_works_without_watermark_and_the_developer_api_refuses_it() {
    let emu = Emu::start(Scenario::default()).await;
    let predict_body = |params: serde_json::Value| json!({"instances": [{"prompt": "a fox"}], "parameters": params});
    let seeded = predict_body(json!({"sampleCount": 1, "seed": 5, "addWatermark": false}));
    assert_eq!(
        emu.vertex("imagen-4.0-generate-001", "predict", &seeded)
            .await
            .status,
        200
    );
    let r = emu.dev("imagen-4.0-generate-001", "predict", &seeded).await;
    assert_eq!(
        (r.status, violation_field(&r.json()).as_str()),
        (400, "parameters.seed")
    );
    let r = emu
        .vertex(
            "imagen-4.0-generate-001",
            "predict",
            &json!({"instances": []}),
        )
        .await;
    assert_eq!(
        (r.status, violation_field(&r.json()).as_str()),
        (400, "instances")
    );
    let r = emu
        .vertex(
            "imagen-4.0-generate-001",
            "predict",
            &json!({"instances": [{}], "parameters": {"sampleCount": 1}}),
        )
        .await;
    assert_eq!(
        (r.status, violation_field(&r.json()).as_str()),
        (400, "instances[0].prompt")
    );
}

#[tokio::test]
async fn imagen_edit_upscale_and_segment_inputs_are_validated() {
    let emu = Emu::start(Scenario::default()).await;
    let raw = json!({"referenceId": 1, "referenceType": "REFERENCE_TYPE_RAW", "referenceImage": {"bytesBase64Encoded": "bm90IGFuIGltYWdl"}});
    let r = emu
        .vertex(
            "imagen-3.0-capability-001",
            "predict",
            &json!({"instances": [{"prompt": "x", "referenceImages": [raw]}]}),
        )
        .await;
    assert_eq!(
        (r.status, violation_field(&r.json()).as_str()),
        (
            400,
            "instances[0].referenceImages[0].referenceImage.bytesBase64Encoded"
        )
    );
    let bad_mode = json!({"instances": [{"prompt": "x", "referenceImages": [{"referenceId": 1, "referenceType": "REFERENCE_TYPE_RAW", "referenceImage": {"bytesBase64Encoded": png_b64(4, 4)}}]}], "parameters": {"editMode": "EDIT_MODE_MAGIC"}});
    let r = emu
        .vertex("imagen-3.0-capability-001", "predict", &bad_mode)
        .await;
    assert_eq!(
        (r.status, violation_field(&r.json()).as_str()),
        (400, "parameters.editMode")
    );
    let up = json!({"instances": [{"image": {"bytesBase64Encoded": png_b64(4, 4)}}], "parameters": {"mode": "upscale", "upscaleConfig": {"upscaleFactor": "x5"}}});
    let r = emu
        .vertex("imagen-4.0-upscale-preview", "predict", &up)
        .await;
    assert_eq!(
        (r.status, violation_field(&r.json()).as_str()),
        (400, "parameters.upscaleConfig.upscaleFactor")
    );
    let seg = json!({"instances": [{"image": {"bytesBase64Encoded": png_b64(4, 4)}}], "parameters": {"mode": "prompt"}});
    let r = emu.vertex("image-segmentation-001", "predict", &seg).await;
    assert_eq!(
        (r.status, violation_field(&r.json()).as_str()),
        (400, "instances[0].prompt")
    );
    let seg = json!({"instances": [{"image": {"bytesBase64Encoded": png_b64(4, 4)}}], "parameters": {"mode": "background"}});
    assert_eq!(
        emu.vertex("image-segmentation-001", "predict", &seg)
            .await
            .status,
        200
    );
}
