//! Builds `:predict` responses (spec §5.6): one prediction per sample with bytes or a
//! `gcsUri`, the enhanced prompt, safety attributes plus the "Positive Prompt" entry,
//! RAI-filtered samples for the safety markers, and labelled masks for segmentation.
//!
//! Rendering goes through the shared image cache; validation happened before.

use serde_json::{Value, json};

use crate::emulator::call::CallCtx;
use crate::emulator::control::faults::Outcome;
use crate::emulator::envelope::ApiError;
use crate::emulator::imagen::{ImagenPlan, Op};
use crate::emulator::media::synth::{Look, caption, digest_of, render_b64, seed_of};
use crate::emulator::state::AppState;

const RAI_REASON: &str = "58061214: The image was filtered because it violates Google's Responsible AI practices. Try rephrasing the prompt. If you think this was an error, send feedback. Support codes: 58061214";

/// The predict response for a planned request and its safety outcome.
pub fn respond(
    state: &AppState,
    ctx: &CallCtx,
    plan: &ImagenPlan,
    outcome: Outcome,
) -> Result<Value, ApiError> {
    if plan.op == Op::Segment {
        return masks(state, ctx, plan);
    }
    let mut predictions = Vec::new();
    let run = format!("{:013}", chrono::Utc::now().timestamp_millis());
    for index in 0..plan.samples {
        match outcome {
            Outcome::NoImage => {}
            Outcome::Blocked | Outcome::ImageSafety => {
                if plan.include_rai {
                    predictions.push(json!({"raiFilteredReason": RAI_REASON}));
                }
            }
            Outcome::Normal => predictions.push(sample(state, ctx, plan, index, &run)?),
        }
    }
    if plan.include_safety && outcome == Outcome::Normal {
        predictions.push(json!({
            "contentType": "Positive Prompt",
            "safetyAttributes": {"categories": ["Violence"], "scores": [0.1]},
        }));
    }
    if predictions.is_empty() {
        return Ok(json!({}));
    }
    Ok(json!({"predictions": predictions}))
}

fn sample(
    state: &AppState,
    ctx: &CallCtx,
    plan: &ImagenPlan,
    index: u32,
    run: &str,
) -> Result<Value, ApiError> {
    let (w, h) = plan.dims;
    let mime = plan.encoding.mime();
    let mut p = match &plan.storage_uri {
        Some(prefix) => {
            let slash = if prefix.ends_with('/') { "" } else { "/" };
            json!({"gcsUri": format!("{prefix}{slash}{run}/sample_{index}.{}", plan.encoding.ext()), "mimeType": mime})
        }
        None => {
            let input = plan
                .base
                .as_ref()
                .map(|(b, _)| digest_of(b))
                .unwrap_or_default();
            let seed = seed_of(&[
                ctx.info.id,
                &plan.prompt,
                &plan.seed.to_string(),
                &format!("{:?}:{w}x{h}:{index}:{:?}", plan.op, plan.encoding),
                &input,
            ]);
            let look = Look {
                caption: caption(&plan.prompt, ctx.info.id, plan.seed),
                base: plan.base.clone(),
            };
            let data = render_b64(&state.images, seed, (w, h), plan.encoding, &look)?;
            json!({"bytesBase64Encoded": data.as_str(), "mimeType": mime})
        }
    };
    if plan.enhance_prompt && !plan.prompt.is_empty() {
        p["prompt"] = json!(format!(
            "{}, highly detailed, natural lighting, sharp focus, professional composition",
            plan.prompt
        ));
    }
    if plan.include_safety {
        p["safetyAttributes"] = json!({"categories": [], "scores": []});
    }
    Ok(p)
}

fn masks(state: &AppState, ctx: &CallCtx, plan: &ImagenPlan) -> Result<Value, ApiError> {
    let (w, h) = plan.dims;
    let mut predictions = Vec::new();
    for (i, label) in plan.mask_labels.iter().enumerate() {
        // The mask is the input's bright pixels (the same for every label).
        let input = plan
            .base
            .as_ref()
            .map(|(b, _)| digest_of(b))
            .unwrap_or_default();
        let seed = seed_of(&[
            ctx.info.id,
            &plan.prompt,
            label,
            &format!("{w}x{h}:{i}"),
            &input,
        ]);
        let look = Look {
            caption: Vec::new(),
            base: plan.base.clone(),
        };
        let data = render_b64(&state.images, seed, (w, h), plan.encoding, &look)?;
        let score = 0.95 - 0.1 * i as f64;
        predictions.push(json!({
            "bytesBase64Encoded": data.as_str(),
            "mimeType": "image/png",
            "labels": [{"label": label, "score": score}],
        }));
    }
    Ok(json!({"predictions": predictions}))
}
