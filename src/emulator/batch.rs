//! Batch endpoints (spec §8): Developer-API `:batchGenerateContent` / `batches/{id}` and
//! Vertex `batchPredictionJobs`. Creation answers the pending operation/job shapes the
//! SDK parses; a GET answers a finished job — inline Developer-API batches carry
//! responses computed from the stored requests.
//!
//! A Developer-API batch follows the scenario's `[batch]` times: `BATCH_STATE_PENDING`
//! for `pending_ms`, `RUNNING` until `turnaround_ms`, then `SUCCEEDED` with its lines
//! answered once (inline responses, or a responses file in the Files API for file
//! input; a line's error is its own; `duplicate_rate` writes some lines twice), or
//! `EXPIRED` with `expire`; `:cancel` ends it `CANCELLED`. Lines are counted in the
//! stats' `batch_lines`, not as online calls. Vertex batch prediction jobs finish at
//! once and write nothing to GCS.

use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::catalog;

use crate::emulator::call::CallCtx;
use crate::emulator::envelope::ApiError;
use crate::emulator::routes::{Route, VertexLoc};
use crate::emulator::state::{AppState, StoredBatch};
use crate::emulator::{gemini, gemini::response as gemini_response};

const DEV_BATCH_TYPE: &str =
    "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch";
const DEV_OUTPUT_TYPE: &str =
    "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatchOutput";

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// `POST /{ver}/models/{m}:batchGenerateContent`.
pub fn create_dev(state: &AppState, ctx: &CallCtx, body: &Value) -> Response {
    match create_dev_inner(state, ctx, body) {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

fn create_dev_inner(state: &AppState, ctx: &CallCtx, body: &Value) -> Result<Value, ApiError> {
    let batch = body
        .get("batch")
        .filter(|b| b.is_object())
        .ok_or_else(|| ApiError::field("batch", "batch is required."))?;
    let input = batch
        .get("inputConfig")
        .or_else(|| batch.get("input_config"))
        .ok_or_else(|| ApiError::field("batch.input_config", "input_config is required."))?;
    if serde_json::to_vec(input).map_or(0, |v| v.len()) > MAX_INLINE_BYTES {
        return Err(ApiError::new(
            400,
            format!("Request payload size exceeds the limit: {MAX_INLINE_BYTES} bytes."),
        ));
    }
    let inline = inline_requests(ctx, input)?;
    let input_file = match input
        .get("fileName")
        .or_else(|| input.get("file_name"))
        .and_then(Value::as_str)
    {
        Some(name) if inline.is_empty() => {
            let bytes =
                crate::emulator::files::bytes_of(state, &ctx.project, name).ok_or_else(|| {
                    ApiError::field(
                        "batch.input_config.file_name",
                        format!("File {name} not found."),
                    )
                })?;
            Some((
                name.to_string(),
                bytes
                    .split(|b| *b == b'\n')
                    .filter(|l| !l.is_empty())
                    .count(),
            ))
        }
        _ => None,
    };
    let id = format!("emu{:016x}", state.random_u64());
    let name = format!("batches/{id}");
    let ts = now();
    let mut metadata = json!({
        "@type": DEV_BATCH_TYPE,
        "model": format!("models/{}", ctx.model),
        "displayName": batch.get("displayName").or_else(|| batch.get("display_name")).cloned().unwrap_or(json!("")),
        "name": name,
        "state": "BATCH_STATE_PENDING",
        "createTime": ts,
        "updateTime": ts,
        "batchStats": {},
    });
    let lines = input_file.as_ref().map_or(inline.len(), |(_, n)| *n);
    if lines > 0 {
        let n = lines.to_string();
        metadata["batchStats"] = json!({"requestCount": n, "pendingRequestCount": n});
    }
    let resource = json!({"name": name, "metadata": metadata});
    state.batches().insert(
        id,
        StoredBatch {
            project: ctx.project.clone(),
            resource: resource.clone(),
            inline,
            model: ctx.model.clone(),
            version: ctx.version.clone(),
            cancelled: false,
            created_ms: now_ms(),
            input_file: input_file.map(|(name, _)| name),
            output: None,
        },
    );
    Ok(resource)
}

/// Inline requests are limited to 20 MB in all (spec §11); larger batches go by file.
const MAX_INLINE_BYTES: usize = 20 * 1024 * 1024;

fn now_ms() -> u64 {
    crate::queue::now_ms()
}

/// The inline requests of a Developer-API batch (each validated like generateContent),
/// or none for file input.
fn inline_requests(ctx: &CallCtx, input: &Value) -> Result<Vec<(Value, Value)>, ApiError> {
    let Some(list) = input
        .pointer("/requests/requests")
        .and_then(Value::as_array)
    else {
        let file = input.get("fileName").or_else(|| input.get("file_name"));
        return match file.and_then(Value::as_str) {
            Some(_) => Ok(Vec::new()),
            None => Err(ApiError::field(
                "batch.input_config",
                "input_config must set requests or file_name.",
            )),
        };
    };
    let mut inline = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let field = format!("batch.input_config.requests.requests[{i}].request");
        let request = item
            .get("request")
            .ok_or_else(|| ApiError::field(&field, "request is required."))?;
        gemini::plan(ctx, request).map_err(|mut e| {
            e.message = format!("{field}: {}", e.message);
            e
        })?;
        let metadata = item.get("metadata").cloned().unwrap_or(Value::Null);
        inline.push((request.clone(), metadata));
    }
    Ok(inline)
}

/// Batch routes other than creation on the Developer API.
pub fn handle(state: &AppState, route: Route, project: &str, body: &[u8]) -> Response {
    let result = match route {
        Route::VertexBatchCreate(loc) => vertex_create(state, &loc, body),
        Route::VertexBatchGet(loc, id) => {
            stored(state, &loc.project, &id).map(|b| vertex_finished(&b))
        }
        Route::DevBatchGet(_, id) => dev_view(state, project, &id),
        Route::VertexBatchCancel(loc, id) => cancel(state, &loc.project, &id),
        Route::DevBatchCancel(_, id) => cancel(state, project, &id),
        Route::DevBatchDelete(_, id) => stored(state, project, &id).map(|_| {
            state.batches().remove(&id);
            json!({})
        }),
        _ => Err(ApiError::not_found("Requested entity was not found.")),
    };
    match result {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

fn stored(state: &AppState, project: &str, id: &str) -> Result<StoredBatch, ApiError> {
    state
        .batches()
        .get(id)
        .filter(|b| b.project == project)
        .cloned()
        .ok_or_else(|| ApiError::not_found("Requested entity was not found."))
}

fn cancel(state: &AppState, project: &str, id: &str) -> Result<Value, ApiError> {
    let mut batches = state.batches();
    let b = batches
        .get_mut(id)
        .filter(|b| b.project == project)
        .ok_or_else(|| ApiError::not_found("Requested entity was not found."))?;
    b.cancelled = true;
    Ok(json!({}))
}

fn vertex_create(state: &AppState, loc: &VertexLoc, body: &[u8]) -> Result<Value, ApiError> {
    let req: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid_json(None, format!("Invalid JSON payload received. {e}")))?;
    let model = req.get("model").and_then(Value::as_str).unwrap_or("");
    let id = model.rsplit('/').next().unwrap_or("");
    if catalog::lookup(model).is_none_or(|m| !m.family.is_generate_content()) {
        return Err(ApiError::field(
            "batch_prediction_job.model",
            format!("Model \"{model}\" is not supported for batch prediction."),
        ));
    }
    let input = req.get("inputConfig").cloned().unwrap_or(Value::Null);
    let output = req.get("outputConfig").cloned().unwrap_or(Value::Null);
    if input.get("gcsSource").is_none() && input.get("bigquerySource").is_none() {
        return Err(ApiError::field(
            "batch_prediction_job.input_config",
            "input_config must set gcs_source or bigquery_source.",
        ));
    }
    if output.get("gcsDestination").is_none() && output.get("bigqueryDestination").is_none() {
        return Err(ApiError::field(
            "batch_prediction_job.output_config",
            "output_config must set gcs_destination or bigquery_destination.",
        ));
    }
    let job_id = format!(
        "{}",
        state.random_u64() % 9_000_000_000_000_000_000 + 1_000_000_000_000_000_000
    );
    let ts = now();
    let resource = json!({
        "name": format!("projects/{}/locations/{}/batchPredictionJobs/{job_id}", loc.project, loc.location),
        "displayName": req.get("displayName").cloned().unwrap_or(json!("")),
        "model": format!("publishers/google/models/{id}"),
        "state": "JOB_STATE_PENDING",
        "createTime": ts,
        "updateTime": ts,
        "inputConfig": input,
        "outputConfig": output,
    });
    state.batches().insert(
        job_id,
        StoredBatch {
            project: loc.project.clone(),
            resource: resource.clone(),
            inline: Vec::new(),
            model: id.to_string(),
            version: loc.version.clone(),
            cancelled: false,
            created_ms: now_ms(),
            input_file: None,
            output: None,
        },
    );
    Ok(resource)
}

fn vertex_finished(b: &StoredBatch) -> Value {
    let mut r = b.resource.clone();
    let ts = now();
    r["updateTime"] = json!(ts);
    r["endTime"] = json!(ts);
    if b.cancelled {
        r["state"] = json!("JOB_STATE_CANCELLED");
        return r;
    }
    r["state"] = json!("JOB_STATE_SUCCEEDED");
    r["completionStats"] = json!({"successfulCount": "1"});
    let created = r["createTime"].as_str().unwrap_or("").to_string();
    if let Some(prefix) = r
        .pointer("/outputConfig/gcsDestination/outputUriPrefix")
        .and_then(Value::as_str)
    {
        let slash = if prefix.ends_with('/') { "" } else { "/" };
        r["outputInfo"] =
            json!({"gcsOutputDirectory": format!("{prefix}{slash}prediction-model-{created}")});
    } else if let Some(uri) = r
        .pointer("/outputConfig/bigqueryDestination/outputUri")
        .and_then(Value::as_str)
    {
        r["outputInfo"] = json!({"bigqueryOutputTable": uri, "bigqueryOutputDataset": uri.rsplit_once('.').map_or(uri, |(d, _)| d)});
    }
    r
}

/// A Developer-API batch as `GET` finds it now (module docs).
fn dev_view(state: &AppState, project: &str, id: &str) -> Result<Value, ApiError> {
    let b = stored(state, project, id)?;
    let scenario = state.scenario();
    let times = &scenario.batch;
    let elapsed = now_ms().saturating_sub(b.created_ms);
    let mut r = b.resource.clone();
    let ts = now();
    r["metadata"]["updateTime"] = json!(ts);
    let ended = |r: &mut Value, state: &str| {
        r["metadata"]["state"] = json!(state);
        r["metadata"]["endTime"] = json!(ts);
        r["done"] = json!(true);
    };
    if b.cancelled {
        ended(&mut r, "BATCH_STATE_CANCELLED");
        return Ok(r);
    }
    if elapsed < times.pending_ms {
        return Ok(r);
    }
    if elapsed < times.turnaround_ms {
        r["metadata"]["state"] = json!("BATCH_STATE_RUNNING");
        return Ok(r);
    }
    if times.expire {
        ended(&mut r, "BATCH_STATE_EXPIRED");
        return Ok(r);
    }
    let (output, stats) = match b.output {
        Some(done) => (done["output"].clone(), done["stats"].clone()),
        None => {
            let done = answer(state, &b, id, times.duplicate_rate);
            if let Some(stored) = state.batches().get_mut(id) {
                stored.output = Some(done.clone());
            }
            (done["output"].clone(), done["stats"].clone())
        }
    };
    ended(&mut r, "BATCH_STATE_SUCCEEDED");
    r["metadata"]["batchStats"] = stats;
    r["metadata"]["output"] = output.clone();
    let mut response = output;
    response["@type"] = json!(DEV_OUTPUT_TYPE);
    r["response"] = response;
    Ok(r)
}

/// Answers every line of a batch once: `{"output", "stats"}`. File input answers into a
/// responses file of `{"key", "response" | "error"}` lines.
fn answer(state: &AppState, b: &StoredBatch, id: &str, duplicate_rate: f64) -> Value {
    let lines: Vec<(Value, Value)> = match &b.input_file {
        None => b.inline.clone(),
        Some(name) => crate::emulator::files::bytes_of(state, &b.project, name)
            .unwrap_or_default()
            .split(|c| *c == b'\n')
            .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
            .map(|l| match serde_json::from_slice::<Value>(l) {
                Ok(v) => (
                    v.get("request").cloned().unwrap_or(Value::Null),
                    v.get("key").cloned().unwrap_or(Value::Null),
                ),
                Err(_) => (Value::Null, Value::Null),
            })
            .collect(),
    };
    let (items, ok) = line_answers(state, b, &lines);
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        if item.get("response").is_some() && duplicate_rate > 0.0 && state.unit() < duplicate_rate {
            out.push(item.clone());
        }
        out.push(item);
    }
    state
        .stats
        .batch_lines(&format!("{}/{}", b.project, b.model), out.len() as u64);
    let n = lines.len();
    let stats = json!({
        "requestCount": n.to_string(),
        "successfulRequestCount": ok.to_string(),
        "failedRequestCount": (n - ok).to_string(),
    });
    let output = match &b.input_file {
        None => json!({"inlinedResponses": {"inlinedResponses": out}}),
        Some(_) => {
            let mut text = String::new();
            for item in out {
                let mut line = json!({"key": item["metadata"]});
                if let Some(r) = item.get("response") {
                    line["response"] = r.clone();
                }
                if let Some(e) = item.get("error") {
                    line["error"] = e.clone();
                }
                text.push_str(&line.to_string());
                text.push('\n');
            }
            let file = format!("batch-{}-responses", id.trim_start_matches("emu"));
            let name = crate::emulator::files::store(
                state,
                &b.project,
                &file,
                "application/jsonl",
                text.into_bytes(),
            );
            json!({"responsesFile": name})
        }
    };
    json!({"output": output, "stats": stats})
}

/// Each line's answer (`{"response", "metadata"}` or `{"error", "metadata"}`; for file
/// input `metadata` is the line's key) and how many were answered.
fn line_answers(
    state: &AppState,
    b: &StoredBatch,
    lines: &[(Value, Value)],
) -> (Vec<Value>, usize) {
    let Some(info) = catalog::lookup(&b.model) else {
        return (Vec::new(), 0);
    };
    let ctx = CallCtx {
        surface: crate::emulator::call::Surface::Developer,
        express: false,
        version: b.version.clone(),
        project: b.project.clone(),
        location: "global".into(),
        model: b.model.clone(),
        info,
        method: "generateContent".into(),
    };
    let scenario = state.scenario();
    let mut ok = 0;
    let items = lines
        .iter()
        .map(|(request, metadata)| {
            let answer = gemini::plan(&ctx, request).and_then(|plan| {
                let outcome = crate::emulator::control::faults::outcome(&scenario, &plan.prompt);
                gemini_response::respond(state, &ctx, &plan, outcome)
            });
            match answer {
                Ok(response) => {
                    ok += 1;
                    json!({"response": response, "metadata": metadata})
                }
                Err(e) => json!({"error": {"code": e.rpc_code(), "message": e.message}, "metadata": metadata}),
            }
        })
        .collect();
    (items, ok)
}
