//! The guide's "Sequential Story Generation": `POST /story/generate {description,
//! num_images, content_type, style}` (plus `chain`, `model`, `planner_model`,
//! `frame_prompts`, job fields, `async`, `webhook_url`) becomes a story (`job::story`):
//! a batch whose plan, frames and assembly wait for each other in the queue, enqueued
//! ahead of the project's backlog. Sync by default: the answer has every frame in order
//! (base64, as the guide's readers decode them), the story's status and its contact
//! sheet; `async` answers 202 with the batch to poll.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Value, json};

use super::error::ApiError;
use super::form::Form;
use super::{ApiState, Caller, guide, jobs};
use crate::job::{JobSpec, JobStatus, batch_job_id};
use crate::queue::{NewBatch, NewJob};
use crate::stories::StoryId;

/// `POST /story/generate`.
#[utoipa::path(
    post,
    path = "/story/generate",
    request_body(content = super::openapi::StoryRequestDoc, content_type = "application/json"),
    responses(
        (status = 200, description = "The finished story: its frames in order, base64", body = super::openapi::StoryAnswerDoc),
        (status = 202, description = "Queued or still running: poll `status_url`", body = super::openapi::StoryAcceptedDoc),
        super::openapi::SyncErrors
    )
)]
pub(super) async fn generate(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    req: Request,
) -> Result<Response, ApiError> {
    let mut form = Form::read(req, state.max_file_bytes).await?;
    let frames = match form.take("num_images") {
        None | Some(Value::Null) => 4,
        Some(v) => v.as_u64().ok_or_else(|| {
            ApiError::field("num_images", format!("must be a whole number, got {v}"))
        })?,
    };
    if form.fields.contains_key("description") {
        guide::text_field(&form.fields, "description")?;
    }
    form.fields.insert("frames".into(), json!(frames));
    if let Some(Value::String(c)) = form.fields.get_mut("chain") {
        *c = c.to_ascii_lowercase();
    }
    let description = form
        .fields
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let (spec, asynchronous) = guide::job_of(form, "story", description)
        .map_err(|e| e.rename_field("frames", "num_images"))?;
    // A story line's own prompt is its description (the frames get theirs).
    let spec = JobSpec {
        prompt: None,
        ..spec
    };
    let checked = jobs::check(&state, &caller, spec)
        .await
        .map_err(|e| e.rename_field("frames", "num_images"))?;
    let spec = checked.spec;
    let (batch, total) = enqueue(&state, &caller, &spec).await?;
    let assembly = batch_job_id(&batch, total - 1);
    let accepted = || {
        let body = json!({
            "request_id": caller.request_id,
            "batch_id": batch,
            "story_id": "story-1",
            "story": StoryId { batch: batch.clone(), line: 1 }.text(),
            "status": "queued",
            "model": spec.model,
            "warnings": checked.warnings,
            "status_url": format!("/v1/batches/{batch}"),
            "assembly_url": format!("/v1/jobs/{assembly}"),
        });
        (StatusCode::ACCEPTED, axum::Json(body)).into_response()
    };
    if asynchronous {
        return Ok(accepted());
    }
    let record = jobs::wait(&state, &caller.project, &assembly, state.sync_timeout).await?;
    if !record.as_ref().is_some_and(|r| r.status.is_terminal()) {
        return Ok(accepted());
    }
    answer(&state, &caller, &batch, total, &spec, checked.warnings).await
}

/// Enqueues a checked story line as a batch of its own (line 1), ahead of the project's
/// backlog: its batch and how many jobs it made.
async fn enqueue(
    state: &ApiState,
    caller: &Caller,
    spec: &JobSpec,
) -> Result<(String, u64), ApiError> {
    let batch = state
        .queue
        .create_batch(&NewBatch {
            project: caller.project.clone(),
            source: format!("api {} story", caller.request_id),
            // The story's webhook is its `story.completed` (the assembly's).
            ..NewBatch::default()
        })
        .await
        .map_err(ApiError::internal)?;
    let expanded = crate::submit::story_jobs(spec, 1, 0);
    let total = expanded.len() as u64;
    let mut new_jobs = Vec::with_capacity(expanded.len());
    for (seq, (mut s, deps)) in expanded.into_iter().enumerate() {
        s.request_id = Some(caller.request_id.clone());
        new_jobs.push(NewJob {
            seq: seq as u64,
            // The story's line: `story-1` of its batch.
            line: Some(1),
            spec: serde_json::to_string(&s).map_err(ApiError::internal)?,
            lane: crate::submit::lane_of(&s),
            op: s.op.to_string(),
            webhook: s.webhook_url.clone(),
            hash: None,
            // A request waits for it: ahead of the project's backlog.
            interactive: true,
            deps,
        });
    }
    state
        .queue
        .enqueue(&caller.project, &batch.id, new_jobs)
        .await
        .map_err(ApiError::internal)?;
    state
        .queue
        .seal(&caller.project, &batch.id, total)
        .await
        .map_err(ApiError::internal)?;
    Ok((batch.id, total))
}

/// `POST /v1/stories`: a story line as a job file has it (`description`, `frames`,
/// `chain`, `style`, `content_type`, `model`, `planner_model`, `frame_prompts`,
/// `webhook_url`, job fields; `op` may be left out) → 202 with the story's id.
#[utoipa::path(
    post,
    path = "/v1/stories",
    request_body(content = Object, content_type = "application/json"),
    responses(
        (status = 202, description = "Enqueued: follow `status_url`", body = super::openapi::StoryCreatedDoc),
        super::openapi::SubmitErrors
    )
)]
pub(super) async fn create_v1(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let mut value: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid(format!("the body is not JSON: {e}")))?;
    let Some(o) = value.as_object_mut() else {
        return Err(ApiError::invalid("the body must be a JSON object"));
    };
    // A null is an absent field.
    o.retain(|_, v| !v.is_null());
    match o.get("op") {
        None => {
            o.insert("op".into(), json!("story"));
        }
        Some(op) if op == "story" => {}
        Some(op) => {
            return Err(ApiError::field(
                "op",
                format!("a story's op is `story`, got {op}"),
            ));
        }
    }
    let spec = JobSpec::from_user_json(&value.to_string()).map_err(ApiError::from_message)?;
    let checked = jobs::check(&state, &caller, spec).await?;
    let (batch, _) = enqueue(&state, &caller, &checked.spec).await?;
    let id = StoryId {
        batch: batch.clone(),
        line: 1,
    }
    .text();
    let body = json!({
        "request_id": caller.request_id,
        "story_id": id,
        "batch_id": batch,
        "status": "queued",
        "model": checked.spec.model,
        "warnings": checked.warnings,
        "status_url": format!("/v1/stories/{id}"),
    });
    Ok((StatusCode::ACCEPTED, axum::Json(body)).into_response())
}

/// `GET /v1/stories/{id}`: the story's state, its frames in order (their state, prompt
/// and image), its contact sheet and `story.json` once assembled; images with signed
/// URLs where the store signs.
#[utoipa::path(
    get,
    path = "/v1/stories/{id}",
    params(("id" = String, Path, description = "Story id (`<batch>.story-<line>`)")),
    responses(
        (status = 200, description = "The story", body = Object),
        super::openapi::LookupErrors
    )
)]
pub(super) async fn get_v1(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Response, ApiError> {
    let missing = || ApiError::not_found(&format!("story {id}"));
    let story = StoryId::parse(&id).ok_or_else(missing)?;
    let found = crate::stories::read(state.queue.as_ref(), &caller.project, &story)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(missing)?;
    let store = &state.projects[&caller.project].store;
    let mut body = serde_json::to_value(&found).map_err(ApiError::internal)?;
    let mut sheet = body.get("contact_sheet").cloned();
    let mut images: Vec<&mut Value> = Vec::new();
    if let Some(frames) = body.get_mut("frames").and_then(Value::as_array_mut) {
        images.extend(frames.iter_mut().filter_map(|f| f.get_mut("image")));
    }
    images.extend(sheet.iter_mut());
    for img in images {
        let url = img["url"].as_str().unwrap_or_default().to_string();
        if let Some(signed) = store.signed_url(&url, state.signed_url_ttl).await {
            img["signed_url"] = json!(signed);
        }
        if let Some(o) = img.as_object_mut() {
            o.remove("path");
        }
    }
    if let Some(sheet) = sheet {
        body["contact_sheet"] = sheet;
    }
    Ok(axum::Json(body).into_response())
}

/// The finished story: its frames in order (the assembly is the batch's last job).
async fn answer(
    state: &ApiState,
    caller: &Caller,
    batch: &str,
    total: u64,
    spec: &JobSpec,
    warnings: Vec<String>,
) -> Result<Response, ApiError> {
    let records = state
        .queue
        .batch_jobs(&caller.project, batch, 0, total)
        .await
        .map_err(ApiError::internal)?;
    let store = &state.projects[&caller.project].store;
    let assembly = records.last().cloned().flatten();
    let summary = assembly
        .as_ref()
        .and_then(|r| r.result.as_ref())
        .and_then(|r| r.text.first().cloned())
        .unwrap_or_default();
    let sheet = assembly
        .as_ref()
        .and_then(|r| r.result.as_ref())
        .and_then(|r| r.images.first().cloned());
    let mut frames = Vec::new();
    let mut images = Vec::new();
    let mut mime_types = Vec::new();
    // Frames follow the plan (when planned) and precede the assembly.
    let first = u64::from(spec.frame_prompts.is_empty());
    for k in 1..=spec.frames.unwrap_or(1) {
        let Some(Some(r)) = records.get((first + u64::from(k) - 1) as usize) else {
            continue;
        };
        let image = r.result.as_ref().and_then(|res| res.images.first());
        let mut image_url = None;
        if let (Some(img), JobStatus::Succeeded) = (image, r.status)
            && let Some(key) = store.own_key(&img.url)
        {
            let bytes = store.get(&key).await.map_err(ApiError::internal)?;
            images.push(base64::engine::general_purpose::STANDARD.encode(&bytes));
            mime_types.push(img.mime_type.clone());
            image_url = Some(
                store
                    .signed_url(&img.url, state.signed_url_ttl)
                    .await
                    .unwrap_or_else(|| img.url.clone()),
            );
        }
        frames.push(json!({
            "index": k,
            "job_id": r.id,
            "status": r.status.as_str(),
            "prompt": r.result.as_ref().and_then(|res| res.prompt.clone()),
            "error": r.error,
            "image_url": image_url,
        }));
    }
    let status = if summary.contains(": completed,") {
        "completed"
    } else if summary.contains(": partial,") {
        "partial"
    } else {
        "failed"
    };
    Ok(axum::Json(json!({
        "request_id": caller.request_id,
        "batch_id": batch,
        "story_id": "story-1",
        "status": status,
        "summary": summary,
        "model": spec.model,
        "warnings": warnings,
        "frames": frames,
        "images": images,
        "mime_types": mime_types,
        "contact_sheet_url": sheet.map(|s| s.url),
    }))
    .into_response())
}
