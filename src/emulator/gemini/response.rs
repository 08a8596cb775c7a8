//! Builds `GenerateContentResponse` JSON (spec §4.2) from a `GeminiPlan`: text and image
//! parts with thought signatures, finish reasons for the safety markers, usage metadata
//! by modality, and the Vertex-only `createTime` / `trafficType`.
//!
//! Renders images through the shared cache; validation happened before.

use base64::Engine as _;
use serde_json::{Value, json};

use crate::catalog;

use crate::emulator::call::CallCtx;
use crate::emulator::call::Surface;
use crate::emulator::control::faults::Outcome;
use crate::emulator::envelope::ApiError;
use crate::emulator::gemini::GeminiPlan;
use crate::emulator::media::synth::{Derive, Look, caption, digest_of, render_b64, seed_of};
use crate::emulator::state::AppState;

const IMAGE_SAFETY_MESSAGE: &str = "Unable to show the generated image. The image was filtered out because it violated Google's Generative AI Prohibited Use policy. You will not be charged for blocked images. Try rephrasing the prompt. If you think this was an error, send feedback.";

/// The response for a planned request and the outcome its markers chose.
pub fn respond(
    state: &AppState,
    ctx: &CallCtx,
    plan: &GeminiPlan,
    outcome: Outcome,
) -> Result<Value, ApiError> {
    let response_id = format!("emu-{:016x}", state.random_u64());
    let prompt_image_tokens = plan.input_images * catalog::input_image_tokens(ctx.info);
    let prompt_tokens = plan.prompt_text_tokens + prompt_image_tokens;
    let mut body = match outcome {
        Outcome::Blocked => json!({
            "promptFeedback": {
                "blockReason": "PROHIBITED_CONTENT",
                "blockReasonMessage": "The prompt was blocked because it may contain prohibited content.",
            },
            "usageMetadata": {"promptTokenCount": prompt_tokens, "totalTokenCount": prompt_tokens},
        }),
        Outcome::ImageSafety => json!({
            "candidates": [{"content": {"role": "model"}, "finishReason": "IMAGE_SAFETY",
                            "finishMessage": IMAGE_SAFETY_MESSAGE, "index": 0}],
            "usageMetadata": {"promptTokenCount": prompt_tokens, "totalTokenCount": prompt_tokens},
        }),
        Outcome::NoImage => json!({
            "candidates": [{"content": {"role": "model", "parts": [
                {"text": "I was unable to generate an image for this request. Please try rephrasing it."}]},
                "finishReason": "NO_IMAGE", "index": 0}],
            "usageMetadata": {"promptTokenCount": prompt_tokens, "candidatesTokenCount": 16,
                              "totalTokenCount": prompt_tokens + 16},
        }),
        Outcome::Normal => normal_body(
            state,
            ctx,
            plan,
            &response_id,
            prompt_tokens,
            prompt_image_tokens,
        )?,
    };
    body["modelVersion"] = json!(ctx.model);
    body["responseId"] = json!(response_id);
    if ctx.surface == Surface::Vertex {
        body["createTime"] =
            json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
        body["usageMetadata"]["trafficType"] = json!("ON_DEMAND");
    }
    Ok(body)
}

fn normal_body(
    state: &AppState,
    ctx: &CallCtx,
    plan: &GeminiPlan,
    response_id: &str,
    prompt_tokens: u32,
    prompt_image_tokens: u32,
) -> Result<Value, ApiError> {
    let text = match &plan.text {
        Some(ask) => super::text::answer(ask, &plan.prompt),
        None => format!("Here is your image: {}", short(&plan.prompt)),
    };
    let text_tokens = crate::emulator::call::text_tokens(&text);
    let per_image = catalog::output_image_tokens(ctx.info, plan.image_size.as_deref());
    let mut candidates = Vec::new();
    for index in 0..plan.candidates {
        let mut parts = Vec::new();
        if plan.want_text {
            parts.push(json!({"text": text}));
        }
        if plan.want_image {
            parts.push(image_part(state, ctx, plan, index, response_id)?);
        }
        candidates.push(json!({
            "content": {"role": "model", "parts": parts},
            "finishReason": "STOP",
            "index": index,
        }));
    }
    let image_tokens = if plan.want_image {
        per_image * plan.candidates
    } else {
        0
    };
    let out_text_tokens = if plan.want_text {
        text_tokens * plan.candidates
    } else {
        0
    };
    let candidates_tokens = image_tokens + out_text_tokens;
    let mut prompt_details =
        vec![json!({"modality": "TEXT", "tokenCount": plan.prompt_text_tokens})];
    if prompt_image_tokens > 0 {
        prompt_details.push(json!({"modality": "IMAGE", "tokenCount": prompt_image_tokens}));
    }
    let mut cand_details = Vec::new();
    if image_tokens > 0 {
        cand_details.push(json!({"modality": "IMAGE", "tokenCount": image_tokens}));
    }
    if out_text_tokens > 0 {
        cand_details.push(json!({"modality": "TEXT", "tokenCount": out_text_tokens}));
    }
    Ok(json!({
        "candidates": candidates,
        "usageMetadata": {
            "promptTokenCount": prompt_tokens,
            "candidatesTokenCount": candidates_tokens,
            "totalTokenCount": prompt_tokens + candidates_tokens,
            "promptTokensDetails": prompt_details,
            "candidatesTokensDetails": cand_details,
        },
    }))
}

fn image_part(
    state: &AppState,
    ctx: &CallCtx,
    plan: &GeminiPlan,
    index: u32,
    response_id: &str,
) -> Result<Value, ApiError> {
    let (w, h) = plan.dims;
    let input = plan
        .base
        .as_deref()
        .map(|b| digest_of(b))
        .unwrap_or_default();
    let seed = seed_of(&[
        ctx.info.id,
        &plan.prompt,
        &plan.seed.to_string(),
        &format!("{w}x{h}:{index}:{:?}", plan.encoding),
        &input,
    ]);
    let signature =
        base64::engine::general_purpose::STANDARD.encode(format!("emu-thought:{seed:016x}"));
    let mime = plan.encoding.mime();
    if let Some(prefix) = &plan.output_uri_prefix {
        let uri = format!(
            "{prefix}{response_id}/image_{index}.{}",
            plan.encoding.ext()
        );
        return Ok(
            json!({"fileData": {"mimeType": mime, "fileUri": uri}, "thoughtSignature": signature}),
        );
    }
    let look = Look {
        caption: caption(&plan.prompt, ctx.info.id, plan.seed),
        base: plan.base.clone().map(|b| (b, Derive::Inset)),
    };
    let data = render_b64(&state.images, seed, (w, h), plan.encoding, &look)?;
    Ok(
        json!({"inlineData": {"mimeType": mime, "data": data.as_str()}, "thoughtSignature": signature}),
    )
}

fn short(prompt: &str) -> String {
    let s: String = prompt.chars().take(80).collect();
    if s.is_empty() {
        "as requested".into()
    } else {
        s
    }
}
