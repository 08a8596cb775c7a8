//! A worker process: the apalis worker over our backend, plus the timers apalis has no
//! hook for (lease extension, recovery of dead workers' jobs), batch completion
//! (manifest), and graceful shutdown with a deadline.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::*;
use futures::FutureExt as _;
use tracing::Instrument as _;

use super::backend::{OnBatchComplete, QueueBackend, QueuedJob, Shared};
use super::loops::{hand_back, keep_leases, recover_loop, register_loop};
use super::process::{JobContext, Ran, RetryPolicy, process_job};
use super::settler::Settler;
use crate::providers::ImageProvider;
use crate::queue::{JobQueue, Settle};
use crate::storage::OutputStore;

/// What a worker needs to run one project's jobs.
pub struct ProjectRuntime {
    /// The provider for the project's backend.
    pub provider: Box<dyn ImageProvider>,
    /// Where its outputs go.
    pub store: OutputStore,
    /// Its cluster-wide limits (admission in the queue's claim).
    pub limits: crate::limits::ProjectLimits,
    /// Fair-share weight against the worker's other projects (≥ 1).
    pub weight: u32,
    /// Its webhooks: the signer, and the default URL for its events.
    pub webhook: Option<ProjectWebhook>,
    /// What identifies the configuration it runs with (registered for other workers
    /// and `status` to compare).
    pub fingerprint: Fingerprint,
}

/// Where a worker calls and writes for a project, as it registers itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fingerprint {
    /// Digest of the project's configuration.
    pub config: String,
    /// The provider endpoint.
    pub endpoint: String,
    /// The output location.
    pub output: String,
}

/// How a stopping worker handed its work back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Jobs it released to the queue.
    pub released: usize,
    /// Jobs it could not release (or whose finished settle it could not write): their
    /// leases expire and other workers run them, as after a crash.
    pub not_handed_back: usize,
}

/// A project's webhook configuration.
#[derive(Clone)]
pub struct ProjectWebhook {
    /// Signs its deliveries.
    pub signer: Arc<crate::webhooks::Signer>,
    /// Where its job events and batch completions go by default.
    pub default_url: Option<String>,
}

/// Everything a worker process runs with.
pub struct WorkerOptions {
    /// Unique identity (see [`worker_identity`]).
    pub name: String,
    /// Jobs in flight at once.
    pub concurrency: usize,
    /// Longest a job may run before it is abandoned as a timeout (counted retry).
    pub job_timeout: Duration,
    /// Lease visibility timeout (extension runs every third of it).
    pub visibility: Duration,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// On shutdown: how long running jobs may take before they are released.
    pub shutdown_grace: Duration,
    /// When daily quotas reset (`HH:MM` UTC).
    pub quota_reset_utc: crate::config::ResetTime,
    /// Webhook delivery settings; `None` runs no dispatcher (embedded `run`, benches).
    pub webhooks: Option<crate::webhooks::Settings>,
}

/// `host-pid-xxxxxxxx`: unique per process (and per start), readable in `status`.
pub fn worker_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    let rand = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}-{}", std::process::id(), &rand[..8])
}

/// After the grace, how long a stopping worker spends writing the settles of the jobs
/// it finished and handing the rest back: every queue call of the shutdown is bounded
/// by it (with the queue unreachable, the leases expire instead).
pub const HANDBACK: Duration = Duration::from_secs(5);

struct Runner {
    queue: Arc<dyn JobQueue>,
    shared: Arc<Shared>,
    projects: HashMap<String, ProjectRuntime>,
    retry: RetryPolicy,
    quota_reset_utc: crate::config::ResetTime,
}

async fn handle(job: QueuedJob, runner: Data<Arc<Runner>>) -> Result<Ran, BoxDynError> {
    let claimed = job.0;
    let span = tracing::info_span!("job", job.id = %claimed.lease.job, project = %claimed.lease.project, attempt = claimed.attempts + 1);
    async {
        let Some(project) = runner.projects.get(&claimed.lease.project) else {
            return Ok(Ran {
                settle: Settle::Release,
                operation: None,
                started: std::time::Instant::now(),
            });
        };
        let ctx = JobContext {
            provider: project.provider.as_ref(),
            store: &project.store,
            project: &claimed.lease.project,
            retry: runner.retry,
            quota_reset_utc: runner.quota_reset_utc,
        };
        let _running = InFlight::new(&claimed.lease.project);
        let started = std::time::Instant::now();
        let ran = process_job(&ctx, runner.queue.as_ref(), &claimed).await;
        runner.shared.pace.job(started.elapsed());
        Ok(ran)
    }
    .instrument(span)
    .await
}

/// How apalis runs each job: as a tokio task of its own, so the worker's jobs use every
/// runtime thread (a provider response is parsed, its images decoded and hashed inside
/// the job) and a burst of jobs finishing together is not handled one by one on one
/// thread. Jobs that take under a millisecond (no image call does; a no-op benchmark
/// does) run inline in the worker's task, where a spawn would cost more than the job.
/// The returned future aborts the task when dropped, so a worker stopped at its
/// shutdown deadline stops its jobs too.
fn job_executor<F>(
    shared: Arc<Shared>,
) -> impl Fn(F) -> futures::future::BoxFuture<'static, Result<F::Output, tokio::task::JoinError>>
+ Clone
+ Send
+ 'static
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    move |job: F| {
        if shared.pace.job_micros() < INLINE_BELOW_US {
            return async move { Ok(job.await) }.boxed();
        }
        tokio_util::task::AbortOnDropHandle::new(tokio::spawn(job)).boxed()
    }
}

/// Jobs averaging less than this run inline instead of as tasks of their own. Until the
/// first job has finished, jobs run inline: spawning that first wave measured slower on
/// the no-op drain (29.9–40.3k against 35.4–40.8k jobs/s, four runs each, interleaved).
const INLINE_BELOW_US: u64 = 1_000;

/// Counts a job in `imagegen_jobs_in_flight` while it runs (a panic or a timeout drops
/// it too).
struct InFlight(String);

impl InFlight {
    fn new(project: &str) -> Self {
        crate::metrics::get().in_flight(project, 1);
        InFlight(project.to_string())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        crate::metrics::get().in_flight(&self.0, -1);
    }
}

/// A panicking job is dead-lettered with the panic message; the worker lives on.
fn on_panic(e: &Box<dyn std::any::Any + Send>) -> AbortError {
    let msg = e
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| e.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    AbortError::new(std::io::Error::other(format!("the job panicked: {msg}")))
}

/// Runs a worker until `shutdown` resolves, then stops claiming, gives running jobs
/// `shutdown_grace` to finish, and releases the rest to other workers within
/// [`HANDBACK`]. `on_batch_complete` is called after a batch's manifest was written.
pub async fn run_worker(
    queue: Arc<dyn JobQueue>,
    projects: HashMap<String, ProjectRuntime>,
    options: WorkerOptions,
    on_batch_complete: Option<OnBatchComplete>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<ShutdownReport> {
    anyhow::ensure!(!projects.is_empty(), "the worker has no projects to serve");
    let hook = manifest_hook(queue.clone(), &projects, on_batch_complete);
    let mut names: Vec<String> = projects.keys().cloned().collect();
    names.sort();
    let hooks = announce_projects(queue.as_ref(), &projects).await?;
    let fingerprints: Vec<(String, Fingerprint)> = names
        .iter()
        .map(|n| (n.clone(), projects[n].fingerprint.clone()))
        .collect();
    let shared = shared_state(queue.clone(), names, &projects, &options, hook);
    let runner = Arc::new(Runner {
        queue: queue.clone(),
        shared: shared.clone(),
        projects,
        retry: options.retry,
        quota_reset_utc: options.quota_reset_utc,
    });
    let keeper = tokio::spawn(keep_leases(shared.clone(), options.visibility / 3));
    let recovery = tokio::spawn(recover_loop(
        shared.clone(),
        (options.visibility / 4).max(Duration::from_millis(200)),
    ));
    let listeners: Vec<_> = shared
        .projects
        .iter()
        .map(|p| tokio::spawn(super::loops::arrivals_loop(shared.clone(), p.clone())))
        .collect();
    let registry = tokio::spawn(register_loop(
        queue.clone(),
        options.name.clone(),
        fingerprints,
        (options.visibility / 3).max(Duration::from_millis(500)),
    ));

    let shutdown = shutdown.shared();
    let dispatcher = options.webhooks.clone().map(|settings| {
        let d = Arc::new(crate::webhooks::Dispatcher::new(
            queue.clone(),
            settings,
            hooks,
            options.name.clone(),
        ));
        tokio::spawn(d.run(shutdown.clone()))
    });
    let worker = WorkerBuilder::new(options.name.clone())
        .backend(QueueBackend::new(shared.clone()))
        .data(runner)
        .concurrency(options.concurrency)
        .parallelize(job_executor(shared.clone()))
        .layer(apalis::layers::catch_panic::CatchPanicLayer::with_panic_handler(on_panic))
        .timeout(options.job_timeout)
        .build(handle);
    let signal = shutdown.clone();
    // A task of its own, so it runs on the runtime's worker threads (not on a caller's
    // `block_on` thread, which every timer wake-up would have to unpark).
    let run = tokio::spawn(worker.run_until(async move {
        signal.await;
        Ok::<(), std::io::Error>(())
    }));
    let stopped_at = run_until_deadline(run, shutdown, options.shutdown_grace).await;
    registry.abort();
    // Everything from here is bounded: the grace's end (or now, when the worker
    // stopped by itself) plus HANDBACK.
    let handback_by = stopped_at + HANDBACK;
    let report = hand_back(&shared, handback_by).await;
    keeper.abort();
    recovery.abort();
    listeners.iter().for_each(|l| l.abort());
    if let Some(d) = dispatcher {
        // Deliveries in flight finish (each bounded by the attempt timeout); the rest
        // wait in the queue for any worker.
        let _ = tokio::time::timeout_at(handback_by + Duration::from_secs(1), d).await;
    }
    Ok(report)
}

/// The state the backend, the ack layer and the loops of one worker share.
fn shared_state(
    queue: Arc<dyn JobQueue>,
    names: Vec<String>,
    projects: &HashMap<String, ProjectRuntime>,
    options: &WorkerOptions,
    on_batch_complete: OnBatchComplete,
) -> Arc<Shared> {
    Arc::new(Shared {
        weights: names.iter().map(|n| projects[n].weight.max(1)).collect(),
        projects: names,
        settler: Settler::spawn(queue.clone()),
        queue,
        worker: options.name.clone(),
        concurrency: options.concurrency,
        leases: Default::default(),
        retry: options.retry,
        on_batch_complete,
        recovered: Default::default(),
        pace: Default::default(),
        settling: Default::default(),
        arrived: Default::default(),
    })
}

/// The batch-completion hook: writes the batch's manifest, then calls the caller's hook.
fn manifest_hook(
    queue: Arc<dyn JobQueue>,
    projects: &HashMap<String, ProjectRuntime>,
    on_batch_complete: Option<OnBatchComplete>,
) -> OnBatchComplete {
    let stores: Arc<HashMap<String, OutputStore>> = Arc::new(
        projects
            .iter()
            .map(|(k, p)| (k.clone(), p.store.clone()))
            .collect(),
    );
    Arc::new(move |project: String, batch: String| {
        let queue = queue.clone();
        let stores = stores.clone();
        let after = on_batch_complete.clone();
        tokio::spawn(async move {
            if let Some(store) = stores.get(&project) {
                match crate::manifest::write(queue.as_ref(), store, &project, &batch).await {
                    Ok(url) => {
                        tracing::info!(%project, %batch, manifest = %url, "batch completed")
                    }
                    Err(e) => {
                        tracing::error!(%project, %batch, error = %e, "writing the manifest")
                    }
                }
            }
            if let Some(after) = after {
                after(project, batch);
            }
        });
    })
}

/// Tells the queue each project's limits and default webhook; returns what the webhook
/// dispatcher needs per project.
async fn announce_projects(
    queue: &dyn JobQueue,
    projects: &HashMap<String, ProjectRuntime>,
) -> anyhow::Result<HashMap<String, crate::webhooks::ProjectHooks>> {
    let mut hooks = HashMap::new();
    for (name, p) in projects {
        queue.set_limits(name, p.limits.clone());
        let default_url = p.webhook.as_ref().and_then(|w| w.default_url.as_deref());
        queue.set_default_webhook(name, default_url).await?;
        // Every project: one without a secret still has its events (a job line's own
        // webhook_url) ended, as "not sent", instead of left pending.
        hooks.insert(
            name.clone(),
            crate::webhooks::ProjectHooks {
                signer: p.webhook.as_ref().map(|w| w.signer.clone()),
                store: p.store.clone(),
            },
        );
    }
    Ok(hooks)
}

/// Waits for the apalis worker's task to stop by itself after `shutdown`, for at most
/// `grace`; past the grace its jobs are dropped (which aborts their tasks). Returns when
/// the hand-back may start: the grace's end, or now when the worker stopped sooner.
async fn run_until_deadline<E: std::fmt::Display>(
    mut run: tokio::task::JoinHandle<Result<(), E>>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> tokio::time::Instant {
    let stop_at = Arc::new(std::sync::Mutex::new(None::<tokio::time::Instant>));
    let deadline = {
        let stop_at = stop_at.clone();
        async move {
            shutdown.await;
            let at = tokio::time::Instant::now() + grace;
            *stop_at.lock().expect("stop_at") = Some(at);
            tracing::info!(
                grace_s = grace.as_secs(),
                "shutting down: finishing running jobs"
            );
            tokio::time::sleep_until(at).await;
        }
    };
    tokio::select! {
        res = &mut run => {
            match res {
                Ok(Err(e)) => tracing::error!(error = %e, "worker stopped with an error"),
                Err(e) => tracing::error!(error = %e, "the worker task failed"),
                Ok(Ok(())) => {}
            }
        }
        () = deadline => {
            tracing::warn!("shutdown deadline reached: releasing the jobs still running");
            // Dropping the worker drops its jobs' futures, which aborts their tasks.
            run.abort();
            let _ = run.await;
        }
    }
    let now = tokio::time::Instant::now();
    stop_at
        .lock()
        .expect("stop_at")
        .map_or(now, |at| at.min(now))
}
