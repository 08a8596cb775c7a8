//! Non-Google endpoints: the emulator's own control API (`/emulator/scenario`, `/stats`,
//! `/service-accounts`, `/tokens/revoke`), the OAuth2 token endpoint (`/token`) and the
//! GCE metadata-server stand-in (`/computeMetadata/v1/...`).
//!
//! Thin HTTP adapters over `state` and `auth`; no model logic here.

pub(super) mod faults;
pub(super) mod quota;
pub(super) mod scenario;
pub(super) mod stats;

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::emulator::auth;
use crate::emulator::control::scenario::Scenario;
use crate::emulator::envelope::ApiError;
use crate::emulator::state::Shared;

/// `GET /emulator/scenario`.
pub async fn get_scenario(State(state): State<Shared>) -> Json<Scenario> {
    Json((*state.scenario()).clone())
}

/// `POST /emulator/scenario` with a JSON scenario: replaces it.
pub async fn set_scenario(State(state): State<Shared>, body: Bytes) -> Response {
    let parsed: Result<Scenario, String> = serde_json::from_slice(&body).map_err(|e| e.to_string());
    match parsed.and_then(|s| s.validate().map(|_| s).map_err(|e| e.to_string())) {
        Ok(s) => {
            state.set_scenario(s.clone());
            Json(s).into_response()
        }
        Err(e) => ApiError::field("scenario", format!("Invalid scenario: {e}")).into_response(),
    }
}

/// `GET /emulator/stats`.
pub async fn stats(State(state): State<Shared>) -> Json<crate::emulator::control::stats::Stats> {
    Json(state.stats.snapshot())
}

/// `POST /emulator/stats/reset`: clears counters and quota windows.
pub async fn reset_stats(State(state): State<Shared>) -> StatusCode {
    state.stats.reset();
    state.quota.reset();
    StatusCode::NO_CONTENT
}

/// `GET /emulator/health`.
pub async fn health() -> &'static str {
    "ok"
}

#[derive(Deserialize)]
struct MintRequest {
    project_id: String,
    client_email: Option<String>,
}

/// `POST /emulator/service-accounts`: mints a key file.
pub async fn mint(State(state): State<Shared>, body: Bytes) -> Response {
    let req: MintRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return ApiError::field(
                "project_id",
                format!("Expected {{\"project_id\": ...}}: {e}"),
            )
            .into_response();
        }
    };
    let result = tokio::task::spawn_blocking(move || {
        auth::mint_service_account(&state, &req.project_id, req.client_email.as_deref())
    })
    .await;
    match result {
        Ok(Ok(key)) => Json(key).into_response(),
        Ok(Err(e)) => e.into_response(),
        Err(e) => ApiError::new(500, e.to_string()).into_response(),
    }
}

/// `POST /emulator/tokens/revoke`: invalidates every issued token.
pub async fn revoke(State(state): State<Shared>) -> Json<Value> {
    Json(json!({"revoked": state.auth.revoke_all()}))
}

/// `POST /token`: the OAuth2 JWT-bearer grant.
pub async fn token(State(state): State<Shared>, body: Bytes) -> Response {
    match auth::exchange(&state, &body) {
        Ok(v) => {
            state.stats.token_request(true);
            Json(v).into_response()
        }
        Err(e) => {
            state.stats.token_request(false);
            let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
            (
                status,
                Json(json!({"error": e.kind, "error_description": e.description})),
            )
                .into_response()
        }
    }
}

fn metadata_flavor_ok(headers: &HeaderMap) -> bool {
    headers
        .get("metadata-flavor")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("Google"))
}

fn metadata_response(body: impl IntoResponse) -> Response {
    let mut r = body.into_response();
    r.headers_mut().insert(
        "metadata-flavor",
        header::HeaderValue::from_static("Google"),
    );
    r
}

fn metadata_forbidden() -> Response {
    let body = "Missing Metadata-Flavor:Google header.\n";
    (
        StatusCode::FORBIDDEN,
        [(header::CONTENT_TYPE, "text/plain")],
        body,
    )
        .into_response()
}

/// `GET /computeMetadata/v1/instance/service-accounts/default/token`.
pub async fn metadata_token(State(state): State<Shared>, headers: HeaderMap) -> Response {
    if !metadata_flavor_ok(&headers) {
        state.stats.token_request(false);
        return metadata_forbidden();
    }
    if state.scenario().metadata_unavailable {
        state.stats.token_request(false);
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "metadata server unavailable (scenario metadata_unavailable)",
        )
            .into_response();
    }
    let ttl = state.scenario().token_ttl_s;
    let token = state.auth.issue(Duration::from_secs(ttl));
    state.stats.token_request(true);
    metadata_response(Json(
        json!({"access_token": token, "expires_in": ttl, "token_type": "Bearer"}),
    ))
}

/// `GET /computeMetadata/v1/project/project-id`.
pub async fn metadata_project(State(state): State<Shared>, headers: HeaderMap) -> Response {
    if !metadata_flavor_ok(&headers) {
        return metadata_forbidden();
    }
    metadata_response(state.scenario().metadata_project_id.clone())
}

/// `GET /computeMetadata/v1/instance/service-accounts/default/` (google-auth reads it
/// with `?recursive=true` before asking for a token) and `.../default/email`.
pub async fn metadata_account(State(state): State<Shared>, headers: HeaderMap) -> Response {
    if !metadata_flavor_ok(&headers) {
        return metadata_forbidden();
    }
    let email = format!(
        "emulator@{}.iam.gserviceaccount.com",
        state.scenario().metadata_project_id
    );
    metadata_response(Json(json!({
        "aliases": ["default"],
        "email": email,
        "scopes": ["https://www.googleapis.com/auth/cloud-platform"],
    })))
}

/// `GET /computeMetadata/v1/instance/service-accounts/default/email`.
pub async fn metadata_email(State(state): State<Shared>, headers: HeaderMap) -> Response {
    if !metadata_flavor_ok(&headers) {
        return metadata_forbidden();
    }
    metadata_response(format!(
        "emulator@{}.iam.gserviceaccount.com",
        state.scenario().metadata_project_id
    ))
}

/// `GET /` — the metadata server's ping answers with the `Metadata-Flavor` header.
pub async fn root() -> Response {
    metadata_response("imagegen emulator")
}
