//! The request pipeline for Google API paths: route → authenticate → read the body
//! (size limit) → resolve the model → validate → quota admission → in-flight latency →
//! fault injection → render → count.
//!
//! Order, documented because clients depend on it: auth, size, model and validation
//! errors come first and cost no quota; quota is checked next (a 429 with `RetryInfo`
//! holds no slot); injected faults are drawn only for admitted requests, so a faulted
//! request counts against rpm/rpd and holds a concurrency slot for its latency (and its
//! whole hold, for timeouts) — like a real backend failure behind Google's front end.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::catalog::{self, Family};
use crate::job::spec::Tier;

use crate::emulator::call::Surface;
use crate::emulator::call::{CallCtx, resource_name};
use crate::emulator::control::faults::{self, Fault, Outcome};
use crate::emulator::control::quota::QuotaRequest;
use crate::emulator::envelope::ApiError;
use crate::emulator::routes::{self, ModelTarget, Route};
use crate::emulator::state::Shared;
use crate::emulator::{
    auth, batch, files, gemini, gemini::response as gemini_response, imagen,
    imagen::response as imagen_response,
};

/// Marks a response whose connection is aborted (counted as `"reset"`).
#[derive(Debug, Clone, Copy)]
struct ResetMarker;

/// A validated request, ready to answer.
enum Planned {
    Gemini(gemini::GeminiPlan),
    Imagen(imagen::ImagenPlan),
}

impl Planned {
    fn prompt(&self) -> &str {
        match self {
            Planned::Gemini(p) => &p.prompt,
            Planned::Imagen(p) => &p.prompt,
        }
    }
}

/// Fallback handler for every Google API path.
pub async fn api(State(state): State<Shared>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let query: HashMap<String, String> = parts
        .uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let Some(route) = routes::parse(&parts.method, parts.uri.path()) else {
        return ApiError::not_found(format!(
            "The requested URL {} was not found on this server.",
            parts.uri.path()
        ))
        .into_response();
    };
    match route {
        Route::Model(target) => model_call(state, target, parts.headers, query, body).await,
        other => match authenticate_route(&state, &other, &parts.headers, &query) {
            Ok(project) => {
                let bytes = match read_body(&state, &parts.headers, body).await {
                    Ok(b) => b,
                    Err(e) => return e.into_response(),
                };
                match other {
                    Route::FileUpload(_)
                    | Route::FileGet(..)
                    | Route::FileDelete(..)
                    | Route::FileDownload(..) => {
                        files::handle(&state, other, &project, &parts.headers, &query, &bytes)
                    }
                    other => batch::handle(&state, other, &project, &bytes),
                }
            }
            Err(e) => e.into_response(),
        },
    }
}

fn authenticate_route(
    state: &Shared,
    route: &Route,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
) -> Result<String, ApiError> {
    // An upload's bytes go to the URL its start answered: the upload id is the
    // credential (the SDK sends no key with them).
    if let (Route::FileUpload(_), Some(id)) = (route, query.get("upload_id")) {
        return state
            .files()
            .uploads
            .get(id)
            .map(|(project, ..)| project.clone())
            .ok_or_else(|| ApiError::not_found("No such upload."));
    }
    match route {
        Route::VertexBatchCreate(loc)
        | Route::VertexBatchGet(loc, _)
        | Route::VertexBatchCancel(loc, _) => {
            let method = format!(
                "google.cloud.aiplatform.{}.JobService.BatchPredictionJob",
                loc.version
            );
            auth::check_bearer(state, headers, &method)?;
            Ok(loc.project.clone())
        }
        _ => auth::check_api_key(
            state,
            headers,
            query.get("key").map(String::as_str),
            "generativelanguage.googleapis.com",
        ),
    }
}

fn authenticate(
    state: &Shared,
    t: &ModelTarget,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
) -> Result<String, ApiError> {
    match (t.surface, &t.project) {
        (Surface::Vertex, Some(project)) => {
            let service = if t.method == "predict" {
                "PredictionService.Predict"
            } else {
                "PredictionService.GenerateContent"
            };
            auth::check_bearer(
                state,
                headers,
                &format!("google.cloud.aiplatform.{}.{service}", t.version),
            )?;
            Ok(project.clone())
        }
        (Surface::Vertex, None) => auth::check_api_key(
            state,
            headers,
            query.get("key").map(String::as_str),
            "aiplatform.googleapis.com",
        ),
        (Surface::Developer, _) => auth::check_api_key(
            state,
            headers,
            query.get("key").map(String::as_str),
            "generativelanguage.googleapis.com",
        ),
    }
}

/// Reads the body up to the scenario's `max_request_bytes` (413 above).
async fn read_body(state: &Shared, headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    let max = state.scenario().max_request_bytes;
    let too_large = || {
        ApiError::new(
            413,
            format!("Request payload size exceeds the limit: {max} bytes."),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(too_large());
    }
    let limit = usize::try_from(max).unwrap_or(usize::MAX);
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_large())
}

async fn model_call(
    state: Shared,
    target: ModelTarget,
    headers: HeaderMap,
    query: HashMap<String, String>,
    body: Body,
) -> Response {
    let project = match authenticate(&state, &target, &headers, &query) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    // Creating a Google batch is not an online call of the model: counted apart.
    let key = if target.method == "batchGenerateContent" {
        format!("{project}/{}:batchGenerateContent", target.model)
    } else {
        format!("{project}/{}", target.model)
    };
    let mut count = Counted {
        state: state.clone(),
        key,
        label: None,
    };
    let response = match admitted_call(&state, target, project, &headers, &query, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    count.label = Some(if response.extensions().get::<ResetMarker>().is_some() {
        "reset".to_string()
    } else {
        response.status().as_u16().to_string()
    });
    response
}

/// Records the answer's status when dropped; a request whose client went away before
/// the answer (the handler future is dropped) is counted as `"499"` (CANCELLED).
struct Counted {
    state: Shared,
    key: String,
    label: Option<String>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        let label = self.label.as_deref().unwrap_or("499");
        self.state.stats.record(&self.key, label);
    }
}

/// Resolves the model and checks the method against its family.
fn resolve(state: &Shared, t: &ModelTarget, project: String) -> Result<CallCtx, ApiError> {
    let scenario = state.scenario();
    let info = catalog::lookup(&t.model).filter(|i| {
        t.publisher == "google"
            && !scenario
                .retired_models
                .iter()
                .any(|r| r == &t.model || r == i.id)
    });
    let not_found = || match t.surface {
        Surface::Developer => ApiError::not_found(format!(
            "models/{} is not found for API version {}, or is not supported for {}. Call ListModels to see the list of available models and their supported methods.",
            t.model, t.version, t.method
        )),
        Surface::Vertex => ApiError::not_found(format!(
            "Publisher Model `{}` was not found or your project does not have access to it. Please ensure you are using a valid model version. For more information, see: https://cloud.google.com/vertex-ai/generative-ai/docs/learn/model-versions",
            resource_name(t.surface, t.express, &project, &t.location, &t.model)
        )),
    };
    let info = info.ok_or_else(not_found)?;
    let method = t.method.as_str();
    let allowed = match (info.family, t.surface) {
        (Family::GeminiImage | Family::GeminiText, Surface::Vertex) => {
            matches!(method, "generateContent" | "streamGenerateContent")
        }
        (Family::GeminiImage | Family::GeminiText, Surface::Developer) => matches!(
            method,
            "generateContent" | "streamGenerateContent" | "batchGenerateContent"
        ),
        (Family::ImagenGenerate, Surface::Developer) => method == "predict",
        (_, Surface::Developer) => false,
        (_, Surface::Vertex) => method == "predict",
    };
    if !allowed {
        return Err(match (info.family, t.surface, method) {
            (_, Surface::Developer, _) => not_found(),
            (Family::GeminiImage | Family::GeminiText, _, "predict") => {
                ApiError::failed_precondition(
                    "Gemini cannot be accessed through Vertex Predict/RawPredict API. Please follow https://cloud.google.com/vertex-ai/docs/generative-ai/start/quickstarts/quickstart-multimodal for Gemini usage.",
                )
            }
            (_, _, "generateContent" | "streamGenerateContent") => ApiError::new(
                400,
                format!(
                    "Model {} does not support {method}. Imagen models are served by the predict method.",
                    resource_name(t.surface, t.express, &project, &t.location, &t.model)
                ),
            ),
            _ => ApiError::not_found(format!("Method {method} is not found for {}.", t.model)),
        });
    }
    Ok(CallCtx {
        surface: t.surface,
        express: t.express,
        version: t.version.clone(),
        project,
        location: t.location.clone(),
        model: t.model.clone(),
        info,
        method: t.method.clone(),
    })
}

fn parse_json(bytes: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::invalid_json(None, format!("Invalid JSON payload received. {e}")))
}

async fn admitted_call(
    state: &Shared,
    target: ModelTarget,
    project: String,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(state, headers, body).await?;
    let ctx = resolve(state, &target, project)?;
    let json = parse_json(&bytes)?;
    if ctx.method == "batchGenerateContent" {
        return Ok(batch::create_dev(state, &ctx, &json));
    }
    let planned = if ctx.info.family.is_generate_content() {
        Planned::Gemini(gemini::plan(&ctx, &json)?)
    } else {
        Planned::Imagen(imagen::plan(&ctx, &json)?)
    };
    let tier = requested_tier(&ctx, &json, headers)?;
    let scenario = state.scenario();
    let latency = scenario
        .latency_for(&ctx.model, ctx.info.id)
        .sample(state.unit());
    let forced = faults::marker_fault(&scenario, planned.prompt());
    let outcome = faults::outcome(&scenario, planned.prompt());
    let _permit = match scenario.quota_for(&ctx.project, &ctx.model, ctx.info.id) {
        Some((key, limits)) => Some(state.quota.admit(&QuotaRequest {
            project: &ctx.project,
            key: &key,
            limits,
            base_model: ctx.info.id,
            location: &ctx.location,
            surface: ctx.surface,
            predict: ctx.method == "predict",
            expected: Duration::from_millis(latency),
        })?),
        None => None,
    };
    let _in_flight = state.stats.enter(&ctx.stats_key());
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let fault = forced.or_else(|| faults::random_fault(&scenario, state.unit()));
    if let Some(fault) = fault {
        return Ok(inject(&scenario, headers, fault).await);
    }
    let body = render(state.clone(), ctx.clone(), planned, outcome).await?;
    let mut response = json_or_stream(&ctx, query, body);
    if let Some(requested) = tier {
        let downgraded =
            requested == Tier::Priority && state.unit() < scenario.priority_downgrade_rate;
        let served = if downgraded {
            Tier::Standard
        } else {
            requested
        };
        state.stats.tier(
            &format!("{}/{}", ctx.project, ctx.model),
            requested.as_str(),
            served.as_str(),
        );
        // The Developer API says which tier served the call; Vertex does not.
        if ctx.surface == Surface::Developer
            && let Ok(v) = header::HeaderValue::from_str(served.as_str())
        {
            response.headers_mut().insert("x-gemini-service-tier", v);
        }
    }
    Ok(response)
}

/// The service tier a `:generateContent` call asks for (spec §11): `serviceTier` in
/// the body (the SDK's spelling; `service_tier` too), or on Vertex the
/// `X-Vertex-AI-LLM-Shared-Request-Type` header. A tier the model is not offered at
/// is refused as Google refuses an unsupported option.
fn requested_tier(
    ctx: &CallCtx,
    json: &Value,
    headers: &HeaderMap,
) -> Result<Option<Tier>, ApiError> {
    if !ctx.info.family.is_generate_content() {
        return Ok(None);
    }
    let field = json
        .get("serviceTier")
        .or_else(|| json.get("service_tier"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let header = headers
        .get("x-vertex-ai-llm-shared-request-type")
        .and_then(|v| v.to_str().ok())
        .filter(|_| ctx.surface == Surface::Vertex)
        .map(str::to_string);
    let Some(raw) = field.or(header) else {
        return Ok(None);
    };
    let name = raw.to_ascii_lowercase();
    let name = name.strip_prefix("service_tier_").unwrap_or(&name);
    let tier = match name {
        "unspecified" | "standard" => Tier::Standard,
        "flex" => Tier::Flex,
        "priority" => Tier::Priority,
        _ => {
            return Err(ApiError::field(
                "service_tier",
                format!("Invalid value at 'service_tier' ({raw})"),
            ));
        }
    };
    if !tier.offered_on(ctx.info) {
        return Err(ApiError::new(
            400,
            format!(
                "Service tier {name} is not supported for model {}.",
                ctx.model
            ),
        ));
    }
    Ok(Some(tier))
}

async fn inject(
    scenario: &crate::emulator::control::scenario::Scenario,
    headers: &HeaderMap,
    fault: Fault,
) -> Response {
    if fault == Fault::Timeout {
        let server_timeout = headers
            .get("x-server-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok());
        tokio::time::sleep(faults::timeout_hold(scenario, server_timeout)).await;
    }
    let mut resp = faults::fault_response(fault);
    if fault == Fault::Reset {
        resp.extensions_mut().insert(ResetMarker);
    }
    resp
}

/// Builds the response JSON on the blocking pool (image encoding is CPU work).
async fn render(
    state: Shared,
    ctx: CallCtx,
    planned: Planned,
    outcome: Outcome,
) -> Result<Value, ApiError> {
    tokio::task::spawn_blocking(move || match &planned {
        Planned::Gemini(p) => gemini_response::respond(&state, &ctx, p, outcome),
        Planned::Imagen(p) => imagen_response::respond(&state, &ctx, p, outcome),
    })
    .await
    .map_err(|e| ApiError::new(500, format!("Internal error encountered: {e}")))?
}

fn json_or_stream(ctx: &CallCtx, query: &HashMap<String, String>, body: Value) -> Response {
    if ctx.method != "streamGenerateContent" {
        return axum::Json(body).into_response();
    }
    if query.get("alt").map(String::as_str) == Some("sse") {
        let text = format!("data: {body}\r\n\r\n");
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/event-stream")],
            text,
        )
            .into_response();
    }
    axum::Json(Value::Array(vec![body])).into_response()
}
