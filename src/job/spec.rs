//! `JobSpec`: the versioned, serde-stable description of one image job, as users write it
//! in JSONL files and API bodies.
//!
//! One flat, strict struct (unknown fields are refused with their name) plus an
//! `Operation` tag. Field names follow the official SDK's config names in snake_case;
//! enum values are the wire values, with short lowercase aliases. Which fields apply to
//! which operation and model is decided by `validate`, not here; how they reach the wire
//! is decided by `providers`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::content::Content;
pub use super::enums::*;
use super::image::ImageInput;

/// The current `JobSpec` format version (`"v"`).
pub const SPEC_VERSION: u32 = 1;

/// The `"v"` field: defaults to the current version when absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SpecVersion(pub u32);

impl Default for SpecVersion {
    fn default() -> Self {
        SpecVersion(SPEC_VERSION)
    }
}

/// What a job does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// Text → image.
    #[default]
    Generate,
    /// Image(s) + instruction → image (Imagen: reference images with an edit mode).
    Edit,
    /// Image → larger image.
    Upscale,
    /// Image → masks.
    Segment,
    /// Product image(s) (+ person image for virtual try-on) → image in a new scene.
    Recontext,
    /// Two or more images + instruction → one image.
    Compose,
    /// One turn of a multi-turn conversation.
    Chat,
    /// A sequence of frames from a description (`submit` expands it into a plan, the
    /// frames and their assembly: `job::story`).
    Story,
    /// A Gemini text model plans a story's frames (JSON with a response schema).
    Plan,
    /// A story's frames become `story.json` and a contact sheet (no model call).
    Assemble,
}

impl Operation {
    /// Every operation, for help texts and metrics label sets.
    pub const ALL: [Operation; 10] = [
        Operation::Generate,
        Operation::Edit,
        Operation::Upscale,
        Operation::Segment,
        Operation::Recontext,
        Operation::Compose,
        Operation::Chat,
        Operation::Story,
        Operation::Plan,
        Operation::Assemble,
    ];

    /// The snake_case name used on the wire and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Generate => "generate",
            Operation::Edit => "edit",
            Operation::Upscale => "upscale",
            Operation::Segment => "segment",
            Operation::Recontext => "recontext",
            Operation::Compose => "compose",
            Operation::Chat => "chat",
            Operation::Story => "story",
            Operation::Plan => "plan",
            Operation::Assemble => "assemble",
        }
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Operation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Operation::ALL
            .into_iter()
            .find(|op| op.as_str() == s)
            .ok_or_else(|| {
                format!("unknown operation `{s}` (expected generate, edit, upscale, segment, recontext, compose, chat or story)")
            })
    }
}

/// A string field where `null` means "not given".
fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

/// One image job. See `docs/job-spec.md` for every field with examples.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// Format version; only `1` exists.
    #[serde(rename = "v", default)]
    pub version: SpecVersion,
    /// The operation.
    #[serde(default)]
    pub op: Operation,
    /// Model id, e.g. `gemini-3.1-flash-image` or `gemini-3-pro-image`; empty (or
    /// null) means the project's default model.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub model: String,
    /// The model the job named when submit migrated it from a retired one (set by
    /// imagegen, never by the user: `[models] on_retired = "migrate"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_requested: Option<String>,
    /// The text prompt or instruction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,

    // ---- input images -------------------------------------------------------------
    /// Input images: the image to edit/upscale/segment, or the images to compose.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<ImageInput>,
    /// Imagen edit reference images (raw, mask, control, style, subject, content).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reference_images: Vec<ReferenceImage>,
    /// Recontext / virtual try-on: product images.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub product_images: Vec<ImageInput>,
    /// Virtual try-on: the person image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person_image: Option<ImageInput>,
    /// Interactive segmentation: the scribble image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scribble_image: Option<ImageInput>,
    /// Chat: the earlier turns, in Gemini `Content` form, model turns with their
    /// `thoughtSignature`s.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<Content>,

    // ---- output shape --------------------------------------------------------------
    /// Images per request (Imagen `sampleCount`, Gemini `candidateCount`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number_of_images: Option<u32>,
    /// Aspect ratio such as `16:9`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aspect_ratio: Option<String>,
    /// Output size: `512`, `1K`, `2K`, `4K` (per model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_size: Option<String>,
    /// `image/png` or `image/jpeg`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_mime_type: Option<String>,
    /// JPEG quality 0–100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_compression_quality: Option<u32>,
    /// Vertex: let Google write outputs to this `gs://` prefix (Imagen `storageUri`,
    /// Gemini `outputConfig.outputUriPrefix`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_gcs_uri: Option<String>,
    /// Random seed for reproducible output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,

    // ---- Imagen parameters --------------------------------------------------------
    /// What to keep out of the image (Imagen, Vertex only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negative_prompt: Option<String>,
    /// Invisible SynthID watermark (Imagen; must be false to use `seed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_watermark: Option<bool>,
    /// Let an LLM rewrite the prompt (Imagen).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enhance_prompt: Option<bool>,
    /// Prompt adherence (Imagen).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guidance_scale: Option<f64>,
    /// Imagen safety filter level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety_filter_level: Option<SafetyFilterLevel>,
    /// Whether people may be generated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person_generation: Option<PersonGeneration>,
    /// Return the reason a sample was filtered (Imagen).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_rai_reason: Option<bool>,
    /// Return safety scores (Imagen).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_safety_attributes: Option<bool>,
    /// Prompt language (Imagen): `auto en ja ko hi zh pt es`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// Imagen edit mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edit_mode: Option<EditMode>,
    /// Sampling steps (Imagen edit `editConfig.baseSteps`, recontext `baseSteps`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_steps: Option<u32>,
    /// Upscale factor: `x2`, `x3`, `x4`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upscale_factor: Option<String>,
    /// Upscale: enhance the input before upscaling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enhance_input_image: Option<bool>,
    /// Upscale: how closely to keep the input (0–1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_preservation_factor: Option<f64>,
    /// Segmentation mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_mode: Option<SegmentMode>,
    /// Segmentation: maximum masks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_predictions: Option<u32>,
    /// Segmentation: minimum confidence (0–1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence_threshold: Option<f64>,
    /// Segmentation: mask dilation (0–1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask_dilation: Option<f64>,
    /// Segmentation: binary colour threshold (0–255, or -1 to disable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary_color_threshold: Option<f64>,

    // ---- Gemini parameters --------------------------------------------------------
    /// `TEXT` and/or `IMAGE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_modalities: Option<Vec<Modality>>,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Top-k sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<f64>,
    /// Thinking level (Gemini 3 image models).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking_level: Option<ThinkingLevel>,
    /// Return thought parts (they are never stored as outputs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_thoughts: Option<bool>,
    /// Gemini safety settings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub safety_settings: Vec<SafetySetting>,
    /// Gemini system instruction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_instruction: Option<String>,
    /// Prominent people policy (Gemini, Vertex only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prominent_people: Option<ProminentPeople>,

    // ---- envelope -----------------------------------------------------------------
    /// Vertex request labels (also kept on the job record).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Server-side deadline in seconds (`X-Server-Timeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<u32>,
    /// How Google serves and prices it (`standard` when absent; `submit --tier` and the
    /// project's `tier` give lines that name none a default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<Tier>,
    /// Caller's own data, stored with the job and echoed in results and webhooks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
    /// This job's own webhook: its terminal event (`job.succeeded`, …) goes here instead
    /// of the project's default, signed with the project's secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
    /// The HTTP API request that enqueued it (`req_…`, set by the API): its webhook
    /// carries it, with the image URLs, at the top level of the body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,

    // ---- stories (`op: "story"`, expanded by submit: docs/job-spec.md "Stories") ----
    /// Story, plan: what the sequence shows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Story, plan: how many frames.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frames: Option<u32>,
    /// Story, plan: what kind of sequence (`recipe`, `tutorial`, `story`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Story, plan: the look every frame shares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub style: Option<String>,
    /// Story: how frames stay consistent (`previous`, `anchor`, `none`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<super::story::Chain>,
    /// Story: the Gemini text model that plans the frames.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planner_model: Option<String>,
    /// Story: the frames' prompts, given (nothing is planned).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub frame_prompts: Vec<String>,
    /// A story's plan, frame or assembly: which story, which frame (set by submit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub story: Option<super::story::StoryRef>,
    /// A planned frame: the job that planned it (`#<seq>`, set by submit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_of: Option<String>,
    /// An assembly: its plan (when planned) and frames' jobs in order (`#<seq>`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub frame_jobs: Vec<String>,
    /// A chat session's turn (set by the API): its history is the session's earlier
    /// turns, read when it runs (after the turn before it, which it waits for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionRef>,
}

/// Which session a chat job is a turn of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRef {
    /// The session (`ses_…`).
    pub id: String,
    /// The turn's index (0-based).
    pub turn: usize,
}

/// Gemini response modality.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Modality {
    /// Text parts.
    #[serde(rename = "TEXT", alias = "text")]
    Text,
    /// Image parts.
    #[serde(rename = "IMAGE", alias = "image")]
    Image,
}

/// One Gemini safety setting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SafetySetting {
    /// `HARM_CATEGORY_*`.
    pub category: String,
    /// `BLOCK_*` or `OFF`.
    pub threshold: String,
}

/// Imagen edit reference image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceImage {
    /// Kind of reference.
    pub reference_type: ReferenceType,
    /// Id the prompt refers to as `[n]`; defaults to its 1-based position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_id: Option<u32>,
    /// The image; omitted for masks Google computes (background/foreground/semantic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageInput>,
    /// Mask: how the mask is obtained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask_mode: Option<MaskMode>,
    /// Mask: semantic class ids (at most 5).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mask_classes: Vec<u32>,
    /// Mask: dilation (0–1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask_dilation: Option<f64>,
    /// Control: control type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_type: Option<ControlType>,
    /// Control: let Google compute the control image from the raw image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute_control: Option<bool>,
    /// Style: description of the style.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub style_description: Option<String>,
    /// Subject: kind of subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_type: Option<SubjectType>,
    /// Subject: description of the subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_description: Option<String>,
}

impl JobSpec {
    /// A `generate` job for `prompt` on `model`.
    pub fn generate(model: &str, prompt: &str) -> Self {
        JobSpec {
            op: Operation::Generate,
            model: model.to_string(),
            prompt: Some(prompt.to_string()),
            ..JobSpec::default()
        }
    }

    /// Parses one JSON job spec, with the path of the offending field in the error.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let de = &mut serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path == "." || path.is_empty() {
                inner.to_string()
            } else {
                format!("{path}: {inner}")
            }
        })
    }

    /// Parses a spec a user wrote (a job file's line, an API body): as
    /// [`JobSpec::from_json`], and the fields imagegen sets itself (a story's links, a
    /// session's turn, a migration's record, the API's request id) are refused by name.
    pub fn from_user_json(text: &str) -> Result<Self, String> {
        let spec = Self::from_json(text)?;
        let internal = [
            ("story", spec.story.is_some()),
            ("plan_of", spec.plan_of.is_some()),
            ("frame_jobs", !spec.frame_jobs.is_empty()),
            ("session", spec.session.is_some()),
            ("model_requested", spec.model_requested.is_some()),
            ("request_id", spec.request_id.is_some()),
        ];
        match internal.into_iter().find(|(_, set)| *set) {
            Some((field, _)) => Err(format!(
                "{field}: set by imagegen, not in a job (write a story line, or use the sessions API)"
            )),
            None => Ok(spec),
        }
    }
}
