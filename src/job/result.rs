//! `JobResult`: what a finished job produced, written as `result.json` next to its images
//! and echoed by status/results commands and webhooks.

use serde::Serialize;

use super::JobStatus;
use super::spec::JobSpec;
use crate::providers::{ProviderOutput, Usage};
use crate::storage::StoredImage;

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
    /// Operation.
    pub operation: String,
    /// Final status.
    pub status: JobStatus,
    /// The request, with inline image data replaced by its size.
    pub request: serde_json::Value,
    /// Stored images.
    pub images: Vec<StoredImage>,
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

impl JobResult {
    /// Copies the provider's extras (text, enhanced prompt, safety, usage) into the result.
    pub fn absorb(&mut self, out: &ProviderOutput) {
        self.text = out.text.clone();
        self.enhanced_prompt = out.images.iter().find_map(|i| i.enhanced_prompt.clone());
        self.rai_filtered_reasons = out.rai_filtered_reasons.clone();
        self.safety_attributes = out
            .images
            .iter()
            .filter_map(|i| i.safety_attributes.clone())
            .chain(out.prompt_safety_attributes.clone())
            .collect();
        self.usage = out.usage.clone();
    }
}
