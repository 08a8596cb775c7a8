//! `JobResult`: what a finished job produced, written as `result.json` next to its images
//! and echoed by status/results commands and webhooks.

use serde::{Deserialize, Serialize};

use super::JobStatus;
use super::content::{Content, Part};
use super::spec::{JobSpec, Tier};
use serde::Deserializer;

/// The outcome of one job.
#[derive(Debug, Clone, Serialize)]
pub struct JobResult {
    /// Job id.
    pub job_id: String,
    /// Batch id, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_id: Option<String>,
    /// Project name.
    pub project: String,
    /// Line of the job file the job came from, when it came from one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// Model id.
    pub model: String,
    /// The retired model the job named, when it was migrated to `model`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_requested: Option<String>,
    /// Operation.
    pub operation: String,
    /// Final status.
    pub status: JobStatus,
    /// The request, with inline image data replaced by its size.
    pub request: serde_json::Value,
    /// Stored images.
    pub images: Vec<StoredImage>,
    /// Its input images (`images`) as it read them: where from, and their SHA-256
    /// where known (provenance: a story frame names the frame it was made from).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<InputRef>,
    /// Text the model returned.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub text: Vec<String>,
    /// Imagen's rewritten prompt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enhanced_prompt: Option<String>,
    /// Why samples were filtered.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rai_filtered_reasons: Vec<String>,
    /// Safety attributes (per image, and of the prompt).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub safety_attributes: Vec<serde_json::Value>,
    /// Token usage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// The tier Google served it at (a priority request over its limit is served at
    /// standard, and priced so).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<Tier>,
    /// What it cost: the price table (`pricing`) applied to its usage at its tier.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    /// A chat job's answer as the next turn's history needs it: the model's turn as
    /// returned, `thoughtSignature`s kept, each image part by reference to its stored
    /// copy (`fileData`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_turn: Option<Content>,
    /// Attempts made.
    pub attempts: u32,
    /// Last error (blocked reason or failure).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// RFC 3339 start time.
    pub started_at: String,
    /// RFC 3339 end time.
    pub finished_at: String,
    /// Wall time in milliseconds, retries included.
    pub duration_ms: u64,
}

/// An input image of a job, as `result.json` records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputRef {
    /// The job field (`images[0]`).
    pub field: String,
    /// Where it was read from (none for inline data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Hex SHA-256 of its bytes, where known (inline data, uploads, another job's
    /// output).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// Longest prompt kept in a compact result (the full one is in `result.json`).
pub const PROMPT_EXCERPT: usize = 200;

/// What the queue keeps of a finished job (its record, the manifest row, the webhook
/// payload, `run`'s summary): enough to find its outputs and account for it; the full
/// story is its `result.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CompactResult {
    /// Model.
    pub model: String,
    /// The retired model the job named, when it was migrated to `model`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_requested: Option<String>,
    /// Operation.
    pub operation: String,
    /// The prompt, cut at [`PROMPT_EXCERPT`] characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// Stored images.
    #[serde(default)]
    pub images: Vec<StoredImage>,
    /// Model text.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub text: Vec<String>,
    /// Token usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// The tier it was served at ([`JobResult::tier`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<Tier>,
    /// What it cost ([`JobResult::cost_usd`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    /// A chat job's answer as the next turn's history needs it ([`JobResult::model_turn`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_turn: Option<Content>,
    /// Its input images with their provenance ([`JobResult::inputs`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<InputRef>,
    /// Wall time of the delivery that finished the job.
    #[serde(default)]
    pub duration_ms: u64,
    /// The job's `metadata`, echoed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
    /// The HTTP API request that enqueued it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl CompactResult {
    /// The model's turn of a chat answer, as the next turn's history sends it back: the
    /// one the job kept (thought signatures, images by reference), or one rebuilt from
    /// its text and images.
    pub fn answer(&self) -> Content {
        self.model_turn.clone().unwrap_or_else(|| {
            let text = self.text.iter().map(Part::text);
            let images = self
                .images
                .iter()
                .map(|i| Part::file(i.mime_type.clone(), i.url.clone()));
            Content {
                role: Some("model".into()),
                parts: text.chain(images).collect(),
            }
        })
    }

    /// The compact form of a full result.
    pub fn of(result: &JobResult, prompt: Option<&str>) -> Self {
        CompactResult {
            model: result.model.clone(),
            model_requested: result.model_requested.clone(),
            operation: result.operation.clone(),
            prompt: prompt.map(|p| excerpt(p, PROMPT_EXCERPT)),
            images: result.images.clone(),
            text: result.text.clone(),
            usage: result.usage.clone(),
            tier: result.tier,
            cost_usd: result.cost_usd,
            model_turn: result.model_turn.clone(),
            inputs: result.inputs.clone(),
            duration_ms: result.duration_ms,
            metadata: result
                .request
                .get("metadata")
                .filter(|m| !m.is_null())
                .cloned(),
            request_id: result
                .request
                .get("request_id")
                .and_then(|r| r.as_str())
                .map(str::to_string),
        }
    }
}

/// The model's turn with each output image part replaced by a reference to its stored
/// copy (`images`, in the order of the turn's non-thought image parts) and thought
/// images dropped (they are not outputs and are not sent back); text, thoughts and
/// `thoughtSignature`s are kept as returned.
pub fn turn_by_reference(turn: &Content, images: &[StoredImage]) -> Content {
    let mut stored = images.iter();
    let parts = turn
        .parts
        .iter()
        .filter_map(|part| {
            let is_image = part.inline_data.is_some() || part.file_data.is_some();
            if !is_image {
                return Some(part.clone());
            }
            if part.is_thought() {
                return None;
            }
            let img = stored.next()?;
            Some(Part {
                file_data: Some(super::content::FileData {
                    mime_type: img.mime_type.clone(),
                    file_uri: img.url.clone(),
                }),
                inline_data: None,
                ..part.clone()
            })
        })
        .collect();
    Content {
        role: Some("model".into()),
        parts,
    }
}

/// `text` cut at `max` characters (on a character boundary), with `…` when cut.
pub fn excerpt(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((end, _)) => format!("{}…", &text[..end]),
    }
}

/// The spec as JSON with every inline image's base64 replaced by `"<N bytes base64>"`,
/// so results stay small and never echo user images.
pub fn redacted_request(spec: &JobSpec) -> serde_json::Value {
    fn walk(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, child) in map.iter_mut() {
                    if k == "data" {
                        if let serde_json::Value::String(s) = child {
                            *child =
                                serde_json::Value::String(format!("<{} bytes base64>", s.len()));
                        }
                    } else {
                        walk(child);
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    let mut v = serde_json::to_value(spec).unwrap_or(serde_json::Value::Null);
    walk(&mut v);
    v
}

/// One stored image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredImage {
    /// Position in the job's outputs.
    pub index: usize,
    /// Full URL (`file:///…`, `s3://bucket/…`).
    pub url: String,
    /// `image/png` or `image/jpeg`.
    pub mime_type: String,
    /// Bytes written.
    pub bytes: u64,
    /// Hex SHA-256 of the bytes.
    pub sha256: String,
    /// Pixel width (0 if the header could not be read).
    pub width: u32,
    /// Pixel height.
    pub height: u32,
    /// The file on this machine, for stores on local disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Segmentation masks: what the mask is of (`[{label, score}]` from Imagen,
    /// `[{label, box_2d}]` from a Gemini text model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<serde_json::Value>,
}

/// Token usage (Gemini `usageMetadata`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// Prompt tokens.
    #[serde(default, deserialize_with = "lenient_u64")]
    pub prompt_token_count: u64,
    /// Output tokens.
    #[serde(default, deserialize_with = "lenient_u64")]
    pub candidates_token_count: u64,
    /// Thinking tokens.
    #[serde(default, deserialize_with = "lenient_u64")]
    pub thoughts_token_count: u64,
    /// Total.
    #[serde(default, deserialize_with = "lenient_u64")]
    pub total_token_count: u64,
    /// Output tokens by modality: image tokens are priced apart from text.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub candidates_tokens_details: Vec<ModalityTokens>,
}

impl Usage {
    /// Output tokens of `modality` (`IMAGE`, `TEXT`), when the answer broke them down.
    pub fn output_tokens_of(&self, modality: &str) -> Option<u64> {
        if self.candidates_tokens_details.is_empty() {
            return None;
        }
        Some(
            self.candidates_tokens_details
                .iter()
                .filter(|d| d.modality.eq_ignore_ascii_case(modality))
                .map(|d| d.token_count)
                .sum(),
        )
    }
}

/// One modality's share of a token count (`ModalityTokenCount`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModalityTokens {
    /// `TEXT`, `IMAGE`, …
    #[serde(default)]
    pub modality: String,
    /// Tokens.
    #[serde(default, deserialize_with = "lenient_u64")]
    pub token_count: u64,
}

/// int64 arrives as a number or a string (proto3 JSON).
fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    Ok(match v {
        serde_json::Value::Number(n) => n.as_u64().unwrap_or(0),
        serde_json::Value::String(s) => s.parse().unwrap_or(0),
        _ => 0,
    })
}
