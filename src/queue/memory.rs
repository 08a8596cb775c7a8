//! `MemoryQueue`: the in-process twin of `RedisQueue` for `imagegen run`, with the same
//! semantics (leases, fencing, delayed retries, dead letters, counters, exactly-once
//! batch completion). Nothing survives the process, which is the point of embedded
//! mode: the job file is the durable input.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use futures::FutureExt as _;

use super::hooks::{AttemptRecord, DeliveryRecord, DueDelivery, HookSettle};
use super::records::{batch_fields, job_fields};
use super::{
    AttemptEntry, BatchHandle, BatchRecord, CancelReport, Claim, Claimed, DeadLetter, Fut,
    JobQueue, JobRecord, Lease, MAX_LOG, NewBatch, NewJob, ProjectCounts, QueueError, QueueOptions,
    Recovered, Settle, SettleReport, WorkerInfo, now_ms,
};
use crate::job::{JobId, JobStatus, batch_job_id, split_job_id};
use crate::limits::{LaneView, ProjectLimits, Throttle, gcra};

type Fields = HashMap<String, String>;

/// How soon a worker polls again when a concurrency limit is full (a slot frees when
/// any worker settles), as `claim.lua`.
const SLOT_POLL_MS: u64 = 25;

/// One project + model: its queue and admission state (as `lib.lua` documents).
#[derive(Default)]
struct Lane {
    ready: VecDeque<String>,
    run: u64,
    eff: Option<f64>,
    tat: f64,
    pause: u64,
    park: u64,
    why: String,
    dec: u64,
    window: (u64, u64, u64, u64, u64), // start, 429s, answered, previous 429s, answered
}

impl Lane {
    fn roll(&mut self, now: u64) {
        let (wst, w429, wok, _, _) = self.window;
        if now.saturating_sub(wst) >= 60_000 {
            self.window = if now - wst < 120_000 {
                (now, 0, 0, w429, wok)
            } else {
                (now, 0, 0, 0, 0)
            };
        }
    }
}

#[derive(Default)]
struct Project {
    lanes: BTreeMap<String, Lane>,
    limits: ProjectLimits,
    tat: f64,
    rr: usize,
    running: u64,
    delayed: BTreeSet<(u64, String)>,
    jobs: HashMap<String, Fields>,
    batches: HashMap<String, Batch>,
    /// worker → what it registered
    workers: BTreeMap<String, WorkerInfo>,
    /// token → (job, worker, last extended)
    pending: HashMap<String, (String, String, Instant)>,
    dlq: Vec<DeadLetter>,
    idem: HashMap<String, String>,
    enqueued_by_op: BTreeMap<String, u64>,
    hooks: Hooks,
}

/// A batch: its record's fields and lists (as `lib.lua` documents).
#[derive(Default, Clone)]
struct Batch {
    fields: Fields,
    failures: Vec<String>,
    cancelled: Vec<String>,
    hashes: Vec<u32>,
}

/// Webhook deliveries (as `lib.lua`'s `hook()` and the hooks scripts).
#[derive(Default)]
struct Hooks {
    default: Option<String>,
    /// id → (fields, attempt log)
    records: HashMap<String, (Fields, Vec<String>)>,
    /// id → due ms
    due: HashMap<String, u64>,
    /// disabled endpoint → why
    off: BTreeMap<String, String>,
}

impl Hooks {
    fn enqueue(&mut self, event: &str, subject: &str, url: Option<String>) {
        let Some(url) = url
            .filter(|u| !u.is_empty())
            .or_else(|| self.default.clone())
        else {
            return;
        };
        let id = crate::queue::hooks::message_id(subject);
        if self.records.contains_key(&id) {
            return;
        }
        let now = now_ms();
        let f: Fields = [
            ("url", url),
            ("type", event.to_string()),
            ("sub", subject.to_string()),
            ("st", "pending".to_string()),
            ("c", now.to_string()),
            ("att", "0".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        self.records.insert(id.clone(), (f, Vec::new()));
        self.due.insert(id, now);
    }
}

#[derive(Default)]
struct State {
    projects: HashMap<String, Project>,
    next_token: u64,
}

/// The in-process queue. Cheap to clone (shared state).
#[derive(Clone, Default)]
pub struct MemoryQueue {
    state: Arc<Mutex<State>>,
    options: QueueOptions,
}

fn get_u64(f: &Fields, k: &str) -> u64 {
    f.get(k).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn incr(f: &mut Fields, k: &str, by: i64) -> i64 {
    let v = f.get(k).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0) + by;
    f.insert(k.to_string(), v.to_string());
    v
}

/// Appends a retry or deferral to a job's log (newest last, at most `MAX_LOG`), as
/// `settle.lua`.
fn log_attempt(f: &mut Fields, error: &str, counted: bool) {
    let entry = serde_json::to_string(&AttemptEntry {
        at_ms: now_ms(),
        error: error.to_string(),
        counted,
    })
    .unwrap_or_default();
    let log = f.entry(job_fields::LOG.into()).or_default();
    if !log.is_empty() {
        log.push('\n');
    }
    log.push_str(&entry);
    let n = log.lines().count();
    if n > MAX_LOG {
        *log = log.lines().skip(n - MAX_LOG).collect::<Vec<_>>().join("\n");
    }
}

/// One more delivery of a job to `worker`: counts it, stamps owner and start, and
/// returns what the worker gets.
fn deliver(
    f: &mut Fields,
    project: &str,
    job: &str,
    token: &str,
    worker: &str,
    lane: &str,
) -> Claimed {
    let dlv = incr(f, job_fields::DELIVERIES, 1);
    f.insert(job_fields::WORKER.into(), worker.into());
    f.insert(job_fields::STARTED.into(), now_ms().to_string());
    Claimed {
        lease: Lease {
            project: project.to_string(),
            job: job.to_string(),
            token: token.to_string(),
            lane: lane.to_string(),
        },
        payload: f.get(job_fields::SPEC).cloned().unwrap_or_default(),
        attempts: get_u64(f, job_fields::ATTEMPTS) as u32,
        deliveries: dlv as u32,
        line: f.get(job_fields::LINE).and_then(|l| l.parse().ok()),
    }
}

fn status_of(f: &Fields) -> JobStatus {
    f.get(job_fields::STATUS)
        .and_then(|s| s.parse().ok())
        .unwrap_or(JobStatus::Queued)
}

fn lane_of(f: &Fields) -> String {
    f.get(job_fields::LANE)
        .cloned()
        .unwrap_or_else(|| "_".into())
}

impl Project {
    fn lane(&mut self, lane: &str) -> &mut Lane {
        self.lanes.entry(lane.to_string()).or_default()
    }

    fn move_status(&mut self, job: &str, from: JobStatus, to: JobStatus) {
        if from == JobStatus::Running || to == JobStatus::Running {
            let lane = self.jobs.get(job).map(lane_of).unwrap_or_default();
            let l = self.lane(&lane);
            if from == JobStatus::Running {
                l.run = l.run.saturating_sub(1);
                self.running = self.running.saturating_sub(1);
            }
            if to == JobStatus::Running {
                let l = self.lane(&lane);
                l.run += 1;
                self.running += 1;
            }
        }
        if let Some((b, _)) = split_job_id(job)
            && let Some(bt) = self.batches.get_mut(b)
        {
            incr(&mut bt.fields, from.as_str(), -1);
            incr(&mut bt.fields, to.as_str(), 1);
        }
    }

    fn maybe_complete(&mut self, batch: &str) -> bool {
        let Some(bf) = self.batches.get_mut(batch).map(|b| &mut b.fields) else {
            return false;
        };
        let Some(total) = bf
            .get(batch_fields::TOTAL)
            .and_then(|t| t.parse::<u64>().ok())
        else {
            return false;
        };
        if get_u64(bf, batch_fields::DONE) < total || bf.contains_key(batch_fields::COMPLETED) {
            return false;
        }
        bf.insert(batch_fields::COMPLETED.into(), now_ms().to_string());
        let own = bf.get(batch_fields::WEBHOOK).cloned();
        self.hooks.enqueue("batch.completed", batch, own);
        true
    }

    /// Terminal transition; true when it completed the batch.
    fn finish(
        &mut self,
        job: &str,
        from: JobStatus,
        status: JobStatus,
        error: Option<&str>,
        result: Option<&crate::job::result::CompactResult>,
    ) -> bool {
        let Some(f) = self.jobs.get_mut(job) else {
            return false;
        };
        f.insert(job_fields::STATUS.into(), status.as_str().into());
        f.insert(job_fields::FINISHED.into(), now_ms().to_string());
        match error.filter(|e| !e.is_empty()) {
            Some(e) => f.insert(job_fields::ERROR.into(), e.into()),
            // A success keeps no error: the retries it went through are in its log.
            None => f.remove(job_fields::ERROR),
        };
        if let Some(r) = result.and_then(|r| serde_json::to_string(r).ok()) {
            f.insert(job_fields::RESULT.into(), r);
        }
        for k in [
            job_fields::SPEC,
            job_fields::TOKEN,
            job_fields::CANCEL,
            job_fields::DELIVERIES,
        ] {
            f.remove(k);
        }
        let own = f.get(job_fields::WEBHOOK).cloned();
        self.hooks
            .enqueue(&format!("job.{}", status.as_str()), job, own);
        self.move_status(job, from, status);
        let Some((batch, _)) = split_job_id(job) else {
            return false;
        };
        if let Some(bt) = self.batches.get_mut(batch) {
            incr(&mut bt.fields, batch_fields::DONE, 1);
            bt.fields
                .insert(batch_fields::LAST.into(), now_ms().to_string());
            let list = match status {
                JobStatus::Succeeded => None,
                JobStatus::Cancelled => Some(&mut bt.cancelled),
                _ => Some(&mut bt.failures),
            };
            if let Some(list) = list {
                list.insert(0, job.to_string());
                list.truncate(1000);
            }
        }
        self.maybe_complete(batch)
    }

    fn requeue(&mut self, job: &str, from: JobStatus) {
        if let Some(f) = self.jobs.get_mut(job) {
            f.insert(job_fields::STATUS.into(), "queued".into());
            f.remove(job_fields::TOKEN);
            f.remove(job_fields::WORKER);
        }
        if from != JobStatus::Queued {
            self.move_status(job, from, JobStatus::Queued);
        }
        let lane = self.jobs.get(job).map(lane_of).unwrap_or_default();
        self.lane(&lane).ready.push_back(job.to_string());
    }

    /// Admission (as `claim.lua`): how many of `lane`'s jobs may start now, and when a
    /// held-back lane may next admit.
    fn allowance(&mut self, lane: &str, free: u64, now: u64, wake: &mut Option<u64>) -> u64 {
        let limit = self.limits.lane(lane);
        let l = self.lane(lane);
        if l.park > now {
            return 0;
        }
        if l.pause > now {
            *wake = Some(wake.map_or(l.pause, |w| w.min(l.pause)));
            return 0;
        }
        let mut allow = free;
        if limit.concurrency > 0 {
            let cap = limit.concurrency as f64;
            let eff = l.eff.unwrap_or(cap).min(cap).floor().max(1.0) as u64;
            allow = allow.min(eff.saturating_sub(l.run));
            if allow == 0 {
                let next = now + SLOT_POLL_MS;
                *wake = Some(wake.map_or(next, |w| w.min(next)));
            }
        }
        if limit.rpm > 0 && allow > 0 {
            let (a, _, next) = gcra(l.tat, limit.rpm, now);
            if a == 0 {
                *wake = Some(wake.map_or(next, |w| w.min(next)));
            }
            allow = allow.min(a);
        }
        allow
    }

    fn dead_letter(&mut self, job: &str, reason: &str) {
        self.dlq.push(DeadLetter {
            job: job.to_string(),
            reason: reason.to_string(),
            at_ms: now_ms(),
        });
    }
}

impl MemoryQueue {
    /// An empty queue.
    pub fn new(options: QueueOptions) -> Self {
        MemoryQueue {
            state: Arc::default(),
            options,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn with<T>(&self, project: &str, f: impl FnOnce(&mut Project, &mut u64) -> T) -> T {
        let mut st = self.lock();
        let State {
            projects,
            next_token,
        } = &mut *st;
        f(projects.entry(project.to_string()).or_default(), next_token)
    }

    fn claim_now(&self, project: &str, worker: &str, max: usize) -> Claim {
        let maxd = self.options.max_deliveries as i64;
        let max_wait = self.options.max_wait.as_millis() as u64;
        self.with(project, |p, next| {
            let now = now_ms();
            let due: Vec<(u64, String)> = p
                .delayed
                .iter()
                .take_while(|(t, _)| *t <= now)
                .cloned()
                .collect();
            for d in due {
                p.delayed.remove(&d);
                let lane = p.jobs.get(&d.1).map(lane_of).unwrap_or_default();
                p.lane(&lane).ready.push_back(d.1);
            }
            let mut claim = Claim::default();
            let mut free = max.max(1) as u64;
            let plimit = p.limits.project;
            if plimit.concurrency > 0 {
                free = free.min((plimit.concurrency as u64).saturating_sub(p.running));
                if free == 0 {
                    claim.wake_ms = Some(now + SLOT_POLL_MS);
                }
            }
            let pinterval = if plimit.rpm > 0 {
                let (a, interval, next) = gcra(p.tat, plimit.rpm, now);
                if a == 0 {
                    claim.wake_ms = Some(next);
                }
                free = free.min(a);
                interval
            } else {
                0.0
            };
            let lanes: Vec<String> = p.lanes.keys().cloned().collect();
            p.rr = p.rr.wrapping_add(1);
            for k in 0..lanes.len() {
                if free == 0 {
                    break;
                }
                let lane = &lanes[(p.rr + k) % lanes.len()];
                if p.lanes[lane].ready.is_empty() {
                    continue;
                }
                let allow = p.allowance(lane, free, now, &mut claim.wake_ms);
                let mut admitted = 0;
                while admitted < allow {
                    let Some(job) = p.lane(lane).ready.pop_front() else {
                        break;
                    };
                    let Some(f) = p.jobs.get_mut(&job) else {
                        continue;
                    };
                    if status_of(f) != JobStatus::Queued || !f.contains_key(job_fields::SPEC) {
                        continue;
                    }
                    *next += 1;
                    let token = format!("m-{next}");
                    f.insert(job_fields::STATUS.into(), "running".into());
                    f.insert(job_fields::TOKEN.into(), token.clone());
                    f.entry(job_fields::FIRST_STARTED.into())
                        .or_insert_with(|| now.to_string());
                    let q0 = get_u64(f, job_fields::ENQUEUED);
                    let claimed = deliver(f, project, &job, &token, worker, lane);
                    let dlv = claimed.deliveries as i64;
                    p.move_status(&job, JobStatus::Queued, JobStatus::Running);
                    if let Some((b, _)) = split_job_id(&job)
                        && let Some(bt) = p.batches.get_mut(b)
                    {
                        bt.fields
                            .entry(batch_fields::FIRST.into())
                            .or_insert_with(|| now.to_string());
                    }
                    let reason = if dlv > maxd {
                        let reason = format!(
                            "dead-lettered: delivered {} times without finishing",
                            dlv - 1
                        );
                        p.dead_letter(&job, &reason);
                        Some(reason)
                    } else if max_wait > 0 && now.saturating_sub(q0) > max_wait {
                        Some(format!(
                            "waited {} s without running (max_wait {} s)",
                            (now - q0) / 1000,
                            max_wait / 1000
                        ))
                    } else {
                        None
                    };
                    if let Some(reason) = reason {
                        p.finish(
                            &job,
                            JobStatus::Running,
                            JobStatus::Failed,
                            Some(&reason),
                            None,
                        );
                        continue;
                    }
                    admitted += 1;
                    p.pending
                        .insert(token, (job, worker.to_string(), Instant::now()));
                    claim.jobs.push(claimed);
                }
                let limit = p.limits.lane(lane);
                let l = p.lane(lane);
                if limit.rpm > 0 && admitted > 0 {
                    let interval = 60_000.0 / limit.rpm as f64;
                    l.tat = l.tat.max(now as f64) + admitted as f64 * interval;
                }
                if pinterval > 0.0 && admitted > 0 {
                    p.tat = p.tat.max(now as f64) + admitted as f64 * pinterval;
                }
                free -= admitted;
            }
            claim
        })
    }

    fn settle_now(&self, items: &[(Lease, Settle)]) -> Vec<SettleReport> {
        let max_wait = self.options.max_wait.as_millis() as u64;
        let mut st = self.lock();
        items
            .iter()
            .map(|(lease, settle)| {
                let p = st.projects.entry(lease.project.clone()).or_default();
                p.pending.remove(&lease.token);
                let live = p.jobs.get(&lease.job).is_some_and(|f| {
                    f.get(job_fields::TOKEN) == Some(&lease.token)
                        && status_of(f) == JobStatus::Running
                });
                if !live {
                    return SettleReport::default();
                }
                let mut report = SettleReport {
                    applied: true,
                    batch_completed: false,
                };
                match settle {
                    Settle::Finish {
                        status,
                        error,
                        result,
                        dead_letter,
                    } => {
                        if *dead_letter {
                            p.dead_letter(&lease.job, error.as_deref().unwrap_or(""));
                        }
                        if let Some(f) = p.jobs.get_mut(&lease.job) {
                            incr(f, job_fields::ATTEMPTS, 1);
                        }
                        if matches!(status, JobStatus::Succeeded | JobStatus::Blocked) {
                            let cap = p.limits.lane(&lease.lane).concurrency as f64;
                            let l = p.lane(&lease.lane);
                            l.roll(now_ms());
                            l.window.2 += 1;
                            if let Some(eff) = l.eff.filter(|e| cap > 0.0 && *e < cap) {
                                l.eff = Some((eff + 1.0 / eff).min(cap));
                            }
                        }
                        report.batch_completed = p.finish(
                            &lease.job,
                            JobStatus::Running,
                            *status,
                            error.as_deref(),
                            result.as_ref(),
                        );
                    }
                    Settle::Retry { count, error, .. }
                        if !*count
                            && max_wait > 0
                            && p.jobs.get(&lease.job).is_some_and(|f| {
                                now_ms().saturating_sub(get_u64(f, job_fields::ENQUEUED)) > max_wait
                            }) =>
                    {
                        let waited = p.jobs.get(&lease.job).map_or(0, |f| {
                            now_ms().saturating_sub(get_u64(f, job_fields::ENQUEUED))
                        });
                        if let Some(f) = p.jobs.get_mut(&lease.job) {
                            incr(f, job_fields::ATTEMPTS, 1);
                        }
                        let reason = format!(
                            "waited {} s for capacity (max_wait {} s); last error: {error}",
                            waited / 1000,
                            max_wait / 1000
                        );
                        report.batch_completed = p.finish(
                            &lease.job,
                            JobStatus::Running,
                            JobStatus::Failed,
                            Some(&reason),
                            None,
                        );
                    }
                    Settle::Retry {
                        delay,
                        count,
                        error,
                    } => {
                        if let Some(f) = p.jobs.get_mut(&lease.job) {
                            f.insert(job_fields::STATUS.into(), "queued".into());
                            f.insert(job_fields::ERROR.into(), error.clone());
                            f.insert(job_fields::DELIVERIES.into(), "0".into());
                            f.remove(job_fields::TOKEN);
                            f.remove(job_fields::WORKER);
                            if *count {
                                incr(f, job_fields::ATTEMPTS, 1);
                            }
                            log_attempt(f, error, *count);
                        }
                        p.move_status(&lease.job, JobStatus::Running, JobStatus::Queued);
                        p.delayed
                            .insert((now_ms() + delay.as_millis() as u64, lease.job.clone()));
                    }
                    Settle::Release => {
                        if let Some(f) = p.jobs.get_mut(&lease.job) {
                            incr(f, job_fields::DELIVERIES, -1);
                        }
                        p.requeue(&lease.job, JobStatus::Running);
                    }
                }
                report
            })
            .collect()
    }

    fn recover_now(&self, project: &str, worker: &str) -> Recovered {
        let visibility = self.options.visibility;
        let maxd = self.options.max_deliveries as i64;
        self.with(project, |p, _| {
            let expired: Vec<(String, String)> = p
                .pending
                .iter()
                .filter(|(_, (_, _, at))| at.elapsed() >= visibility)
                .map(|(t, (j, _, _))| (t.clone(), j.clone()))
                .collect();
            let mut out = Recovered::default();
            for (token, job) in expired {
                let live = p.jobs.get(&job).is_some_and(|f| {
                    f.get(job_fields::TOKEN) == Some(&token) && status_of(f) == JobStatus::Running
                });
                if !live {
                    p.pending.remove(&token);
                    continue;
                }
                let f = p.jobs.get_mut(&job).expect("live job");
                let dlv = get_u64(f, job_fields::DELIVERIES) as i64;
                if dlv >= maxd {
                    p.pending.remove(&token);
                    let reason = format!(
                        "dead-lettered: delivered {dlv} times without finishing (its worker died or lost its lease each time)"
                    );
                    p.dead_letter(&job, &reason);
                    out.dead.push(job.clone());
                    if p.finish(&job, JobStatus::Running, JobStatus::Failed, Some(&reason), None)
                        && let Some((b, _)) = split_job_id(&job)
                    {
                        out.completed_batches.push(b.to_string());
                    }
                    continue;
                }
                // Take it over: same token, new owner, one more delivery.
                let lane = lane_of(f);
                out.claimed
                    .push(deliver(f, project, &job, &token, worker, &lane));
                p.pending
                    .insert(token, (job, worker.to_string(), Instant::now()));
            }
            out
        })
    }

    fn cancel_now(&self, project: &str, id: &str) -> CancelReport {
        self.with(project, |p, _| {
            let mut report = CancelReport::default();
            let ids: Vec<String> = if p.jobs.contains_key(id) {
                report.kind = "job".into();
                vec![id.to_string()]
            } else if let Some(bt) = p.batches.get_mut(id) {
                report.kind = "batch".into();
                bt.fields.insert(batch_fields::CANCEL.into(), "1".into());
                let n = get_u64(&bt.fields, batch_fields::ENQUEUED);
                (0..n).map(|s| batch_job_id(id, s)).collect()
            } else {
                return report;
            };
            for job in ids {
                let Some(f) = p.jobs.get_mut(&job) else {
                    continue;
                };
                match status_of(f) {
                    JobStatus::Queued => {
                        p.delayed.retain(|(_, j)| j != &job);
                        report.batch_completed |= p.finish(
                            &job,
                            JobStatus::Queued,
                            JobStatus::Cancelled,
                            Some("cancelled by request"),
                            None,
                        );
                        report.cancelled += 1;
                    }
                    JobStatus::Running => {
                        f.insert(job_fields::CANCEL.into(), "1".into());
                        report.flagged += 1;
                    }
                    _ => report.already_finished += 1,
                }
            }
            report
        })
    }
}

impl JobQueue for MemoryQueue {
    fn create_batch<'a>(&'a self, batch: &'a NewBatch) -> Fut<'a, BatchHandle> {
        async move {
            Ok(self.with(&batch.project, |p, _| {
                if let Some(key) = &batch.idempotency_key
                    && let Some(existing) = p.idem.get(key)
                {
                    let bf = p
                        .batches
                        .get(existing)
                        .map(|b| b.fields.clone())
                        .unwrap_or_default();
                    return BatchHandle {
                        id: existing.clone(),
                        existing: true,
                        enqueued: get_u64(&bf, batch_fields::ENQUEUED),
                        sealed: bf.contains_key(batch_fields::TOTAL),
                        digest: bf.get(batch_fields::DIGEST).cloned(),
                    };
                }
                let id = JobId::new().0;
                if let Some(key) = &batch.idempotency_key {
                    p.idem.insert(key.clone(), id.clone());
                }
                let mut f = Fields::new();
                f.insert(batch_fields::CREATED.into(), now_ms().to_string());
                f.insert(batch_fields::SOURCE.into(), batch.source.clone());
                if let Some(w) = &batch.webhook {
                    f.insert(batch_fields::WEBHOOK.into(), w.clone());
                }
                if let Some(d) = &batch.digest {
                    f.insert(batch_fields::DIGEST.into(), d.clone());
                }
                p.batches.insert(
                    id.clone(),
                    Batch {
                        fields: f,
                        ..Batch::default()
                    },
                );
                BatchHandle {
                    id,
                    existing: false,
                    enqueued: 0,
                    sealed: false,
                    digest: None,
                }
            }))
        }
        .boxed()
    }

    fn enqueue<'a>(&'a self, project: &'a str, batch: &'a str, jobs: Vec<NewJob>) -> Fut<'a, u64> {
        async move {
            self.with(project, |p, _| {
                if !p.batches.contains_key(batch) {
                    return Err(QueueError::Invalid(format!("no batch `{batch}`")));
                }
                let n = jobs.len() as u64;
                let now = now_ms().to_string();
                for job in jobs {
                    let id = batch_job_id(batch, job.seq);
                    if let (Some(h), Some(bt)) = (job.hash, p.batches.get_mut(batch)) {
                        let at = job.seq as usize;
                        if bt.hashes.len() <= at {
                            bt.hashes.resize(at + 1, 0);
                        }
                        bt.hashes[at] = h;
                    }
                    let mut f = Fields::new();
                    f.insert(job_fields::SPEC.into(), job.spec);
                    f.insert(job_fields::LANE.into(), job.lane.clone());
                    f.insert(job_fields::ENQUEUED.into(), now.clone());
                    if let Some(line) = job.line {
                        f.insert(job_fields::LINE.into(), line.to_string());
                    }
                    if let Some(url) = job.webhook {
                        f.insert(job_fields::WEBHOOK.into(), url);
                    }
                    *p.enqueued_by_op.entry(job.op).or_default() += 1;
                    p.jobs.insert(id.clone(), f);
                    p.lane(&job.lane).ready.push_back(id);
                }
                if let Some(bt) = p.batches.get_mut(batch) {
                    incr(&mut bt.fields, batch_fields::ENQUEUED, n as i64);
                    incr(&mut bt.fields, "queued", n as i64);
                }
                Ok(n)
            })
        }
        .boxed()
    }

    fn seal<'a>(&'a self, project: &'a str, batch: &'a str, total: u64) -> Fut<'a, bool> {
        async move {
            Ok(self.with(project, |p, _| {
                if let Some(bt) = p.batches.get_mut(batch) {
                    bt.fields
                        .insert(batch_fields::TOTAL.into(), total.to_string());
                }
                p.maybe_complete(batch)
            }))
        }
        .boxed()
    }

    fn set_limits(&self, project: &str, limits: ProjectLimits) {
        self.with(project, |p, _| p.limits = limits);
    }

    fn admit<'a>(&'a self, project: &'a str, worker: &'a str, max: usize) -> Fut<'a, Claim> {
        async move { Ok(self.claim_now(project, worker, max)) }.boxed()
    }

    fn throttle<'a>(
        &'a self,
        project: &'a str,
        lane: &'a str,
        throttle: &'a Throttle,
    ) -> Fut<'a, ()> {
        let aimd = self.options.aimd;
        async move {
            self.with(project, |p, _| {
                let cap = p.limits.lane(lane).concurrency as f64;
                let now = now_ms();
                let l = p.lane(lane);
                l.roll(now);
                l.window.1 += 1;
                match throttle {
                    Throttle::Park { until_ms, reason } => {
                        l.park = *until_ms;
                        l.why = reason.clone();
                    }
                    Throttle::Rate { delay } => {
                        let cap = if cap > 0.0 { cap } else { l.run.max(1) as f64 };
                        if now.saturating_sub(l.dec) >= aimd.decrease_interval.as_millis() as u64 {
                            let eff = l.eff.unwrap_or(cap).min(cap);
                            l.eff = Some((eff * aimd.decrease).max(1.0));
                            l.dec = now;
                        }
                        let until = now + delay.unwrap_or(aimd.default_pause).as_millis() as u64;
                        l.pause = l.pause.max(until);
                    }
                }
            });
            Ok(())
        }
        .boxed()
    }

    fn unpark<'a>(&'a self, project: &'a str, lane: &'a str) -> Fut<'a, bool> {
        async move {
            Ok(self.with(project, |p, _| {
                let l = p.lane(lane);
                let was = l.park > 0;
                l.park = 0;
                l.pause = 0;
                l.why.clear();
                was
            }))
        }
        .boxed()
    }

    fn lanes<'a>(&'a self, project: &'a str) -> Fut<'a, Vec<LaneView>> {
        async move {
            Ok(self.with(project, |p, _| {
                let now = now_ms();
                let names: Vec<String> = p.lanes.keys().cloned().collect();
                names
                    .into_iter()
                    .map(|model| {
                        let limit = p.limits.lane(&model);
                        let l = p.lane(&model);
                        l.roll(now);
                        LaneView {
                            concurrency: limit.concurrency,
                            rpm: limit.rpm,
                            effective_concurrency: l.eff.unwrap_or(limit.concurrency as f64),
                            in_flight: l.run,
                            queued: l.ready.len() as u64,
                            paused_until_ms: Some(l.pause).filter(|t| *t > now),
                            parked_until_ms: Some(l.park).filter(|t| *t > now),
                            parked_reason: Some(l.why.clone()).filter(|_| l.park > now),
                            recent_429: l.window.1 + l.window.3,
                            recent_answered: l.window.2 + l.window.4,
                            model,
                        }
                    })
                    .collect()
            }))
        }
        .boxed()
    }

    fn extend<'a>(&'a self, _worker: &'a str, leases: &'a [Lease]) -> Fut<'a, ()> {
        async move {
            let mut st = self.lock();
            for l in leases {
                if let Some(p) = st.projects.get_mut(&l.project)
                    && let Some(entry) = p.pending.get_mut(&l.token)
                {
                    entry.2 = Instant::now();
                }
            }
            Ok(())
        }
        .boxed()
    }

    fn settle<'a>(&'a self, items: &'a [(Lease, Settle)]) -> Fut<'a, Vec<SettleReport>> {
        async move { Ok(self.settle_now(items)) }.boxed()
    }

    fn recover<'a>(&'a self, project: &'a str, worker: &'a str) -> Fut<'a, Recovered> {
        async move { Ok(self.recover_now(project, worker)) }.boxed()
    }

    fn cancel_requested<'a>(&'a self, lease: &'a Lease) -> Fut<'a, bool> {
        async move {
            Ok(self.with(&lease.project, |p, _| {
                let job = p
                    .jobs
                    .get(&lease.job)
                    .is_some_and(|f| f.get(job_fields::CANCEL).is_some_and(|v| v == "1"));
                let batch = split_job_id(&lease.job)
                    .and_then(|(b, _)| p.batches.get(b))
                    .is_some_and(|bt| {
                        bt.fields
                            .get(batch_fields::CANCEL)
                            .is_some_and(|v| v == "1")
                    });
                job || batch
            }))
        }
        .boxed()
    }

    fn cancel<'a>(&'a self, project: &'a str, id: &'a str) -> Fut<'a, CancelReport> {
        async move { Ok(self.cancel_now(project, id)) }.boxed()
    }

    fn job<'a>(&'a self, project: &'a str, id: &'a str) -> Fut<'a, Option<JobRecord>> {
        async move {
            Ok(self.with(project, |p, _| {
                p.jobs
                    .get(id)
                    .and_then(|f| JobRecord::from_fields(project, id, f))
            }))
        }
        .boxed()
    }

    fn batch<'a>(&'a self, project: &'a str, id: &'a str) -> Fut<'a, Option<BatchRecord>> {
        async move {
            Ok(self.with(project, |p, _| {
                p.batches.get(id).and_then(|bt| {
                    BatchRecord::from_fields(
                        project,
                        id,
                        &bt.fields,
                        bt.failures.clone(),
                        bt.cancelled.clone(),
                    )
                })
            }))
        }
        .boxed()
    }

    fn batch_jobs<'a>(
        &'a self,
        project: &'a str,
        batch: &'a str,
        from: u64,
        to: u64,
    ) -> Fut<'a, Vec<Option<JobRecord>>> {
        async move {
            Ok(self.with(project, |p, _| {
                (from..to)
                    .map(|s| {
                        let id = batch_job_id(batch, s);
                        p.jobs
                            .get(&id)
                            .and_then(|f| JobRecord::from_fields(project, &id, f))
                    })
                    .collect()
            }))
        }
        .boxed()
    }

    fn set_manifest<'a>(&'a self, project: &'a str, batch: &'a str, url: &'a str) -> Fut<'a, ()> {
        async move {
            self.with(project, |p, _| {
                if let Some(bt) = p.batches.get_mut(batch) {
                    bt.fields.insert(batch_fields::MANIFEST.into(), url.into());
                }
            });
            Ok(())
        }
        .boxed()
    }

    fn dead_letters<'a>(&'a self, project: &'a str, max: usize) -> Fut<'a, Vec<DeadLetter>> {
        async move {
            Ok(self.with(project, |p, _| {
                p.dlq.iter().rev().take(max).cloned().collect()
            }))
        }
        .boxed()
    }

    fn project_counts<'a>(&'a self, project: &'a str) -> Fut<'a, ProjectCounts> {
        async move {
            Ok(self.with(project, |p, _| {
                let mut by_status: BTreeMap<JobStatus, u64> =
                    JobStatus::ALL.into_iter().map(|s| (s, 0)).collect();
                for f in p.jobs.values() {
                    *by_status.entry(status_of(f)).or_default() += 1;
                }
                ProjectCounts {
                    by_status,
                    enqueued_by_op: p.enqueued_by_op.clone(),
                    webhooks_pending: p.hooks.due.len() as u64,
                }
            }))
        }
        .boxed()
    }

    fn job_hashes<'a>(
        &'a self,
        project: &'a str,
        batch: &'a str,
        from: u64,
        to: u64,
    ) -> Fut<'a, Vec<u32>> {
        async move {
            Ok(self.with(project, |p, _| {
                let hashes = p.batches.get(batch).map(|b| b.hashes.as_slice());
                (from..to)
                    .map(|i| hashes.and_then(|h| h.get(i as usize)).copied().unwrap_or(0))
                    .collect()
            }))
        }
        .boxed()
    }

    fn register_worker<'a>(&'a self, project: &'a str, info: &'a WorkerInfo) -> Fut<'a, ()> {
        async move {
            self.with(project, |p, _| {
                p.workers.insert(info.worker.clone(), info.clone());
            });
            Ok(())
        }
        .boxed()
    }

    fn workers<'a>(&'a self, project: &'a str, live_ms: u64) -> Fut<'a, Vec<WorkerInfo>> {
        async move {
            let now = now_ms();
            Ok(self.with(project, |p, _| {
                p.workers
                    .values()
                    .filter(|w| now.saturating_sub(w.seen_ms) <= live_ms)
                    .cloned()
                    .collect()
            }))
        }
        .boxed()
    }

    fn set_default_webhook<'a>(&'a self, project: &'a str, url: Option<&'a str>) -> Fut<'a, ()> {
        async move {
            self.with(project, |p, _| p.hooks.default = url.map(str::to_string));
            Ok(())
        }
        .boxed()
    }

    fn hooks_due<'a>(
        &'a self,
        project: &'a str,
        worker: &'a str,
        max: usize,
        lease: std::time::Duration,
    ) -> Fut<'a, Vec<DueDelivery>> {
        async move {
            Ok(self.with(project, |p, _| {
                let now = now_ms();
                let token = format!("{worker}:{now}");
                let mut due: Vec<(u64, String)> = p
                    .hooks
                    .due
                    .iter()
                    .filter(|(_, at)| **at <= now)
                    .map(|(id, at)| (*at, id.clone()))
                    .collect();
                due.sort();
                due.truncate(max.max(1));
                let mut out = Vec::new();
                for (_, id) in due {
                    p.hooks
                        .due
                        .insert(id.clone(), now + lease.as_millis() as u64);
                    let Some((f, _)) = p.hooks.records.get_mut(&id) else {
                        continue;
                    };
                    f.insert("st".into(), "delivering".into());
                    f.insert("tok".into(), token.clone());
                    let url = f.get("url").cloned().unwrap_or_default();
                    out.push(DueDelivery {
                        id: id.clone(),
                        token: token.clone(),
                        event: f.get("type").cloned().unwrap_or_default(),
                        subject: f.get("sub").cloned().unwrap_or_default(),
                        attempts: get_u64(f, "att") as u32,
                        created_ms: get_u64(f, "c"),
                        body: f.get("body").cloned(),
                        disabled: p.hooks.off.get(&url).cloned(),
                        url,
                    });
                }
                out
            }))
        }
        .boxed()
    }

    fn hooks_body<'a>(&'a self, project: &'a str, id: &'a str, body: &'a str) -> Fut<'a, String> {
        async move {
            Ok(
                self.with(project, |p, _| match p.hooks.records.get_mut(id) {
                    Some((f, _)) => f
                        .entry("body".into())
                        .or_insert_with(|| body.to_string())
                        .clone(),
                    None => body.to_string(),
                }),
            )
        }
        .boxed()
    }

    fn hooks_settle<'a>(
        &'a self,
        project: &'a str,
        id: &'a str,
        token: &'a str,
        attempt: Option<&'a AttemptRecord>,
        settle: &'a HookSettle,
    ) -> Fut<'a, bool> {
        async move {
            Ok(self.with(project, |p, _| {
                let Some((f, log)) = p.hooks.records.get_mut(id) else {
                    return false;
                };
                if f.get("tok").map(String::as_str) != Some(token) {
                    return false;
                }
                f.remove("tok");
                if let Some(a) = attempt {
                    log.push(serde_json::to_string(a).unwrap_or_default());
                    incr(f, "att", 1);
                }
                let (kind, at, reason) = settle.wire();
                match kind {
                    "retry" | "defer" => {
                        f.insert("st".into(), "pending".into());
                        f.insert("next".into(), at.to_string());
                        p.hooks.due.insert(id.to_string(), at);
                        return true;
                    }
                    "ok" => {
                        f.insert("st".into(), "delivered".into());
                        f.remove("err");
                    }
                    _ => {
                        if kind == "off"
                            && let Some(url) = f.get("url")
                        {
                            p.hooks.off.insert(url.clone(), reason.to_string());
                        }
                        f.insert("st".into(), "failed".into());
                        f.insert("err".into(), reason.to_string());
                    }
                }
                f.remove("next");
                f.insert("t2".into(), now_ms().to_string());
                p.hooks.due.remove(id);
                true
            }))
        }
        .boxed()
    }

    fn hook<'a>(&'a self, project: &'a str, id: &'a str) -> Fut<'a, Option<DeliveryRecord>> {
        async move {
            Ok(self.with(project, |p, _| {
                p.hooks
                    .records
                    .get(id)
                    .and_then(|(f, log)| DeliveryRecord::from_fields(id, f, log))
            }))
        }
        .boxed()
    }

    fn hooks_disabled<'a>(&'a self, project: &'a str) -> Fut<'a, Vec<(String, String)>> {
        async move {
            Ok(self.with(project, |p, _| {
                p.hooks
                    .off
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            }))
        }
        .boxed()
    }

    fn hooks_enable<'a>(&'a self, project: &'a str, url: &'a str) -> Fut<'a, bool> {
        async move { Ok(self.with(project, |p, _| p.hooks.off.remove(url).is_some())) }.boxed()
    }
}
