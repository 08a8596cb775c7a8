//! Lenient parsing of successful (2xx) bodies into `ProviderOutput` (spec §4.2, §5.6):
//! unknown enum values and fields are kept as strings or ignored, int64 counts may be
//! strings, thought parts are skipped, Imagen's "Positive Prompt" entry is separated from
//! the images. A 200 that carries no image is still an error (blocked or no-image), so
//! this module returns `Result` too.

use serde::{Deserialize, Serialize};

use super::error::{ProviderError, TransientKind};
use crate::job::content::{Content, Part};

/// One produced image (or mask).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutputImage {
    /// Decoded bytes; empty when Google wrote the image to `gcs_uri` itself.
    #[serde(skip)]
    pub bytes: bytes::Bytes,
    /// `gs://` location when the request asked Google to store outputs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gcs_uri: Option<String>,
    /// `image/png`, `image/jpeg`.
    pub mime_type: String,
    /// Imagen's rewritten prompt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enhanced_prompt: Option<String>,
    /// Imagen safety attributes of this image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub safety_attributes: Option<serde_json::Value>,
    /// Segmentation labels `[{label, score}]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<serde_json::Value>,
}

pub use crate::job::result::Usage;

/// Everything a successful call produced.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ProviderOutput {
    /// Images (or masks), in order.
    pub images: Vec<OutputImage>,
    /// Non-thought text parts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub text: Vec<String>,
    /// Reasons of samples Imagen filtered out while others passed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rai_filtered_reasons: Vec<String>,
    /// Safety attributes of the prompt itself (Imagen "Positive Prompt" entry).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_safety_attributes: Option<serde_json::Value>,
    /// Token usage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Gemini `finishReason` of the first candidate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
    /// `modelVersion`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_version: Option<String>,
    /// `responseId`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_id: Option<String>,
    /// The tier Google says it served (`x-gemini-service-tier`): `standard` for a
    /// Priority request over its limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub served_tier: Option<crate::job::spec::Tier>,
    /// The model's turn as returned (with `thoughtSignature`s), for chat history.
    #[serde(skip)]
    pub model_turn: Option<Content>,
}

/// What a successful response is expected to carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseKind {
    /// `:generateContent`: candidates with image parts.
    Content,
    /// `:predict` for image-producing models: at least one image.
    Images,
    /// `:predict` for segmentation: zero or more masks (finding nothing is an answer).
    Masks,
    /// `:generateContent` on a Gemini text model asked to segment: a JSON list of boxes,
    /// labels and masks, turned into masks of the input's size (`providers::masks`).
    ObjectMasks(MaskAnswer),
    /// `:generateContent` on a Gemini text model asked to plan a story of this many
    /// frames: JSON `{"frames": [{"prompt"}]}`, checked (count, non-empty, distinct).
    Plan(u32),
}

/// How a segmentation answer becomes masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaskAnswer {
    /// Input image width, pixels.
    pub width: u32,
    /// Input image height, pixels.
    pub height: u32,
    /// Probabilities above it are the object (0–255); -1 keeps the probabilities.
    pub threshold: i16,
    /// At most this many masks.
    pub max: u32,
}

/// Parses a 2xx body of the given kind.
pub fn parse_success(body: &[u8], kind: ResponseKind) -> Result<ProviderOutput, ProviderError> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| malformed(format!("response is not JSON: {e}")))?;
    match kind {
        ResponseKind::Content => parse_generate_content(value, None),
        ResponseKind::ObjectMasks(answer) => parse_generate_content(value, Some(answer)),
        ResponseKind::Plan(frames) => parse_plan(value, frames),
        ResponseKind::Images => parse_predict(value, false),
        ResponseKind::Masks => parse_predict(value, true),
    }
}

/// A story plan: the answer's text as `{"frames": [{"prompt": …}, …]}` with exactly
/// `frames` non-empty, distinct prompts (a fenced answer is accepted), kept as one
/// normalised JSON text. A short or malformed plan is a malformed-response transient
/// (retried); a blocked one is blocked.
fn parse_plan(value: serde_json::Value, frames: u32) -> Result<ProviderOutput, ProviderError> {
    let resp = content_response(value)?;
    let cand = resp.candidates.into_iter().next();
    let reason = cand.as_ref().and_then(|c| c.finish_reason.clone());
    if let Some(r) = reason.as_deref().filter(|r| SAFETY_FINISH.contains(r)) {
        return Err(ProviderError::Blocked {
            reason: r.to_string(),
            message: cand.and_then(|c| c.finish_message),
        });
    }
    let text: String = cand
        .and_then(|c| c.content)
        .map(|c| {
            c.parts
                .iter()
                .filter(|p| !p.is_thought())
                .filter_map(|p| p.text.clone())
                .collect()
        })
        .unwrap_or_default();
    let body = text
        .trim()
        .trim_start_matches("```json")
        .trim_start_matches("```")
        .trim_end_matches("```")
        .trim();
    let plan: serde_json::Value =
        serde_json::from_str(body).map_err(|e| malformed(format!("the plan is not JSON: {e}")))?;
    let prompts: Vec<String> = plan
        .get("frames")
        .and_then(serde_json::Value::as_array)
        .ok_or_else(|| malformed("the plan has no `frames` list".into()))?
        .iter()
        .map(|f| {
            f.get("prompt")
                .and_then(serde_json::Value::as_str)
                .map(|p| p.trim().to_string())
                .unwrap_or_default()
        })
        .collect();
    if prompts.len() != frames as usize {
        return Err(malformed(format!(
            "the plan has {} frames, {frames} were asked for",
            prompts.len()
        )));
    }
    if let Some(i) = prompts.iter().position(String::is_empty) {
        return Err(malformed(format!(
            "frame {} of the plan has no prompt",
            i + 1
        )));
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = prompts.iter().position(|p| !seen.insert(p.clone())) {
        return Err(malformed(format!(
            "frame {} of the plan repeats an earlier frame's prompt",
            dup + 1
        )));
    }
    let frames: Vec<serde_json::Value> = prompts
        .into_iter()
        .map(|p| serde_json::json!({ "prompt": p }))
        .collect();
    Ok(ProviderOutput {
        text: vec![serde_json::json!({ "frames": frames }).to_string()],
        usage: resp.usage_metadata,
        model_version: resp.model_version,
        response_id: resp.response_id,
        finish_reason: reason,
        ..Default::default()
    })
}

/// The frame prompts of a plan (`parse_plan`'s text).
pub fn plan_prompts(text: &str) -> Option<Vec<String>> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    v.get("frames")?
        .as_array()?
        .iter()
        .map(|f| f.get("prompt")?.as_str().map(str::to_string))
        .collect()
}

fn malformed(message: String) -> ProviderError {
    ProviderError::Transient {
        kind: TransientKind::Malformed,
        status: Some(200),
        message,
        retry_after: None,
    }
}

fn decode(data: &str) -> Result<bytes::Bytes, ProviderError> {
    crate::job::image::decode_base64(data)
        .map(bytes::Bytes::from)
        .map_err(|e| malformed(format!("image data is not base64: {e}")))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct GenerateContentResponse {
    #[serde(default)]
    candidates: Vec<Candidate>,
    #[serde(default)]
    prompt_feedback: Option<PromptFeedback>,
    #[serde(default)]
    usage_metadata: Option<Usage>,
    #[serde(default)]
    model_version: Option<String>,
    #[serde(default)]
    response_id: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Candidate {
    #[serde(default)]
    content: Option<Content>,
    #[serde(default)]
    finish_reason: Option<String>,
    #[serde(default)]
    finish_message: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct PromptFeedback {
    #[serde(default)]
    block_reason: Option<String>,
    #[serde(default)]
    block_reason_message: Option<String>,
}

/// Finish reasons that mean a content-policy refusal (spec §4.2).
const SAFETY_FINISH: &[&str] = &[
    "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT",
    "SAFETY",
    "PROHIBITED_CONTENT",
    "BLOCKLIST",
    "SPII",
    "RECITATION",
    "IMAGE_RECITATION",
    "MODEL_ARMOR",
];
/// Finish reasons after which the same request may produce an image.
const RETRY_FINISH: &[&str] = &[
    "NO_IMAGE",
    "IMAGE_OTHER",
    "OTHER",
    "MALFORMED_RESPONSE",
    "STOP",
];

fn image_of(part: &Part) -> Result<Option<OutputImage>, ProviderError> {
    if part.is_thought() {
        return Ok(None);
    }
    if let Some(blob) = &part.inline_data
        && blob.mime_type.starts_with("image/")
    {
        return Ok(Some(OutputImage {
            bytes: decode(&blob.data)?,
            gcs_uri: None,
            mime_type: blob.mime_type.clone(),
            enhanced_prompt: None,
            safety_attributes: None,
            labels: None,
        }));
    }
    if let Some(file) = &part.file_data
        && (file.mime_type.starts_with("image/") || file.mime_type.is_empty())
    {
        return Ok(Some(OutputImage {
            bytes: bytes::Bytes::new(),
            gcs_uri: Some(file.file_uri.clone()),
            mime_type: file.mime_type.clone(),
            enhanced_prompt: None,
            safety_attributes: None,
            labels: None,
        }));
    }
    Ok(None)
}

/// A `:generateContent` answer, unless its prompt was blocked.
fn content_response(value: serde_json::Value) -> Result<GenerateContentResponse, ProviderError> {
    let resp: GenerateContentResponse = serde_json::from_value(value)
        .map_err(|e| malformed(format!("unexpected generateContent shape: {e}")))?;
    if let Some(reason) = resp
        .prompt_feedback
        .as_ref()
        .and_then(|f| f.block_reason.clone())
    {
        let message = resp.prompt_feedback.and_then(|f| f.block_reason_message);
        return Err(ProviderError::Blocked { reason, message });
    }
    Ok(resp)
}

fn parse_generate_content(
    value: serde_json::Value,
    masks: Option<MaskAnswer>,
) -> Result<ProviderOutput, ProviderError> {
    let resp = content_response(value)?;
    let mut out = ProviderOutput {
        usage: resp.usage_metadata,
        model_version: resp.model_version,
        response_id: resp.response_id,
        ..Default::default()
    };
    let mut finish_message = None;
    for cand in resp.candidates {
        if out.finish_reason.is_none() {
            out.finish_reason = cand.finish_reason.clone();
            finish_message = cand.finish_message.clone();
        }
        let Some(content) = cand.content else {
            continue;
        };
        for part in &content.parts {
            if let Some(img) = image_of(part)? {
                out.images.push(img);
            } else if let (Some(t), false) = (&part.text, part.is_thought()) {
                out.text.push(t.clone());
            }
        }
        if out.model_turn.is_none() {
            out.model_turn = Some(content);
        }
    }
    if !out.images.is_empty() {
        return Ok(out);
    }
    let reason = out
        .finish_reason
        .clone()
        .unwrap_or_else(|| "NO_CANDIDATES".into());
    if let Some(answer) = masks
        && !out.text.is_empty()
        && !SAFETY_FINISH.contains(&reason.as_str())
    {
        // The JSON (base64 masks and all) becomes the images; it is not kept as text.
        out.images = super::masks::decode(&std::mem::take(&mut out.text).concat(), answer)?;
        return Ok(out);
    }
    let message = finish_message.or_else(|| out.text.first().cloned());
    if SAFETY_FINISH.contains(&reason.as_str()) {
        return Err(ProviderError::Blocked { reason, message });
    }
    if RETRY_FINISH.contains(&reason.as_str())
        || reason == "NO_CANDIDATES"
        || !is_known_finish(&reason)
    {
        let message = format!(
            "no image in the response (finishReason {reason}){}",
            message.map(|m| format!(": {m}")).unwrap_or_default()
        );
        return Err(ProviderError::Transient {
            kind: TransientKind::NoImage,
            status: Some(200),
            message,
            retry_after: None,
        });
    }
    Err(ProviderError::Permanent {
        status: 200,
        code: reason,
        message: message.unwrap_or_else(|| "the model stopped without an image".into()),
    })
}

/// Finish reasons Google documents; an unknown one is treated like `OTHER`.
fn is_known_finish(reason: &str) -> bool {
    const PERMANENT: &[&str] = &[
        "MAX_TOKENS",
        "LANGUAGE",
        "MISSING_THOUGHT_SIGNATURE",
        "ESCALATION",
        "PUP_LIMITED_DISABLED",
        "CONTINUATION",
        "MALFORMED_FUNCTION_CALL",
        "UNEXPECTED_TOOL_CALL",
        "TOO_MANY_TOOL_CALLS",
        "FINISH_REASON_UNSPECIFIED",
    ];
    PERMANENT.contains(&reason) || SAFETY_FINISH.contains(&reason) || RETRY_FINISH.contains(&reason)
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Prediction {
    #[serde(default)]
    bytes_base64_encoded: Option<String>,
    #[serde(default)]
    gcs_uri: Option<String>,
    #[serde(default)]
    mime_type: Option<String>,
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    rai_filtered_reason: Option<String>,
    #[serde(default)]
    safety_attributes: Option<serde_json::Value>,
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default)]
    labels: Option<serde_json::Value>,
}

fn parse_predict(value: serde_json::Value, masks: bool) -> Result<ProviderOutput, ProviderError> {
    let predictions = match value.get("predictions") {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(p) => serde_json::from_value::<Vec<Prediction>>(p.clone())
            .map_err(|e| malformed(format!("unexpected predict shape: {e}")))?,
    };
    let mut out = ProviderOutput::default();
    let mut saw_masks = false;
    for p in predictions {
        if p.content_type.as_deref() == Some("Positive Prompt") {
            out.prompt_safety_attributes = p.safety_attributes;
            continue;
        }
        if let Some(reason) = p
            .rai_filtered_reason
            .filter(|_| p.bytes_base64_encoded.is_none() && p.gcs_uri.is_none())
        {
            out.rai_filtered_reasons.push(reason);
            continue;
        }
        saw_masks |= p.labels.is_some();
        let bytes = match &p.bytes_base64_encoded {
            Some(b) => decode(b)?,
            None if p.gcs_uri.is_some() => bytes::Bytes::new(),
            None => continue,
        };
        out.images.push(OutputImage {
            bytes,
            gcs_uri: p.gcs_uri,
            mime_type: p.mime_type.unwrap_or_else(|| "image/png".into()),
            enhanced_prompt: p.prompt,
            safety_attributes: p.safety_attributes,
            labels: p.labels,
        });
    }
    if !out.images.is_empty() || saw_masks || masks {
        return Ok(out);
    }
    if !out.rai_filtered_reasons.is_empty() {
        return Err(ProviderError::Blocked {
            reason: "RAI_FILTERED".into(),
            message: Some(out.rai_filtered_reasons.join("; ")),
        });
    }
    Err(ProviderError::Transient {
        kind: TransientKind::NoImage,
        status: Some(200),
        message: "no predictions: every sample was filtered or none was produced (set include_rai_reason to see why)".into(),
        retry_after: None,
    })
}
