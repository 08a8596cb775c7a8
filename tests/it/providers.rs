//! `VertexProvider` and `GeminiApiProvider` against the emulator over real HTTP, built from
//! project config the way the worker builds them: every operation, the outcome classes,
//! and refresh-once on 401.

use std::time::Duration;

use imagegen::config::ProjectConfig;
use imagegen::emulator::{self, EmulatorHandle, Scenario};
use imagegen::job::{JobSpec, ValidationContext, validate};
use imagegen::providers::{self, ImageProvider, InputOptions, InputResolver, ProviderError};

/// Input resolution as a worker has it (the guard's defaults, no output store).
fn inputs() -> InputResolver {
    InputResolver::new(InputOptions::guarded(Default::default()))
}

const PNG_4X4: &str = "iVBORw0KGgoAAAANSUhEUgAAAAQAAAAECAIAAAAmkwkpAAAAEElEQVR4nGM4IScHRwzEcQCxYxBBO0tjggAAAABJRU5ErkJggg==";

struct Fixture {
    emulator: EmulatorHandle,
    _dir: tempfile::TempDir,
    vertex: Box<dyn ImageProvider>,
    gemini_api: Box<dyn ImageProvider>,
}

fn project(toml: &str) -> ProjectConfig {
    toml::from_str(toml).expect("project config")
}

async fn fixture() -> Fixture {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let emulator = emulator::spawn(listener, Scenario::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = emulator.service_account_key("demo-proj").unwrap();
    let key_path = dir.path().join("sa.json");
    std::fs::write(&key_path, serde_json::to_vec(&key).unwrap()).unwrap();
    let vertex = project(&format!(
        "backend = \"vertex\"\ngcp_project = \"demo-proj\"\nlocation = \"us-central1\"\nendpoint = \"{}\"\ncredentials = \"{}\"\n",
        emulator.base_url(),
        key_path.display()
    ));
    // The Developer API key comes from the environment, as in production config.
    // SAFETY: set once, before any thread reads it; the name is unique to this test.
    unsafe { std::env::set_var("IMAGEGEN_IT_PROVIDERS_KEY", "test-key") };
    let gemini_api = project(&format!(
        "backend = \"gemini-api\"\nendpoint = \"{}\"\ncredentials = \"env:IMAGEGEN_IT_PROVIDERS_KEY\"\n",
        emulator.base_url()
    ));
    let timeout = Duration::from_secs(30);
    Fixture {
        vertex: providers::from_config(&vertex, timeout, inputs()).unwrap(),
        gemini_api: providers::from_config(&gemini_api, timeout, inputs()).unwrap(),
        emulator,
        _dir: dir,
    }
}

fn spec(json: serde_json::Value) -> JobSpec {
    let spec = JobSpec::from_json(&json.to_string()).unwrap();
    validate(&spec, &ValidationContext::default()).unwrap();
    spec
}

fn dims(bytes: &[u8]) -> (u32, u32) {
    let img = image::load_from_memory(bytes).expect("a decodable image");
    (img.width(), img.height())
}

#[tokio::test]
async fn every_operation_returns_images_of_the_documented_size_on_vertex() {
    let f = fixture().await;
    let img = serde_json::json!({"data": PNG_4X4, "mime_type": "image/png"});
    let cases = vec![
        (
            serde_json::json!({"model": "gemini-2.5-flash-image", "prompt": "a fox", "aspect_ratio": "16:9"}),
            (1344, 768),
        ),
        (
            serde_json::json!({"model": "gemini-3-pro-image", "prompt": "a fox", "aspect_ratio": "21:9", "image_size": "2K"}),
            (3168, 1344),
        ),
        (
            serde_json::json!({"op": "compose", "model": "gemini-2.5-flash-image", "prompt": "merge", "images": [img, img], "aspect_ratio": "1:1"}),
            (1024, 1024),
        ),
        (
            serde_json::json!({"model": "imagen-4.0-generate-001", "prompt": "a fox", "aspect_ratio": "9:16", "number_of_images": 2}),
            (768, 1408),
        ),
        (
            serde_json::json!({"op": "upscale", "model": "imagen-4.0-upscale-preview", "images": [img], "upscale_factor": "x4"}),
            (16, 16),
        ),
        (
            serde_json::json!({"op": "edit", "model": "imagen-3.0-capability-001", "prompt": "a crown", "edit_mode": "inpaint_insertion",
            "reference_images": [{"reference_type": "raw", "image": img}, {"reference_type": "mask", "mask_mode": "foreground", "reference_id": 2}]}),
            (4, 4),
        ),
        (
            serde_json::json!({"op": "recontext", "model": "virtual-try-on-001", "person_image": img, "product_images": [img]}),
            (1024, 1024),
        ),
        (
            serde_json::json!({"op": "segment", "model": "image-segmentation-001", "segment_mode": "foreground", "images": [img]}),
            (4, 4),
        ),
    ];
    for (json, want) in cases {
        let s = spec(json.clone());
        let out = f
            .vertex
            .call(&s)
            .await
            .unwrap_or_else(|e| panic!("{json}: {e}"));
        assert!(!out.images.is_empty(), "{json}");
        for image in &out.images {
            assert_eq!(dims(&image.bytes), want, "{json}");
        }
        if json["number_of_images"] == 2 {
            assert_eq!(out.images.len(), 2);
        }
    }
}

#[tokio::test]
async fn chat_turns_round_trip_thought_signatures_on_the_developer_api() {
    let f = fixture().await;
    let mut history: Vec<serde_json::Value> = Vec::new();
    for turn in ["draw a boat", "make it red", "add a sunset"] {
        let s = spec(
            serde_json::json!({"op": "chat", "model": "gemini-2.5-flash-image", "prompt": turn, "history": history}),
        );
        let out = f.gemini_api.call(&s).await.unwrap();
        assert_eq!(out.images.len(), 1);
        let model_turn = out.model_turn.expect("the model's turn");
        assert!(
            model_turn
                .parts
                .iter()
                .any(|p| p.thought_signature.is_some())
        );
        history.push(serde_json::json!({"role": "user", "parts": [{"text": turn}]}));
        history.push(serde_json::to_value(&model_turn).unwrap());
    }
    assert_eq!(history.len(), 6);
}

#[tokio::test]
async fn safety_markers_and_unknown_models_are_classified() {
    let f = fixture().await;
    let blocked =
        spec(serde_json::json!({"model": "gemini-2.5-flash-image", "prompt": "x [[blocked]]"}));
    assert!(matches!(
        f.vertex.call(&blocked).await,
        Err(ProviderError::Blocked { .. })
    ));
    let mut unknown = spec(serde_json::json!({"model": "gemini-2.5-flash-image", "prompt": "x"}));
    unknown.model = "gemini-9.9-flash-image".into();
    let err = f.gemini_api.call(&unknown).await.unwrap_err();
    assert!(
        matches!(&err, ProviderError::Permanent { status: 404, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn a_revoked_token_is_refreshed_once_and_the_call_succeeds() {
    let f = fixture().await;
    let s = spec(serde_json::json!({"model": "gemini-2.5-flash-image", "prompt": "a fox"}));
    f.vertex.call(&s).await.unwrap();
    let before = f.emulator.stats().tokens_issued;
    f.emulator.revoke_tokens();
    f.vertex.call(&s).await.expect("refreshed after 401");
    assert_eq!(f.emulator.stats().tokens_issued, before + 1);
}

#[tokio::test]
async fn quota_429_carries_the_advised_delay() {
    let f = fixture().await;
    let scenario =
        Scenario::from_toml_str("[quota.demo-proj.\"gemini-2.5-flash-image\"]\nrpm = 1\n").unwrap();
    f.emulator.set_scenario(scenario);
    let s = spec(serde_json::json!({"model": "gemini-2.5-flash-image", "prompt": "a fox"}));
    f.vertex.call(&s).await.unwrap();
    let err = f.vertex.call(&s).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    let delay = err.retry_after().expect("RetryInfo");
    assert!(
        delay > Duration::from_secs(1) && delay <= Duration::from_secs(60),
        "{delay:?}"
    );
}
