//! `:generateContent` bodies for segmentation on Gemini text models (spec §11): the image
//! inline, then the instruction Google documents for segmentation, which asks for a JSON
//! list with `box_2d`, `mask` and `label` per object
//! (ai.google.dev/gemini-api/docs/image-understanding, "Segmentation").
//!
//! The answer is turned into full-size masks by `providers::masks`, which needs the
//! image's size: it is read here from the inline bytes and carried in the reply kind.

use serde_json::{Value, json};

use crate::catalog::Backend;
use crate::job::JobSpec;
use crate::job::content::Part;
use crate::providers::endpoint::Target;
use crate::providers::response::{MaskAnswer, ResponseKind};

use super::{BuildError, Obj, Resolved, labels, resolved};

/// Imagen's default `binaryColorThreshold`, and Google's in its segmentation examples.
const DEFAULT_THRESHOLD: i16 = 127;

/// What to segment: the prompt (a description or comma-separated classes), else the
/// prominent objects.
fn target(spec: &JobSpec) -> &str {
    spec.prompt
        .as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .unwrap_or("the prominent foreground objects")
}

/// Google's segmentation instruction for `spec`.
pub(crate) fn instruction(spec: &JobSpec) -> String {
    let limit = spec
        .max_predictions
        .map(|n| format!(" Return at most {n} entries."))
        .unwrap_or_default();
    format!(
        "Give the segmentation masks for {}. Output a JSON list of segmentation masks where each entry contains the 2D bounding box in the key \"box_2d\", the segmentation mask in key \"mask\", and the text label in the key \"label\". Use descriptive labels.{limit}",
        target(spec)
    )
}

/// The body, and what its answer is turned into.
pub(super) fn body(spec: &JobSpec, target: &Target) -> Result<(Value, ResponseKind), BuildError> {
    let img = spec
        .images
        .first()
        .ok_or_else(|| BuildError::Unresolved("images[0]".into()))?;
    let Resolved::Inline { data, mime } = resolved("images[0]", img)? else {
        // The worker inlines segmentation inputs: the masks need the image's size.
        return Err(BuildError::Unresolved("images[0]".into()));
    };
    let (width, height) = crate::job::image::decode_base64(data)
        .ok()
        .and_then(|b| {
            image::ImageReader::new(std::io::Cursor::new(b))
                .with_guessed_format()
                .ok()?
                .into_dimensions()
                .ok()
        })
        .ok_or_else(|| BuildError::Unresolved("images[0] (undecodable image)".into()))?;
    let image = serde_json::to_value(Part::inline(mime, data)).unwrap_or(Value::Null);
    let mut body = Obj::new();
    body.set(
        "contents",
        json!([{ "role": "user", "parts": [image, { "text": instruction(spec) }] }]),
    );
    body.set(
        "generationConfig",
        json!({ "responseMimeType": "application/json" }),
    );
    if target.backend == Backend::Vertex {
        body.opt("labels", labels(spec));
    }
    let threshold = spec
        .binary_color_threshold
        .map_or(DEFAULT_THRESHOLD, |t| t.round().clamp(-1.0, 255.0) as i16);
    let kind = ResponseKind::ObjectMasks(MaskAnswer {
        width,
        height,
        threshold,
        max: spec.max_predictions.unwrap_or(100),
    });
    Ok((body.into_value(), kind))
}
