//! The guide's chat mode: `POST /chat/create` opens a session (its model and system
//! prompt), `POST /chat/{id}/message` sends one turn. A turn is a `chat` job whose
//! history is the session's earlier turns: each user message (its image by the URL of
//! its stored copy) and the model's answer as its job recorded it, `thoughtSignature`s
//! kept and images by reference, which the worker reads back inline. So no image bytes
//! live in the queue and any API process can serve any turn.
//!
//! Turns are strictly ordered: a message sent while the previous turn is still running
//! answers 409 (send it once that turn has answered), and of two messages sent at once
//! one wins, the other answers 409. A turn that failed, was blocked or cancelled is left
//! out of the history (it never happened, as far as the model knows).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::error::ApiError;
use super::form::Form;
use super::{ApiState, Caller, guide, jobs};
use crate::job::{Content, ImageSource, JobSpec, JobStatus, Part};
use crate::queue::{SessionRecord, SessionTurn};

/// The fields `/chat/create` takes.
const CREATE_FIELDS: [&str; 2] = ["model", "system_prompt"];

/// `POST /chat/create`: `{model?, system_prompt?}` → `{session_id}`.
#[utoipa::path(
    post,
    path = "/chat/create",
    request_body(content = super::openapi::ChatCreateDoc, content_type = "application/json"),
    responses(
        (status = 200, description = "The new session", body = super::openapi::SessionDoc),
        super::openapi::SubmitErrors
    )
)]
pub(super) async fn create(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    body: Bytes,
) -> Result<Response, ApiError> {
    let fields = object(&body)?;
    if let Some(extra) = fields.keys().find(|k| !CREATE_FIELDS.contains(&k.as_str())) {
        return Err(ApiError::field(
            extra,
            format!("unknown field `{extra}`: a session takes `model` and `system_prompt`"),
        ));
    }
    let model = match fields.get("model") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(m)) => m.clone(),
        Some(v) => return Err(ApiError::field("model", format!("must be text, got {v}"))),
    };
    let system_prompt = match fields.get("system_prompt") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(v) => {
            return Err(ApiError::field(
                "system_prompt",
                format!("must be text, got {v}"),
            ));
        }
    };
    // The session's model is checked as its turns will be: a chat job on it.
    let probe = JobSpec {
        op: crate::job::Operation::Chat,
        model,
        prompt: Some("hello".into()),
        system_instruction: system_prompt.clone(),
        ..JobSpec::default()
    };
    let checked = jobs::check(&state, &caller, probe).await.map_err(|e| {
        // The operation is the session's: a model that cannot chat is the model's fault.
        e.rename_field("system_instruction", "system_prompt")
            .rename_field("op", "model")
    })?;
    let session = SessionRecord {
        id: format!("ses_{}", uuid::Uuid::now_v7().simple()),
        model: checked.spec.model.clone(),
        model_requested: checked.spec.model_requested.clone(),
        system_prompt,
        created_ms: crate::queue::now_ms(),
        turns: Vec::new(),
    };
    state
        .queue
        .create_session(&caller.project, &session)
        .await
        .map_err(ApiError::internal)?;
    Ok(axum::Json(json!({
        "session_id": session.id,
        "model": session.model,
        "model_requested": session.model_requested,
        "warnings": checked.warnings,
        "system_prompt": session.system_prompt,
        "messages_url": format!("/chat/{}/message", session.id),
    }))
    .into_response())
}

/// `POST /chat/{id}/message`: `{message, image?}` (JSON, the image as base64, a `data:`
/// URL or a URL; or multipart with an `image` file) plus job fields (`aspect_ratio`,
/// `async`, `webhook_url`, …): the next turn, answered as `/generate-image` answers.
#[utoipa::path(
    post,
    path = "/chat/{id}/message",
    params(("id" = String, Path, description = "Session id")),
    request_body(content(
        (super::openapi::ChatMessageDoc = "application/json"),
        (super::openapi::ChatMessageForm = "multipart/form-data")
    )),
    responses(
        (status = 200, description = "The model's answer, images inline as base64", body = super::openapi::GuideAnswerDoc),
        (status = 202, description = "Queued or still running: poll `status_url`", body = super::openapi::AcceptedDoc),
        super::openapi::ChatErrors
    )
)]
pub(super) async fn message(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let mut form = Form::read(req, state.max_file_bytes).await?;
    let session = state
        .queue
        .session(&caller.project, &id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(&format!("session {id}")))?;
    let message = guide::text_field(&form.fields, "message")?;
    form.take("message");
    let image = guide::images(&mut form, "image", false)?;
    for owned in ["model", "history", "system_instruction", "images", "prompt"] {
        if form.fields.contains_key(owned) {
            return Err(ApiError::field(
                owned,
                format!("`{owned}` is the session's: a message takes `message` and `image`"),
            ));
        }
    }
    let history = history(&state, &caller, &session).await?;
    form.fields.insert("model".into(), json!(session.model));
    form.fields.insert("history".into(), json!(history));
    if let Some(sys) = &session.system_prompt {
        form.fields.insert("system_instruction".into(), json!(sys));
    }
    if !image.is_empty() {
        form.fields.insert("images".into(), Value::Array(image));
    }
    let (spec, asynchronous) = guide::job_of(form, "chat", message.clone())?;
    let checked = jobs::check(&state, &caller, spec).await.map_err(|e| {
        e.rename_field("images[0]", "image")
            .rename_field("images", "image")
            .rename_field("prompt", "message")
    })?;
    let (image, image_mime_type) = turn_image(&state, &caller, &checked.spec);
    let mut enqueued = jobs::enqueue_checked(&state, &caller, checked).await?;
    let turn = SessionTurn {
        job_id: enqueued.job_id.clone(),
        message,
        image,
        image_mime_type,
    };
    let seen = session.turns.len();
    let appended = state
        .queue
        .append_turn(&caller.project, &id, seen, &turn)
        .await
        .map_err(ApiError::internal)?;
    if !appended {
        // Another message of the session came first: this one never runs.
        if let Err(e) = state.queue.cancel(&caller.project, &turn.job_id).await {
            tracing::warn!(job.id = %turn.job_id, error = %e, "cancelling a chat turn that lost its place");
        }
        return Err(ApiError::conflict(format!(
            "another message of session {id} was sent at the same time: send this one once it has answered"
        )));
    }
    enqueued.session = Some((id, seen + 1));
    jobs::respond(&state, &caller, &enqueued, asynchronous).await
}

/// The body as a JSON object; nulls are absent fields.
fn object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let value: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::invalid(format!("the body is not JSON: {e}")))?
    };
    let Value::Object(mut map) = value else {
        return Err(ApiError::invalid("the body must be a JSON object"));
    };
    map.retain(|_, v| !v.is_null());
    Ok(map)
}

/// The user's image of a checked turn, by URL: its stored copy, or the URL it named.
fn turn_image(
    state: &ApiState,
    caller: &Caller,
    spec: &JobSpec,
) -> (Option<String>, Option<String>) {
    let Some(img) = spec.images.first() else {
        return (None, None);
    };
    let url = match &img.source {
        ImageSource::Stored(key) => Some(state.projects[&caller.project].store.url_of_key(key)),
        ImageSource::Url(u) => Some(u.clone()),
        ImageSource::Inline(_) | ImageSource::Path(_) | ImageSource::Output { .. } => None,
    };
    (url, img.mime_type.clone())
}

/// The conversation so far: every answered turn's message and answer. A turn still
/// queued or running is a conflict: turns run one after another.
async fn history(
    state: &ApiState,
    caller: &Caller,
    session: &SessionRecord,
) -> Result<Vec<Content>, ApiError> {
    let mut history = Vec::new();
    for (n, turn) in session.turns.iter().enumerate() {
        let record = state
            .queue
            .job(&caller.project, &turn.job_id)
            .await
            .map_err(ApiError::internal)?;
        let Some(record) = record else {
            // Past its retention: the session ages out with its turns.
            continue;
        };
        if !record.status.is_terminal() {
            return Err(ApiError::conflict(format!(
                "turn {} of session {} ({}) is still {}: send the next message once it has answered",
                n + 1,
                session.id,
                turn.job_id,
                record.status.as_str()
            )));
        }
        if record.status != JobStatus::Succeeded {
            continue;
        }
        let mut user = vec![Part::text(&turn.message)];
        if let Some(url) = &turn.image {
            user.push(Part::file(
                turn.image_mime_type.clone().unwrap_or_default(),
                url,
            ));
        }
        history.push(Content {
            role: Some("user".into()),
            parts: user,
        });
        let mut result = record.result.unwrap_or_default();
        let answer = result.model_turn.take();
        history.push(answer.unwrap_or_else(|| answer_turn(&result)));
    }
    Ok(history)
}

/// A model turn rebuilt from a result that kept none: its text and images.
fn answer_turn(result: &crate::job::result::CompactResult) -> Content {
    let text = result.text.iter().map(Part::text);
    let images = result
        .images
        .iter()
        .map(|i| Part::file(i.mime_type.clone(), i.url.clone()));
    Content {
        role: Some("model".into()),
        parts: text.chain(images).collect(),
    }
}
