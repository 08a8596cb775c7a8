//! `:generateContent` request validation (spec §4.1): after the proto check, the
//! semantic rules of the Gemini image models — contents and roles, input images (count,
//! size, MIME, decodability), response modalities, candidate count, aspect ratio and size
//! per model, output options, thought signatures in history — producing a `GeminiPlan`.
//!
//! Decides what to answer; the response JSON is built in `response`.

pub(super) mod proto;
pub(super) mod response;
mod schema;
pub(super) mod text;

use serde_json::Value;

use crate::catalog;

use crate::emulator::call::Surface;
use crate::emulator::call::{CallCtx, text_tokens};
use crate::emulator::envelope::ApiError;
use crate::emulator::gemini::proto::normalize_generate_content;
use crate::emulator::media::synth::{Encoding, requested_encoding};
use crate::emulator::media::{INPUT_MIME_TYPES, decode_b64, inspect, nearest_ratio};

/// What a valid generateContent request asks for.
#[derive(Debug, Clone)]
pub struct GeminiPlan {
    /// Text of the last user turn (markers are looked for here).
    pub prompt: String,
    /// `generationConfig.seed` (0 when absent).
    pub seed: i64,
    /// Answer with a text part.
    pub want_text: bool,
    /// Answer with image parts.
    pub want_image: bool,
    /// Number of candidates.
    pub candidates: u32,
    /// Output dimensions.
    pub dims: (u32, u32),
    /// Output encoding.
    pub encoding: Encoding,
    /// `imageSize` as requested (for token accounting).
    pub image_size: Option<String>,
    /// `outputConfig.outputUriPrefix` (Vertex): images come back as `fileData`.
    pub output_uri_prefix: Option<String>,
    /// Prompt tokens from text.
    pub prompt_text_tokens: u32,
    /// Number of input images.
    pub input_images: u32,
    /// A text model's request: what to answer instead of images.
    pub text: Option<text::TextAsk>,
    /// The image the answer derives from: the current turn's first inline image, else
    /// the conversation's last (a chat turn edits the image before it).
    pub base: Option<std::sync::Arc<Vec<u8>>>,
}

struct Inputs {
    prompt: String,
    all_text: String,
    images: u32,
    first_dims: Option<(u32, u32)>,
    /// The last content's first inline image.
    current_image: Option<Vec<u8>>,
    /// The last inline image of the contents before it.
    history_image: Option<Vec<u8>>,
    /// A Gemini 3 history whose model image part has no `thoughtSignature`: Google
    /// answers, but without the context (spec §11, "Thought signatures").
    context_lost: bool,
}

impl Inputs {
    /// What the answer derives from (the history's image only while its context holds).
    fn base(&mut self) -> Option<std::sync::Arc<Vec<u8>>> {
        let history = self.history_image.take().filter(|_| !self.context_lost);
        self.current_image
            .take()
            .or(history)
            .map(std::sync::Arc::new)
    }
}

/// Validates a generateContent body and plans the answer.
pub fn plan(ctx: &CallCtx, body: &Value) -> Result<GeminiPlan, ApiError> {
    let req = normalize_generate_content(body, ctx.surface, &ctx.version)?;
    let mut inputs = check_contents(ctx, &req)?;
    if ctx.info.family == catalog::Family::GeminiText {
        let ask = text::ask(&ctx.model, &req, &inputs.prompt)?;
        return Ok(GeminiPlan {
            seed: 0,
            want_text: true,
            want_image: false,
            candidates: 1,
            dims: (0, 0),
            encoding: Encoding::Png,
            image_size: None,
            output_uri_prefix: None,
            prompt_text_tokens: text_tokens(&inputs.all_text),
            input_images: inputs.images,
            prompt: inputs.prompt,
            text: Some(ask),
            base: None,
        });
    }
    let config = req.get("generationConfig").cloned().unwrap_or(Value::Null);
    let (want_text, want_image) = modalities(ctx, &config)?;
    let candidates = candidate_count(ctx, &config)?;
    let image_config = config.get("imageConfig").cloned().unwrap_or(Value::Null);
    let (dims, image_size) = dimensions(ctx, &image_config, inputs.first_dims)?;
    let encoding = output_encoding(&image_config)?;
    let seed = config
        .get("seed")
        .and_then(|s| {
            s.as_i64()
                .or_else(|| s.as_str().and_then(|t| t.parse().ok()))
        })
        .unwrap_or(0);
    let output_uri_prefix = req
        .pointer("/outputConfig/outputUriPrefix")
        .and_then(Value::as_str)
        .map(str::to_string);
    let base = inputs.base();
    Ok(GeminiPlan {
        base,
        prompt: inputs.prompt,
        seed,
        want_text,
        want_image,
        candidates,
        dims,
        encoding,
        image_size,
        output_uri_prefix,
        prompt_text_tokens: text_tokens(&inputs.all_text),
        input_images: inputs.images,
        text: None,
    })
}

fn no_parts_error(ctx: &CallCtx, field: &str) -> ApiError {
    match ctx.surface {
        Surface::Vertex => ApiError::field(
            field,
            "Unable to submit request because it must include at least one parts field, which describes the prompt input. Learn more: https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/gemini",
        ),
        Surface::Developer => ApiError::field(
            field,
            format!("* GenerateContentRequest.{field}: contents.parts must not be empty.\n"),
        ),
    }
}

fn check_contents(ctx: &CallCtx, req: &Value) -> Result<Inputs, ApiError> {
    let contents = req.get("contents").and_then(Value::as_array);
    let Some(contents) = contents.filter(|c| !c.is_empty()) else {
        return Err(match ctx.surface {
            Surface::Vertex => no_parts_error(ctx, "contents"),
            Surface::Developer => ApiError::field(
                "contents",
                "* GenerateContentRequest.contents: contents is not specified\n",
            ),
        });
    };
    let mut inputs = Inputs {
        prompt: String::new(),
        all_text: String::new(),
        images: 0,
        first_dims: None,
        current_image: None,
        history_image: None,
        context_lost: false,
    };
    let last = contents.len() - 1;
    for (i, content) in contents.iter().enumerate() {
        let role = content.get("role").and_then(Value::as_str).unwrap_or("");
        if !matches!(role, "" | "user" | "model") {
            return Err(ApiError::field(
                &format!("contents[{i}].role"),
                "Please use a valid role: user, model.",
            ));
        }
        let parts = content.get("parts").and_then(Value::as_array);
        let Some(parts) = parts.filter(|p| !p.is_empty()) else {
            return Err(no_parts_error(ctx, &format!("contents[{i}].parts")));
        };
        let mut turn_text = String::new();
        for (j, part) in parts.iter().enumerate() {
            check_part(ctx, part, role, i, j, &mut inputs)?;
            let inline = part
                .pointer("/inlineData/data")
                .and_then(Value::as_str)
                .filter(|_| {
                    part.pointer("/inlineData/mimeType")
                        .and_then(Value::as_str)
                        .is_some_and(|m| m.starts_with("image/"))
                })
                .and_then(crate::emulator::media::decode_b64);
            match inline {
                Some(bytes) if i == last => {
                    inputs.current_image.get_or_insert(bytes);
                }
                Some(bytes) => inputs.history_image = Some(bytes),
                None => {}
            }
            if let Some(t) = part.get("text").and_then(Value::as_str) {
                turn_text.push_str(t);
                turn_text.push('\n');
            }
        }
        if role != "model" {
            inputs.prompt = turn_text.trim_end().to_string();
        }
        inputs.all_text.push_str(&turn_text);
    }
    let max = ctx.info.max_input_images;
    if inputs.images > max {
        return Err(ApiError::field(
            "contents",
            format!(
                "Too many input images: {} (model {} accepts at most {max}).",
                inputs.images, ctx.model
            ),
        ));
    }
    Ok(inputs)
}

fn check_part(
    ctx: &CallCtx,
    part: &Value,
    role: &str,
    i: usize,
    j: usize,
    inputs: &mut Inputs,
) -> Result<(), ApiError> {
    let path = format!("contents[{i}].parts[{j}]");
    check_oneof(part, &path)?;
    let is_image = part.get("inlineData").is_some() || part.get("fileData").is_some();
    if let Some(blob) = part.get("inlineData") {
        let dims = check_inline(ctx, blob, &path)?;
        if role != "model" {
            inputs.images += 1;
            inputs.first_dims = inputs.first_dims.or(dims);
        }
    }
    if let Some(file) = part.get("fileData") {
        if file
            .get("fileUri")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(ApiError::field(
                &format!("{path}.file_data.file_uri"),
                "file_uri must be set.",
            ));
        }
        if role != "model" {
            inputs.images += 1;
        }
    }
    if role == "model" && is_image && ctx.is_gemini3() && part.get("thoughtSignature").is_none() {
        // Gemini 3 image models answer a history that dropped a signature, but lose its
        // context (spec §11): the answer does not build on the history's images.
        inputs.context_lost = true;
    }
    Ok(())
}

/// A part holds exactly one of its `data` oneof fields.
fn check_oneof(part: &Value, path: &str) -> Result<(), ApiError> {
    let data_fields = [
        "text",
        "inlineData",
        "fileData",
        "functionCall",
        "functionResponse",
        "executableCode",
        "codeExecutionResult",
    ];
    let present = data_fields
        .iter()
        .filter(|f| part.get(**f).is_some())
        .count();
    match present {
        1 => Ok(()),
        0 => Err(ApiError::field(
            &format!("{path}.data"),
            format!("{path}.data: required oneof field 'data' must have one initialized field"),
        )),
        _ => Err(ApiError::field(
            &format!("{path}.data"),
            format!("{path}.data: oneof field 'data' is already set. Cannot set a second field"),
        )),
    }
}

/// Checks one inline image; returns its dimensions when readable.
fn check_inline(ctx: &CallCtx, blob: &Value, path: &str) -> Result<Option<(u32, u32)>, ApiError> {
    let mime = blob.get("mimeType").and_then(Value::as_str).unwrap_or("");
    if !INPUT_MIME_TYPES.contains(&mime) {
        return Err(ApiError::field(
            &format!("{path}.inline_data.mime_type"),
            format!("Unsupported MIME type: {mime}"),
        ));
    }
    let data = blob.get("data").and_then(Value::as_str).unwrap_or("");
    let bytes = decode_b64(data).unwrap_or_default();
    let field = format!("{path}.inline_data.data");
    if bytes.is_empty() {
        return Err(ApiError::field(&field, "Inline data must not be empty."));
    }
    let max = ctx.info.max_inline_bytes;
    if bytes.len() as u64 > max {
        return Err(ApiError::field(
            &field,
            format!(
                "Inline image is {} bytes; the maximum for {} is {max} bytes.",
                bytes.len(),
                ctx.model
            ),
        ));
    }
    match inspect(&bytes) {
        Some(found) => Ok(found.dims),
        None => Err(ApiError::field(
            &field,
            "Unable to process input image. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
        )),
    }
}

fn modalities(ctx: &CallCtx, config: &Value) -> Result<(bool, bool), ApiError> {
    let Some(list) = config.get("responseModalities").and_then(Value::as_array) else {
        return Ok((true, true));
    };
    let names: Vec<&str> = list.iter().filter_map(Value::as_str).collect();
    if names.is_empty() {
        return Ok((true, true));
    }
    if let Some(bad) = names.iter().find(|m| !matches!(**m, "TEXT" | "IMAGE")) {
        return Err(ApiError::field(
            "generation_config.response_modalities",
            format!(
                "Model {} does not support the requested response modalities: {}",
                ctx.model,
                bad.to_ascii_lowercase()
            ),
        ));
    }
    Ok((names.contains(&"TEXT"), names.contains(&"IMAGE")))
}

fn candidate_count(ctx: &CallCtx, config: &Value) -> Result<u32, ApiError> {
    let n = config
        .get("candidateCount")
        .and_then(|v| {
            v.as_i64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        })
        .unwrap_or(1);
    let max = ctx.info.max_outputs as i64;
    if n > 1 && max == 1 {
        return Err(ApiError::field(
            "generation_config.candidate_count",
            format!("Multiple candidates is not enabled for {}.", ctx.resource()),
        ));
    }
    if !(1..=max).contains(&n) {
        return Err(ApiError::field(
            "generation_config.candidate_count",
            format!(
                "candidate_count must be between 1 and {max} for {}, got {n}.",
                ctx.model
            ),
        ));
    }
    Ok(n as u32)
}

fn dimensions(
    ctx: &CallCtx,
    image_config: &Value,
    first_input: Option<(u32, u32)>,
) -> Result<((u32, u32), Option<String>), ApiError> {
    let info = ctx.info;
    let size = image_config.get("imageSize").and_then(Value::as_str);
    let ratio = match image_config.get("aspectRatio").and_then(Value::as_str) {
        Some(r) => {
            if !info.aspect_ratios.contains(&r) {
                return Err(ApiError::field(
                    "generation_config.image_config.aspect_ratio",
                    format!(
                        "Unsupported aspect ratio \"{r}\" for model {}. Supported: {}.",
                        ctx.model,
                        info.aspect_ratios.join(", ")
                    ),
                ));
            }
            r
        }
        None => first_input
            .and_then(|(w, h)| nearest_ratio(w, h, info.aspect_ratios))
            .unwrap_or("1:1"),
    };
    match catalog::dimensions(info, Some(ratio), size) {
        Some(d) => Ok((d, size.map(str::to_ascii_uppercase))),
        None => {
            let supported = if info.image_sizes.is_empty() {
                "none (fixed size)".to_string()
            } else {
                info.image_sizes.join(", ")
            };
            Err(ApiError::field(
                "generation_config.image_config.image_size",
                format!(
                    "Unsupported image size \"{}\" for model {}. Supported: {supported}.",
                    size.unwrap_or(""),
                    ctx.model
                ),
            ))
        }
    }
}

fn output_encoding(image_config: &Value) -> Result<Encoding, ApiError> {
    requested_encoding(
        image_config.get("imageOutputOptions"),
        "generation_config.image_config.image_output_options.compression_quality",
        "generation_config.image_config.image_output_options.mime_type",
    )
}
