//! Segmentation over `:predict` (spec §5.5, `image-segmentation-001`): the input image,
//! the mode (upper or lower case), prompt and scribble rules, numeric ranges, and which
//! labelled masks to answer (one per prediction, `maxPredictions` honoured).
//!
//! Validation only; masks are rendered in `response`.

use serde_json::Value;

use crate::emulator::call::CallCtx;
use crate::emulator::envelope::ApiError;
use crate::emulator::imagen::inputs::image_field;
use crate::emulator::imagen::params::Common;
use crate::emulator::imagen::{ImagenPlan, Op, base_plan};
use crate::emulator::media::synth::Encoding;

const SEGMENT_MODES: &[&str] = &[
    "FOREGROUND",
    "BACKGROUND",
    "PROMPT",
    "SEMANTIC",
    "INTERACTIVE",
];

/// Segmentation: one mask per prediction, labels from the mode/prompt.
pub fn segment(ctx: &CallCtx, instance: &Value, params: &Value) -> Result<ImagenPlan, ApiError> {
    let image = instance.get("image").ok_or_else(|| {
        ApiError::field(
            "instances[0].image",
            "instances[0].image is required for segmentation.",
        )
    })?;
    let dims = image_field(ctx, image, "instances[0].image")?.unwrap_or((1024, 1024));
    let mode = params
        .get("mode")
        .and_then(Value::as_str)
        .unwrap_or("FOREGROUND")
        .to_ascii_uppercase();
    if !SEGMENT_MODES.contains(&mode.as_str()) {
        return Err(ApiError::field(
            "parameters.mode",
            format!(
                "Invalid segmentation mode \"{mode}\". Allowed: {}.",
                SEGMENT_MODES.join(", ")
            ),
        ));
    }
    let prompt = instance
        .get("prompt")
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim()
        .to_string();
    if matches!(mode.as_str(), "PROMPT" | "SEMANTIC") && prompt.is_empty() {
        return Err(ApiError::field(
            "instances[0].prompt",
            format!("A prompt is required for {mode} segmentation."),
        ));
    }
    check_scribble(ctx, &mode, instance)?;
    check_numbers(params)?;
    let labels = labels(&mode, &prompt, params);
    let common = Common {
        samples: labels.len() as u32,
        seed: 0,
        encoding: Encoding::MaskPng,
        storage_uri: None,
        include_rai: false,
        include_safety: false,
        enhance_prompt: false,
        aspect_ratio: None,
    };
    let mut plan = base_plan(Op::Segment, prompt, dims, common);
    plan.mask_labels = labels;
    Ok(plan)
}

/// A scribble is required in INTERACTIVE mode and refused in every other mode.
fn check_scribble(ctx: &CallCtx, mode: &str, instance: &Value) -> Result<(), ApiError> {
    match (mode, instance.get("scribble")) {
        ("INTERACTIVE", Some(s)) => {
            let img = s.get("image").ok_or_else(|| {
                ApiError::field("instances[0].scribble.image", "scribble.image is required.")
            })?;
            image_field(ctx, img, "instances[0].scribble.image").map(|_| ())
        }
        ("INTERACTIVE", None) => Err(ApiError::field(
            "instances[0].scribble",
            "A scribble is required for INTERACTIVE segmentation.",
        )),
        (_, Some(_)) => Err(ApiError::field(
            "instances[0].scribble",
            "scribble is only supported in INTERACTIVE mode.",
        )),
        _ => Ok(()),
    }
}

/// One label per mask: the semantic classes, the prompt, or the mode's region.
fn labels(mode: &str, prompt: &str, params: &Value) -> Vec<String> {
    let max = params
        .get("maxPredictions")
        .and_then(Value::as_u64)
        .unwrap_or(1)
        .max(1) as usize;
    let labels: Vec<String> = match mode {
        "SEMANTIC" => prompt
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        "PROMPT" => vec![prompt.to_string(); max.min(2)],
        "BACKGROUND" => vec!["background".into()],
        "FOREGROUND" => vec!["foreground".into()],
        _ => vec![String::new()],
    };
    labels.into_iter().take(max).collect()
}

fn check_numbers(params: &Value) -> Result<(), ApiError> {
    let checks: [(&str, f64, f64); 3] = [
        ("confidenceThreshold", 0.0, 1.0),
        ("maskDilation", 0.0, 1.0),
        ("binaryColorThreshold", -1.0, 255.0),
    ];
    for (name, lo, hi) in checks {
        if let Some(v) = params.get(name).filter(|v| !v.is_null()) {
            let ok = v.as_f64().is_some_and(|x| (lo..=hi).contains(&x));
            if !ok {
                return Err(ApiError::field(
                    &format!("parameters.{name}"),
                    format!("{name} must be between {lo} and {hi}, got {v}."),
                ));
            }
        }
    }
    if params
        .get("maxPredictions")
        .is_some_and(|v| v.as_u64().is_none_or(|n| n < 1))
    {
        return Err(ApiError::field(
            "parameters.maxPredictions",
            "maxPredictions must be a positive integer.",
        ));
    }
    Ok(())
}
