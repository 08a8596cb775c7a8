//! `/v1/batches`: a job file over HTTP. The body (JSONL as `application/x-ndjson`, a
//! JSON array, CSV as `text/csv`, or prompts as `text/plain`) is streamed to a spool file
//! — a million lines in constant memory — then checked and enqueued exactly as
//! `imagegen submit` does it: every bad line listed with its number and field and
//! nothing enqueued (unless `?skip_invalid=true`), an `Idempotency-Key` naming the same
//! batch for 24 h, base64 and uploaded images stored, not queued.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;

use super::error::ApiError;
use super::{ApiState, Caller};
use crate::job::batch_file::{FileFormat, LineDefaults};
use crate::job::validate::ValidationContext;
use crate::queue::NewBatch;
use crate::submit::{JobFile, SubmitError};

/// Query of `POST /v1/batches`.
#[derive(Debug, Default, Deserialize)]
pub(super) struct CreateQuery {
    /// Enqueue the valid lines even if some are invalid.
    #[serde(default)]
    skip_invalid: bool,
    /// Where the batch's `batch.completed` goes.
    #[serde(default)]
    webhook_url: Option<String>,
    /// Tier for lines that name none (default: the project's).
    #[serde(default)]
    tier: Option<crate::job::spec::Tier>,
}

fn format_of(headers: &HeaderMap) -> (FileFormat, bool) {
    let kind = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    match kind.split(';').next().unwrap_or("").trim() {
        "application/json" => (FileFormat::Jsonl, true),
        "text/csv" => (FileFormat::Csv, false),
        "text/plain" => (FileFormat::Text, false),
        _ => (FileFormat::Jsonl, false),
    }
}

/// Streams `body` into `path`, at most `limit` bytes; a JSON array becomes JSONL.
async fn spool(
    body: Body,
    path: &std::path::Path,
    array: bool,
    limit: u64,
) -> Result<(), ApiError> {
    let mut out = tokio::fs::File::create(path)
        .await
        .map_err(ApiError::internal)?;
    let mut stream = body.into_data_stream();
    let mut size = 0u64;
    let mut held = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::invalid(format!("reading the body: {e}")))?;
        size += chunk.len() as u64;
        if size > limit {
            return Err(ApiError::too_large("body", size, limit));
        }
        if array {
            held.extend_from_slice(&chunk);
        } else {
            out.write_all(&chunk).await.map_err(ApiError::internal)?;
        }
    }
    if array {
        let items: Vec<Value> = serde_json::from_slice(&held).map_err(|e| {
            ApiError::invalid(format!("the body is not a JSON array of job specs: {e}"))
        })?;
        let mut text = String::new();
        for item in items {
            text.push_str(&item.to_string());
            text.push('\n');
        }
        out.write_all(text.as_bytes())
            .await
            .map_err(ApiError::internal)?;
    }
    out.flush().await.map_err(ApiError::internal)
}

/// `POST /v1/batches`.
#[utoipa::path(
    post,
    path = "/v1/batches",
    params(("skip_invalid" = Option<bool>, Query, description = "Enqueue the valid lines even if some are invalid"), ("Idempotency-Key" = Option<String>, Header, description = "The same key within 24 h names the same batch")),
    request_body(content = super::openapi::BatchBody, content_type = "application/json", description = "Job specs (a JSON array; JSONL as application/x-ndjson, CSV as text/csv and prompts as text/plain are read too)"),
    responses(
        (status = 201, description = "Enqueued", body = super::openapi::BatchCreatedDoc),
        (status = 200, description = "The batch the Idempotency-Key names", body = super::openapi::BatchCreatedDoc),
        super::openapi::UploadErrors
    )
)]
pub(super) async fn create(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Query(query): Query<CreateQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let project = &state.projects[&caller.project];
    if let Some(url) = &query.webhook_url {
        super::jobs::check_webhook(&state, &caller.project, "webhook_url", url).await?;
    }
    let (format, array) = format_of(&headers);
    let spool_file = tempfile::NamedTempFile::new().map_err(ApiError::internal)?;
    spool(body, spool_file.path(), array, state.max_batch_bytes).await?;
    let file = JobFile {
        path: spool_file.path(),
        format,
        defaults: LineDefaults {
            model: Some(project.default_model.clone()),
            op: None,
            tier: query.tier.or(project.tier),
        },
        validation: ValidationContext {
            backend: project.backend,
            check_local_files: false,
        },
        urls: state.urls.clone(),
        models: state.models.clone(),
    };
    let checked = file.check().await.map_err(submit_error)?;
    if checked.invalid > 0 && !query.skip_invalid {
        let lines: Vec<Value> = checked
            .errors
            .iter()
            .map(|e| {
                json!({"line": e.line, "field": super::error::field_of(&e.message), "message": e.message})
            })
            .collect();
        return Err(ApiError::invalid(format!(
            "{} invalid line(s); nothing was enqueued (add ?skip_invalid=true to enqueue the {} valid line(s))",
            checked.invalid, checked.valid
        ))
        .with_details(json!({"invalid": checked.invalid, "valid": checked.valid, "lines": lines})));
    }
    if checked.valid == 0 {
        return Err(ApiError::invalid("the body has no jobs"));
    }
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let batch = NewBatch {
        project: caller.project.clone(),
        source: format!("api {}", caller.request_id),
        webhook: query.webhook_url.clone(),
        idempotency_key: key,
        digest: Some(checked.digest.clone()),
        estimate_usd: Some(checked.estimate_usd),
    };
    let uploader = crate::submit::inputs::Uploader::new(project.store.clone()).with_inline();
    let submitted =
        crate::submit::enqueue_file(state.queue.as_ref(), &file, &batch, Some(&uploader), |_| {})
            .await
            .map_err(submit_error)?;
    let status = if submitted.batch.existing {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let id = &submitted.batch.id;
    Ok((
        status,
        axum::Json(json!({
            "batch_id": id,
            "total": submitted.total,
            "enqueued": submitted.enqueued_now,
            "existing": submitted.batch.existing,
            "invalid": checked.invalid,
            "warnings": checked.warnings,
            "status_url": format!("/v1/batches/{id}"),
        })),
    )
        .into_response())
}

fn submit_error(e: SubmitError) -> ApiError {
    match e {
        SubmitError::Conflict { .. } => ApiError::conflict(e.to_string()),
        SubmitError::Input { .. } => ApiError::invalid(e.to_string()),
        other => ApiError::internal(other),
    }
}

/// A batch record of the caller's project, or 404.
async fn batch(
    state: &ApiState,
    caller: &Caller,
    id: &str,
) -> Result<crate::queue::BatchRecord, ApiError> {
    state
        .queue
        .batch(&caller.project, id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(&format!("batch {id}")))
}

/// `GET /v1/batches/{id}`: counts, progress, ETA.
#[utoipa::path(
    get,
    path = "/v1/batches/{id}",
    params(("id" = String, Path, description = "Batch id")),
    responses(
        (status = 200, description = "Counts, progress, ETA", body = Object),
        super::openapi::LookupErrors
    )
)]
pub(super) async fn get(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let b = batch(&state, &caller, &id).await?;
    let mut body = serde_json::to_value(&b).map_err(ApiError::internal)?;
    // The same progress and ETA as `imagegen status`.
    body["progress"] = json!(b.progress());
    body["eta_s"] = json!(b.eta_ms(crate::queue::now_ms()).map(|ms| ms.div_ceil(1000)));
    body["cost_to_finish_usd"] = json!(b.cost_to_finish());
    body["results_url"] = json!(format!("/v1/batches/{id}/results"));
    Ok(axum::Json(body).into_response())
}

/// Query of `GET /v1/batches/{id}/results`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct PageQuery {
    /// Position of the first job (from the previous page's `next_cursor`).
    #[serde(default)]
    #[param(maximum = 9_007_199_254_740_991_u64)]
    cursor: u64,
    /// Jobs per page.
    #[serde(default = "default_limit")]
    #[param(minimum = 1, maximum = 1000)]
    limit: u64,
}

/// The largest cursor (2^53 - 1: exact in every JSON client).
const MAX_CURSOR: u64 = 9_007_199_254_740_991;

fn default_limit() -> u64 {
    100
}

/// `GET /v1/batches/{id}/results?cursor=&limit=`: job records in order, paged.
#[utoipa::path(
    get,
    path = "/v1/batches/{id}/results",
    params(("id" = String, Path, description = "Batch id"), PageQuery),
    responses(
        (status = 200, description = "A page of job records", body = super::openapi::ResultsPageDoc),
        super::openapi::LookupErrors
    )
)]
pub(super) async fn results(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(page): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let b = batch(&state, &caller, &id).await?;
    let total = b.total.unwrap_or(b.enqueued);
    if !(1..=1000).contains(&page.limit) {
        return Err(ApiError::field(
            "limit",
            format!("must be 1 to 1000, got {}", page.limit),
        ));
    }
    if page.cursor > MAX_CURSOR {
        return Err(ApiError::field("cursor", "not a cursor of this batch"));
    }
    let limit = page.limit;
    let to = (page.cursor + limit).min(total);
    let jobs = if page.cursor < to {
        state
            .queue
            .batch_jobs(&caller.project, &id, page.cursor, to)
            .await
            .map_err(ApiError::internal)?
    } else {
        Vec::new()
    };
    let items: Vec<Value> = jobs
        .into_iter()
        .flatten()
        .map(|mut r| {
            if let Some(res) = r.result.as_mut() {
                for img in &mut res.images {
                    img.path = None;
                }
            }
            serde_json::to_value(r).unwrap_or(Value::Null)
        })
        .collect();
    Ok(axum::Json(json!({
        "batch_id": id,
        "jobs": items,
        "next_cursor": (to < total).then_some(to),
    }))
    .into_response())
}

/// `POST /v1/batches/{id}/cancel`.
#[utoipa::path(
    post,
    path = "/v1/batches/{id}/cancel",
    params(("id" = String, Path, description = "Batch id")),
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
    batch(&state, &caller, &id).await?;
    let r = state
        .queue
        .cancel(&caller.project, &id)
        .await
        .map_err(ApiError::internal)?;
    Ok(axum::Json(json!({
        "batch_id": id,
        "cancelled": r.cancelled,
        "flagged": r.flagged,
        "already_finished": r.already_finished,
        "batch_completed": r.batch_completed,
    }))
    .into_response())
}

/// How often a batch's event stream reads its record.
const EVENT_POLL: std::time::Duration = std::time::Duration::from_millis(250);

/// A batch's progress as its events carry it.
fn progress_of(b: &crate::queue::BatchRecord) -> Value {
    let counts: serde_json::Map<String, Value> = b
        .counts
        .iter()
        .map(|(s, n)| (s.as_str().to_string(), json!(n)))
        .collect();
    json!({
        "batch_id": b.id,
        "total": b.total.unwrap_or(b.enqueued),
        "done": b.done,
        "counts": counts,
        "progress": b.progress(),
        "eta_s": b.eta_ms(crate::queue::now_ms()).map(|ms| ms.div_ceil(1000)),
        "cost_usd": b.cost_usd,
        "completed": b.completed_ms.is_some(),
        "manifest_url": b.manifest,
    })
}

/// `GET /v1/batches/{id}/events`: Server-Sent Events as the batch progresses — a
/// `progress` event at once and whenever its counts change, then one `completed` event
/// (with its manifest) and the end of the stream. Keep-alive comments every 15 s; the
/// stream reads the batch's record (no state of its own), so any API process serves it
/// and a client that reconnects gets the current state first.
#[utoipa::path(
    get,
    path = "/v1/batches/{id}/events",
    params(("id" = String, Path, description = "Batch id")),
    responses(
        (status = 200, description = "`progress` events, then `completed`", content_type = "text/event-stream", body = super::openapi::BatchEventDoc),
        super::openapi::LookupErrors
    )
)]
pub(super) async fn events(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let first = batch(&state, &caller, &id).await?;
    let (mut tx, rx) =
        futures::channel::mpsc::channel::<Result<Event, std::convert::Infallible>>(8);
    let project = caller.project;
    tokio::spawn(async move {
        use futures::SinkExt as _;
        let mut record = Some(first);
        let mut said: Option<(u64, Value)> = None;
        loop {
            let Some(b) = record.take() else {
                tokio::time::sleep(EVENT_POLL).await;
                match state.queue.batch(&project, &id).await {
                    Ok(Some(b)) => record = Some(b),
                    Ok(None) => return,
                    Err(e) => {
                        tracing::warn!(batch = %id, error = %e, "reading a batch for its event stream");
                    }
                }
                continue;
            };
            // A manifest is written just after completion: wait for it (briefly).
            let done = b.completed_ms.is_some()
                && (b.manifest.is_some()
                    || crate::queue::now_ms().saturating_sub(b.completed_ms.unwrap_or(0)) > 5000);
            let data = progress_of(&b);
            let key = (b.done, data["counts"].clone());
            if done || said.as_ref() != Some(&key) {
                let name = if done { "completed" } else { "progress" };
                let event = Event::default()
                    .event(name)
                    .id(b.done.to_string())
                    .data(data.to_string());
                if tx.send(Ok(event)).await.is_err() {
                    return; // the client left
                }
                said = Some(key);
            }
            if done {
                return;
            }
        }
    });
    Ok(Sse::new(rx)
        .keep_alive(KeepAlive::new().interval(std::time::Duration::from_secs(15)))
        .into_response())
}
