//! The durable job queue: one trait ([`JobQueue`]), two implementations.
//!
//! - [`RedisQueue`]: Redis Streams + Lua, one stream and consumer group per project, keys
//!   hash-tagged `{p:<project>}` so a project lives in one Cluster slot. Shared by every
//!   worker process of a fleet.
//! - [`MemoryQueue`]: the in-process twin with the same semantics, for `imagegen run`.
//!
//! Semantics both honour (the trait-level suite in `tests/it/queue.rs` runs against
//! both):
//! - A batch's jobs have deterministic ids (`{batch}.{seq:06}`, [`crate::job::batch_job_id`]).
//!   `enqueue` is atomic per call; a batch is `sealed` with its total once the submit
//!   has enqueued everything, and it completes exactly once, when every job is terminal.
//! - `claim` hands out a [`Lease`]: the job is `running`, owned by the claiming worker
//!   until it is settled, released, or its lease is not extended for the visibility
//!   timeout, after which another worker's `recover` takes it over (or dead-letters it
//!   after `max_deliveries` unsettled deliveries).
//! - A settle is fenced by its lease: once a job was recovered and handed to another
//!   worker, the old worker's settle is refused (`applied == false`), so counters never
//!   count a job twice.
//! - Counters (per batch and per project) move on every transition; nothing scans.

pub mod hooks;
pub mod memory;
pub mod records;
pub mod redis;

use std::time::Duration;

use futures::FutureExt as _;
use futures::future::BoxFuture;

use crate::job::JobStatus;

pub use memory::MemoryQueue;
pub use records::{AttemptEntry, BatchRecord, CancelReport, DeadLetter, JobRecord};

/// Retries and deferrals a job record keeps in its `attempts_log` (the newest).
pub const MAX_LOG: usize = 20;
pub use redis::RedisQueue;

/// What queue operations fail with.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Redis answered with an error or the connection failed.
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    /// Something in the queue is not what it should be.
    #[error("{0}")]
    Corrupt(String),
    /// Refused: bad argument, unknown project/id.
    #[error("{0}")]
    Invalid(String),
}

/// The future every queue operation returns.
pub type Fut<'a, T> = BoxFuture<'a, Result<T, QueueError>>;

/// Knobs shared by both implementations.
#[derive(Debug, Clone, Copy)]
pub struct QueueOptions {
    /// A lease not extended for this long may be recovered by another worker.
    pub visibility: Duration,
    /// Unsettled deliveries before a job is dead-lettered.
    pub max_deliveries: u32,
    /// How long finished records are kept.
    pub retention: Duration,
    /// A job not run this long after it was enqueued fails (zero: no deadline).
    pub max_wait: Duration,
    /// Adaptive control on 429s.
    pub aimd: crate::limits::Aimd,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            visibility: Duration::from_secs(10),
            max_deliveries: 3,
            retention: Duration::from_secs(3 * 86_400),
            max_wait: Duration::from_secs(86_400),
            aimd: crate::limits::Aimd::default(),
        }
    }
}

impl QueueOptions {
    /// From the `[worker]` settings.
    pub fn from_settings(w: &crate::config::WorkerConfig) -> Self {
        QueueOptions {
            visibility: Duration::from_secs(w.visibility_timeout_s),
            max_deliveries: w.max_deliveries,
            retention: Duration::from_secs(w.retention_s),
            max_wait: Duration::from_secs(w.max_wait_s),
            aimd: crate::limits::Aimd::from_settings(w),
        }
    }
}

/// A new batch.
#[derive(Debug, Clone, Default)]
pub struct NewBatch {
    /// Project the batch belongs to.
    pub project: String,
    /// Where the jobs came from (file name), for status output.
    pub source: String,
    /// Webhook for this batch's events (issue 5 delivers them).
    pub webhook: Option<String>,
    /// Idempotency key: a second submit with the same key within 24 h returns the
    /// first batch (and resumes its enqueueing if that submit was interrupted).
    pub idempotency_key: Option<String>,
    /// Digest of the jobs being submitted: kept with the key, so the same key with
    /// other content is told apart from a resumed submit.
    pub digest: Option<String>,
}

/// What `create_batch` found or made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchHandle {
    /// The batch id.
    pub id: String,
    /// True when the idempotency key matched an existing batch.
    pub existing: bool,
    /// Jobs already enqueued (non-zero only for an existing batch).
    pub enqueued: u64,
    /// True when the existing batch was sealed (its submit finished).
    pub sealed: bool,
    /// The existing batch's digest of its jobs (its submit's `NewBatch::digest`).
    pub digest: Option<String>,
}

/// One job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// Position in the batch (0-based); decides the job id.
    pub seq: u64,
    /// Line of the job file it came from.
    pub line: Option<u64>,
    /// The JobSpec as JSON: the payload.
    pub spec: String,
    /// Its lane: the model it calls (limits and quotas are per project + model).
    pub lane: String,
    /// Its operation (`generate`, `edit`, …): counted per project for metrics.
    pub op: String,
    /// The job's own webhook URL: its terminal event goes there instead of the
    /// project's default.
    pub webhook: Option<String>,
    /// A short hash of the job's spec, kept per position when the submit has an
    /// idempotency key (a conflicting resubmit names the first line that differs).
    pub hash: Option<u32>,
}

/// A job handed to a worker.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Lease {
    /// Project.
    pub project: String,
    /// Job id.
    pub job: String,
    /// Delivery token (the stream entry id): fences settles of stale deliveries.
    pub token: String,
    /// The job's lane (model).
    pub lane: String,
}

/// A claimed job.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// Its lease.
    pub lease: Lease,
    /// The JobSpec JSON as enqueued (decoding is the worker's business).
    pub payload: String,
    /// Provider attempts already spent (counted retries).
    pub attempts: u32,
    /// Deliveries in a row without a settle, this one included.
    pub deliveries: u32,
    /// Line of the job file.
    pub line: Option<u64>,
}

/// How a delivery ends.
#[derive(Debug, Clone, PartialEq)]
pub enum Settle {
    /// Terminal: `status` must be terminal. `result` is the compact result JSON kept in
    /// the record (and in the manifest).
    Finish {
        /// Final status.
        status: JobStatus,
        /// Reason for anything but success.
        error: Option<String>,
        /// What the job produced.
        result: Option<crate::job::result::CompactResult>,
        /// Also record it in the dead-letter list (undecodable payload, panics).
        dead_letter: bool,
    },
    /// Run again after `delay`. `count` adds one to the job's attempts.
    Retry {
        /// Delay before the job is due again.
        delay: Duration,
        /// Whether this counts against the attempt budget.
        count: bool,
        /// Why.
        error: String,
    },
    /// Back to the queue at once, not counted (shutdown).
    Release,
}

/// What a settle did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SettleReport {
    /// False when the lease was stale (the job was recovered by someone else).
    pub applied: bool,
    /// True when this settle made its batch complete (exactly one settle per batch).
    pub batch_completed: bool,
}

/// What a recovery pass did.
#[derive(Debug, Clone, Default)]
pub struct Recovered {
    /// Jobs taken over from a dead worker: the caller now holds them and runs them
    /// next (they have waited longest).
    pub claimed: Vec<Claimed>,
    /// Jobs dead-lettered because they were delivered too often without finishing.
    pub dead: Vec<String>,
    /// Batches that these dead-letterings completed.
    pub completed_batches: Vec<String>,
}

/// What one claim got.
#[derive(Debug, Clone, Default)]
pub struct Claim {
    /// The jobs, now leased to the caller.
    pub jobs: Vec<Claimed>,
    /// When a lane held back by a rate limit or pause may next admit (unix ms): a
    /// worker with free slots polls again then.
    pub wake_ms: Option<u64>,
}

/// A project's cluster-wide counters (read for metrics; never a scan).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectCounts {
    /// Jobs by status.
    pub by_status: std::collections::BTreeMap<JobStatus, u64>,
    /// Jobs ever enqueued, by operation.
    pub enqueued_by_op: std::collections::BTreeMap<String, u64>,
    /// Webhook deliveries waiting (due, scheduled for a retry, or being attempted).
    pub webhooks_pending: u64,
}

/// A worker serving a project, as it registers itself (every few seconds): who it
/// is, and what configuration of the project it runs with, so two workers that would
/// write to different places are seen.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WorkerInfo {
    /// Its identity (`host-pid-xxxxxxxx`).
    pub worker: String,
    /// When it last registered (ms since epoch).
    pub seen_ms: u64,
    /// Digest of the project's configuration it runs with.
    pub config: String,
    /// The provider endpoint it calls.
    pub endpoint: String,
    /// The output location it writes to.
    pub output: String,
    /// Its imagegen version.
    pub version: String,
}

/// The durable queue. Object-safe: workers and CLI hold an `Arc<dyn JobQueue>`.
pub trait JobQueue: Send + Sync + 'static {
    /// Creates a batch (or finds the one an idempotency key names).
    fn create_batch<'a>(&'a self, batch: &'a NewBatch) -> Fut<'a, BatchHandle>;
    /// Enqueues jobs of a batch, atomically; returns how many were new.
    fn enqueue<'a>(&'a self, project: &'a str, batch: &'a str, jobs: Vec<NewJob>) -> Fut<'a, u64>;
    /// Records the batch's total: no more jobs will come. Returns true if that
    /// completed the batch (every job was already terminal).
    fn seal<'a>(&'a self, project: &'a str, batch: &'a str, total: u64) -> Fut<'a, bool>;
    /// Sets the limits `claim` admits `project`'s jobs under (every worker of a fleet
    /// reads the same configuration; the last call wins).
    fn set_limits(&self, project: &str, limits: crate::limits::ProjectLimits);
    /// Admission and claim: up to `max` jobs of `project` for `worker`, within the
    /// project's and each lane's limits.
    fn admit<'a>(&'a self, project: &'a str, worker: &'a str, max: usize) -> Fut<'a, Claim>;
    /// Claims up to `max` jobs (admission included), without the wake-up hint.
    fn claim<'a>(&'a self, project: &'a str, worker: &'a str, max: usize) -> Fut<'a, Vec<Claimed>> {
        async move { Ok(self.admit(project, worker, max).await?.jobs) }.boxed()
    }
    /// Feedback from a 429 on one lane, for every worker.
    fn throttle<'a>(
        &'a self,
        project: &'a str,
        lane: &'a str,
        throttle: &'a crate::limits::Throttle,
    ) -> Fut<'a, ()>;
    /// Ends a lane's parking (operator action): admission resumes.
    fn unpark<'a>(&'a self, project: &'a str, lane: &'a str) -> Fut<'a, bool>;
    /// The project's lanes: limits, AIMD state, in-flight, queued, pauses, 429 rate.
    fn lanes<'a>(&'a self, project: &'a str) -> Fut<'a, Vec<crate::limits::LaneView>>;
    /// Extends the leases (their visibility timeout restarts now).
    fn extend<'a>(&'a self, worker: &'a str, leases: &'a [Lease]) -> Fut<'a, ()>;
    /// Settles deliveries; one report per item, in order.
    fn settle<'a>(&'a self, items: &'a [(Lease, Settle)]) -> Fut<'a, Vec<SettleReport>>;
    /// Takes over (or dead-letters) `project`'s jobs whose leases expired.
    fn recover<'a>(&'a self, project: &'a str, worker: &'a str) -> Fut<'a, Recovered>;
    /// True when the job has been asked to stop (checked at safe points).
    fn cancel_requested<'a>(&'a self, lease: &'a Lease) -> Fut<'a, bool>;
    /// Cancels a job or a whole batch: queued jobs become `cancelled` at once, running
    /// ones are flagged and stop at their next safe point.
    fn cancel<'a>(&'a self, project: &'a str, id: &'a str) -> Fut<'a, CancelReport>;
    /// A job's record.
    fn job<'a>(&'a self, project: &'a str, id: &'a str) -> Fut<'a, Option<JobRecord>>;
    /// A batch's record.
    fn batch<'a>(&'a self, project: &'a str, id: &'a str) -> Fut<'a, Option<BatchRecord>>;
    /// The records of jobs `from..to` (by seq) of a batch; missing ones are `None`.
    fn batch_jobs<'a>(
        &'a self,
        project: &'a str,
        batch: &'a str,
        from: u64,
        to: u64,
    ) -> Fut<'a, Vec<Option<JobRecord>>>;
    /// Marks the batch's manifest as written at `url`.
    fn set_manifest<'a>(&'a self, project: &'a str, batch: &'a str, url: &'a str) -> Fut<'a, ()>;
    /// The newest dead letters of a project.
    fn dead_letters<'a>(&'a self, project: &'a str, max: usize) -> Fut<'a, Vec<DeadLetter>>;
    /// The project's counters.
    fn project_counts<'a>(&'a self, project: &'a str) -> Fut<'a, ProjectCounts>;
    /// The hashes of jobs `from..to` of a batch submitted with an idempotency key
    /// (`NewJob::hash`; 0 where none was kept).
    fn job_hashes<'a>(
        &'a self,
        project: &'a str,
        batch: &'a str,
        from: u64,
        to: u64,
    ) -> Fut<'a, Vec<u32>>;
    /// Registers (or refreshes) a worker serving `project`.
    fn register_worker<'a>(&'a self, project: &'a str, info: &'a WorkerInfo) -> Fut<'a, ()>;
    /// The workers that registered for `project` within `live_ms`.
    fn workers<'a>(&'a self, project: &'a str, live_ms: u64) -> Fut<'a, Vec<WorkerInfo>>;

    // ---- webhook deliveries (`hooks`) ---------------------------------------------
    /// Sets (or clears) the project's default webhook URL: where job events and batch
    /// completions without a URL of their own go. Every process of a fleet writes it
    /// from the same configuration.
    fn set_default_webhook<'a>(&'a self, project: &'a str, url: Option<&'a str>) -> Fut<'a, ()>;
    /// Takes up to `max` due deliveries for `lease`.
    fn hooks_due<'a>(
        &'a self,
        project: &'a str,
        worker: &'a str,
        max: usize,
        lease: Duration,
    ) -> Fut<'a, Vec<hooks::DueDelivery>>;
    /// Stores a delivery's body unless one is stored already; returns the stored one
    /// (every attempt sends the same bytes).
    fn hooks_body<'a>(&'a self, project: &'a str, id: &'a str, body: &'a str) -> Fut<'a, String>;
    /// Records an attempt (if one was made) and what happens next. False when the
    /// token is stale.
    fn hooks_settle<'a>(
        &'a self,
        project: &'a str,
        id: &'a str,
        token: &'a str,
        attempt: Option<&'a hooks::AttemptRecord>,
        settle: &'a hooks::HookSettle,
    ) -> Fut<'a, bool>;
    /// A delivery with its attempts.
    fn hook<'a>(&'a self, project: &'a str, id: &'a str) -> Fut<'a, Option<hooks::DeliveryRecord>>;
    /// Endpoints disabled by a 410: (URL, why).
    fn hooks_disabled<'a>(&'a self, project: &'a str) -> Fut<'a, Vec<(String, String)>>;
    /// Re-enables a disabled endpoint; true if it was disabled.
    fn hooks_enable<'a>(&'a self, project: &'a str, url: &'a str) -> Fut<'a, bool>;
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
