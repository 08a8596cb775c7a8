//! One job through the API: checked like a `submit` line (lifecycle, validation, image
//! URLs), its inline images stored (the queue holds no image bytes), enqueued as a batch
//! of one, then waited for (sync) or pointed to (async). And the `/v1/jobs` resource.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::Serialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::{ApiState, Caller};
use crate::job::validate::{ValidationContext, validate};
use crate::job::{JobSpec, JobStatus};
use crate::queue::{JobRecord, NewBatch, NewJob};

/// Poll intervals while a sync request waits where the queue sends no finish notices:
/// quick at first (most answers take one provider call), then at most every 100 ms
/// (with notices, the poll every 100 ms is only a safety net).
const FIRST_POLL: Duration = Duration::from_millis(2);
const MAX_POLL: Duration = Duration::from_millis(100);

/// A job the API enqueued.
#[derive(Debug, Clone)]
pub(super) struct Enqueued {
    pub job_id: String,
    pub model: String,
    pub model_requested: Option<String>,
    pub warnings: Vec<String>,
    /// The chat session and turn (1-based) it answers.
    pub session: Option<(String, usize)>,
}

/// A validation failure in the guide's shape: the first field in `details.field`, every
/// problem in `details.errors`.
fn invalid(errors: &crate::job::validate::ValidationErrors) -> ApiError {
    let first = errors.0.first();
    let field = first.map_or("", |e| e.field.as_str());
    ApiError::field(field, errors.to_string()).with_details(json!({
        "field": field,
        "errors": errors.0.iter().map(|e| json!({"field": e.field, "message": e.message})).collect::<Vec<_>>(),
    }))
}

/// Refuses a webhook URL the worker could not deliver to (the SSRF guard, resolved
/// here) or could not sign for, naming `field`.
pub(super) async fn check_webhook(
    state: &ApiState,
    project: &str,
    field: &str,
    url: &str,
) -> Result<(), ApiError> {
    state
        .webhook_policy
        .check_resolved(url)
        .await
        .map_err(|e| ApiError::field(field, format!("{field}: {e}")))?;
    if state
        .projects
        .get(project)
        .is_none_or(|p| p.webhooks.is_none())
    {
        return Err(ApiError::field(
            field,
            format!("project `{project}` has no webhook_secret to sign deliveries with"),
        ));
    }
    Ok(())
}

/// A job checked for the caller's project: lifecycle applied, validated, its image
/// URLs checked and its inline images stored.
pub(super) struct Checked {
    pub spec: JobSpec,
    pub warnings: Vec<String>,
}

/// Checks `spec` for the caller's project as `submit` checks a line.
pub(super) async fn check(
    state: &ApiState,
    caller: &Caller,
    mut spec: JobSpec,
) -> Result<Checked, ApiError> {
    let project = state
        .projects
        .get(&caller.project)
        .ok_or_else(|| ApiError::internal(format!("project {} has no runtime", caller.project)))?;
    if spec.model.trim().is_empty() {
        spec.model.clone_from(&project.default_model);
    }
    if spec.tier.is_none() {
        spec.tier = project.tier;
    }
    let warning = state
        .models
        .apply(&mut spec, project.backend)
        .map_err(ApiError::from_message)?;
    let ctx = ValidationContext {
        backend: project.backend,
        check_local_files: false,
    };
    validate(&spec, &ctx).map_err(|e| invalid(&e))?;
    if let Some(url) = &spec.webhook_url {
        check_webhook(state, &caller.project, "webhook_url", url).await?;
    }
    state
        .urls
        .check(&spec)
        .await
        .map_err(ApiError::from_message)?;
    crate::submit::inputs::Uploader::new(project.store.clone())
        .upload_inline(&mut spec)
        .await
        .map_err(|m| ApiError::field("image", m))?;
    Ok(Checked {
        spec,
        warnings: warning.into_iter().collect(),
    })
}

/// Checks `spec` for the caller's project and enqueues it.
pub(super) async fn enqueue(
    state: &ApiState,
    caller: &Caller,
    spec: JobSpec,
) -> Result<Enqueued, ApiError> {
    let checked = check(state, caller, spec).await?;
    enqueue_checked(state, caller, checked).await
}

/// Enqueues a checked job as a batch of one, ahead of its lane's backlog.
pub(super) async fn enqueue_checked(
    state: &ApiState,
    caller: &Caller,
    checked: Checked,
) -> Result<Enqueued, ApiError> {
    let batch = new_batch(state, caller).await?;
    enqueue_in(state, caller, &batch, checked, Vec::new()).await
}

/// A new batch for one request's job (its id: `batch_job_id(batch, 0)`).
pub(super) async fn new_batch(state: &ApiState, caller: &Caller) -> Result<String, ApiError> {
    let batch = state
        .queue
        .create_batch(&NewBatch {
            project: caller.project.clone(),
            source: format!("api {}", caller.request_id),
            ..NewBatch::default()
        })
        .await
        .map_err(ApiError::internal)?;
    Ok(batch.id)
}

/// Enqueues a checked job as the one job of `batch` (from [`new_batch`]), waiting for
/// `deps` (jobs of other batches), ahead of its lane's backlog.
pub(super) async fn enqueue_in(
    state: &ApiState,
    caller: &Caller,
    batch: &str,
    Checked { mut spec, warnings }: Checked,
    deps: Vec<crate::queue::Dependency>,
) -> Result<Enqueued, ApiError> {
    spec.request_id = Some(caller.request_id.clone());
    let json = serde_json::to_string(&spec).map_err(ApiError::internal)?;
    let job = NewJob {
        seq: 0,
        line: None,
        spec: json,
        lane: spec.model.clone(),
        op: spec.op.to_string(),
        webhook: spec.webhook_url.clone(),
        hash: None,
        // A request waiting for its answer goes ahead of its lane's backlog.
        interactive: true,
        deps,
    };
    let queue = &state.queue;
    queue
        .enqueue(&caller.project, batch, vec![job])
        .await
        .map_err(ApiError::internal)?;
    queue
        .seal(&caller.project, batch, 1)
        .await
        .map_err(ApiError::internal)?;
    Ok(Enqueued {
        job_id: crate::job::batch_job_id(batch, 0),
        model: spec.model,
        model_requested: spec.model_requested,
        warnings,
        session: None,
    })
}

/// Waits until the job is terminal or `timeout` passes; the last record seen.
pub(super) async fn wait(
    state: &ApiState,
    project: &str,
    job: &str,
    timeout: Duration,
) -> Result<Option<JobRecord>, ApiError> {
    let deadline = Instant::now() + timeout;
    // Subscribed before the first read: a finish between the two is not missed.
    let mut notices = state.queue.notices(project).await;
    let mut pause = FIRST_POLL;
    loop {
        let record = state
            .queue
            .job(project, job)
            .await
            .map_err(ApiError::internal)?;
        if record.as_ref().is_some_and(|r| r.status.is_terminal()) || Instant::now() >= deadline {
            return Ok(record);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match notices.as_mut() {
            // Woken by the finish notice; the poll stays as a safety net.
            Some(rx) => {
                tokio::select! {
                    () = notice_of(rx, job) => {}
                    () = tokio::time::sleep(MAX_POLL.min(left)) => {}
                }
            }
            None => {
                tokio::time::sleep(pause.min(left)).await;
                pause = (pause * 3 / 2).min(MAX_POLL);
            }
        }
    }
}

/// Returns when `job`'s finish notice arrives (or notices were lost: read again).
async fn notice_of(rx: &mut tokio::sync::broadcast::Receiver<crate::queue::Notice>, job: &str) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        match rx.recv().await {
            Ok(crate::queue::Notice::Finished(id)) if id == job => return,
            Ok(_) => {}
            Err(RecvError::Lagged(_)) => return,
            Err(RecvError::Closed) => std::future::pending::<()>().await,
        }
    }
}

/// The guide's answer to a sync request: the images inline as base64.
#[derive(Debug, Serialize)]
pub(super) struct GuideAnswer {
    request_id: String,
    job_id: String,
    status: &'static str,
    model: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    model_requested: Option<String>,
    warnings: Vec<String>,
    images: Vec<String>,
    mime_types: Vec<String>,
    text: String,
    image_urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    turn: Option<usize>,
}

/// 202: still queued or running (or asked to be async).
pub(super) fn accepted(caller: &Caller, e: &Enqueued, status: JobStatus) -> Response {
    let mut body = json!({
        "request_id": caller.request_id,
        "job_id": e.job_id,
        "status": status.as_str(),
        "model": e.model,
        "model_requested": e.model_requested,
        "warnings": e.warnings,
        "status_url": format!("/v1/jobs/{}", e.job_id),
    });
    if let Some((session, turn)) = &e.session {
        body["session_id"] = json!(session);
        body["turn"] = json!(turn);
    }
    (StatusCode::ACCEPTED, axum::Json(body)).into_response()
}

/// A finished job as the guide's answer, or its error.
pub(super) async fn answer(
    state: &ApiState,
    caller: &Caller,
    e: &Enqueued,
    record: Option<JobRecord>,
) -> Result<Response, ApiError> {
    let Some(record) = record.filter(|r| r.status.is_terminal()) else {
        return Ok(accepted(caller, e, JobStatus::Queued));
    };
    let error = record.error.clone().unwrap_or_default();
    match record.status {
        JobStatus::Succeeded => {}
        JobStatus::Blocked => return Err(ApiError::blocked(error)),
        JobStatus::Cancelled => {
            return Err(ApiError::conflict(format!(
                "the job was cancelled: {error}"
            )));
        }
        _ => return Err(ApiError::job_failed(error)),
    }
    let result = record.result.unwrap_or_default();
    let store = &state.projects[&caller.project].store;
    let mut images = Vec::new();
    let mut urls = Vec::new();
    for img in &result.images {
        let key = store.own_key(&img.url).ok_or_else(|| {
            ApiError::internal(format!("{} is not in the project's store", img.url))
        })?;
        let bytes = store.get(&key).await.map_err(ApiError::internal)?;
        images.push(base64::engine::general_purpose::STANDARD.encode(&bytes));
        urls.push(
            store
                .signed_url(&img.url, state.signed_url_ttl)
                .await
                .unwrap_or_else(|| img.url.clone()),
        );
    }
    let body = GuideAnswer {
        request_id: caller.request_id.clone(),
        job_id: e.job_id.clone(),
        status: "succeeded",
        model: result.model.clone(),
        model_requested: result.model_requested.clone(),
        warnings: e.warnings.clone(),
        mime_types: result.images.iter().map(|i| i.mime_type.clone()).collect(),
        images,
        text: result.text.join("\n"),
        image_urls: urls,
        session_id: e.session.as_ref().map(|s| s.0.clone()),
        turn: e.session.as_ref().map(|s| s.1),
    };
    Ok(axum::Json(body).into_response())
}

/// Sync or async as the request said (`guide::job_of`: `async: true` or a
/// `webhook_url` answers 202 at once).
pub(super) async fn run(
    state: &ApiState,
    caller: &Caller,
    spec: JobSpec,
    asynchronous: bool,
) -> Result<Response, ApiError> {
    let e = enqueue(state, caller, spec).await?;
    respond(state, caller, &e, asynchronous).await
}

/// 202 at once when `asynchronous`, else the answer once the job has finished (202
/// after `sync_timeout`).
pub(super) async fn respond(
    state: &ApiState,
    caller: &Caller,
    e: &Enqueued,
    asynchronous: bool,
) -> Result<Response, ApiError> {
    if asynchronous {
        return Ok(accepted(caller, e, JobStatus::Queued));
    }
    let record = wait(state, &caller.project, &e.job_id, state.sync_timeout).await?;
    answer(state, caller, e, record).await
}

/// `POST /v1/jobs`: a job spec (as a job-file line); 202 with its id.
#[utoipa::path(
    post,
    path = "/v1/jobs",
    request_body(content = super::openapi::JobLineDoc, content_type = "application/json", description = "A job spec, as a line of a job file (docs/job-spec.md)"),
    responses(
        (status = 202, description = "Queued", body = super::openapi::AcceptedDoc),
        super::openapi::SubmitErrors
    )
)]
pub(super) async fn create(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut value: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid(format!("the body is not JSON: {e}")))?;
    if let Some(o) = value.as_object_mut() {
        // A null is an absent field.
        o.retain(|_, v| !v.is_null());
    }
    let spec = JobSpec::from_user_json(&value.to_string()).map_err(ApiError::from_message)?;
    let e = enqueue(&state, &caller, spec).await?;
    Ok(accepted(&caller, &e, JobStatus::Queued))
}

/// A job record of the caller's project, or 404.
async fn record(state: &ApiState, caller: &Caller, id: &str) -> Result<JobRecord, ApiError> {
    state
        .queue
        .job(&caller.project, id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(&format!("job {id}")))
}

/// `GET /v1/jobs/{id}`: the job's record, its images with signed URLs where the store
/// signs.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}",
    params(("id" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "The job's record", body = Object),
        super::openapi::LookupErrors
    )
)]
pub(super) async fn get(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let record = record(&state, &caller, &id).await?;
    let store = &state.projects[&caller.project].store;
    let mut body = serde_json::to_value(&record).map_err(ApiError::internal)?;
    if let Some(images) = body
        .pointer_mut("/result/images")
        .and_then(Value::as_array_mut)
    {
        for (n, img) in images.iter_mut().enumerate() {
            let url = img["url"].as_str().unwrap_or_default().to_string();
            if let Some(signed) = store.signed_url(&url, state.signed_url_ttl).await {
                img["signed_url"] = json!(signed);
            }
            img["api_url"] = json!(format!("/v1/jobs/{id}/images/{n}"));
            if let Some(o) = img.as_object_mut() {
                o.remove("path");
            }
        }
    }
    Ok(axum::Json(body).into_response())
}

/// `POST /v1/jobs/{id}/cancel`.
#[utoipa::path(
    post,
    path = "/v1/jobs/{id}/cancel",
    params(("id" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "What the cancel did", body = super::openapi::CancelDoc),
        super::openapi::LookupErrors
    )
)]
pub(super) async fn cancel(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let _ = record(&state, &caller, &id).await?;
    let report = state
        .queue
        .cancel(&caller.project, &id)
        .await
        .map_err(ApiError::internal)?;
    Ok(axum::Json(json!({
        "job_id": id,
        "cancelled": report.cancelled,
        "flagged": report.flagged,
        "already_finished": report.already_finished,
    }))
    .into_response())
}

/// `GET /v1/jobs/{id}/images/{n}`: the image's bytes from the store.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/images/{n}",
    params(("id" = String, Path, description = "Job id"), ("n" = u32, Path, description = "Image index")),
    responses(
        (status = 200, description = "The image's bytes", content_type = "image/*", body = Vec<u8>),
        super::openapi::LookupErrors
    )
)]
pub(super) async fn image(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path((id, n)): Path<(String, usize)>,
) -> Result<Response, ApiError> {
    image_bytes(&state, &caller.project, &id, n).await
}

/// The query of an image link.
#[derive(Debug, serde::Deserialize)]
pub(super) struct LinkQuery {
    expires: u64,
    signature: String,
}

/// `GET /files/{project}/{id}/{n}?expires=&signature=`: an image by the time-limited
/// link a webhook carried (signed with the project's webhook secret), with no token.
/// A link that is expired, altered or of an unknown project answers 404.
#[utoipa::path(
    get,
    path = "/files/{project}/{id}/{n}",
    params(
        ("project" = String, Path, description = "Project"),
        ("id" = String, Path, description = "Job id"),
        ("n" = u32, Path, description = "Image index"),
        ("expires" = u64, Query, description = "Unix seconds the link is valid until"),
        ("signature" = String, Query, description = "The link's signature")
    ),
    security(()),
    responses(
        (status = 200, description = "The image's bytes", content_type = "image/*", body = Vec<u8>),
        (status = 400, description = "Invalid request", body = super::openapi::ErrorBody),
        (status = 404, description = "No such image, or the link expired or is not valid", body = super::openapi::ErrorBody)
    )
)]
pub(super) async fn linked_image(
    State(state): State<Arc<ApiState>>,
    Path((project, id, n)): Path<(String, String, usize)>,
    axum::extract::Query(q): axum::extract::Query<LinkQuery>,
) -> Result<Response, ApiError> {
    let what = format!("image {n} of job {id}");
    let signer = state
        .projects
        .get(&project)
        .and_then(|p| p.webhooks.as_ref())
        .ok_or_else(|| ApiError::not_found(&what))?;
    let message = crate::webhooks::payload::link_message(&project, &id, n, q.expires);
    let live = q.expires >= crate::queue::now_ms() / 1000;
    if !live || !signer.verify_mac(message.as_bytes(), &q.signature) {
        return Err(ApiError::not_found(&what).with_message(format!(
            "{what} not found, or the link has expired or is not valid"
        )));
    }
    image_bytes(&state, &project, &id, n).await
}

/// Image `n` of a job of `project`, streamed from the store.
async fn image_bytes(
    state: &ApiState,
    project: &str,
    id: &str,
    n: usize,
) -> Result<Response, ApiError> {
    let record = state
        .queue
        .job(project, id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(&format!("job {id}")))?;
    let img = record
        .result
        .as_ref()
        .and_then(|r| r.images.get(n))
        .ok_or_else(|| ApiError::not_found(&format!("image {n} of job {id}")))?;
    let store = &state.projects[project].store;
    let key = store.own_key(&img.url).ok_or_else(|| {
        ApiError::not_found(&format!(
            "image {n} of job {id} (stored by Google at {})",
            img.url
        ))
    })?;
    let bytes = store.get(&key).await.map_err(ApiError::internal)?;
    Ok(([(header::CONTENT_TYPE, img.mime_type.clone())], bytes).into_response())
}
