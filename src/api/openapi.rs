//! `GET /openapi.json`: the API's OpenAPI 3.1 document, generated from the code
//! (`utoipa`): every route, its request and response schemas and the error envelope.
//! The request types here document the bodies the handlers read field by field (the
//! guide's endpoints also take any job field, e.g. `seed`; those listed are the ones a
//! client of the guide uses).

use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// The error envelope of the guide.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// `invalid_request`, `unauthorized`, `not_found`, `conflict`, `file_too_large`,
    /// `content_blocked`, `rate_limit_exceeded`, `server_error`.
    pub error: String,
    /// What went wrong.
    pub message: String,
    /// `field` and the limits or lines concerned.
    #[schema(value_type = Option<Object>)]
    pub details: Option<serde_json::Value>,
    /// The request's id.
    pub request_id: String,
}

/// `POST /generate-image`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerateRequest {
    /// What to make (at most 2,000 characters).
    #[schema(min_length = 1, max_length = 2000, pattern = r"[\s\S]*\S[\s\S]*")]
    pub prompt: String,
    /// Model (default: the project's; retired ids run on their replacement).
    pub model: Option<ModelDoc>,
    /// Sampling temperature.
    #[schema(minimum = 0.0, maximum = 2.0)]
    pub temperature: Option<f64>,
    /// e.g. `16:9`.
    pub aspect_ratio: Option<AspectRatio>,
    /// Answer 202 at once with the job's status URL.
    #[serde(rename = "async")]
    pub asynchronous: Option<bool>,
}

/// Models of the guide's requests (any catalog id is accepted; these are the current
/// Gemini image models and the guide's own, retired, id).
#[derive(Debug, Deserialize, ToSchema)]
pub enum ModelDoc {
    /// The default.
    #[serde(rename = "gemini-3.1-flash-image")]
    Flash,
    /// Higher quality, 4K.
    #[serde(rename = "gemini-3-pro-image")]
    Pro,
    /// The guide's id: runs on gemini-3.1-flash-image, with `model_requested`.
    #[serde(rename = "gemini-2.5-flash-image-preview")]
    GuidePreview,
}

/// A job line (`POST /v1/jobs`, `POST /v1/batches`): any JobSpec field is accepted
/// (docs/job-spec.md); these are a generate's.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobLineDoc {
    /// What to make (up to the model's prompt limit, about 130,000 characters).
    #[schema(min_length = 1, pattern = r"[\s\S]*\S[\s\S]*")]
    pub prompt: String,
    /// Model.
    pub model: Option<ModelDoc>,
    /// e.g. `16:9`.
    pub aspect_ratio: Option<AspectRatio>,
}

/// A batch as a JSON array of job lines (JSONL as `application/x-ndjson` too, for
/// millions of lines).
#[derive(Debug)]
pub struct BatchBody;

impl utoipa::PartialSchema for BatchBody {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ArrayBuilder::new()
            .items(utoipa::openapi::Ref::from_schema_name("JobLineDoc"))
            .min_items(Some(1))
            .into()
    }
}

impl ToSchema for BatchBody {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        use utoipa::PartialSchema as _;
        schemas.push(("JobLineDoc".into(), JobLineDoc::schema()));
    }
}

/// A side of an image.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// Top.
    Top,
    /// Bottom.
    Bottom,
    /// Left.
    Left,
    /// Right.
    Right,
}

/// Aspect ratios every current Gemini image model takes.
#[derive(Debug, Deserialize, ToSchema)]
pub enum AspectRatio {
    /// Square.
    #[serde(rename = "1:1")]
    Square,
    /// Landscape.
    #[serde(rename = "16:9")]
    Wide,
    /// Portrait.
    #[serde(rename = "9:16")]
    Tall,
    /// 4:3.
    #[serde(rename = "4:3")]
    Photo,
}

/// `POST /edit-image` as JSON.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EditJson {
    /// The edit (at most 2,000 characters).
    #[schema(min_length = 1, max_length = 2000, pattern = r"[\s\S]*\S[\s\S]*")]
    pub prompt: String,
    /// The image: base64 (or a `data:` URL or a store URL).
    #[schema(format = Byte)]
    pub image: String,
    /// Keep the main subject intact.
    pub preserve_subject: Option<bool>,
    /// Editing intensity.
    #[schema(minimum = 0.1, maximum = 1.0)]
    pub edit_strength: Option<f64>,
}

/// `POST /edit-image` as a multipart form.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EditForm {
    /// The image file.
    #[schema(value_type = String, format = Binary, content_media_type = "image/png", min_length = 1)]
    pub image: Vec<u8>,
    /// The edit.
    #[schema(min_length = 1, max_length = 2000, pattern = r"[\s\S]*\S[\s\S]*")]
    pub prompt: String,
    /// Keep the main subject intact.
    #[schema(nullable = false)]
    pub preserve_subject: Option<bool>,
    /// Editing intensity.
    #[schema(minimum = 0.1, maximum = 1.0, nullable = false)]
    pub edit_strength: Option<f64>,
}

/// `POST /compose-images` (multipart).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ComposeForm {
    /// Two or more image files.
    #[schema(value_type = Vec<String>, format = Binary, content_media_type = "image/png", min_items = 2, max_items = 14)]
    pub images: Vec<Vec<u8>>,
    /// How to combine them.
    #[schema(min_length = 1, max_length = 2000, pattern = r"[\s\S]*\S[\s\S]*")]
    pub prompt: String,
    /// Blending method.
    #[schema(nullable = false)]
    pub composition_style: Option<String>,
}

/// `POST /advanced/inpaint` (multipart).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InpaintForm {
    /// The image file.
    #[schema(value_type = String, format = Binary, content_media_type = "image/png", min_length = 1)]
    pub image: Vec<u8>,
    /// What to put there.
    #[schema(min_length = 1, max_length = 2000, pattern = r"[\s\S]*\S[\s\S]*")]
    pub prompt: String,
    /// Which region.
    #[schema(nullable = false)]
    pub region_description: Option<String>,
    /// A mask file, white where to change.
    #[schema(value_type = Option<String>, format = Binary, content_media_type = "image/png", min_length = 1, nullable = false)]
    pub mask: Option<Vec<u8>>,
}

/// `POST /advanced/outpaint` (multipart).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OutpaintForm {
    /// The image file.
    #[schema(value_type = String, format = Binary, content_media_type = "image/png", min_length = 1)]
    pub image: Vec<u8>,
    /// What the new areas show.
    #[schema(min_length = 1, max_length = 2000, pattern = r"[\s\S]*\S[\s\S]*")]
    pub prompt: String,
    /// Sides to grow (repeated).
    #[schema(nullable = false)]
    pub direction: Option<Vec<Side>>,
    /// How much to grow each named side, relative to the image.
    #[schema(minimum = 0.05, maximum = 2.0, nullable = false)]
    pub extension_ratio: Option<f64>,
}

/// `POST /advanced/style-transfer` (multipart).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StyleForm {
    /// The image file.
    #[schema(value_type = String, format = Binary, content_media_type = "image/png", min_length = 1)]
    pub image: Vec<u8>,
    /// e.g. `van_gogh`.
    #[schema(min_length = 1, pattern = r"[\s\S]*\S[\s\S]*")]
    pub style: String,
    /// How strongly to apply the style.
    #[schema(minimum = 0.0, maximum = 1.0, nullable = false)]
    pub style_strength: Option<f64>,
    /// Keep the content.
    #[schema(nullable = false)]
    pub preserve_content: Option<bool>,
}

/// A finished request: the guide's answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct GuideAnswerDoc {
    /// The request's id.
    pub request_id: String,
    /// The job's id (`GET /v1/jobs/{id}`).
    pub job_id: String,
    /// `succeeded`.
    pub status: String,
    /// The model that ran.
    pub model: String,
    /// The retired model the request named, when it was migrated.
    pub model_requested: Option<String>,
    /// What the caller should know (a migrated model).
    pub warnings: Vec<String>,
    /// The images, base64.
    pub images: Vec<String>,
    /// Their MIME types.
    pub mime_types: Vec<String>,
    /// The model's text.
    pub text: String,
    /// Where they are stored (signed where the store signs).
    pub image_urls: Vec<String>,
    /// The chat session the answer belongs to (`/chat/{id}/message`).
    #[schema(nullable = false)]
    pub session_id: Option<String>,
    /// Its turn in the session, from 1.
    #[schema(nullable = false)]
    pub turn: Option<u64>,
}

/// 202: queued (or still running); poll `status_url`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AcceptedDoc {
    /// The request's id.
    pub request_id: String,
    /// The job's id.
    pub job_id: String,
    /// `queued`.
    pub status: String,
    /// The model it runs on.
    pub model: String,
    /// The retired model the request named, when it was migrated.
    pub model_requested: Option<String>,
    /// What the caller should know.
    pub warnings: Vec<String>,
    /// `/v1/jobs/{id}`.
    pub status_url: String,
    /// The chat session the job answers (`/chat/{id}/message`).
    #[schema(nullable = false)]
    pub session_id: Option<String>,
    /// Its turn in the session, from 1.
    #[schema(nullable = false)]
    pub turn: Option<u64>,
}

/// One Server-Sent Event of `GET /v1/batches/{id}/events`.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchEventDoc {
    /// `progress`, or `completed` (the last).
    #[schema(pattern = "^(progress|completed)$")]
    pub event: String,
    /// Jobs done so far.
    pub id: String,
    /// JSON: `{batch_id, total, done, counts, progress, eta_s, completed, manifest_url}`.
    pub data: String,
}

/// `POST /story/generate` (the guide's fields, and a story line's).
#[derive(Debug, Deserialize, ToSchema)]
pub struct StoryRequestDoc {
    /// What the sequence shows (at most 2,000 characters).
    #[schema(min_length = 1, max_length = 2000, pattern = r"[\s\S]*\S[\s\S]*")]
    pub description: String,
    /// Frames, 1 to 24 (default 4).
    #[schema(minimum = 1, maximum = 24, nullable = false)]
    pub num_images: Option<u32>,
    /// `recipe`, `tutorial`, `story`, …
    #[schema(nullable = false)]
    pub content_type: Option<String>,
    /// The look every frame shares.
    #[schema(nullable = false)]
    pub style: Option<String>,
    /// `previous` (default), `anchor` or `none`.
    #[schema(pattern = "^(previous|anchor|none)$", nullable = false)]
    pub chain: Option<String>,
    /// Answer 202 at once and poll `status_url`.
    #[schema(nullable = false)]
    pub r#async: Option<bool>,
}

/// A finished story.
#[derive(Debug, Serialize, ToSchema)]
pub struct StoryAnswerDoc {
    /// The request's id.
    pub request_id: String,
    /// Its batch (`GET /v1/batches/{id}`).
    pub batch_id: String,
    /// `story-1`: its outputs are under `{project}/{batch}/stories/story-1/`.
    pub story_id: String,
    /// `completed`, `partial` or `failed`.
    pub status: String,
    /// In words, with the reason when not completed.
    pub summary: String,
    /// The model of the frames.
    pub model: String,
    /// What the caller should know.
    pub warnings: Vec<String>,
    /// Every frame in order: `index`, `job_id`, `status`, `prompt`, `error`, `image_url`.
    #[schema(value_type = Vec<Object>)]
    pub frames: Vec<serde_json::Value>,
    /// The succeeded frames' images in order, base64.
    pub images: Vec<String>,
    /// Their MIME types.
    pub mime_types: Vec<String>,
    /// The contact sheet (the frames in a numbered grid).
    pub contact_sheet_url: Option<String>,
}

/// 202: a story queued (or still running).
#[derive(Debug, Serialize, ToSchema)]
pub struct StoryAcceptedDoc {
    /// The request's id.
    pub request_id: String,
    /// Its batch.
    pub batch_id: String,
    /// `story-1`.
    pub story_id: String,
    /// `queued`.
    pub status: String,
    /// The model of the frames.
    pub model: String,
    /// What the caller should know.
    pub warnings: Vec<String>,
    /// `/v1/batches/{id}`.
    pub status_url: String,
    /// The assembly job (`GET /v1/jobs/{id}`): terminal when the story is.
    pub assembly_url: String,
}

/// `POST /chat/create`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatCreateDoc {
    /// The model of every turn (the project's default when absent).
    pub model: Option<String>,
    /// The system instruction of every turn.
    pub system_prompt: Option<String>,
}

/// A story enqueued by `POST /v1/stories`.
#[derive(Debug, Serialize, ToSchema)]
pub struct StoryCreatedDoc {
    /// The request's id.
    pub request_id: String,
    /// `<batch>.story-1`: `GET /v1/stories/{story_id}`.
    pub story_id: String,
    /// Its batch (`/v1/batches/{batch_id}`).
    pub batch_id: String,
    /// `queued`.
    pub status: String,
    /// The frames' model.
    pub model: String,
    /// What the caller should know (a migrated model).
    pub warnings: Vec<String>,
    /// `/v1/stories/{story_id}`.
    pub status_url: String,
}

/// A chat session and its turns (`/v1/sessions`).
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionViewDoc {
    /// `ses_…`.
    pub session_id: String,
    /// The model every turn runs on.
    pub model: String,
    /// The retired model the request named, when it was migrated.
    pub model_requested: Option<String>,
    /// The system instruction.
    pub system_prompt: Option<String>,
    /// When it was created (ms since epoch).
    pub created_ms: u64,
    /// Its turns, oldest first.
    pub turns: Vec<SessionTurnDoc>,
    /// `/v1/sessions/{session_id}/messages`.
    pub messages_url: String,
    /// What the caller should know (a migrated model; on create only).
    pub warnings: Option<Vec<String>>,
}

/// One turn of a session.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionTurnDoc {
    /// Its number, from 1.
    pub turn: u64,
    /// The job answering it (`/v1/jobs/{job_id}`).
    pub job_id: String,
    /// `queued` (waiting for the turn before, or for capacity), `running`, `succeeded`,
    /// `failed`, `blocked`, `cancelled`; `expired` once its job's record is gone and
    /// it kept no answer.
    pub status: String,
    /// Why it did not succeed.
    pub error: Option<String>,
    /// What the user said.
    pub message: String,
    /// The image the user sent, by URL.
    pub image: Option<String>,
    /// When it was sent (ms since epoch).
    pub sent_ms: u64,
    /// The model's text.
    pub text: Vec<String>,
    /// The model's images.
    pub images: Vec<SessionImageDoc>,
}

/// An image of a session's answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionImageDoc {
    /// Its stored copy.
    pub url: String,
    /// Its MIME type.
    pub mime_type: String,
    /// A time-limited URL, where the store signs them.
    pub signed_url: Option<String>,
}

/// A new chat session.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionDoc {
    /// `ses_…`: `POST /chat/{session_id}/message`.
    pub session_id: String,
    /// The model every turn runs on.
    pub model: String,
    /// The retired model the request named, when it was migrated.
    pub model_requested: Option<String>,
    /// What the caller should know (a migrated model).
    pub warnings: Vec<String>,
    /// The system instruction.
    pub system_prompt: Option<String>,
    /// `/chat/{session_id}/message`.
    pub messages_url: String,
}

/// `POST /chat/{id}/message` as JSON.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ChatMessageDoc {
    /// What the user says (at most 2,000 characters).
    #[schema(min_length = 1, max_length = 2000, pattern = r"[\s\S]*\S[\s\S]*")]
    pub message: String,
    /// An image sent with it: base64, a `data:` URL or a URL.
    #[schema(format = Byte, nullable = false)]
    pub image: Option<String>,
    /// Answer 202 at once and poll `status_url`.
    #[schema(nullable = false)]
    pub r#async: Option<bool>,
    /// Where to deliver the signed `job.*` webhook.
    #[schema(nullable = false)]
    pub webhook_url: Option<String>,
}

/// `POST /chat/{id}/message` as a multipart form.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatMessageForm {
    /// What the user says.
    #[schema(min_length = 1, max_length = 2000, pattern = r"[\s\S]*\S[\s\S]*")]
    pub message: String,
    /// An image file sent with it.
    #[schema(value_type = Option<String>, format = Binary, content_media_type = "image/png", min_length = 1, nullable = false)]
    pub image: Option<Vec<u8>>,
}

/// A created batch.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchCreatedDoc {
    /// Its id.
    pub batch_id: String,
    /// Jobs in it.
    pub total: u64,
    /// Jobs this request enqueued.
    pub enqueued: u64,
    /// True when the `Idempotency-Key` named an existing batch.
    pub existing: bool,
    /// Invalid lines skipped (`?skip_invalid=true`).
    pub invalid: u64,
    /// What the caller should know.
    pub warnings: Vec<String>,
    /// `/v1/batches/{id}`.
    pub status_url: String,
}

/// A page of a batch's job records.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResultsPageDoc {
    /// The batch.
    pub batch_id: String,
    /// Job records in order.
    #[schema(value_type = Vec<Object>)]
    pub jobs: Vec<serde_json::Value>,
    /// The next page's `cursor`, when there is one.
    pub next_cursor: Option<u64>,
}

/// What a cancel did.
#[derive(Debug, Serialize, ToSchema)]
pub struct CancelDoc {
    /// Queued jobs cancelled at once.
    pub cancelled: u64,
    /// Running jobs told to stop.
    pub flagged: u64,
    /// Jobs already finished.
    pub already_finished: u64,
}

/// Declares an enum of error answers (the guide's envelope), one variant per status, for
/// a route's `responses(...)`.
macro_rules! error_answers {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $status:literal, $text:literal;)+ }) => {
        $(#[$doc])*
        #[derive(utoipa::IntoResponses)]
        #[allow(dead_code)]
        pub enum $name {
            $(
                #[doc = $text]
                #[response(status = $status, description = $text)]
                $variant(ErrorBody),
            )+
        }
    };
}

error_answers!(
    /// The error answers of lookup routes.
    LookupErrors {
        Invalid = 400, "Invalid request: `details.field` names the field";
        Unauthorized = 401, "Missing or unknown token";
        NotFound = 404, "Not found (or another project's)";
        RateLimited = 429, "Over the token's rate (`Retry-After`)";
        ServerError = 500, "Internal error, or the job failed (its error)";
    }
);

error_answers!(
    /// The error answers of submit routes.
    SubmitErrors {
        Invalid = 400, "Invalid request: `details.field` names the field";
        Unauthorized = 401, "Missing or unknown token";
        RateLimited = 429, "Over the token's rate (`Retry-After`)";
        ServerError = 500, "Internal error, or the job failed (its error)";
    }
);

error_answers!(
    /// The error answers of sync routes.
    SyncErrors {
        Invalid = 400, "Invalid request: `details.field` names the field";
        Unauthorized = 401, "Missing or unknown token";
        Conflict = 409, "Conflict";
        TooLarge = 413, "A file or the body over its limit";
        Blocked = 422, "The model refused on policy grounds";
        RateLimited = 429, "Over the token's rate (`Retry-After`)";
        ServerError = 500, "Internal error, or the job failed (its error)";
    }
);

error_answers!(
    /// The error answers of a chat message.
    ChatErrors {
        Invalid = 400, "Invalid request: `details.field` names the field";
        Unauthorized = 401, "Missing or unknown token";
        NotFound = 404, "No such session (or another project's)";
        TooLarge = 413, "A file or the body over its limit";
        Blocked = 422, "The model refused on policy grounds";
        RateLimited = 429, "Over the token's rate (`Retry-After`)";
        ServerError = 500, "Internal error, or the job failed (its error)";
    }
);

error_answers!(
    /// The error answers of upload routes.
    UploadErrors {
        Invalid = 400, "Invalid request: `details.field` names the field";
        Unauthorized = 401, "Missing or unknown token";
        Conflict = 409, "Conflict";
        TooLarge = 413, "A file or the body over its limit";
        RateLimited = 429, "Over the token's rate (`Retry-After`)";
        ServerError = 500, "Internal error, or the job failed (its error)";
    }
);

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(title = "imagegen", description = "Batch and interactive image jobs on Google's image models: the Gemini image guide's endpoints and the /v1 resources."),
    paths(
        super::guide::generate,
        super::guide::edit,
        super::guide::compose,
        super::advanced::inpaint,
        super::advanced::outpaint,
        super::advanced::style_transfer,
        super::chat::create,
        super::chat::message,
        super::chat::create_v1,
        super::chat::get,
        super::chat::delete,
        super::chat::message_v1,
        super::story::generate,
        super::story::create_v1,
        super::story::get_v1,
        super::jobs::create,
        super::jobs::get,
        super::jobs::cancel,
        super::jobs::image,
        super::jobs::linked_image,
        super::batches::create,
        super::batches::get,
        super::batches::results,
        super::batches::cancel,
        super::batches::events,
    ),
    modifiers(&Bearer),
    security(("bearer" = [])),
)]
pub struct ApiDoc;

/// `GET /openapi.json`.
pub async fn document() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ApiDoc::openapi())
}
