//! `:generateContent` bodies for Gemini image models (spec §4.1). Every operation but
//! segment (a text model's, `segment.rs`) maps to image parts followed by the instruction
//! text, so users move off retired Imagen models by changing the model name only.

use serde_json::{Value, json};

use crate::catalog::Backend;
use crate::job::content::Part;
use crate::job::spec::{JobSpec, Operation, ReferenceType};

use super::{BuildError, Obj, Resolved, labels, resolved};
use crate::providers::endpoint::Target;

/// The instruction sent when a Gemini job has no prompt of its own.
fn default_instruction(spec: &JobSpec) -> Option<String> {
    let size = spec.image_size.as_deref().unwrap_or("higher");
    match spec.op {
        Operation::Upscale => Some(format!(
            "Upscale this image to {size} resolution. Keep the content, composition and colours exactly as they are; only add detail."
        )),
        Operation::Recontext if spec.person_image.is_some() => Some(
            "Show the person from the last image wearing the product from the first image. Keep the person's face, pose and body unchanged.".into(),
        ),
        _ => None,
    }
}

fn instruction(spec: &JobSpec) -> Option<String> {
    match spec.prompt.as_deref() {
        Some(p) => Some(p.to_string()),
        None => default_instruction(spec),
    }
}

fn image_part(field: &str, img: &crate::job::ImageInput) -> Result<Value, BuildError> {
    let part = match resolved(field, img)? {
        Resolved::Inline { data, mime } => Part::inline(mime, data),
        Resolved::Gcs { uri, mime } => Part::file(mime.unwrap_or("image/png"), uri),
    };
    Ok(serde_json::to_value(part).unwrap_or(Value::Null))
}

/// The user turn's parts: images in a stable order, then the instruction. A chat turn is
/// a message with attachments, so its text comes first (as the SDK's
/// `send_message(["text", image])` sends it, capture `*_chat_multiturn`).
fn user_parts(spec: &JobSpec) -> Result<Vec<Value>, BuildError> {
    let mut text = instruction(spec).map(|t| json!({ "text": t }));
    let mut parts = Vec::new();
    if spec.op == Operation::Chat {
        parts.extend(text.take());
    }
    for (i, img) in spec.images.iter().enumerate() {
        parts.push(image_part(&format!("images[{i}]"), img)?);
    }
    let mut refs: Vec<(u32, usize)> = spec
        .reference_images
        .iter()
        .enumerate()
        .filter(|(_, r)| r.reference_type != ReferenceType::Mask)
        .map(|(i, r)| (r.reference_id.unwrap_or(i as u32 + 1), i))
        .collect();
    refs.sort();
    for (_, i) in refs {
        if let Some(img) = &spec.reference_images[i].image {
            parts.push(image_part(&format!("reference_images[{i}].image"), img)?);
        }
    }
    for (i, img) in spec.product_images.iter().enumerate() {
        parts.push(image_part(&format!("product_images[{i}]"), img)?);
    }
    if let Some(img) = &spec.person_image {
        parts.push(image_part("person_image", img)?);
    }
    parts.extend(text);
    Ok(parts)
}

fn generation_config(spec: &JobSpec, vertex: bool) -> Obj {
    let mut image = Obj::new();
    image
        .opt("aspectRatio", spec.aspect_ratio.clone())
        .opt("imageSize", spec.image_size.clone());
    if vertex {
        let mut out = Obj::new();
        out.opt("mimeType", spec.output_mime_type.clone())
            .opt("compressionQuality", spec.output_compression_quality);
        image
            .opt("personGeneration", spec.person_generation.map(|p| p.wire()))
            .opt("prominentPeople", spec.prominent_people.map(|p| p.wire()))
            .nested("imageOutputOptions", out);
    }
    let mut thinking = Obj::new();
    thinking
        .opt("thinkingLevel", spec.thinking_level.map(|t| t.wire()))
        .opt("includeThoughts", spec.include_thoughts);
    let modalities = spec
        .response_modalities
        .as_ref()
        .map(|m| serde_json::to_value(m).unwrap_or(Value::Null));
    let mut config = Obj::new();
    config
        .opt("responseModalities", modalities)
        .opt("candidateCount", spec.number_of_images)
        .opt("temperature", spec.temperature)
        .opt("topP", spec.top_p)
        .opt("topK", spec.top_k)
        .opt("seed", spec.seed)
        .nested("thinkingConfig", thinking)
        .nested("imageConfig", image);
    config
}

/// The `:generateContent` body.
pub(super) fn body(spec: &JobSpec, target: &Target) -> Result<Value, BuildError> {
    let vertex = target.backend == Backend::Vertex;
    let mut contents: Vec<Value> = spec
        .history
        .iter()
        .map(|c| serde_json::to_value(c).unwrap_or(Value::Null))
        .collect();
    contents.push(json!({ "role": "user", "parts": user_parts(spec)? }));
    let mut body = Obj::new();
    body.set("contents", contents);
    if let Some(sys) = &spec.system_instruction {
        body.set("systemInstruction", json!({ "parts": [{ "text": sys }] }));
    }
    if !spec.safety_settings.is_empty() {
        body.set(
            "safetySettings",
            serde_json::to_value(&spec.safety_settings).unwrap_or(Value::Null),
        );
    }
    body.nested("generationConfig", generation_config(spec, vertex));
    if vertex {
        body.opt("labels", labels(spec));
        if let Some(uri) = &spec.output_gcs_uri {
            body.set("outputConfig", json!({ "outputUriPrefix": uri }));
        }
    }
    Ok(body.into_value())
}
