//! The jobs role in memory: batches, settle, recovery, cancel (admission and claim:
//! `admit.rs`).

use std::time::Instant;

use async_trait::async_trait;

use super::MemoryQueue;
use super::state::Hold;
use super::state::{BatchState, JobState, Project};
use crate::job::{JobId, JobStatus, batch_job_id, split_job_id};
use crate::queue::hooks::{lane_event_body, lane_subject};
use crate::queue::rules;
use crate::queue::{
    BatchHandle, CancelReport, Claim, Jobs, Lease, NewBatch, NewJob, QueueError, QueueOptions,
    Recovered, Settle, SettleReport, now_ms,
};

impl Project {
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
                let cost = result
                    .and_then(|r| r.cost_usd)
                    .map_or(0, crate::pricing::to_nano);
                self.add_cost(&lease.job, &lease.lane, cost, now);
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

    /// Enqueues `lane.held` for a hold that began.
    pub(super) fn held(&mut self, project: &str, model: Option<&str>, h: &Hold, now: u64) {
        let event = h.event(project, model, None);
        let subject = lane_subject("lane.held", model, now);
        let body = lane_event_body("lane.held", now, &event);
        self.hooks
            .enqueue_body("lane.held", &subject, None, now, Some(body));
    }

    /// Enqueues `lane.resumed` for a hold that an answer ended.
    pub(super) fn resumed(&mut self, project: &str, model: Option<&str>, h: &Hold, now: u64) {
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
                out.dead.push(id.clone());
                out.completed_batches
                    .extend(self.fail_running(&id, &f, now));
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
                estimate_nano: batch.estimate_usd.map(crate::pricing::to_nano),
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
        crate::queue::check_deps(&jobs)?;
        self.with(project, |p, _| {
            let Some(bt) = p.batches.get_mut(batch) else {
                return Err(QueueError::Invalid(format!("no batch `{batch}`")));
            };
            let n = jobs.len() as u64;
            bt.enqueued += n;
            *bt.counts.entry(JobStatus::Queued).or_default() += n as i64;
            for job in &jobs {
                if let Some((line, span)) = crate::queue::story_span_of(job) {
                    bt.stories.insert(line, span);
                }
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
                let event = crate::queue::end_event(&job.op);
                *p.enqueued_by_op.entry(job.op).or_default() += 1;
                // Its dependencies: pending ones, and the reason of one that failed.
                let mut pending = Vec::new();
                let mut reason = None;
                for dep in &job.deps {
                    let dep_id = dep.id(batch);
                    match p.jobs.get(&dep_id) {
                        Some(d) if d.status.is_terminal() => {
                            let error = d.error.as_deref().unwrap_or("");
                            if let (None, rules::AfterDependency::Cancel(r)) = (
                                &reason,
                                rules::after_dependency(
                                    1,
                                    d.status.as_str(),
                                    &dep.name,
                                    error,
                                    dep.any,
                                ),
                            ) {
                                reason = Some(r);
                            }
                        }
                        _ => pending.push((dep_id, dep.name.clone(), dep.any)),
                    }
                }
                let (lane, urgent) = (job.lane.clone(), job.interactive);
                let state = JobState {
                    spec: Some(job.spec),
                    lane: job.lane,
                    line: job.line,
                    webhook: job.webhook,
                    enqueued_ms: now,
                    urgent,
                    deps_left: if reason.is_some() {
                        0
                    } else {
                        pending.len() as u64
                    },
                    event,
                    ..JobState::default()
                };
                let mut state = state;
                if let Some(early) = p.early_dependents.remove(&id) {
                    state.dependents.extend(early);
                }
                p.jobs.insert(id.clone(), state);
                if let Some(reason) = reason {
                    let (q, c) = (JobStatus::Queued, JobStatus::Cancelled);
                    p.finish(&id, q, c, Some(&reason), None, now);
                } else if pending.is_empty() {
                    if let (true, Some(tx)) = (urgent, &p.notices) {
                        let _ = tx.send(crate::queue::Notice::Queued(lane.clone()));
                    }
                    p.lane(&lane).ready.push(id, urgent);
                } else {
                    for (dep_id, name, any) in pending {
                        match p.jobs.get_mut(&dep_id) {
                            Some(d) => d.dependents.push((id.clone(), name, any)),
                            // Not enqueued yet (a session's turn sent a moment before
                            // this one): it finds its dependents when it comes.
                            None => p.early_dependents.entry(dep_id).or_default().push((
                                id.clone(),
                                name,
                                any,
                            )),
                        }
                    }
                }
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
            let mut claim = p.claim(project, worker, max, next, &o);
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
