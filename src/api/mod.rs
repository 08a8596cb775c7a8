//! The HTTP API: producers over HTTP, on the same queue, limits, storage and webhooks
//! as the CLI. The Gemini image guide's endpoints (`/generate-image`, `/edit-image`,
//! `/compose-images`, with its field names, its error envelope and its sync answers with
//! base64 images) and the `/v1` resource API (`/v1/jobs`).
//!
//! No state lives in the process: every request reads and writes the queue, so many API
//! processes can serve one fleet behind a load balancer (`imagegen api`), or one process
//! can hold everything over the in-memory queue (`imagegen serve`).
//!
//! A token maps to its project; another project's job answers 404, as a missing one
//! does (nothing reveals that it exists).

mod advanced;
pub mod auth;
mod batches;
mod chat;
pub mod error;
mod form;
mod guide;
mod jobs;
mod limit;
pub mod openapi;
mod story;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

pub use auth::Tokens;
pub use error::ApiError;
pub use guide::MAX_PROMPT_CHARS;
pub use limit::RateLimiter;

use crate::catalog::Backend;
use crate::queue::JobQueue;
use crate::storage::OutputStore;
use crate::submit::{ModelPolicy, UrlChecks};

/// One project the API serves.
#[derive(Debug, Clone)]
pub struct ApiProject {
    /// Its backend (validation depends on it).
    pub backend: Backend,
    /// The model of requests that name none.
    pub default_model: String,
    /// The tier of requests that name none.
    pub tier: Option<crate::job::spec::Tier>,
    /// Its output store (uploaded inputs go there too).
    pub store: OutputStore,
    /// Its webhook secret (signs deliveries and the image links they carry), if any.
    pub webhooks: Option<Arc<crate::webhooks::Signer>>,
}

/// Everything a request needs.
pub struct ApiState {
    /// The queue.
    pub queue: Arc<dyn JobQueue>,
    /// Projects by name.
    pub projects: HashMap<String, ApiProject>,
    /// Tokens → projects.
    pub tokens: Tokens,
    /// Model lifecycle and segmentation routing, as `submit` applies them.
    pub models: ModelPolicy,
    /// Image URL checks (the SSRF guard of `[inputs]`), refusing server paths.
    pub urls: UrlChecks,
    /// How long a sync request waits for its job before answering 202.
    pub sync_timeout: Duration,
    /// Lifetime of signed image URLs.
    pub signed_url_ttl: Duration,
    /// Largest uploaded file (the guide's 20 MB).
    pub max_file_bytes: u64,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Largest `/v1/batches` upload.
    pub max_batch_bytes: u64,
    /// Where webhooks may go (the SSRF guard of `[webhooks]`).
    pub webhook_policy: Arc<crate::netguard::NetPolicy>,
    /// Requests per token.
    pub limiter: limit::RateLimiter,
    /// The limiter's rate, for its message.
    pub limiter_rate: f64,
}

/// The caller of a request: its project (from the bearer token) and the request's id.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The token's project.
    pub project: String,
    /// `req_…`, also in `x-request-id` and in every error.
    pub request_id: String,
}

/// The request's id, set by [`request_id`] for every request.
#[derive(Debug, Clone)]
struct RequestId(String);

impl FromRequestParts<Arc<ApiState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<ApiState>,
    ) -> Result<Self, ApiError> {
        let request_id = parts
            .extensions
            .get::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_default();
        let (token, project) = state.tokens.lookup(&parts.headers)?;
        let now = crate::queue::now_ms() as f64;
        state.limiter.check(token, now).map_err(|wait| {
            ApiError::rate_limited(
                format!(
                    "over {} requests per second for this token",
                    state.limiter_rate
                ),
                wait,
            )
        })?;
        let project = project.to_string();
        Ok(Caller {
            project,
            request_id,
        })
    }
}

/// Gives every request an id: stamped on its errors' bodies and on the
/// `x-request-id` header of every answer.
async fn request_id(mut req: Request, next: Next) -> Response {
    let id = format!("req_{}", uuid::Uuid::now_v7().simple());
    req.extensions_mut().insert(RequestId(id.clone()));
    let started = std::time::Instant::now();
    let mut resp = next.run(req).await;
    if resp.extensions().get::<Counted>().is_none() {
        crate::metrics::get().api_request("unmatched", resp.status().as_u16(), started.elapsed());
    }
    let is_error = resp.status().is_client_error() || resp.status().is_server_error();
    let json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_error && json {
        resp = stamp(resp, &id).await;
    } else if is_error {
        // axum's own rejections (an unknown route, a body over the limit): the envelope.
        resp = envelope_of(resp, &id).await;
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

/// Writes the request id into an error envelope.
async fn stamp(resp: Response, id: &str) -> Response {
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 1 << 20).await else {
        return Response::from_parts(parts, axum::body::Body::empty());
    };
    let mut value: serde_json::Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(_) => return Response::from_parts(parts, bytes.into()),
    };
    if value.get("error").is_some() {
        value["request_id"] = serde_json::json!(id);
    }
    let body = value.to_string();
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, body.into())
}

/// A plain-text error from axum itself, as the guide's envelope.
async fn envelope_of(resp: Response, id: &str) -> Response {
    let status = resp.status();
    let text = axum::body::to_bytes(resp.into_body(), 1 << 16)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let mut e = match status.as_u16() {
        404 => ApiError::not_found("route"),
        405 => ApiError::invalid("method not allowed on this route"),
        413 => ApiError::too_large("body", 0, 0).with_message(text),
        s if s >= 500 => ApiError::internal(text),
        _ => ApiError::invalid(text),
    };
    e.status = status;
    e.for_request(id).into_response()
}

/// Marks a response whose request was counted by its route.
#[derive(Clone, Copy)]
struct Counted;

/// Counts a routed request by its route pattern, status and latency.
async fn count_route(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let started = std::time::Instant::now();
    let mut resp = next.run(req).await;
    crate::metrics::get().api_request(&route, resp.status().as_u16(), started.elapsed());
    resp.extensions_mut().insert(Counted);
    resp
}

/// `/metrics`: the process's series and the cluster-wide ones of its projects.
async fn metrics(axum::extract::State(state): axum::extract::State<Arc<ApiState>>) -> Response {
    let mut projects: Vec<String> = state.projects.keys().cloned().collect();
    projects.sort();
    if let Err(e) = crate::health::refresh(state.queue.as_ref(), &projects).await {
        tracing::warn!(error = %e, "reading queue counters for /metrics");
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::get().render(),
    )
        .into_response()
}

/// `/readyz`: the queue answers.
async fn readyz(axum::extract::State(state): axum::extract::State<Arc<ApiState>>) -> Response {
    let Some(p) = state.projects.keys().next() else {
        return (axum::http::StatusCode::SERVICE_UNAVAILABLE, "no projects\n").into_response();
    };
    match state.queue.project_counts(p).await {
        Ok(_) => (axum::http::StatusCode::OK, "ready\n").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readyz: queue unreachable");
            (
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "queue unreachable\n",
            )
                .into_response()
        }
    }
}

/// The API's routes.
pub fn router(state: Arc<ApiState>) -> Router {
    let body_limit = state.max_body_bytes;
    Router::new()
        .route("/generate-image", post(guide::generate))
        .route("/edit-image", post(guide::edit))
        .route("/compose-images", post(guide::compose))
        .route("/advanced/inpaint", post(advanced::inpaint))
        .route("/advanced/outpaint", post(advanced::outpaint))
        .route("/advanced/style-transfer", post(advanced::style_transfer))
        .route("/story/generate", post(story::generate))
        .route("/chat/create", post(chat::create))
        .route("/chat/{id}/message", post(chat::message))
        .route("/v1/stories", post(story::create_v1))
        .route("/v1/stories/{id}", get(story::get_v1))
        .route("/v1/sessions", post(chat::create_v1))
        .route("/v1/sessions/{id}", get(chat::get).delete(chat::delete))
        .route("/v1/sessions/{id}/messages", post(chat::message_v1))
        .route("/v1/jobs", post(jobs::create))
        .route("/v1/jobs/{id}", get(jobs::get))
        .route("/v1/jobs/{id}/cancel", post(jobs::cancel))
        .route("/v1/jobs/{id}/images/{n}", get(jobs::image))
        .route("/files/{project}/{id}/{n}", get(jobs::linked_image))
        .route(
            "/v1/batches",
            post(batches::create).layer(DefaultBodyLimit::disable()),
        )
        .route("/v1/batches/{id}", get(batches::get))
        .route("/v1/batches/{id}/results", get(batches::results))
        .route("/v1/batches/{id}/cancel", post(batches::cancel))
        .route("/v1/batches/{id}/events", get(batches::events))
        .route("/openapi.json", get(openapi::document))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route_layer(axum::middleware::from_fn(count_route))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn(request_id))
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<ApiState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
