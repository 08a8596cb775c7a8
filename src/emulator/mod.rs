//! The Vertex AI / Gemini Developer API stand-in (DESIGN.md "Emulator"): same paths,
//! versions, auth checks, validation and error envelopes as Google (spec
//! `google-image-apis.md`), real PNG/JPEG images of the documented dimensions, quotas,
//! latency and fault knobs, and a stats endpoint for tests.
//!
//! It is a product feature for users' development and our tests; it must never call
//! Google, and nothing outside this module depends on its internals beyond the API below.
//!
//! By what it stands in for:
//! - `routes` → `dispatch`: a Google path parsed, authenticated (`auth`), admitted by
//!   quota, delayed, faulted and answered; `call` is what every model call carries,
//!   `envelope` Google's error shapes, `state` the shared state.
//! - `gemini/`: `:generateContent` (the proto check, the request schema, the plan and
//!   the response).
//! - `imagen/`: `:predict` for the Imagen family (parameters, inputs, segmentation,
//!   the response).
//! - `batch`: the batch endpoints of both APIs.
//! - `media/`: input images read and checked; output images synthesised.
//! - `control/`: the knobs and what tests read back: the scenario, faults, quotas,
//!   stats, and the non-Google endpoints that set and show them.

mod auth;
mod batch;
mod call;
mod control;
mod dispatch;
mod envelope;
mod files;
mod gemini;
mod imagen;
mod media;
mod routes;
mod state;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use serde_json::Value;

pub use control::scenario::{
    Faults, LatencyBucket, LatencyConfig, LatencySpec, QuotaLimits, Scenario,
};
pub use control::stats::Stats;
pub use state::{AppState, Shared};

/// Errors starting or configuring the emulator.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// The scenario could not be read, parsed or is out of range.
    #[error("invalid scenario: {0}")]
    Scenario(String),
    /// The listener could not be used.
    #[error("listener error: {0}")]
    Io(#[from] std::io::Error),
    /// A credential could not be minted.
    #[error("credential error: {0}")]
    Credential(String),
}

/// A running emulator; dropping it (or `shutdown`) stops accepting connections.
pub struct EmulatorHandle {
    /// The bound address.
    pub addr: SocketAddr,
    state: Shared,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl EmulatorHandle {
    /// `http://ADDR`, the base URL clients use (`HttpOptions(base_url=…)`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Replaces the scenario (as `POST /emulator/scenario` does).
    pub fn set_scenario(&self, scenario: Scenario) {
        self.state.set_scenario(scenario);
    }

    /// The current scenario.
    pub fn scenario(&self) -> Scenario {
        (*self.state.scenario()).clone()
    }

    /// A snapshot of the counters (as `GET /emulator/stats`).
    pub fn stats(&self) -> Stats {
        self.state.stats.snapshot()
    }

    /// Clears counters and quota windows (as `POST /emulator/stats/reset`).
    pub fn reset_stats(&self) {
        self.state.stats.reset();
        self.state.quota.reset();
    }

    /// Issues an access token directly (skipping the JWT exchange).
    pub fn issue_token(&self) -> String {
        let ttl = self.state.scenario().token_ttl_s;
        self.state.auth.issue(Duration::from_secs(ttl))
    }

    /// Mints a service-account key file (as `POST /emulator/service-accounts`).
    pub fn service_account_key(&self, project_id: &str) -> Result<Value, EmulatorError> {
        auth::mint_service_account(&self.state, project_id, None)
            .map_err(|e| EmulatorError::Credential(e.message))
    }

    /// Invalidates every issued token.
    pub fn revoke_tokens(&self) {
        self.state.auth.revoke_all();
    }

    /// Stops accepting connections and waits for the server task to finish.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The emulator's routes over shared state.
pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/", get(control::root))
        .route("/emulator/health", get(control::health))
        .route(
            "/emulator/scenario",
            get(control::get_scenario).post(control::set_scenario),
        )
        .route("/emulator/stats", get(control::stats))
        .route("/emulator/stats/reset", post(control::reset_stats))
        .route("/emulator/service-accounts", post(control::mint))
        .route("/emulator/tokens/revoke", post(control::revoke))
        .route("/token", post(control::token))
        .route(
            "/computeMetadata/v1/instance/service-accounts/default/token",
            get(control::metadata_token),
        )
        .route(
            "/computeMetadata/v1/instance/service-accounts/default/",
            get(control::metadata_account),
        )
        .route(
            "/computeMetadata/v1/instance/service-accounts/default/email",
            get(control::metadata_email),
        )
        .route(
            "/computeMetadata/v1/project/project-id",
            get(control::metadata_project),
        )
        .fallback(dispatch::api)
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

/// Serves the emulator on `listener` in a background task.
pub async fn spawn(
    listener: tokio::net::TcpListener,
    scenario: Scenario,
) -> Result<EmulatorHandle, EmulatorError> {
    scenario.validate()?;
    let addr = listener.local_addr()?;
    let state: Shared = Arc::new(AppState::new(addr, scenario));
    let app = router(state.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = stopped.await;
        });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "emulator server stopped");
        }
    });
    Ok(EmulatorHandle {
        addr,
        state,
        stop: Some(stop),
        task: Some(task),
    })
}
