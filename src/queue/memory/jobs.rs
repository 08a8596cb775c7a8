//! The jobs role in memory: batches, admission and claim, settle, recovery, cancel.

use std::time::Instant;

use async_trait::async_trait;

use super::MemoryQueue;
use super::state::Hold;
use super::state::{BatchState, JobState, Project};
use crate::job::{JobId, JobStatus, batch_job_id, split_job_id};
use crate::queue::hooks::{lane_event_body, lane_subject};
use crate::queue::rules::{self, Allowance};
use crate::queue::{
    BatchHandle, CancelReport, Claim, Claimed, Jobs, Lease, NewBatch, NewJob, QueueError,
    QueueOptions, Recovered, Settle, SettleReport, now_ms,
};

impl Project {
    /// Due retries back into their lanes' queues.
    fn release_due(&mut self, now: u64) {
        while let Some((at, _)) = self.delayed.first()
            && *at <= now
        {
            let (_, job) = self.delayed.pop_first().expect("first");
            let lane = self
                .jobs
                .get(&job)
                .map(|j| j.lane.clone())
                .unwrap_or_default();
            self.lane(&lane).ready.push_back(job);
        }
    }

    /// Takes up to `allow` of the lane's queued jobs: each either starts (a lease for
    /// `worker`) or fails on the way as the rules say. Returns those that started.
    fn take(
        &mut self,
        lane: &str,
        allow: u64,
        worker: &str,
        next: &mut u64,
        o: &QueueOptions,
        now: u64,
    ) -> (Vec<Claimed>, Vec<String>) {
        let mut out = Vec::new();
        let mut completed = Vec::new();
        let mut admitted = 0;
        while admitted < allow {
            let Some(id) = self.lane(lane).ready.pop_front() else {
                break;
            };
            let Some(j) = self.jobs.get_mut(&id) else {
                continue;
            };
            if j.status != JobStatus::Queued || j.spec.is_none() {
                // Cancelled while queued (or expired): drop the entry.
                continue;
            }
            *next += 1;
            let token = format!("m-{next}");
            j.status = JobStatus::Running;
            j.token = Some(token.clone());
            j.first_started_ms.get_or_insert(now);
            let lease = Lease {
                project: String::new(),
                job: id.clone(),
                token: token.clone(),
                lane: lane.to_string(),
            };
            let claimed = j.deliver(lease, worker, now);
            let enqueued = j.enqueued_ms;
            self.move_status(&id, JobStatus::Queued, JobStatus::Running);
            if let Some((b, _)) = split_job_id(&id)
                && let Some(bt) = self.batches.get_mut(b)
            {
                bt.first_ms.get_or_insert(now);
            }
            let max_wait = o.max_wait.as_millis() as u64;
            let fail = rules::at_claim(
                claimed.deliveries,
                o.max_deliveries,
                enqueued,
                now,
                max_wait,
            );
            if let Some(f) = fail {
                if f.dead_letter {
                    self.dead_letter(&id, &f.reason, now);
                }
                let done = self.finish(
                    &id,
                    JobStatus::Running,
                    JobStatus::Failed,
                    Some(&f.reason),
                    None,
                    now,
                );
                if done && let Some((b, _)) = split_job_id(&id) {
                    completed.push(b.to_string());
                }
                continue;
            }
            admitted += 1;
            self.pending
                .insert(token, (id, worker.to_string(), Instant::now()));
            out.push(claimed);
        }
        (out, completed)
    }

    /// Held or parked work still ends at `max_wait` (as `claim.lua`'s sweep): the lane's
    /// oldest queued jobs that waited past it are taken and fail at claim (at most
    /// 1,000 per call).
    fn sweep(
        &mut self,
        lane: &str,
        worker: &str,
        next: &mut u64,
        o: &QueueOptions,
        now: u64,
        claim: &mut Claim,
    ) {
        let max_wait = o.max_wait.as_millis() as u64;
        if max_wait == 0 {
            return;
        }
        let ready = &self.lanes[lane].ready;
        let n = ready
            .iter()
            .take(1000)
            .take_while(|id| {
                self.jobs
                    .get(*id)
                    .is_none_or(|j| now.saturating_sub(j.enqueued_ms) > max_wait)
            })
            .count();
        if n > 0 {
            let (started, completed) = self.take(lane, n as u64, worker, next, o, now);
            claim.jobs.extend(started);
            claim.completed.extend(completed);
        }
    }

    /// Admission over the project's lanes, round robin, and the claim (as `claim.lua`).
    fn claim(&mut self, worker: &str, max: usize, next: &mut u64, o: &QueueOptions) -> Claim {
        let now = now_ms();
        self.release_due(now);
        let plimit = self.limits.project;
        let want = max.max(1) as u64;
        let p =
            rules::held_allowance(want, self.running(), self.hold_ms, now).unwrap_or_else(|| {
                rules::project_allowance(want, plimit, self.running(), self.tat, now)
            });
        let mut claim = Claim {
            jobs: Vec::new(),
            wake_ms: p.wake_ms,
            completed: Vec::new(),
        };
        let mut free = p.allow;
        let names: Vec<String> = self.lanes.keys().cloned().collect();
        if self.hold.is_some() {
            for name in &names {
                self.sweep(name, worker, next, o, now, &mut claim);
            }
        }
        self.rr = self.rr.wrapping_add(1);
        for k in 0..names.len() {
            if free == 0 {
                break;
            }
            let name = &names[(self.rr + k) % names.len()];
            if self.lanes[name].ready.is_empty() {
                continue;
            }
            let limit = self.limits.lane(name);
            let Allowance { allow, wake_ms } =
                rules::lane_allowance(free, limit, &self.lanes[name].state, now);
            claim.wake_ms = rules::earliest(claim.wake_ms, wake_ms);
            let s = &self.lanes[name].state;
            if allow == 0 && self.hold.is_none() && (s.hold_ms > 0 || s.park_ms > now) {
                self.sweep(name, worker, next, o, now, &mut claim);
            }
            let (started, completed) = self.take(name, allow, worker, next, o, now);
            claim.completed.extend(completed);
            let got = started.len() as u64;
            claim.jobs.extend(started);
            if got > 0 {
                free -= got;
                let base = o.hold_probe.as_millis() as u64;
                let l = self.lane(name);
                if let Some(h) = &mut l.hold {
                    l.state.hold_ms =
                        now + rules::probe_delay(h.probes, base, rules::HOLD_PROBE_MAX_MS);
                    h.probes += 1;
                }
                if let Some(h) = &mut self.hold {
                    self.hold_ms =
                        now + rules::probe_delay(h.probes, base, rules::HOLD_PROBE_MAX_MS);
                    h.probes += 1;
                }
                if limit.rpm > 0 {
                    let l = &mut self.lane(name).state;
                    l.tat = rules::gcra_spend(l.tat, now, got, 60_000.0 / limit.rpm as f64);
                }
                if plimit.rpm > 0 {
                    self.tat = rules::gcra_spend(self.tat, now, got, 60_000.0 / plimit.rpm as f64);
                }
            }
        }
        claim
    }

    /// One settle (as `settle.lua`); `answered` counts provider answers per lane.
    fn settle_one(
        &mut self,
        lease: &Lease,
        settle: &Settle,
        o: &QueueOptions,
        now: u64,
        answered: &mut Vec<String>,
    ) -> SettleReport {
        self.pending.remove(&lease.token);
        if !self.live(&lease.job, &lease.token) {
            return SettleReport::default();
        }
        let j = self.jobs.get_mut(&lease.job).expect("live job");
        let max_wait = o.max_wait.as_millis() as u64;
        let deferral_failed = match settle {
            Settle::Retry { count, error, .. } => {
                rules::at_deferral(*count, j.enqueued_ms, now, max_wait, error)
            }
            _ => None,
        };
        let completed = match (settle, deferral_failed) {
            (_, Some(reason)) => {
                j.attempts += 1;
                self.finish(
                    &lease.job,
                    JobStatus::Running,
                    JobStatus::Failed,
                    Some(&reason),
                    None,
                    now,
                )
            }
            (
                Settle::Finish {
                    status,
                    error,
                    result,
                    dead_letter,
                },
                None,
            ) => {
                j.attempts += 1;
                if *dead_letter {
                    self.dead_letter(&lease.job, error.as_deref().unwrap_or(""), now);
                }
                if matches!(status, JobStatus::Succeeded | JobStatus::Blocked) {
                    answered.push(lease.lane.clone());
                }
                let (error, result) = (error.as_deref(), result.as_deref());
                self.finish(&lease.job, JobStatus::Running, *status, error, result, now)
            }
            (
                Settle::Retry {
                    delay,
                    count,
                    error,
                },
                None,
            ) => {
                j.status = JobStatus::Queued;
                j.error = Some(error.clone());
                j.deliveries = 0;
                j.token = None;
                j.worker = None;
                if *count {
                    j.attempts += 1;
                }
                j.log_attempt(error, *count, now);
                self.move_status(&lease.job, JobStatus::Running, JobStatus::Queued);
                self.delayed
                    .insert((now + delay.as_millis() as u64, lease.job.clone()));
                false
            }
            (Settle::Release, None) => {
                j.deliveries = j.deliveries.saturating_sub(1);
                self.requeue(&lease.job, JobStatus::Running);
                false
            }
        };
        SettleReport {
            applied: true,
            batch_completed: completed,
        }
    }

    /// Enqueues `lane.resumed` for a hold that an answer ended.
    fn resumed(&mut self, project: &str, model: Option<&str>, h: &Hold, now: u64) {
        let event = h.event(project, model, Some(now.saturating_sub(h.since_ms)));
        let subject = lane_subject("lane.resumed", model, h.since_ms);
        let body = lane_event_body("lane.resumed", now, &event);
        self.hooks
            .enqueue_body("lane.resumed", &subject, None, now, Some(body));
    }

    /// Additive increase for the lanes that were answered (once per settle call, as
    /// `settle.lua`); an answer ends the lane's hold and the project's.
    fn answered(&mut self, project: &str, lanes: Vec<String>, now: u64) {
        let mut per_lane: std::collections::BTreeMap<String, u64> = Default::default();
        for l in lanes {
            *per_lane.entry(l).or_default() += 1;
        }
        if !per_lane.is_empty()
            && let Some(h) = self.hold.take()
        {
            self.hold_ms = 0;
            self.resumed(project, None, &h, now);
        }
        for (name, k) in per_lane {
            let cap = self.limits.lane(&name).concurrency;
            if let Some(h) = self.lane(&name).hold.take() {
                self.lane(&name).state.hold_ms = 0;
                self.resumed(project, Some(&name), &h, now);
            }
            let l = self.lane(&name);
            l.window = rules::roll_window(l.window, now);
            if let Some(eff) = rules::aimd_increase(l.state.eff, cap, k) {
                l.state.eff = Some(eff);
            }
            l.window.answered += k;
        }
    }

    /// Takes over (or dead-letters) jobs whose lease expired (as `recover.lua`).
    fn recover(&mut self, project: &str, worker: &str, o: &QueueOptions) -> Recovered {
        let now = now_ms();
        let expired: Vec<(String, String)> = self
            .pending
            .iter()
            .filter(|(_, (_, _, at))| at.elapsed() >= o.visibility)
            .map(|(t, (j, _, _))| (t.clone(), j.clone()))
            .collect();
        let mut out = Recovered::default();
        for (token, id) in expired {
            if !self.live(&id, &token) {
                self.pending.remove(&token);
                continue;
            }
            let j = self.jobs.get_mut(&id).expect("live job");
            if let Some(f) = rules::at_recover(j.deliveries, o.max_deliveries) {
                self.pending.remove(&token);
                self.dead_letter(&id, &f.reason, now);
                out.dead.push(id.clone());
                if self.finish(
                    &id,
                    JobStatus::Running,
                    JobStatus::Failed,
                    Some(&f.reason),
                    None,
                    now,
                ) && let Some((b, _)) = split_job_id(&id)
                {
                    out.completed_batches.push(b.to_string());
                }
                continue;
            }
            // Take it over: same token, new owner, one more delivery.
            let lease = Lease {
                project: project.to_string(),
                job: id.clone(),
                token: token.clone(),
                lane: j.lane.clone(),
            };
            out.claimed.push(j.deliver(lease, worker, now));
            self.pending
                .insert(token, (id, worker.to_string(), Instant::now()));
        }
        out
    }

    /// Cancels a job or a batch (as `cancel.lua`).
    fn cancel(&mut self, id: &str) -> CancelReport {
        let now = now_ms();
        let mut report = CancelReport::default();
        let ids: Vec<String> = if self.jobs.contains_key(id) {
            report.kind = "job".into();
            vec![id.to_string()]
        } else if let Some(bt) = self.batches.get_mut(id) {
            report.kind = "batch".into();
            bt.cancel = true;
            (0..bt.enqueued).map(|s| batch_job_id(id, s)).collect()
        } else {
            return report;
        };
        for job in ids {
            let Some(j) = self.jobs.get_mut(&job) else {
                continue;
            };
            match j.status {
                JobStatus::Queued => {
                    self.delayed.retain(|(_, d)| d != &job);
                    let reason = Some("cancelled by request");
                    report.batch_completed |= self.finish(
                        &job,
                        JobStatus::Queued,
                        JobStatus::Cancelled,
                        reason,
                        None,
                        now,
                    );
                    report.cancelled += 1;
                }
                JobStatus::Running => {
                    j.cancel = true;
                    report.flagged += 1;
                }
                _ => report.already_finished += 1,
            }
        }
        report
    }
}

#[async_trait]
impl Jobs for MemoryQueue {
    async fn create_batch(&self, batch: &NewBatch) -> Result<BatchHandle, QueueError> {
        Ok(self.with(&batch.project, |p, _| {
            if let Some(key) = &batch.idempotency_key
                && let Some(existing) = p.idem.get(key)
            {
                let bt = p.batches.get(existing).cloned().unwrap_or_default();
                return BatchHandle {
                    id: existing.clone(),
                    existing: true,
                    enqueued: bt.enqueued,
                    sealed: bt.total.is_some(),
                    digest: bt.digest,
                };
            }
            let id = JobId::new().0;
            if let Some(key) = &batch.idempotency_key {
                p.idem.insert(key.clone(), id.clone());
            }
            let state = BatchState {
                created_ms: now_ms(),
                source: batch.source.clone(),
                webhook: batch.webhook.clone(),
                digest: batch.digest.clone(),
                ..BatchState::default()
            };
            p.batches.insert(id.clone(), state);
            BatchHandle {
                id,
                existing: false,
                enqueued: 0,
                sealed: false,
                digest: None,
            }
        }))
    }

    async fn enqueue(
        &self,
        project: &str,
        batch: &str,
        jobs: Vec<NewJob>,
    ) -> Result<u64, QueueError> {
        self.with(project, |p, _| {
            let Some(bt) = p.batches.get_mut(batch) else {
                return Err(QueueError::Invalid(format!("no batch `{batch}`")));
            };
            let n = jobs.len() as u64;
            bt.enqueued += n;
            *bt.counts.entry(JobStatus::Queued).or_default() += n as i64;
            for job in &jobs {
                if let Some(h) = job.hash {
                    let at = job.seq as usize;
                    if bt.hashes.len() <= at {
                        bt.hashes.resize(at + 1, 0);
                    }
                    bt.hashes[at] = h;
                }
            }
            *p.counts.entry(JobStatus::Queued).or_default() += n as i64;
            let now = now_ms();
            for job in jobs {
                let id = batch_job_id(batch, job.seq);
                *p.enqueued_by_op.entry(job.op).or_default() += 1;
                p.lane(&job.lane).ready.push_back(id.clone());
                let state = JobState {
                    spec: Some(job.spec),
                    lane: job.lane,
                    line: job.line,
                    webhook: job.webhook,
                    enqueued_ms: now,
                    ..JobState::default()
                };
                p.jobs.insert(id, state);
            }
            Ok(n)
        })
    }

    async fn seal(&self, project: &str, batch: &str, total: u64) -> Result<bool, QueueError> {
        Ok(self.with(project, |p, _| {
            if let Some(bt) = p.batches.get_mut(batch) {
                bt.total = Some(total);
            }
            p.maybe_complete(batch, now_ms())
        }))
    }

    async fn admit(&self, project: &str, worker: &str, max: usize) -> Result<Claim, QueueError> {
        let o = self.options;
        Ok(self.with(project, |p, next| {
            let mut claim = p.claim(worker, max, next, &o);
            for c in &mut claim.jobs {
                c.lease.project = project.to_string();
            }
            claim
        }))
    }

    async fn extend(&self, _worker: &str, leases: &[Lease]) -> Result<(), QueueError> {
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

    async fn settle(&self, items: &[(Lease, Settle)]) -> Result<Vec<SettleReport>, QueueError> {
        let o = self.options;
        let now = now_ms();
        let mut st = self.lock();
        let mut answered: std::collections::HashMap<String, Vec<String>> = Default::default();
        let reports = items
            .iter()
            .map(|(lease, settle)| {
                let p = st.projects.entry(lease.project.clone()).or_default();
                let a = answered.entry(lease.project.clone()).or_default();
                p.settle_one(lease, settle, &o, now, a)
            })
            .collect();
        for (project, lanes) in answered {
            if let Some(p) = st.projects.get_mut(&project) {
                p.answered(&project, lanes, now);
            }
        }
        Ok(reports)
    }

    async fn recover(&self, project: &str, worker: &str) -> Result<Recovered, QueueError> {
        let o = self.options;
        Ok(self.with(project, |p, _| p.recover(project, worker, &o)))
    }

    async fn cancel_requested(&self, lease: &Lease) -> Result<bool, QueueError> {
        Ok(self.with(&lease.project, |p, _| {
            let job = p.jobs.get(&lease.job).is_some_and(|j| j.cancel);
            let batch = split_job_id(&lease.job)
                .and_then(|(b, _)| p.batches.get(b))
                .is_some_and(|bt| bt.cancel);
            job || batch
        }))
    }

    async fn cancel(&self, project: &str, id: &str) -> Result<CancelReport, QueueError> {
        Ok(self.with(project, |p, _| p.cancel(id)))
    }
}
