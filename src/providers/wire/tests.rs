//! Request-building rules the golden tests (`tests/it/golden.rs`) do not isolate.

use serde_json::{Value, json};

use super::build;
use crate::catalog::Backend;
use crate::job::image::ImageInput;
use crate::job::spec::{JobSpec, Operation};
use crate::providers::endpoint::{Target, default_base_url};

fn vertex() -> Target {
    Target {
        backend: Backend::Vertex,
        base_url: default_base_url(Backend::Vertex, "us-central1", false),
        version: "v1".into(),
        project: Some("p".into()),
        location: "us-central1".into(),
        express: false,
    }
}

fn user_turn(spec: &JobSpec) -> Value {
    let body = build(spec, &vertex()).unwrap().body;
    body["contents"].as_array().unwrap().last().unwrap()["parts"].clone()
}

fn with_image(op: Operation) -> JobSpec {
    JobSpec {
        op,
        model: "gemini-2.5-flash-image".into(),
        prompt: Some("make it red".into()),
        images: vec![ImageInput::inline_bytes(b"\x89PNG\r\n\x1a\n", "image/png")],
        ..JobSpec::default()
    }
}

#[test]
fn chat_message_text_comes_before_its_attachments() {
    let parts = user_turn(&with_image(Operation::Chat));
    assert_eq!(parts[0], json!({ "text": "make it red" }));
    assert!(parts[1].get("inlineData").is_some());
}

#[test]
fn edit_instruction_follows_the_images() {
    let parts = user_turn(&with_image(Operation::Edit));
    assert!(parts[0].get("inlineData").is_some());
    assert_eq!(parts[1], json!({ "text": "make it red" }));
}

#[test]
fn unset_fields_send_no_generation_config_or_parameters() {
    let gemini = build(&JobSpec::generate("gemini-2.5-flash-image", "x"), &vertex()).unwrap();
    assert_eq!(
        gemini.body,
        json!({ "contents": [{ "role": "user", "parts": [{ "text": "x" }] }] })
    );
    let imagen = build(
        &JobSpec::generate("imagen-4.0-generate-001", "x"),
        &vertex(),
    )
    .unwrap();
    assert_eq!(imagen.body, json!({ "instances": [{ "prompt": "x" }] }));
    assert!(imagen.headers.is_empty());
}
