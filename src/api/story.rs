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
use crate::queue::{Dependency, NewBatch, NewJob};

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
    let expanded = crate::job::story::expand(&spec, 1, 0);
    let total = expanded.len() as u64;
    let mut new_jobs = Vec::with_capacity(expanded.len());
    for (seq, job) in expanded.into_iter().enumerate() {
        let mut s = job.spec;
        s.request_id = Some(caller.request_id.clone());
        let lane = if s.op == crate::job::Operation::Assemble {
            crate::job::story::ASSEMBLY_LANE.to_string()
        } else {
            s.model.clone()
        };
        new_jobs.push(NewJob {
            seq: seq as u64,
            line: None,
            spec: serde_json::to_string(&s).map_err(ApiError::internal)?,
            lane,
            op: s.op.to_string(),
            webhook: s.webhook_url.clone(),
            hash: None,
            // A request waits for it: ahead of the project's backlog.
            interactive: true,
            deps: job
                .deps
                .into_iter()
                .map(|(seq, name, any)| Dependency { seq, name, any })
                .collect(),
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
    let assembly = batch_job_id(&batch.id, total - 1);
    let accepted = || {
        let body = json!({
            "request_id": caller.request_id,
            "batch_id": batch.id,
            "story_id": "story-1",
            "status": "queued",
            "model": spec.model,
            "warnings": checked.warnings,
            "status_url": format!("/v1/batches/{}", batch.id),
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
    answer(&state, &caller, &batch.id, total, &spec, checked.warnings).await
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
