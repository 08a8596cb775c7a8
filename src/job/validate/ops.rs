//! Per-operation rules: required inputs, counts, value ranges and string enums.

use crate::catalog::{Family, HARM_CATEGORIES, HARM_THRESHOLDS, IMAGEN_LANGUAGES, ModelInfo};
use crate::job::spec::{JobSpec, Operation, SegmentMode};

use super::{Report, ValidationContext};

/// Imagen prompt limit (spec §7), in tokens.
const IMAGEN_PROMPT_TOKENS: usize = 480;
/// The smallest Gemini image model input window (spec §0).
const GEMINI_PROMPT_TOKENS: usize = 32_768;

/// A conservative token estimate: about four characters per token for prose.
fn estimated_tokens(text: &str) -> usize {
    text.chars().count().div_ceil(4)
}

pub(super) fn check(spec: &JobSpec, model: &ModelInfo, _ctx: &ValidationContext, r: &mut Report) {
    check_prompt(spec, model, r);
    check_output_shape(spec, model, r);
    check_ranges(spec, r);
    check_strings(spec, r);
    check_tier(spec, model, r);
    match spec.op {
        Operation::Generate => {}
        Operation::Edit => super::references::check_edit(spec, model, r),
        Operation::Upscale => check_count(r, "images", spec.images.len(), 1, 1),
        Operation::Segment => check_segment(spec, model, r),
        Operation::Recontext => check_recontext(spec, model, r),
        Operation::Compose => check_count(r, "images", spec.images.len(), 2, usize::MAX),
        Operation::Chat => check_chat(spec, r),
        Operation::Story | Operation::Plan => check_story(spec, r),
        Operation::Assemble => r.err(
            "op",
            "`assemble` jobs are made by submit from a `story` line; write the story line",
        ),
    }
}

fn check_story(spec: &JobSpec, r: &mut Report) {
    use crate::job::story::MAX_FRAMES;
    let given = !spec.frame_prompts.is_empty();
    let description = spec.description.as_deref().map(str::trim).unwrap_or("");
    if description.is_empty() && !given {
        r.err(
            "description",
            "a story needs a `description` to plan its frames from (or `frame_prompts`)",
        );
    }
    if description.chars().count() > 2000 {
        r.err("description", "at most 2,000 characters");
    }
    match spec.frames {
        None => r.err("frames", format!("how many frames, 1 to {MAX_FRAMES}")),
        Some(n) if !(1..=MAX_FRAMES).contains(&n) => {
            r.err("frames", format!("must be 1 to {MAX_FRAMES}, got {n}"))
        }
        Some(n) if given && spec.frame_prompts.len() != n as usize => r.err(
            "frame_prompts",
            format!(
                "{} prompts for {n} frames: give one per frame",
                spec.frame_prompts.len()
            ),
        ),
        Some(_) => {}
    }
    for (i, p) in spec.frame_prompts.iter().enumerate() {
        if p.trim().is_empty() {
            r.err(format!("frame_prompts[{i}]"), "an empty prompt");
        }
    }
    if let Some(planner) = &spec.planner_model {
        let text = crate::catalog::lookup_or_infer(planner)
            .is_some_and(|m| m.family == crate::catalog::Family::GeminiText);
        if !text {
            r.err(
                "planner_model",
                format!(
                    "`{planner}` is not a Gemini text model (plans are written by one, e.g. {})",
                    crate::job::story::DEFAULT_PLANNER
                ),
            );
        }
    }
    if spec.op == Operation::Story && !spec.images.is_empty() {
        r.err(
            "images",
            "a story makes its own frames' inputs (`chain`); give the first frame's look in `style`",
        );
    }
}

fn check_count(r: &mut Report, field: &str, n: usize, min: usize, max: usize) {
    if n < min || n > max {
        let want = match (min, max) {
            (a, b) if a == b => format!("exactly {a}"),
            (a, usize::MAX) => format!("at least {a}"),
            (a, b) => format!("{a} to {b}"),
        };
        r.err(field, format!("needs {want} image(s), got {n}"));
    }
}

fn prompt_required(spec: &JobSpec, model: &ModelInfo) -> bool {
    match spec.op {
        Operation::Generate | Operation::Compose | Operation::Chat => true,
        // Imagen inpaint removal sends an empty prompt (capture vertex_edit_inpaint_removal_*).
        Operation::Edit => model.family.is_gemini(),
        Operation::Segment => matches!(
            spec.segment_mode,
            Some(SegmentMode::Prompt | SegmentMode::Semantic)
        ),
        Operation::Recontext => model.family == Family::ProductRecontext,
        Operation::Upscale | Operation::Story | Operation::Plan | Operation::Assemble => false,
    }
}

fn check_prompt(spec: &JobSpec, model: &ModelInfo, r: &mut Report) {
    let prompt = spec.prompt.as_deref().unwrap_or("");
    if prompt.trim().is_empty() && prompt_required(spec, model) {
        r.err(
            "prompt",
            format!("a prompt is required for `{}` on `{}`", spec.op, spec.model),
        );
        return;
    }
    let limit = if model.family.is_generate_content() {
        GEMINI_PROMPT_TOKENS
    } else {
        IMAGEN_PROMPT_TOKENS
    };
    let tokens = estimated_tokens(prompt);
    if tokens > limit {
        r.err(
            "prompt",
            format!(
                "about {tokens} tokens ({} characters), over the {limit}-token limit of `{}`",
                prompt.chars().count(),
                spec.model
            ),
        );
    }
}

/// The model's thinking levels (3.1 Flash-Lite Image: minimal or high).
fn check_thinking(spec: &JobSpec, model: &ModelInfo, r: &mut Report) {
    if let Some(level) = spec.thinking_level
        && !model.thinking_levels.is_empty()
        && !model.thinking_levels.contains(&level.wire())
    {
        let allowed: Vec<String> = model
            .thinking_levels
            .iter()
            .map(|l| l.to_ascii_lowercase())
            .collect();
        r.err(
            "thinking_level",
            format!(
                "`{}` is not offered by `{}` (allowed: {})",
                level.wire().to_ascii_lowercase(),
                spec.model,
                allowed.join(", ")
            ),
        );
    }
}

fn check_output_shape(spec: &JobSpec, model: &ModelInfo, r: &mut Report) {
    // Every operation but chat is asked for images: a text-only answer would fail the
    // job after its retries, so it is refused here.
    if let Some(m) = &spec.response_modalities
        && spec.op != Operation::Chat
        && !m.is_empty()
        && !m.contains(&crate::job::spec::Modality::Image)
    {
        r.err(
            "response_modalities",
            format!(
                "`{}` makes images: include IMAGE (TEXT alone is for chat)",
                spec.op
            ),
        );
    }
    if let Some(n) = spec.number_of_images
        && (n == 0 || n > model.max_outputs)
    {
        r.err(
            "number_of_images",
            format!(
                "must be 1 to {} for `{}`, got {n}",
                model.max_outputs, spec.model
            ),
        );
    }
    if let Some(ratio) = &spec.aspect_ratio
        && !model.aspect_ratios.contains(&ratio.as_str())
    {
        r.err(
            "aspect_ratio",
            format!(
                "`{ratio}` is not offered by `{}` (allowed: {})",
                spec.model,
                model.aspect_ratios.join(", ")
            ),
        );
    }
    if let Some(size) = &spec.image_size
        && !model.image_sizes.contains(&size.as_str())
    {
        let allowed = if model.image_sizes.is_empty() {
            "none: the model has a fixed size".to_string()
        } else {
            model.image_sizes.join(", ")
        };
        r.err(
            "image_size",
            format!(
                "`{size}` is not offered by `{}` (allowed: {allowed}; sizes use an uppercase K)",
                spec.model
            ),
        );
    }
    check_thinking(spec, model, r);
    if let Some(mime) = &spec.output_mime_type
        && mime != "image/png"
        && mime != "image/jpeg"
    {
        r.err(
            "output_mime_type",
            format!("`{mime}` is not an output type (use image/png or image/jpeg)"),
        );
    }
    if let Some(q) = spec.output_compression_quality {
        if q > 100 {
            r.err(
                "output_compression_quality",
                format!("must be 0 to 100, got {q}"),
            );
        } else if spec.output_mime_type.as_deref() != Some("image/jpeg") {
            r.err(
                "output_compression_quality",
                "applies to JPEG only: set output_mime_type to image/jpeg",
            );
        }
    }
    if spec.seed.is_some() && !model.family.is_gemini() && spec.add_watermark != Some(false) {
        r.err("seed", "Imagen ignores seeds while add_watermark is true (its default); set add_watermark: false");
    }
}

pub(super) fn check_unit(r: &mut Report, field: &str, v: Option<f64>, lo: f64, hi: f64) {
    if let Some(v) = v
        && (!(lo..=hi).contains(&v) || v.is_nan())
    {
        r.err(field, format!("must be between {lo} and {hi}, got {v}"));
    }
}

fn check_ranges(spec: &JobSpec, r: &mut Report) {
    check_unit(r, "temperature", spec.temperature, 0.0, 2.0);
    check_unit(r, "top_p", spec.top_p, 0.0, 1.0);
    check_unit(r, "top_k", spec.top_k, 1.0, 1000.0);
    check_unit(r, "guidance_scale", spec.guidance_scale, 0.0, 500.0);
    check_unit(
        r,
        "image_preservation_factor",
        spec.image_preservation_factor,
        0.0,
        1.0,
    );
    check_unit(
        r,
        "confidence_threshold",
        spec.confidence_threshold,
        0.0,
        1.0,
    );
    check_unit(r, "mask_dilation", spec.mask_dilation, 0.0, 1.0);
    if let Some(t) = spec.binary_color_threshold
        && t != -1.0
        && !(0.0..=255.0).contains(&t)
    {
        r.err(
            "binary_color_threshold",
            format!("must be 0 to 255, or -1 to turn it off, got {t}"),
        );
    }
    if let Some(t) = spec.timeout_s
        && (t == 0 || t > 3600)
    {
        r.err("timeout_s", format!("must be 1 to 3600 seconds, got {t}"));
    }
    if spec.base_steps == Some(0) {
        r.err("base_steps", "must be at least 1");
    }
    if spec.max_predictions == Some(0) {
        r.err("max_predictions", "must be at least 1");
    }
}

/// A tier the model is offered at (spec §11). Google's Batch API is not one the worker
/// submits to yet.
fn check_tier(spec: &JobSpec, model: &ModelInfo, r: &mut Report) {
    use crate::job::spec::Tier;
    match spec.tier {
        None | Some(Tier::Standard) => {}
        Some(Tier::Batch) => r.err(
            "tier",
            "`batch` (Google's Batch API) is not supported yet; use standard, or flex where the model offers it",
        ),
        Some(tier) if !tier.offered_on(model) => r.err(
            "tier",
            format!(
                "{} is not offered at the {tier} tier (Google's model page: Flex and Priority inference not supported); use standard",
                model.id
            ),
        ),
        Some(_) => {}
    }
}

fn check_strings(spec: &JobSpec, r: &mut Report) {
    if let Some(lang) = &spec.language
        && !IMAGEN_LANGUAGES.contains(&lang.as_str())
    {
        r.err(
            "language",
            format!(
                "`{lang}` is not supported (allowed: {})",
                IMAGEN_LANGUAGES.join(", ")
            ),
        );
    }
    if let Some(f) = &spec.upscale_factor
        && !["x2", "x3", "x4"].contains(&f.as_str())
    {
        r.err(
            "upscale_factor",
            format!("`{f}` is not a factor (allowed: x2, x3, x4)"),
        );
    }
    for (i, s) in spec.safety_settings.iter().enumerate() {
        if !HARM_CATEGORIES.contains(&s.category.as_str()) {
            r.err(
                format!("safety_settings[{i}].category"),
                format!(
                    "unknown category `{}` (allowed: {})",
                    s.category,
                    HARM_CATEGORIES.join(", ")
                ),
            );
        }
        if !HARM_THRESHOLDS.contains(&s.threshold.as_str()) {
            r.err(
                format!("safety_settings[{i}].threshold"),
                format!(
                    "unknown threshold `{}` (allowed: {})",
                    s.threshold,
                    HARM_THRESHOLDS.join(", ")
                ),
            );
        }
    }
    if spec.labels.len() > 64 {
        r.err(
            "labels",
            format!("at most 64 labels, got {}", spec.labels.len()),
        );
    }
    for (k, v) in &spec.labels {
        if !valid_label(k, true) {
            r.err(
                format!("labels.{k}"),
                "label keys are 1–63 lowercase letters, digits, `_` or `-`, starting with a letter",
            );
        }
        if !valid_label(v, false) {
            r.err(
                format!("labels.{k}"),
                format!(
                    "label value `{v}` must be at most 63 lowercase letters, digits, `_` or `-`"
                ),
            );
        }
    }
}

fn valid_label(s: &str, key: bool) -> bool {
    let ok_chars = s.chars().all(|c| {
        c.is_ascii_lowercase()
            || c.is_ascii_digit()
            || c == '_'
            || c == '-'
            || (!c.is_ascii() && c.is_lowercase())
    });
    let starts = !key || s.chars().next().is_some_and(|c| c.is_lowercase());
    s.chars().count() <= 63 && ok_chars && starts && (!key || !s.is_empty())
}

fn check_segment(spec: &JobSpec, model: &ModelInfo, r: &mut Report) {
    check_count(r, "images", spec.images.len(), 1, 1);
    if model.family == Family::GeminiText {
        // A Gemini text model segments what the prompt names, or the prominent objects.
        // Prompt and semantic modes need a prompt: `check_prompt` says so.
        if let Some(m @ (SegmentMode::Background | SegmentMode::Interactive)) = spec.segment_mode {
            let name = if m == SegmentMode::Background {
                "background"
            } else {
                "interactive"
            };
            r.err(
                "segment_mode",
                format!("`{name}` is Imagen-only (image-segmentation-001 on Vertex); Gemini segmentation takes foreground, prompt or semantic"),
            );
        }
        return;
    }
    let interactive = spec.segment_mode == Some(SegmentMode::Interactive);
    if interactive && spec.scribble_image.is_none() {
        r.err(
            "scribble_image",
            "interactive segmentation needs a scribble image",
        );
    }
    if !interactive && spec.scribble_image.is_some() {
        r.err("scribble_image", "applies to segment_mode interactive only");
    }
    let wants_prompt = matches!(
        spec.segment_mode,
        Some(SegmentMode::Prompt | SegmentMode::Semantic)
    );
    if spec.prompt.is_some() && !wants_prompt {
        r.err(
            "prompt",
            "segmentation takes a prompt only in segment_mode prompt or semantic",
        );
    }
}

fn check_recontext(spec: &JobSpec, model: &ModelInfo, r: &mut Report) {
    match model.family {
        Family::VirtualTryOn => {
            check_count(r, "product_images", spec.product_images.len(), 1, 1);
            if spec.person_image.is_none() {
                r.err("person_image", "virtual try-on needs the person image");
            }
            if spec.prompt.is_some() {
                r.err("prompt", "virtual try-on takes no prompt");
            }
        }
        Family::ProductRecontext => {
            check_count(r, "product_images", spec.product_images.len(), 1, 3)
        }
        _ => {
            if spec.product_images.is_empty() && spec.images.is_empty() {
                r.err(
                    "product_images",
                    "recontext needs at least one product image",
                );
            }
        }
    }
}

fn check_chat(spec: &JobSpec, r: &mut Report) {
    for (i, turn) in spec.history.iter().enumerate() {
        match turn.role.as_deref() {
            Some("user") | Some("model") => {}
            other => r.err(
                format!("history[{i}].role"),
                format!("must be `user` or `model`, got {other:?}"),
            ),
        }
        if turn.parts.is_empty() {
            r.err(
                format!("history[{i}].parts"),
                "a turn needs at least one part",
            );
        }
    }
}
