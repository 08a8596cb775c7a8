//! The memory queue's typed state and its transitions. Decisions come from
//! [`crate::queue::rules`]; this is the bookkeeping the Redis scripts do on hashes and
//! streams (`lib.lua`): counters per status, lanes' in-flight counts, batch lists,
//! webhook events enqueued with the transition that causes them.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::Instant;

use crate::job::result::CompactResult;
use crate::job::{JobStatus, split_job_id};
use crate::limits::ProjectLimits;
use crate::queue::hooks::{AttemptRecord, DeliveryRecord, message_id};
use crate::queue::rules::{self, LaneState, Window};
use crate::queue::spend_field;
use crate::queue::{
    AttemptEntry, BatchRecord, Claimed, DeadLetter, JobRecord, Lease, MAX_LOG, WorkerInfo,
};

/// A job.
#[derive(Debug, Clone, Default)]
pub(super) struct JobState {
    pub spec: Option<String>,
    pub status: JobStatus,
    pub lane: String,
    pub line: Option<u64>,
    pub webhook: Option<String>,
    pub attempts: u32,
    pub deliveries: u32,
    pub enqueued_ms: u64,
    pub first_started_ms: Option<u64>,
    pub started_ms: Option<u64>,
    pub finished_ms: Option<u64>,
    pub error: Option<String>,
    pub log: VecDeque<AttemptEntry>,
    pub result: Option<CompactResult>,
    /// Current delivery token.
    pub token: Option<String>,
    pub worker: Option<String>,
    pub cancel: bool,
    /// Interactive: queued ahead of the lane's backlog (and again after a retry).
    pub urgent: bool,
    /// Dependencies still pending (a waiting job is in no lane yet).
    pub deps_left: u64,
    /// Jobs waiting for this one: (their id, what they call this one, whether they run
    /// whatever became of it).
    pub dependents: Vec<(String, String, bool)>,
    /// The event its end fires instead of `job.<status>` (`queue::end_event`).
    pub event: Option<&'static str>,
}

impl JobState {
    pub fn record(&self, project: &str, id: &str) -> JobRecord {
        JobRecord {
            id: id.to_string(),
            project: project.to_string(),
            batch: split_job_id(id).map(|(b, _)| b.to_string()),
            status: self.status,
            attempts: self.attempts,
            line: self.line,
            enqueued_ms: Some(self.enqueued_ms),
            first_started_ms: self.first_started_ms,
            started_ms: self.started_ms,
            finished_ms: self.finished_ms,
            error: self
                .error
                .clone()
                .filter(|e| !e.is_empty() && self.status != JobStatus::Succeeded),
            attempts_log: self.log.iter().cloned().collect(),
            waiting_for: Some(self.deps_left).filter(|n| *n > 0),
            result: self.result.clone(),
            worker: self.worker.clone(),
            cancel_requested: self.cancel,
        }
    }

    /// One more delivery to `worker` under `token`: what the worker gets.
    pub fn deliver(&mut self, lease: Lease, worker: &str, now: u64) -> Claimed {
        self.deliveries += 1;
        self.worker = Some(worker.to_string());
        self.started_ms = Some(now);
        Claimed {
            lease,
            payload: self.spec.clone().unwrap_or_default(),
            attempts: self.attempts,
            deliveries: self.deliveries,
            line: self.line,
        }
    }

    /// Appends a retry or deferral to the log (newest last, at most `MAX_LOG`).
    pub fn log_attempt(&mut self, error: &str, counted: bool, now: u64) {
        self.log.push_back(AttemptEntry {
            at_ms: now,
            error: error.to_string(),
            counted,
        });
        while self.log.len() > MAX_LOG {
            self.log.pop_front();
        }
    }
}

/// A batch.
#[derive(Debug, Clone, Default)]
pub(super) struct BatchState {
    pub created_ms: u64,
    pub source: String,
    pub webhook: Option<String>,
    pub digest: Option<String>,
    pub enqueued: u64,
    pub total: Option<u64>,
    pub counts: BTreeMap<JobStatus, i64>,
    pub done: u64,
    pub first_ms: Option<u64>,
    pub last_ms: Option<u64>,
    pub completed_ms: Option<u64>,
    pub manifest: Option<String>,
    pub cancel: bool,
    /// Newest first, at most 1,000.
    pub failures: VecDeque<String>,
    pub cancelled: VecDeque<String>,
    /// Per position, for idempotent submits.
    pub hashes: Vec<u32>,
    /// Stories by line: their first and last job (`Records::story_span`).
    pub stories: HashMap<u64, (u64, u64)>,
    /// What its finished jobs cost, nano-USD.
    pub cost_nano: u64,
    /// The submit's estimate for all of it, nano-USD.
    pub estimate_nano: Option<u64>,
}

impl BatchState {
    pub fn record(&self, project: &str, id: &str) -> BatchRecord {
        BatchRecord {
            id: id.to_string(),
            project: project.to_string(),
            source: self.source.clone(),
            webhook: self.webhook.clone().filter(|w| !w.is_empty()),
            created_ms: self.created_ms,
            enqueued: self.enqueued,
            total: self.total,
            counts: JobStatus::ALL
                .into_iter()
                .map(|s| (s, self.counts.get(&s).copied().unwrap_or(0).max(0) as u64))
                .collect(),
            done: self.done,
            first_start_ms: self.first_ms,
            last_finish_ms: self.last_ms,
            completed_ms: self.completed_ms,
            manifest: self.manifest.clone(),
            cancel_requested: self.cancel,
            failures: self.failures.iter().cloned().collect(),
            cancelled: self.cancelled.iter().cloned().collect(),
            digest: self.digest.clone(),
            cost_usd: self.cost_nano as f64 / crate::pricing::NANO,
            estimate_usd: self.estimate_nano.map(|n| n as f64 / crate::pricing::NANO),
        }
    }
}

/// A lane's queued jobs: interactive ones (the HTTP API's) are taken first.
#[derive(Debug, Default)]
pub(super) struct Ready {
    pub urgent: VecDeque<String>,
    pub backlog: VecDeque<String>,
}

impl Ready {
    /// Queues `id` (at the back of its kind).
    pub fn push(&mut self, id: String, urgent: bool) {
        if urgent {
            self.urgent.push_back(id);
        } else {
            self.backlog.push_back(id);
        }
    }

    /// The next job: interactive first, or only of one kind.
    pub fn pop(&mut self, only: Option<bool>) -> Option<String> {
        match only {
            Some(true) => self.urgent.pop_front(),
            Some(false) => self.backlog.pop_front(),
            None => self.urgent.pop_front().or_else(|| self.backlog.pop_front()),
        }
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.urgent.is_empty() && self.backlog.is_empty()
    }

    /// Queued jobs.
    pub fn len(&self) -> usize {
        self.urgent.len() + self.backlog.len()
    }
}

/// One project + model: its queue and admission state.
#[derive(Debug, Default)]
pub(super) struct Lane {
    pub ready: Ready,
    pub state: LaneState,
    pub why: String,
    /// Last AIMD decrease, ms.
    pub dec_ms: u64,
    pub window: Window,
    /// The lane's hold (its next probe is `state.hold_ms`).
    pub hold: Option<Hold>,
    /// Its own daily budget's hold (spent).
    pub budget_hold: Option<Hold>,
}

/// A hold of a lane or a project.
#[derive(Debug, Clone)]
pub(super) struct Hold {
    pub reason: crate::limits::HoldReason,
    pub message: String,
    pub since_ms: u64,
    pub probes: u32,
}

impl Hold {
    /// The data of its `lane.held` / `lane.resumed` events.
    pub fn event(
        &self,
        project: &str,
        model: Option<&str>,
        held_for_ms: Option<u64>,
    ) -> crate::queue::hooks::LaneEvent {
        crate::queue::hooks::LaneEvent {
            project: project.to_string(),
            model: model.map(str::to_string),
            reason: self.reason.as_str().to_string(),
            message: self.message.clone(),
            held_since_ms: self.since_ms,
            held_for_ms,
        }
    }

    pub fn view(&self, next_probe_ms: u64) -> crate::limits::HoldView {
        crate::limits::HoldView {
            reason: self.reason.as_str().to_string(),
            message: self.message.clone(),
            since_ms: self.since_ms,
            next_probe_ms,
            probes: self.probes,
        }
    }
}

/// A scope's hold as `status` shows it: its outage's (next probe at `next_probe_ms`),
/// else its spent budget's (which ends with the day), as `redis/lanes.rs` reads them.
pub(super) fn hold_view(
    outage: Option<&Hold>,
    next_probe_ms: u64,
    budget: Option<&Hold>,
) -> Option<crate::limits::HoldView> {
    outage
        .map(|h| h.view(next_probe_ms))
        .or_else(|| budget.map(|h| h.view(crate::queue::rules::next_day_ms(h.since_ms))))
}

/// A webhook delivery.
#[derive(Debug, Clone, Default)]
pub(super) struct Delivery {
    pub url: String,
    pub event: String,
    pub subject: String,
    /// `pending`, `delivering`, `delivered`, `failed`.
    pub state: &'static str,
    pub created_ms: u64,
    pub attempts: u32,
    pub token: Option<String>,
    pub body: Option<String>,
    pub next_ms: Option<u64>,
    pub error: Option<String>,
    pub log: Vec<AttemptRecord>,
}

impl Delivery {
    pub fn record(&self, id: &str) -> DeliveryRecord {
        DeliveryRecord {
            id: id.to_string(),
            event: self.event.clone(),
            subject: self.subject.clone(),
            url: self.url.clone(),
            state: self.state.to_string(),
            created_ms: self.created_ms,
            next_ms: self.next_ms.filter(|_| self.state == "pending"),
            error: self.error.clone().filter(|e| !e.is_empty()),
            attempts: self.log.clone(),
        }
    }
}

/// A project's webhook outbox.
#[derive(Debug, Default)]
pub(super) struct Hooks {
    pub default: Option<String>,
    pub records: HashMap<String, Delivery>,
    /// id → due ms
    pub due: HashMap<String, u64>,
    /// disabled endpoint → why
    pub off: BTreeMap<String, String>,
}

impl Hooks {
    /// Enqueues `event` about `subject` once, for the subject's own URL or the default.
    pub fn enqueue(&mut self, event: &str, subject: &str, own: Option<&str>, now: u64) {
        self.enqueue_body(event, subject, own, now, None);
    }

    /// Like `enqueue`, with the body already rendered (lane events).
    pub fn enqueue_body(
        &mut self,
        event: &str,
        subject: &str,
        own: Option<&str>,
        now: u64,
        body: Option<String>,
    ) {
        let Some(url) = rules::hook_target(own, self.default.as_deref()) else {
            return;
        };
        let id = message_id(subject);
        if self.records.contains_key(&id) {
            return;
        }
        self.records.insert(
            id.clone(),
            Delivery {
                url: url.to_string(),
                event: event.to_string(),
                subject: subject.to_string(),
                state: "pending",
                created_ms: now,
                body,
                ..Delivery::default()
            },
        );
        self.due.insert(id, now);
    }
}

/// Everything of one project.
#[derive(Default)]
pub(super) struct Project {
    pub lanes: BTreeMap<String, Lane>,
    pub limits: ProjectLimits,
    /// The project's own GCRA state.
    pub tat: f64,
    pub rr: usize,
    /// Jobs by status (never a scan).
    pub counts: BTreeMap<JobStatus, i64>,
    pub delayed: BTreeSet<(u64, String)>,
    pub jobs: HashMap<String, JobState>,
    pub batches: HashMap<String, BatchState>,
    pub workers: BTreeMap<String, WorkerInfo>,
    /// token → (job, worker, last extended)
    pub pending: HashMap<String, (String, String, Instant)>,
    pub dlq: Vec<DeadLetter>,
    pub idem: HashMap<String, String>,
    pub enqueued_by_op: BTreeMap<String, u64>,
    pub hooks: Hooks,
    /// The project's hold (credentials), and when its next probe may go.
    pub hold: Option<Hold>,
    /// Its daily budget's hold (spent): nothing is probed; it ends with the day.
    pub budget_hold: Option<Hold>,
    pub hold_ms: u64,
    /// Chat sessions by id, with when each was last touched (ms).
    pub sessions: HashMap<String, (crate::queue::SessionRecord, u64)>,
    /// Jobs waiting for a job not enqueued yet (by its id): its dependents once it is.
    pub early_dependents: HashMap<String, Vec<(String, String, bool)>>,
    /// Where interactive jobs' notices go (once someone listens).
    pub notices: Option<tokio::sync::broadcast::Sender<crate::queue::Notice>>,
    /// What finished jobs cost, nano-USD, by day (`d<days since the epoch>`) and by day
    /// and lane (`d<day>:<model>`), as Redis keeps it.
    pub spend: HashMap<String, u64>,
}

impl Project {
    /// Adds a finished job's cost to its batch and to its project's day.
    pub fn add_cost(&mut self, job: &str, lane: &str, nano: u64, now: u64) {
        if nano == 0 {
            return;
        }
        if let Some(bt) = split_job_id(job).and_then(|(b, _)| self.batches.get_mut(b)) {
            bt.cost_nano += nano;
        }
        for field in [spend_field(now, Some(lane)), spend_field(now, None)] {
            *self.spend.entry(field).or_default() += nano;
        }
    }
}

fn bump(counts: &mut BTreeMap<JobStatus, i64>, status: JobStatus, by: i64) {
    *counts.entry(status).or_default() += by;
}

impl Project {
    pub fn lane(&mut self, lane: &str) -> &mut Lane {
        self.lanes.entry(lane.to_string()).or_default()
    }

    pub fn running(&self) -> u64 {
        self.counts
            .get(&JobStatus::Running)
            .copied()
            .unwrap_or(0)
            .max(0) as u64
    }

    /// Moves a job between statuses in the project's and its batch's counters and its
    /// lane's in-flight count.
    pub fn move_status(&mut self, job: &str, from: JobStatus, to: JobStatus) {
        bump(&mut self.counts, from, -1);
        bump(&mut self.counts, to, 1);
        let lane = self
            .jobs
            .get(job)
            .map(|j| j.lane.clone())
            .unwrap_or_default();
        let l = &mut self.lane(&lane).state;
        if from == JobStatus::Running {
            l.run = l.run.saturating_sub(1);
        }
        if to == JobStatus::Running {
            l.run += 1;
        }
        if let Some((b, _)) = split_job_id(job)
            && let Some(bt) = self.batches.get_mut(b)
        {
            bump(&mut bt.counts, from, -1);
            bump(&mut bt.counts, to, 1);
        }
    }

    /// Completes the batch if the rules say so; true for the one call that does.
    pub fn maybe_complete(&mut self, batch: &str, now: u64) -> bool {
        let Some(bt) = self.batches.get_mut(batch) else {
            return false;
        };
        if !rules::batch_complete(bt.total, bt.done, bt.completed_ms.is_some()) {
            return false;
        }
        bt.completed_ms = Some(now);
        let own = bt.webhook.clone();
        self.hooks
            .enqueue("batch.completed", batch, own.as_deref(), now);
        true
    }

    /// Terminal transition; true when it completed the job's batch.
    /// Fails a running job as a rule decided (`f`: dead-lettered too when it says so);
    /// returns its batch when that completed the batch.
    pub fn fail_running(&mut self, job: &str, f: &rules::Failure, now: u64) -> Option<String> {
        if f.dead_letter {
            self.dead_letter(job, &f.reason, now);
        }
        let completed = self.finish(
            job,
            JobStatus::Running,
            JobStatus::Failed,
            Some(&f.reason),
            None,
            now,
        );
        completed
            .then(|| split_job_id(job).map(|(b, _)| b.to_string()))
            .flatten()
    }

    pub fn finish(
        &mut self,
        job: &str,
        from: JobStatus,
        status: JobStatus,
        error: Option<&str>,
        result: Option<&CompactResult>,
        now: u64,
    ) -> bool {
        let Some(j) = self.jobs.get_mut(job) else {
            return false;
        };
        j.status = status;
        j.finished_ms = Some(now);
        // A success keeps no error: the retries it went through are in its log.
        j.error = error.filter(|e| !e.is_empty()).map(str::to_string);
        if let Some(r) = result {
            j.result = Some(r.clone());
        }
        j.spec = None;
        j.token = None;
        j.cancel = false;
        j.deliveries = 0;
        j.deps_left = 0;
        if let (true, Some(tx)) = (j.urgent, &self.notices) {
            let _ = tx.send(crate::queue::Notice::Finished(job.to_string()));
        }
        let waiting = std::mem::take(&mut j.dependents);
        let own = j.webhook.clone();
        let event = j
            .event
            .map_or_else(|| format!("job.{}", status.as_str()), str::to_string);
        self.hooks.enqueue(&event, job, own.as_deref(), now);
        self.move_status(job, from, status);
        self.after_finish(waiting, status, error.unwrap_or(""), now);
        let Some((batch, _)) = split_job_id(job) else {
            return false;
        };
        if let Some(bt) = self.batches.get_mut(batch) {
            bt.done += 1;
            bt.last_ms = Some(now);
            let list = match status {
                JobStatus::Succeeded => None,
                // Cancellations are kept apart: a cancel is not a problem to show.
                JobStatus::Cancelled => Some(&mut bt.cancelled),
                _ => Some(&mut bt.failures),
            };
            if let Some(list) = list {
                list.push_front(job.to_string());
                list.truncate(1000);
            }
        }
        self.maybe_complete(batch, now)
    }

    /// Back in its lane's queue at once (status queued).
    /// After a job ended `status`: each job waiting for it waits on, is released to its
    /// lane, or is cancelled naming it (as `after_finish` in `redis/lib.lua`).
    fn after_finish(
        &mut self,
        waiting: Vec<(String, String, bool)>,
        status: JobStatus,
        error: &str,
        now: u64,
    ) {
        for (wid, name, any) in waiting {
            let cancelled_batch = split_job_id(&wid)
                .and_then(|(b, _)| self.batches.get(b))
                .is_some_and(|b| b.cancel);
            let Some(w) = self.jobs.get_mut(&wid) else {
                continue;
            };
            if w.status != JobStatus::Queued || w.deps_left == 0 {
                continue;
            }
            let what =
                match rules::after_dependency(w.deps_left, status.as_str(), &name, error, any) {
                    rules::AfterDependency::Release if cancelled_batch => {
                        rules::AfterDependency::Cancel("cancelled by request".into())
                    }
                    what => what,
                };
            match what {
                rules::AfterDependency::Wait => w.deps_left -= 1,
                rules::AfterDependency::Release => {
                    w.deps_left = 0;
                    w.enqueued_ms = now;
                    let (lane, urgent) = (w.lane.clone(), w.urgent);
                    self.lane(&lane).ready.push(wid, urgent);
                }
                rules::AfterDependency::Cancel(reason) => {
                    w.deps_left = 0;
                    self.finish(
                        &wid,
                        JobStatus::Queued,
                        JobStatus::Cancelled,
                        Some(&reason),
                        None,
                        now,
                    );
                }
            }
        }
    }

    pub fn requeue(&mut self, job: &str, from: JobStatus) {
        let Some(j) = self.jobs.get_mut(job) else {
            return;
        };
        j.status = JobStatus::Queued;
        j.token = None;
        j.worker = None;
        let (lane, urgent) = (j.lane.clone(), j.urgent);
        if from != JobStatus::Queued {
            self.move_status(job, from, JobStatus::Queued);
        }
        self.lane(&lane).ready.push(job.to_string(), urgent);
    }

    pub fn dead_letter(&mut self, job: &str, reason: &str, now: u64) {
        self.dlq.push(DeadLetter {
            job: job.to_string(),
            reason: reason.to_string(),
            at_ms: now,
        });
    }

    /// Whether `lease` is the delivery its job is running under.
    pub fn live(&self, lease_job: &str, token: &str) -> bool {
        self.jobs.get(lease_job).is_some_and(|j| {
            rules::fenced(j.token.as_deref(), j.status == JobStatus::Running, token)
        })
    }
}
