//! `:generateContent` bodies that plan a story on a Gemini text model: the instruction,
//! and a response schema (structured output, `responseMimeType: application/json`) that
//! asks for exactly the frames wanted, each a prompt that stands on its own.

use serde_json::{Value, json};

use crate::catalog::Backend;
use crate::job::JobSpec;
use crate::providers::endpoint::Target;

use super::{Obj, labels};

/// The planning instruction for `spec` (a `plan` job of a story).
pub(crate) fn instruction(spec: &JobSpec) -> String {
    let n = spec.frames.unwrap_or(1);
    let mut text = format!(
        "Plan a sequence of {n} images for: {}.",
        spec.description.as_deref().unwrap_or("").trim()
    );
    if let Some(kind) = spec
        .content_type
        .as_deref()
        .filter(|s| !s.trim().is_empty())
    {
        text.push_str(&format!(" It is a {kind}."));
    }
    if let Some(style) = spec.style.as_deref().filter(|s| !s.trim().is_empty()) {
        text.push_str(&format!(" Every image shares this style: {style}."));
    }
    text.push_str(&format!(
        " Write one image-generation prompt per frame, in order, {n} in all. Each prompt must stand on its own: describe that frame's step or moment, and name the characters, objects and setting that must look the same in every frame. No two prompts may be the same."
    ));
    text
}

/// The response schema: `{"frames": [{"prompt": string}]}` with exactly `n` frames.
pub fn schema(n: u32) -> Value {
    json!({
        "type": "OBJECT",
        "properties": {
            "frames": {
                "type": "ARRAY",
                "minItems": n,
                "maxItems": n,
                "items": {
                    "type": "OBJECT",
                    "properties": { "prompt": { "type": "STRING" } },
                    "required": ["prompt"]
                }
            }
        },
        "required": ["frames"]
    })
}

/// The body.
pub(super) fn body(spec: &JobSpec, target: &Target) -> Value {
    let mut body = Obj::new();
    body.set(
        "contents",
        json!([{ "role": "user", "parts": [{ "text": instruction(spec) }] }]),
    );
    body.set(
        "generationConfig",
        json!({
            "responseMimeType": "application/json",
            "responseSchema": schema(spec.frames.unwrap_or(1)),
        }),
    );
    if target.backend == Backend::Vertex {
        body.opt("labels", labels(spec));
    }
    body.into_value()
}
