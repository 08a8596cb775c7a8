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
pub mod rules;

use std::time::Duration;

use async_trait::async_trait;

use crate::job::JobStatus;

pub use memory::MemoryQueue;
pub use records::{
    AttemptEntry, BatchRecord, CancelReport, DeadLetter, JobRecord, SessionRecord, SessionTurn,
};

/// Retries and deferrals a job record keeps in its `attempts_log` (the newest).
pub const MAX_LOG: usize = 20;
pub use redis::RedisQueue;

/// What queue operations fail with, whichever backend.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The backend answered with an error or could not be reached.
    #[error("{backend}: {message}")]
    Backend {
        /// Which (`redis`).
        backend: &'static str,
        /// What it said.
        message: String,
    },
    /// Something in the queue is not what it should be.
    #[error("{0}")]
    Corrupt(String),
    /// Refused: bad argument, unknown project/id.
    #[error("{0}")]
    Invalid(String),
}

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
    pub aimd: rules::Aimd,
    /// The first wait between probes of a held project or lane (it doubles up to
    /// [`rules::HOLD_PROBE_MAX_MS`]).
    pub hold_probe: Duration,
    /// A chat session untouched this long is gone.
    pub session_ttl: Duration,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            visibility: Duration::from_secs(10),
            max_deliveries: 3,
            retention: Duration::from_secs(3 * 86_400),
            max_wait: Duration::from_secs(86_400),
            aimd: rules::Aimd::default(),
            hold_probe: Duration::from_secs(30),
            session_ttl: Duration::from_secs(7 * 86_400),
        }
    }
}

impl QueueOptions {
    /// From the `[worker]` and `[sessions]` settings.
    pub fn from_settings(settings: &crate::config::Settings) -> Self {
        let w = &settings.worker;
        QueueOptions {
            session_ttl: settings.sessions.ttl,
            visibility: w.visibility_timeout,
            max_deliveries: w.max_deliveries,
            retention: w.retention,
            max_wait: w.max_wait,
            aimd: rules::Aimd {
                decrease: w.aimd_decrease,
                interval_ms: w.aimd_interval.as_millis() as u64,
                default_pause_ms: w.pause_default.as_millis() as u64,
            },
            hold_probe: w.hold_probe,
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
    /// Webhook for this batch's events.
    pub webhook: Option<String>,
    /// Idempotency key: a second submit with the same key within 24 h returns the
    /// first batch (and resumes its enqueueing if that submit was interrupted).
    pub idempotency_key: Option<String>,
    /// Digest of the jobs being submitted: kept with the key, so the same key with
    /// other content is told apart from a resumed submit.
    pub digest: Option<String>,
    /// What its jobs are expected to cost in all (USD; `pricing::PriceTable::estimate`).
    pub estimate_usd: Option<f64>,
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
    /// Interactive (an HTTP API request waiting for its answer): claimed ahead of its
    /// lane's backlog, under the same limits.
    pub interactive: bool,
    /// Jobs of the same batch it waits for (enqueued before it): it is released to its
    /// lane when all have succeeded, and cancelled, naming the one, when one did not.
    pub deps: Vec<Dependency>,
}

/// Dependencies come earlier in their batch (so they are enqueued first).
pub(crate) fn check_deps(jobs: &[NewJob]) -> Result<(), QueueError> {
    for job in jobs {
        if let Some(dep) = job
            .deps
            .iter()
            .find(|d| d.job.is_none() && d.seq >= job.seq)
        {
            return Err(QueueError::Invalid(format!(
                "job {} depends on job {} ({}): a dependency must come earlier in its batch",
                job.seq, dep.seq, dep.name
            )));
        }
    }
    Ok(())
}

/// The event a job's end fires instead of `job.<status>`: a story's assembly (op
/// `assemble`) fires `story.completed`, once per story.
pub fn end_event(op: &str) -> Option<&'static str> {
    (op == "assemble").then_some("story.completed")
}

/// The span a story's assembly records (`Records::story_span`): from the first job it
/// waits for to itself.
pub(crate) fn story_span_of(job: &NewJob) -> Option<(u64, (u64, u64))> {
    if job.op != "assemble" {
        return None;
    }
    let first = job
        .deps
        .iter()
        .filter(|d| d.job.is_none())
        .map(|d| d.seq)
        .min()
        .unwrap_or(job.seq);
    Some((job.line?, (first, job.seq)))
}

/// A job another waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    /// Its position in the batch.
    pub seq: u64,
    /// A job of another batch of the project instead (a session's previous turn): its
    /// id. `seq` is then unused.
    pub job: Option<String>,
    /// What to call it in the waiting job's reason ("frame 3").
    pub name: String,
    /// Run whatever became of it (a story's assembly), not only after a success.
    pub any: bool,
}

impl Dependency {
    /// The job at `seq` of the same batch.
    pub fn in_batch(seq: u64, name: impl Into<String>, any: bool) -> Self {
        Dependency {
            seq,
            job: None,
            name: name.into(),
            any,
        }
    }

    /// The id of the job it names, for a job of `batch`.
    pub fn id(&self, batch: &str) -> String {
        match &self.job {
            Some(id) => id.clone(),
            None => crate::job::batch_job_id(batch, self.seq),
        }
    }
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
        /// What the job produced (boxed: the other variants are small).
        result: Option<Box<crate::job::result::CompactResult>>,
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
    /// Batches the claim completed (their last jobs failed at claim: `max_wait`, too
    /// many deliveries): the caller writes their manifests.
    pub completed: Vec<String>,
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

/// The jobs role: batches in, leases out, settles back.
#[async_trait]
pub trait Jobs: Send + Sync {
    /// Creates a batch (or finds the one an idempotency key names).
    async fn create_batch(&self, batch: &NewBatch) -> Result<BatchHandle, QueueError>;
    /// Enqueues jobs of a batch, atomically; returns how many were new.
    async fn enqueue(
        &self,
        project: &str,
        batch: &str,
        jobs: Vec<NewJob>,
    ) -> Result<u64, QueueError>;
    /// Records the batch's total: no more jobs will come. Returns true if that
    /// completed the batch (every job was already terminal).
    async fn seal(&self, project: &str, batch: &str, total: u64) -> Result<bool, QueueError>;
    /// Admission and claim: up to `max` jobs of `project` for `worker`, within the
    /// project's and each lane's limits ([`rules`]).
    async fn admit(&self, project: &str, worker: &str, max: usize) -> Result<Claim, QueueError>;
    /// Claims up to `max` jobs (admission included), without the wake-up hint.
    async fn claim(
        &self,
        project: &str,
        worker: &str,
        max: usize,
    ) -> Result<Vec<Claimed>, QueueError> {
        Ok(self.admit(project, worker, max).await?.jobs)
    }
    /// Extends the leases (their visibility timeout restarts now).
    async fn extend(&self, worker: &str, leases: &[Lease]) -> Result<(), QueueError>;
    /// Settles deliveries; one report per item, in order.
    async fn settle(&self, items: &[(Lease, Settle)]) -> Result<Vec<SettleReport>, QueueError>;
    /// Takes over (or dead-letters) `project`'s jobs whose leases expired.
    async fn recover(&self, project: &str, worker: &str) -> Result<Recovered, QueueError>;
    /// True when the job has been asked to stop (checked at safe points).
    async fn cancel_requested(&self, lease: &Lease) -> Result<bool, QueueError>;
    /// Cancels a job or a whole batch: queued jobs become `cancelled` at once, running
    /// ones are flagged and stop at their next safe point.
    async fn cancel(&self, project: &str, id: &str) -> Result<CancelReport, QueueError>;
}

/// The lanes role: limits and the feedback that moves them.
#[async_trait]
pub trait Lanes: Send + Sync {
    /// Sets the limits `claim` admits `project`'s jobs under (every worker of a fleet
    /// reads the same configuration; the last call wins).
    fn set_limits(&self, project: &str, limits: crate::limits::ProjectLimits);
    /// Feedback from a 429 or an outage on one lane, for every worker. True when the
    /// call started a hold (it was not held before): say so once.
    async fn throttle(
        &self,
        project: &str,
        lane: &str,
        throttle: &crate::limits::Throttle,
    ) -> Result<bool, QueueError>;
    /// Ends a lane's parking or hold, and the project's hold (operator action):
    /// admission resumes. True when there was one.
    async fn unpark(&self, project: &str, lane: &str) -> Result<bool, QueueError>;
    /// The project's own hold (credentials), if any.
    async fn project_hold(
        &self,
        project: &str,
    ) -> Result<Option<crate::limits::HoldView>, QueueError>;
    /// The project's lanes: limits, AIMD state, in-flight, queued, pauses, 429 rate.
    async fn lanes(&self, project: &str) -> Result<Vec<crate::limits::LaneView>, QueueError>;
    /// What the project's finished jobs cost on the UTC day of `now` (nano-USD): the
    /// project's total under `""`, each model's under its id (what budgets count).
    async fn spend_on(
        &self,
        project: &str,
        now: u64,
    ) -> Result<std::collections::BTreeMap<String, u64>, QueueError>;
}

/// The field of a project's spend hash that budgets count on the UTC day of `now`:
/// `d<days since the epoch>` for the project, `d<day>:<model>` for a model (as
/// `settle.lua` and `claim.lua` write and read them).
pub fn spend_field(now: u64, model: Option<&str>) -> String {
    let day = format!("d{}", now / 86_400_000);
    match model {
        None => day,
        Some(m) => format!("{day}:{m}"),
    }
}

/// A day's spend from the fields budgets count ([`spend_field`]).
pub fn spend_of_day<'a>(
    fields: impl IntoIterator<Item = (&'a String, u64)>,
    now: u64,
) -> std::collections::BTreeMap<String, u64> {
    let day = spend_field(now, None);
    fields
        .into_iter()
        .filter_map(|(k, v)| {
            let rest = k.strip_prefix(&day)?;
            match rest.strip_prefix(':') {
                Some(model) => Some((model.to_string(), v)),
                None => rest.is_empty().then(|| (String::new(), v)),
            }
        })
        .collect()
}

/// The webhook outbox: deliveries enqueued with the transitions that cause them.
#[async_trait]
pub trait Outbox: Send + Sync {
    /// Sets (or clears) the project's default webhook URL: where job events and batch
    /// completions without a URL of their own go. Every process of a fleet writes it
    /// from the same configuration.
    async fn set_default_webhook(&self, project: &str, url: Option<&str>)
    -> Result<(), QueueError>;
    /// Takes up to `max` due deliveries for `lease`.
    async fn hooks_due(
        &self,
        project: &str,
        worker: &str,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<hooks::DueDelivery>, QueueError>;
    /// Stores a delivery's body unless one is stored already; returns the stored one
    /// (every attempt sends the same bytes).
    async fn hooks_body(&self, project: &str, id: &str, body: &str) -> Result<String, QueueError>;
    /// Records an attempt (if one was made) and what happens next. False when the
    /// token is stale.
    async fn hooks_settle(
        &self,
        project: &str,
        id: &str,
        token: &str,
        attempt: Option<&hooks::AttemptRecord>,
        settle: &hooks::HookSettle,
    ) -> Result<bool, QueueError>;
    /// A delivery with its attempts.
    async fn hook(
        &self,
        project: &str,
        id: &str,
    ) -> Result<Option<hooks::DeliveryRecord>, QueueError>;
    /// Endpoints disabled by a 410: (URL, why).
    async fn hooks_disabled(&self, project: &str) -> Result<Vec<(String, String)>, QueueError>;
    /// Re-enables a disabled endpoint; true if it was disabled.
    async fn hooks_enable(&self, project: &str, url: &str) -> Result<bool, QueueError>;
}

/// Records and status: what `status`, `results`, manifests and metrics read.
#[async_trait]
pub trait Records: Send + Sync {
    /// A job's record.
    async fn job(&self, project: &str, id: &str) -> Result<Option<JobRecord>, QueueError>;
    /// A batch's record.
    async fn batch(&self, project: &str, id: &str) -> Result<Option<BatchRecord>, QueueError>;
    /// The records of jobs `from..to` (by seq) of a batch; missing ones are `None`.
    async fn batch_jobs(
        &self,
        project: &str,
        batch: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<Option<JobRecord>>, QueueError>;
    /// Marks the batch's manifest as written at `url`.
    async fn set_manifest(&self, project: &str, batch: &str, url: &str) -> Result<(), QueueError>;
    /// The positions of the first and last job (its assembly) of the story on `line` of
    /// `batch`: the story's jobs are the ones between. Recorded when its assembly (op
    /// `assemble`) is enqueued, from the jobs it waits for.
    async fn story_span(
        &self,
        project: &str,
        batch: &str,
        line: u64,
    ) -> Result<Option<(u64, u64)>, QueueError>;
    /// The newest dead letters of a project.
    async fn dead_letters(&self, project: &str, max: usize) -> Result<Vec<DeadLetter>, QueueError>;
    /// The project's counters (never a scan).
    async fn project_counts(&self, project: &str) -> Result<ProjectCounts, QueueError>;
    /// The hashes of jobs `from..to` of a batch submitted with an idempotency key
    /// (`NewJob::hash`; 0 where none was kept).
    async fn job_hashes(
        &self,
        project: &str,
        batch: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<u32>, QueueError>;
    /// Registers (or refreshes) a worker serving `project`.
    async fn register_worker(&self, project: &str, info: &WorkerInfo) -> Result<(), QueueError>;
    /// The workers that registered for `project` within `live_ms`.
    async fn workers(&self, project: &str, live_ms: u64) -> Result<Vec<WorkerInfo>, QueueError>;
    /// What happens to the project's interactive jobs, as it happens: an HTTP request
    /// waiting for one wakes when it finishes, and an idle worker when one is queued,
    /// instead of polling; `None` when this queue cannot tell (the caller polls).
    async fn notices(&self, project: &str) -> Option<tokio::sync::broadcast::Receiver<Notice>>;
}

/// What [`Records::notices`] tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// An interactive job finished (its id).
    Finished(String),
    /// An interactive job was queued in this lane.
    Queued(String),
}

impl Notice {
    /// As published on Redis: `f:<job>` or `q:<lane>`.
    pub fn parse(text: &str) -> Option<Notice> {
        match text.split_once(':')? {
            ("f", job) => Some(Notice::Finished(job.to_string())),
            ("q", lane) => Some(Notice::Queued(lane.to_string())),
            _ => None,
        }
    }
}

/// Chat sessions: their settings and ordered turns (`/v1/sessions`, `/chat/...`). A
/// session lives [`QueueOptions::session_ttl`] after its last change.
#[async_trait]
pub trait Sessions: Send + Sync {
    /// Stores a new session (its `turns` are ignored: it starts with none).
    async fn create_session(
        &self,
        project: &str,
        session: &SessionRecord,
    ) -> Result<(), QueueError>;
    /// A session with its turns (and the answers they have), oldest first.
    async fn session(&self, project: &str, id: &str) -> Result<Option<SessionRecord>, QueueError>;
    /// Appends `turn`, atomically: its index (0-based) and the turn before it, so the
    /// caller makes its job wait for that one. `None` when the session is gone.
    async fn append_turn(
        &self,
        project: &str,
        id: &str,
        turn: &SessionTurn,
    ) -> Result<Option<(usize, Option<SessionTurn>)>, QueueError>;
    /// Keeps the model's answer to turn `index`; false when the session is gone.
    async fn answer_turn(
        &self,
        project: &str,
        id: &str,
        index: usize,
        answer: &crate::job::Content,
    ) -> Result<bool, QueueError>;
    /// Deletes a session; false when there was none.
    async fn delete_session(&self, project: &str, id: &str) -> Result<bool, QueueError>;
}

/// The whole queue, every role: what workers and the CLI hold (`Arc<dyn JobQueue>`).
pub trait JobQueue: Jobs + Lanes + Outbox + Records + Sessions + 'static {}

impl<T: Jobs + Lanes + Outbox + Records + Sessions + 'static> JobQueue for T {}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
