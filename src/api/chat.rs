//! Chat sessions, a server-side resource: `POST /v1/sessions` (and the guide's
//! `/chat/create`) opens one (its model and system prompt), `POST
//! /v1/sessions/{id}/messages` (and `/chat/{id}/message`) sends a turn, `GET
//! /v1/sessions/{id}` shows its turns with their images, `DELETE` ends it.
//!
//! A turn is a `chat` job that waits in the queue for the turn before it (a dependency
//! that runs whatever became of that turn), so a session's turns run strictly in order
//! however fast messages come and whichever API process takes them: a message sent
//! while the previous turn runs waits for it. Its history is read when it runs, by the
//! worker (`worker::inputs`): each earlier user message (its image by the URL of its
//! stored copy) and the model's answer as it was kept with the session, every
//! `thoughtSignature` included and images by reference. So no image bytes live in the
//! queue. A turn that failed, was blocked or cancelled is left out of the history (it
//! never happened, as far as the model knows).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::error::ApiError;
use super::form::Form;
use super::{ApiState, Caller, guide, jobs};
use crate::job::spec::SessionRef;
use crate::job::{ImageSource, JobSpec};
use crate::queue::{Dependency, SessionRecord, SessionTurn};

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
    let (session, warnings) = open(&state, &caller, &body).await?;
    Ok(axum::Json(json!({
        "session_id": session.id,
        "model": session.model,
        "model_requested": session.model_requested,
        "warnings": warnings,
        "system_prompt": session.system_prompt,
        "messages_url": format!("/chat/{}/message", session.id),
    }))
    .into_response())
}

/// `POST /v1/sessions`: `{model?, system_prompt?}` → 201 with the session.
#[utoipa::path(
    post,
    path = "/v1/sessions",
    request_body(content = super::openapi::ChatCreateDoc, content_type = "application/json"),
    responses(
        (status = 201, description = "The new session", body = super::openapi::SessionViewDoc),
        super::openapi::SubmitErrors
    )
)]
pub(super) async fn create_v1(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (session, warnings) = open(&state, &caller, &body).await?;
    let mut view = view(&state, &caller, &session).await?;
    view["warnings"] = json!(warnings);
    let location = format!("/v1/sessions/{}", session.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        axum::Json(view),
    )
        .into_response())
}

/// `GET /v1/sessions/{id}`: the session and its turns, each with its state, its text
/// and its images.
#[utoipa::path(
    get,
    path = "/v1/sessions/{id}",
    params(("id" = String, Path, description = "Session id")),
    responses(
        (status = 200, description = "The session", body = super::openapi::SessionViewDoc),
        super::openapi::LookupErrors
    )
)]
pub(super) async fn get(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let session = find(&state, &caller, &id).await?;
    Ok(axum::Json(view(&state, &caller, &session).await?).into_response())
}

/// `DELETE /v1/sessions/{id}`: ends the session; its turns still queued or running are
/// cancelled (their images stay in the store).
#[utoipa::path(
    delete,
    path = "/v1/sessions/{id}",
    params(("id" = String, Path, description = "Session id")),
    responses(
        (status = 204, description = "Deleted"),
        super::openapi::LookupErrors
    )
)]
pub(super) async fn delete(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let session = find(&state, &caller, &id).await?;
    let queue = &state.queue;
    if !queue
        .delete_session(&caller.project, &id)
        .await
        .map_err(ApiError::internal)?
    {
        return Err(ApiError::not_found(&format!("session {id}")));
    }
    for turn in &session.turns {
        if let Err(e) = queue.cancel(&caller.project, &turn.job_id).await {
            tracing::warn!(job.id = %turn.job_id, error = %e, "cancelling a deleted session's turn");
        }
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A new session from a create request's body, stored; with its model's warnings.
async fn open(
    state: &ApiState,
    caller: &Caller,
    body: &[u8],
) -> Result<(SessionRecord, Vec<String>), ApiError> {
    let fields = object(body)?;
    if let Some(extra) = fields.keys().find(|k| !CREATE_FIELDS.contains(&k.as_str())) {
        return Err(ApiError::field(
            extra,
            format!("unknown field `{extra}`: a session takes `model` and `system_prompt`"),
        ));
    }
    let model = match fields.get("model") {
        None => String::new(),
        Some(Value::String(m)) => m.clone(),
        Some(v) => return Err(ApiError::field("model", format!("must be text, got {v}"))),
    };
    let system_prompt = match fields.get("system_prompt") {
        None => None,
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
    let checked = jobs::check(state, caller, probe).await.map_err(|e| {
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
    Ok((session, checked.warnings))
}

/// The caller's session `id` (another project's answers 404, as a missing one does).
async fn find(state: &ApiState, caller: &Caller, id: &str) -> Result<SessionRecord, ApiError> {
    state
        .queue
        .session(&caller.project, id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(&format!("session {id}")))
}

/// A session as `GET /v1/sessions/{id}` shows it: each turn's state from its job (or,
/// past the job's retention, from the answer the session kept).
async fn view(
    state: &ApiState,
    caller: &Caller,
    session: &SessionRecord,
) -> Result<Value, ApiError> {
    let store = &state.projects[&caller.project].store;
    let mut turns = Vec::with_capacity(session.turns.len());
    for (n, turn) in session.turns.iter().enumerate() {
        let record = state
            .queue
            .job(&caller.project, &turn.job_id)
            .await
            .map_err(ApiError::internal)?;
        let status = match (&record, &turn.answer) {
            (Some(r), _) => r.status.as_str(),
            (None, Some(_)) => "succeeded",
            (None, None) => "expired",
        };
        let answer = turn.answer.clone().or_else(|| {
            record
                .as_ref()
                .and_then(|r| r.result.as_ref())
                .map(|r| r.answer())
        });
        let mut text = Vec::new();
        let mut images = Vec::new();
        for part in answer.iter().flat_map(|a| &a.parts) {
            if let Some(t) = part.text.as_ref().filter(|_| part.thought != Some(true)) {
                text.push(t.clone());
            }
            if let Some(file) = &part.file_data {
                let mut image = json!({"url": file.file_uri, "mime_type": file.mime_type});
                if let Some(signed) = store.signed_url(&file.file_uri, state.signed_url_ttl).await {
                    image["signed_url"] = json!(signed);
                }
                images.push(image);
            }
        }
        turns.push(json!({
            "turn": n + 1,
            "job_id": turn.job_id,
            "status": status,
            "error": record.as_ref().and_then(|r| r.error.clone()),
            "message": turn.message,
            "image": turn.image,
            "sent_ms": turn.at_ms,
            "text": text,
            "images": images,
        }));
    }
    Ok(json!({
        "session_id": session.id,
        "model": session.model,
        "model_requested": session.model_requested,
        "system_prompt": session.system_prompt,
        "created_ms": session.created_ms,
        "turns": turns,
        "messages_url": format!("/v1/sessions/{}/messages", session.id),
    }))
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
    send(state, caller, id, req).await
}

/// `POST /v1/sessions/{id}/messages`: as `/chat/{id}/message`.
#[utoipa::path(
    post,
    path = "/v1/sessions/{id}/messages",
    params(("id" = String, Path, description = "Session id")),
    request_body(content(
        (super::openapi::ChatMessageDoc = "application/json"),
        (super::openapi::ChatMessageForm = "multipart/form-data")
    )),
    responses(
        (status = 200, description = "The model's answer, images inline as base64", body = super::openapi::GuideAnswerDoc),
        (status = 202, description = "Queued, waiting for the turn before, or running: poll `status_url`", body = super::openapi::AcceptedDoc),
        super::openapi::ChatErrors
    )
)]
pub(super) async fn message_v1(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    send(state, caller, id, req).await
}

/// One message: the session's next turn, enqueued after the turn before it.
async fn send(
    state: Arc<ApiState>,
    caller: Caller,
    id: String,
    req: Request,
) -> Result<Response, ApiError> {
    let mut form = Form::read(req, state.max_file_bytes).await?;
    let session = find(&state, &caller, &id).await?;
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
    form.fields.insert("model".into(), json!(session.model));
    if let Some(sys) = &session.system_prompt {
        form.fields.insert("system_instruction".into(), json!(sys));
    }
    if !image.is_empty() {
        form.fields.insert("images".into(), Value::Array(image));
    }
    let (spec, asynchronous) = guide::job_of(form, "chat", message.clone())?;
    let mut checked = jobs::check(&state, &caller, spec).await.map_err(|e| {
        e.rename_field("images[0]", "image")
            .rename_field("images", "image")
            .rename_field("prompt", "message")
    })?;
    let (image, image_mime_type) = turn_image(&state, &caller, &checked.spec);
    // Its place in the session first, then its job, waiting for the turn before.
    let batch = jobs::new_batch(&state, &caller).await?;
    let turn = SessionTurn {
        job_id: crate::job::batch_job_id(&batch, 0),
        message,
        image,
        image_mime_type,
        at_ms: crate::queue::now_ms(),
        answer: None,
    };
    let (index, before) = state
        .queue
        .append_turn(&caller.project, &id, &turn)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(&format!("session {id}")))?;
    checked.spec.session = Some(SessionRef {
        id: id.clone(),
        turn: index,
    });
    let deps = match before {
        Some(before) if still_known(&state, &caller, &before).await? => vec![Dependency {
            seq: 0,
            job: Some(before.job_id),
            name: format!("turn {index} of session {id}"),
            any: true,
        }],
        _ => Vec::new(),
    };
    let mut enqueued = jobs::enqueue_in(&state, &caller, &batch, checked, deps).await?;
    enqueued.session = Some((id, index + 1));
    jobs::respond(&state, &caller, &enqueued, asynchronous).await
}

/// Whether the queue still knows the job of the turn before (it waits for it): its
/// record is past its retention only when that turn was sent long ago (a turn sent a
/// moment ago may not be enqueued yet; its job then finds this one waiting).
async fn still_known(
    state: &ApiState,
    caller: &Caller,
    before: &SessionTurn,
) -> Result<bool, ApiError> {
    const ENQUEUE_WINDOW_MS: u64 = 60_000;
    let record = state
        .queue
        .job(&caller.project, &before.job_id)
        .await
        .map_err(ApiError::internal)?;
    Ok(record.is_some() || crate::queue::now_ms().saturating_sub(before.at_ms) < ENQUEUE_WINDOW_MS)
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
