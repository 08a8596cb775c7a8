//! Job and batch records as the queue keeps them, and how they read back from a flat
//! field map (a Redis hash, or the memory twin's map).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::job::result::CompactResult;
use crate::job::{JobStatus, split_job_id};

/// Field names of a job record. Short, because a million queued jobs carry them.
pub mod job_fields {
    /// The JobSpec JSON (dropped once the job is terminal).
    pub const SPEC: &str = "spec";
    /// Status; absent means `queued`.
    pub const STATUS: &str = "st";
    /// Counted provider attempts.
    pub const ATTEMPTS: &str = "att";
    /// Deliveries in a row without a settle.
    pub const DELIVERIES: &str = "dlv";
    /// Line of the job file.
    pub const LINE: &str = "ln";
    /// Start of the current (last) delivery, ms.
    pub const STARTED: &str = "t1";
    /// Finish, ms.
    pub const FINISHED: &str = "t2";
    /// Last error.
    pub const ERROR: &str = "err";
    /// Compact result JSON.
    pub const RESULT: &str = "res";
    /// Current delivery token (stream entry id).
    pub const TOKEN: &str = "e";
    /// Worker holding the job.
    pub const WORKER: &str = "w";
    /// Cancel requested while running.
    pub const CANCEL: &str = "cx";
    /// Lane (model) the job runs in.
    pub const LANE: &str = "m";
    /// When it was first enqueued, ms (start of its `max_wait`).
    pub const ENQUEUED: &str = "q0";
    /// The job's own webhook URL.
    pub const WEBHOOK: &str = "wh";
    /// Start of its first delivery, ms (the end of its queue wait).
    pub const FIRST_STARTED: &str = "t0";
    /// Retries and deferrals so far, one JSON object per line (newest last, at most
    /// [`super::MAX_LOG`]).
    pub const LOG: &str = "log";
    /// A waiting job's dependencies still pending (`NewJob::deps`).
    pub const DEPS_LEFT: &str = "dl";
}

/// One retry or deferral of a job, as its record keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptEntry {
    /// When (ms since epoch).
    pub at_ms: u64,
    /// What went wrong.
    pub error: String,
    /// True when it used an attempt (a transient error); false for a deferral (a 429,
    /// a spent quota) that did not.
    pub counted: bool,
}

impl AttemptEntry {
    /// The log field's text (`\n`-separated JSON objects) as entries.
    pub fn parse_log(text: &str) -> Vec<AttemptEntry> {
        text.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

/// A job as the queue knows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct JobRecord {
    /// Job id.
    pub id: String,
    /// Project.
    pub project: String,
    /// Batch it belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch: Option<String>,
    /// Status.
    pub status: JobStatus,
    /// Attempts so far: retried ones, plus the final one once the job is finished.
    pub attempts: u32,
    /// Line of the job file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// When it was enqueued (ms since epoch; known once it was first claimed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enqueued_ms: Option<u64>,
    /// When its first delivery started: the end of its wait in the queue.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_started_ms: Option<u64>,
    /// When the last delivery started (ms since epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_ms: Option<u64>,
    /// When it finished.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_ms: Option<u64>,
    /// Why it did not succeed (or, while it waits for a retry, the last error). A job
    /// that succeeded has none: what it went through is in `attempts_log`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Its retries and deferrals, oldest first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attempts_log: Vec<AttemptEntry>,
    /// Dependencies it still waits for (queued, in no lane yet).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<u64>,
    /// Compact result (images, usage) once finished.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<CompactResult>,
    /// Worker running it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    /// A cancel was requested while it ran.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cancel_requested: bool,
}

fn num<T: std::str::FromStr>(map: &HashMap<String, String>, key: &str) -> Option<T> {
    map.get(key).and_then(|v| v.parse().ok())
}

impl JobRecord {
    /// Reads a record from its fields; `None` when the map is empty (no such job).
    pub fn from_fields(project: &str, id: &str, map: &HashMap<String, String>) -> Option<Self> {
        use job_fields::*;
        if map.is_empty() {
            return None;
        }
        let status = map
            .get(STATUS)
            .and_then(|s| s.parse().ok())
            .unwrap_or(JobStatus::Queued);
        Some(JobRecord {
            id: id.to_string(),
            project: project.to_string(),
            batch: split_job_id(id).map(|(b, _)| b.to_string()),
            status,
            attempts: num(map, ATTEMPTS).unwrap_or(0),
            line: num(map, LINE),
            enqueued_ms: num(map, ENQUEUED),
            first_started_ms: num(map, FIRST_STARTED),
            started_ms: num(map, STARTED),
            finished_ms: num(map, FINISHED),
            error: map
                .get(ERROR)
                .filter(|e| !e.is_empty() && status != JobStatus::Succeeded)
                .cloned(),
            attempts_log: map
                .get(LOG)
                .map(|l| AttemptEntry::parse_log(l))
                .unwrap_or_default(),
            waiting_for: num(map, DEPS_LEFT).filter(|n: &u64| *n > 0),
            result: map.get(RESULT).and_then(|r| serde_json::from_str(r).ok()),
            worker: map.get(WORKER).cloned(),
            cancel_requested: map.get(CANCEL).is_some_and(|v| v == "1"),
        })
    }
}

/// Field names of a batch record.
pub mod batch_fields {
    /// Creation time, ms.
    pub const CREATED: &str = "created_ms";
    /// Source file name.
    pub const SOURCE: &str = "source";
    /// Batch webhook URL.
    pub const WEBHOOK: &str = "webhook";
    /// Jobs enqueued so far.
    pub const ENQUEUED: &str = "enqueued";
    /// Total, set when sealed.
    pub const TOTAL: &str = "total";
    /// Terminal jobs.
    pub const DONE: &str = "done";
    /// First start of any job, ms.
    pub const FIRST: &str = "first_ms";
    /// Last finish of any job, ms.
    pub const LAST: &str = "last_ms";
    /// Completion time, ms (set exactly once).
    pub const COMPLETED: &str = "completed_ms";
    /// Manifest URL once written.
    pub const MANIFEST: &str = "manifest";
    /// Cancel requested for the whole batch.
    pub const CANCEL: &str = "cx";
    /// Digest of the submitted jobs (idempotent submits compare it).
    pub const DIGEST: &str = "digest";
    /// What its finished jobs cost, nano-USD (added at each settle).
    pub const COST: &str = "cost";
    /// The submit's estimate of what all its jobs cost, nano-USD.
    pub const ESTIMATE: &str = "est";
}

/// A batch as the queue knows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BatchRecord {
    /// Batch id.
    pub id: String,
    /// Project.
    pub project: String,
    /// Where its jobs came from.
    pub source: String,
    /// Batch webhook.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
    /// Creation time (ms since epoch).
    pub created_ms: u64,
    /// Jobs enqueued so far.
    pub enqueued: u64,
    /// Total jobs; `None` while the submit is still running (or was interrupted).
    pub total: Option<u64>,
    /// Jobs by status.
    pub counts: BTreeMap<JobStatus, u64>,
    /// Terminal jobs.
    pub done: u64,
    /// First job start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_start_ms: Option<u64>,
    /// Last job finish.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_finish_ms: Option<u64>,
    /// Completion time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_ms: Option<u64>,
    /// Manifest URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
    /// Cancel requested.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cancel_requested: bool,
    /// Newest failed or blocked job ids (at most 1,000).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<String>,
    /// Newest cancelled job ids (at most 1,000): kept apart, a cancel is no problem.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cancelled: Vec<String>,
    /// Digest of the submitted jobs, when the submit had an idempotency key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// What its finished jobs cost so far (USD).
    pub cost_usd: f64,
    /// The submit's estimate of what all its jobs cost (USD).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimate_usd: Option<f64>,
}

impl BatchRecord {
    /// Reads a record from its fields; `None` when the map is empty.
    pub fn from_fields(
        project: &str,
        id: &str,
        map: &HashMap<String, String>,
        failures: Vec<String>,
        cancelled: Vec<String>,
    ) -> Option<Self> {
        use batch_fields::*;
        if map.is_empty() {
            return None;
        }
        let counts = JobStatus::ALL
            .into_iter()
            .map(|s| (s, num::<i64>(map, s.as_str()).unwrap_or(0).max(0) as u64))
            .collect();
        Some(BatchRecord {
            id: id.to_string(),
            project: project.to_string(),
            source: map.get(SOURCE).cloned().unwrap_or_default(),
            webhook: map.get(WEBHOOK).filter(|w| !w.is_empty()).cloned(),
            created_ms: num(map, CREATED).unwrap_or(0),
            enqueued: num(map, ENQUEUED).unwrap_or(0),
            total: num(map, TOTAL),
            counts,
            done: num(map, DONE).unwrap_or(0),
            first_start_ms: num(map, FIRST),
            last_finish_ms: num(map, LAST),
            completed_ms: num(map, COMPLETED),
            manifest: map.get(MANIFEST).cloned(),
            cancel_requested: map.get(CANCEL).is_some_and(|v| v == "1"),
            failures,
            cancelled,
            digest: map.get(DIGEST).cloned(),
            cost_usd: num::<u64>(map, COST).unwrap_or(0) as f64 / crate::pricing::NANO,
            estimate_usd: num::<u64>(map, ESTIMATE).map(|n| n as f64 / crate::pricing::NANO),
        })
    }

    /// What finishing it is expected to cost in all: what it spent, plus the estimate's
    /// share of the jobs not finished yet.
    pub fn cost_to_finish(&self) -> Option<f64> {
        let estimate = self.estimate_usd?;
        let total = self.total.unwrap_or(self.enqueued).max(1);
        let left = total.saturating_sub(self.done) as f64 / total as f64;
        Some(self.cost_usd + estimate * left)
    }

    /// `submitting` (not sealed), `queued` (no job has started yet), `running`, or
    /// `completed`.
    pub fn state(&self) -> &'static str {
        if self.completed_ms.is_some() {
            "completed"
        } else if self.total.is_none() {
            "submitting"
        } else if self.first_start_ms.is_none() {
            "queued"
        } else {
            "running"
        }
    }

    /// Time its jobs ran: first start to last finish (to now while it runs).
    pub fn run_ms(&self, now_ms: u64) -> Option<u64> {
        let first = self.first_start_ms?;
        let end = self.completed_ms.and(self.last_finish_ms).unwrap_or(now_ms);
        Some(end.saturating_sub(first))
    }

    /// Time from submit to its first job starting (to now while none has).
    pub fn wait_ms(&self, now_ms: u64) -> u64 {
        self.first_start_ms
            .unwrap_or(now_ms)
            .saturating_sub(self.created_ms)
    }

    /// Fraction of jobs terminal, 0..=1.
    pub fn progress(&self) -> f64 {
        let total = self.total.unwrap_or(self.enqueued);
        if total == 0 {
            return if self.completed_ms.is_some() {
                1.0
            } else {
                0.0
            };
        }
        self.done as f64 / total as f64
    }

    /// Estimated milliseconds left, from the rate jobs have been finishing at.
    pub fn eta_ms(&self, now_ms: u64) -> Option<u64> {
        if self.completed_ms.is_some() {
            return Some(0);
        }
        let total = self.total.unwrap_or(self.enqueued);
        let first = self.first_start_ms?;
        if self.done == 0 || now_ms <= first {
            return None;
        }
        let rate = self.done as f64 / (now_ms - first) as f64;
        Some(((total.saturating_sub(self.done)) as f64 / rate) as u64)
    }
}

/// What `cancel` did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct CancelReport {
    /// `job` or `batch`; empty when nothing had that id.
    pub kind: String,
    /// Queued jobs cancelled at once.
    pub cancelled: u64,
    /// Running jobs flagged to stop at their next safe point.
    pub flagged: u64,
    /// Jobs already finished.
    pub already_finished: u64,
    /// True when the cancellation completed the batch.
    pub batch_completed: bool,
}

/// A dead-lettered job.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DeadLetter {
    /// Job id.
    pub job: String,
    /// Why.
    pub reason: String,
    /// When (ms since epoch).
    pub at_ms: u64,
}

/// A chat session (`/v1/sessions`, `/chat/create`): its settings and its turns in
/// order. A turn is a job that waits for the turn before it (a queue dependency), so
/// turns run strictly one after another; its answer (the model's turn, thought
/// signatures included, images by reference) is kept with the turn, for as long as the
/// session lives (`[sessions] ttl` of inactivity), not only for its job's retention.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// `ses_…`.
    pub id: String,
    /// The model every turn runs on.
    pub model: String,
    /// The retired model the session named, when it was migrated to `model`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_requested: Option<String>,
    /// The system instruction of every turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    /// When it was created (ms since epoch).
    pub created_ms: u64,
    /// The turns, oldest first.
    #[serde(default)]
    pub turns: Vec<SessionTurn>,
}

/// One user turn of a session and the job that answers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionTurn {
    /// The job answering it.
    pub job_id: String,
    /// What the user said.
    pub message: String,
    /// The image the user sent with it, by URL (uploads are stored first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Its MIME type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_mime_type: Option<String>,
    /// When it was sent (ms since epoch).
    #[serde(default)]
    pub at_ms: u64,
    /// The model's answer once the turn succeeded (kept apart from the turn as sent,
    /// and filled in by the worker that ran it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<crate::job::Content>,
}
