//! The worker's HTTP side: `/metrics` (the process's series, with the cluster-wide ones
//! read from the queue at scrape time), `/healthz` and `/readyz`.

use std::sync::Arc;

use crate::metrics;
use crate::queue::JobQueue;

/// Reads the cluster-wide series of `projects` from the queue's counters (never a
/// scan) into the metrics.
pub async fn refresh(queue: &dyn JobQueue, projects: &[String]) -> Result<(), String> {
    let m = metrics::get();
    let now = crate::queue::now_ms();
    let failed = |e: crate::queue::QueueError| {
        m.redis_error("metrics");
        e.to_string()
    };
    for p in projects {
        let counts = queue.project_counts(p).await.map_err(failed)?;
        for (state, n) in &counts.by_status {
            m.set_queue_jobs(p, state.as_str(), *n);
        }
        for (op, n) in &counts.enqueued_by_op {
            m.set_jobs_enqueued(p, op, *n);
        }
        m.set_webhooks_pending(p, counts.webhooks_pending);
        for l in queue.lanes(p).await.map_err(failed)? {
            m.set_lane(p, &l, now);
        }
        let hold = queue.project_hold(p).await.map_err(failed)?;
        m.set_held(p, "*", hold.as_ref());
    }
    Ok(())
}

/// What `/readyz` checks.
#[derive(Clone)]
pub struct Readiness {
    /// The queue (Redis reachable?).
    pub queue: Arc<dyn JobQueue>,
    /// Projects served (at least one, each with a provider).
    pub projects: Vec<String>,
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    ready: Readiness,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::http::{StatusCode, header};
    use axum::routing::get as route;
    let ready = Arc::new(ready);
    let metrics_state = ready.clone();
    let app = axum::Router::new()
        .route(
            "/metrics",
            route(move || {
                let r = metrics_state.clone();
                async move {
                    if let Err(e) = refresh(r.queue.as_ref(), &r.projects).await {
                        tracing::warn!(error = %e, "reading queue counters for /metrics");
                    }
                    (
                        [(
                            header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        metrics::get().render(),
                    )
                }
            }),
        )
        .route("/healthz", route(|| async { "ok\n" }))
        .route(
            "/readyz",
            route(move || {
                let r = ready.clone();
                async move {
                    if r.projects.is_empty() {
                        return (
                            StatusCode::SERVICE_UNAVAILABLE,
                            "no projects configured\n".to_string(),
                        );
                    }
                    match r.queue.project_counts(&r.projects[0]).await {
                        Ok(_) => (
                            StatusCode::OK,
                            format!("ready: {} project(s)\n", r.projects.len()),
                        ),
                        Err(e) => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!("queue unreachable: {e}\n"),
                        ),
                    }
                }
            }),
        );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
