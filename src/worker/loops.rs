//! The worker's background duties beside running jobs: registering itself, keeping
//! its leases, recovering expired ones, and handing everything back at shutdown.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;

use super::backend::Shared;
use super::runtime::{Fingerprint, ShutdownReport};
use crate::queue::{JobQueue, Settle};

/// Writes the settles of finished jobs, then releases whatever this worker still
/// holds, all by `by`. What could not be written is counted: those leases expire and
/// other workers run the jobs again.
pub(super) async fn hand_back(shared: &Arc<Shared>, by: tokio::time::Instant) -> ShutdownReport {
    shared.settling.close();
    if tokio::time::timeout_at(by, shared.settling.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            pending = shared.settling.len(),
            "shutdown: settles of finished jobs still unwritten; their leases will expire"
        );
    }
    let left = shared.held();
    let held = left.len();
    let released = std::sync::atomic::AtomicUsize::new(0);
    let released_ref = &released;
    let all = futures::stream::iter(left).for_each_concurrent(64, |lease| async move {
        match tokio::time::timeout_at(by, shared.queue.settle(&[(lease, Settle::Release)])).await {
            Ok(Ok(r)) if r.first().is_some_and(|r| r.applied) => {
                released_ref.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "releasing a job at shutdown"),
            Err(_) => {}
        }
    });
    let _ = tokio::time::timeout_at(by, all).await;
    let released = released.into_inner();
    // A refused release (already settled or taken over) is not work left behind.
    let unsettled = shared.settling.len();
    let report = ShutdownReport {
        released,
        not_handed_back: held.saturating_sub(released).max(unsettled),
    };
    if report.not_handed_back > 0 {
        tracing::error!(
            released = report.released,
            not_handed_back = report.not_handed_back,
            "shutdown: could not hand every job back (the queue did not answer in time); their leases expire and other workers run them"
        );
    } else if held > 0 {
        tracing::info!(released = report.released, "released unfinished jobs");
    }
    report
}

/// Registers this worker for each of its projects every `every`, and warns (once per
/// worker and configuration) when another live worker of a project runs it with a
/// different configuration: they would call or write elsewhere.
pub(super) async fn register_loop(
    queue: Arc<dyn JobQueue>,
    worker: String,
    projects: Vec<(String, Fingerprint)>,
    every: Duration,
) {
    let mut warned: std::collections::HashSet<(String, String, String)> = Default::default();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for (project, fp) in &projects {
            let info = crate::queue::WorkerInfo {
                worker: worker.clone(),
                seen_ms: crate::queue::now_ms(),
                config: fp.config.clone(),
                endpoint: fp.endpoint.clone(),
                output: fp.output.clone(),
                version: env!("CARGO_PKG_VERSION").to_string(),
            };
            if let Err(e) = queue.register_worker(project, &info).await {
                tracing::debug!(%project, error = %e, "registering the worker failed");
                continue;
            }
            let live = every.as_millis() as u64 * 3;
            let Ok(others) = queue.workers(project, live).await else {
                continue;
            };
            for o in others.iter().filter(|o| o.config != fp.config) {
                if warned.insert((project.clone(), o.worker.clone(), o.config.clone())) {
                    tracing::warn!(
                        %project,
                        other = %o.worker,
                        other_endpoint = %o.endpoint,
                        other_output = %o.output,
                        endpoint = %fp.endpoint,
                        output = %fp.output,
                        "another worker serves this project with a different configuration: jobs may call another endpoint or write to another store"
                    );
                }
            }
        }
    }
}

pub(super) async fn keep_leases(shared: Arc<Shared>, every: Duration) {
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let leases = shared.held();
        if leases.is_empty() {
            continue;
        }
        if let Err(e) = shared.queue.extend(&shared.worker, &leases).await {
            tracing::warn!(error = %e, leases = leases.len(), "extending leases failed");
            crate::metrics::get().redis_error("extend");
        }
    }
}

/// Wakes the idle backend when an interactive job of `project` is queued (the queue's
/// notices), so an HTTP request's job waits for a free slot, not for the next poll;
/// subscribes again a second after the notices stop (a lost connection).
pub(super) async fn arrivals_loop(shared: Arc<Shared>, project: String) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let Some(mut rx) = shared.queue.notices(&project).await else {
            return; // this queue tells nothing: the backend polls
        };
        loop {
            match rx.recv().await {
                Ok(crate::queue::Notice::Queued(_)) | Err(RecvError::Lagged(_)) => {
                    shared.arrived.notify_one();
                }
                Ok(_) => {}
                Err(RecvError::Closed) => break,
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

pub(super) async fn recover_loop(shared: Arc<Shared>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for project in &shared.projects {
            match shared.queue.recover(project, &shared.worker).await {
                Ok(r) => {
                    if !r.claimed.is_empty() || !r.dead.is_empty() {
                        tracing::warn!(%project, taken_over = r.claimed.len(), dead_lettered = r.dead.len(), "recovered jobs of a worker that stopped extending its leases");
                    }
                    shared.take_over(r.claimed);
                    for batch in r.completed_batches {
                        (shared.on_batch_complete)(project.clone(), batch);
                    }
                }
                Err(e) => {
                    tracing::warn!(%project, error = %e, "recovering expired leases failed");
                    crate::metrics::get().redis_error("recover");
                }
            }
        }
    }
}
