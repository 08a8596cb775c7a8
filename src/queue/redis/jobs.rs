//! The jobs role on Redis: batches (one MULTI/EXEC per enqueue chunk), admission and
//! claim (`claim.lua`), settles (`settle.lua`), recovery (`recover.lua`); cancel is
//! `cancel.rs`.

use std::collections::HashMap;

use async_trait::async_trait;
use redis::AsyncCommands as _;

use super::{GROUP, IDEMPOTENCY_TTL_S, RedisQueue, delivery_key};
use crate::job::{JobId, batch_job_id, split_job_id};
use crate::queue::records::{batch_fields, job_fields};
use crate::queue::{
    BatchHandle, CancelReport, Claim, Claimed, Jobs, Lease, MAX_LOG, NewBatch, NewJob, QueueError,
    Records, Recovered, Settle, SettleReport, now_ms,
};

#[async_trait]
impl Jobs for RedisQueue {
    async fn create_batch(&self, batch: &NewBatch) -> Result<BatchHandle, QueueError> {
        let mut conn = self.conn.clone();
        let id = JobId::new().0;
        if let Some(key) = &batch.idempotency_key {
            let idem = self.key(&batch.project, &format!("idem:{key}"));
            let set: Option<String> = redis::cmd("SET")
                .arg(&idem)
                .arg(&id)
                .arg("NX")
                .arg("EX")
                .arg(IDEMPOTENCY_TTL_S)
                .query_async(&mut conn)
                .await?;
            if set.is_none() {
                let existing: Option<String> = conn.get(&idem).await?;
                if let Some(existing) = existing {
                    let record = Records::batch(self, &batch.project, &existing).await?;
                    return Ok(BatchHandle {
                        id: existing,
                        existing: true,
                        enqueued: record.as_ref().map_or(0, |r| r.enqueued),
                        sealed: record.as_ref().is_some_and(|r| r.total.is_some()),
                        digest: record.and_then(|r| r.digest),
                    });
                }
            }
        }
        let bk = self.batch_key(&batch.project, &id);
        let mut fields = vec![
            (batch_fields::CREATED, now_ms().to_string()),
            (batch_fields::SOURCE, batch.source.clone()),
            (batch_fields::ENQUEUED, "0".into()),
            (batch_fields::DONE, "0".into()),
        ];
        if let Some(w) = &batch.webhook {
            fields.push((batch_fields::WEBHOOK, w.clone()));
        }
        if let Some(d) = &batch.digest {
            fields.push((batch_fields::DIGEST, d.clone()));
        }
        if let Some(e) = batch.estimate_usd {
            fields.push((
                batch_fields::ESTIMATE,
                crate::pricing::to_nano(e).to_string(),
            ));
        }
        let () = conn.hset_multiple(&bk, &fields).await?;
        Ok(BatchHandle {
            id,
            existing: false,
            enqueued: 0,
            sealed: false,
            digest: None,
        })
    }
    async fn enqueue(
        &self,
        project: &str,
        batch: &str,
        jobs: Vec<NewJob>,
    ) -> Result<u64, QueueError> {
        if jobs.is_empty() {
            return Ok(0);
        }
        crate::queue::check_deps(&jobs)?;
        let mut lanes: Vec<&str> = jobs.iter().map(|j| j.lane.as_str()).collect();
        lanes.sort_unstable();
        lanes.dedup();
        for lane in &lanes {
            self.ensure_group(project, lane).await?;
        }
        let mut per_lane: HashMap<&str, u64> = HashMap::new();
        let mut per_op: HashMap<&str, u64> = HashMap::new();
        let bk = self.batch_key(project, batch);
        let counts = self.key(project, "counts");
        let n = jobs.len() as u64;
        // One MULTI/EXEC per chunk: a crash mid-submit leaves whole chunks only, so
        // `enqueued` says exactly where a resumed submit continues.
        let mut pipe = redis::pipe();
        pipe.atomic();
        for job in &jobs {
            *per_op.entry(job.op.as_str()).or_default() += 1;
            if !job.deps.is_empty() {
                continue; // enqueue_wait.lua, below
            }
            // A queued job is only its stream entry (id, spec, line): the record is
            // created when it is first claimed. That keeps a queued job's overhead to
            // the entry itself (docs/benchmarks.md: memory per queued job).
            *per_lane.entry(job.lane.as_str()).or_default() += 1;
            if let Some(url) = &job.webhook {
                // The job's own webhook: its record starts with it (finish reads `wh`).
                pipe.hset(
                    self.job_key(project, &batch_job_id(batch, job.seq)),
                    job_fields::WEBHOOK,
                    url,
                )
                .ignore();
            }
            let stream = if job.interactive {
                self.urgent_stream(project, &job.lane)
            } else {
                self.lane_stream(project, &job.lane)
            };
            let cmd = pipe
                .cmd("XADD")
                .arg(stream)
                .arg("*")
                .arg("j")
                .arg(batch_job_id(batch, job.seq))
                .arg("s")
                .arg(&job.spec);
            if let Some(line) = job.line {
                cmd.arg("l").arg(line);
            }
            cmd.ignore();
        }
        push_hashes(&mut pipe, &format!("{bk}:lh"), &jobs);
        for (line, (first, last)) in jobs.iter().filter_map(crate::queue::story_span_of) {
            pipe.hset(&bk, format!("s{line}"), format!("{first},{last}"))
                .ignore();
        }
        pipe.hincr(&bk, batch_fields::ENQUEUED, n).ignore();
        pipe.hincr(&bk, "queued", n).ignore();
        pipe.hincr(&counts, "queued", n).ignore();
        for (lane, k) in per_lane {
            pipe.hincr(self.key(project, &format!("lane:{lane}")), "qd", k)
                .ignore();
        }
        let enq = self.key(project, "enq");
        for (op, k) in per_op {
            pipe.hincr(&enq, op, k).ignore();
        }
        // Idle workers wake for an interactive job (records.rs `notices`).
        let news = self.key(project, "news");
        let mut told: Vec<&str> = Vec::new();
        for job in jobs.iter().filter(|j| j.interactive && j.deps.is_empty()) {
            if !told.contains(&job.lane.as_str()) {
                told.push(&job.lane);
                pipe.publish(&news, format!("q:{}", job.lane)).ignore();
            }
        }
        let mut conn = self.conn.clone();
        if jobs.iter().any(|j| !j.deps.is_empty()) {
            // In the same MULTI, after the counters (a job cancelled at once moves out of
            // `queued`): loaded first, as EVALSHA inside a transaction cannot load it.
            let sha = self
                .scripts
                .enqueue_wait
                .prepare_invoke()
                .load_async(&mut conn)
                .await?;
            let cmd = pipe
                .cmd("EVALSHA")
                .arg(sha)
                .arg(0)
                .arg(self.base(project))
                .arg(now_ms())
                .arg(self.options.retention.as_secs().max(1));
            for job in jobs.iter().filter(|j| !j.deps.is_empty()) {
                cmd.arg(batch_job_id(batch, job.seq))
                    .arg(&job.lane)
                    .arg(&job.spec)
                    .arg(job.line.map(|l| l.to_string()).unwrap_or_default())
                    .arg(job.webhook.as_deref().unwrap_or(""))
                    .arg(u8::from(job.interactive))
                    .arg(crate::queue::end_event(&job.op).unwrap_or(""))
                    .arg(job.deps.len());
                for dep in &job.deps {
                    cmd.arg(dep.id(batch)).arg(&dep.name).arg(u8::from(dep.any));
                }
            }
            cmd.ignore();
        }
        let () = pipe.query_async(&mut conn).await?;
        Ok(n)
    }
    async fn seal(&self, project: &str, batch: &str, total: u64) -> Result<bool, QueueError> {
        let mut conn = self.conn.clone();
        let done: i64 = self
            .scripts
            .seal
            .key(self.batch_key(project, batch))
            .arg(total)
            .arg(now_ms())
            .arg(self.options.retention.as_secs().max(1))
            .invoke_async(&mut conn)
            .await?;
        Ok(done == 1)
    }
    async fn admit(&self, project: &str, worker: &str, max: usize) -> Result<Claim, QueueError> {
        // Read before the claim: a cancel between the two makes the job's check real.
        let generation = self.cancel_gen(project).await?;
        let [delayed, dlq] = self.core_keys(project);
        let limits = self
            .limits
            .lock()
            .expect("limits")
            .get(project)
            .cloned()
            .unwrap_or_default();
        let mut inv = self.scripts.claim.prepare_invoke();
        inv.key(&delayed).key(&dlq);
        let now = now_ms();
        inv.arg(self.base(project))
            .arg(GROUP)
            .arg(worker)
            .arg(max.max(1))
            .arg(now)
            .arg(self.options.max_deliveries)
            .arg(self.options.retention.as_secs().max(1))
            .arg(self.options.max_wait.as_millis() as u64)
            .arg(limits.project.concurrency)
            .arg(limits.project.rpm)
            .arg(self.options.hold_probe.as_millis() as u64)
            .arg(crate::queue::rules::HOLD_PROBE_MAX_MS)
            .arg(limits.budget.per_day)
            .arg(limits.budget.job_estimate)
            .arg(project)
            .arg(crate::queue::hooks::rfc3339(now).unwrap_or_default());
        for (model, l) in &limits.models {
            let b = limits.model_budgets.get(model).copied().unwrap_or_default();
            inv.arg(model)
                .arg(l.concurrency)
                .arg(l.rpm)
                .arg(b.per_day)
                .arg(b.job_estimate);
        }
        let mut conn = self.conn.clone();
        let (wake, flat, done): (u64, Vec<String>, Vec<String>) =
            inv.invoke_async(&mut conn).await?;
        let jobs = claimed_from_flat(project, &flat);
        self.note_claimed(project, generation, &jobs);
        Ok(Claim {
            jobs,
            wake_ms: (wake > 0).then_some(wake),
            completed: done
                .iter()
                .filter_map(|j| crate::job::split_job_id(j).map(|(b, _)| b.to_string()))
                .collect(),
        })
    }
    async fn extend(&self, worker: &str, leases: &[Lease]) -> Result<(), QueueError> {
        let mut by_lane: HashMap<(&str, &str), Vec<&str>> = HashMap::new();
        for l in leases {
            by_lane
                .entry((&l.project, &l.lane))
                .or_default()
                .push(&l.token);
        }
        let mut pipe = redis::pipe();
        for ((project, lane), tokens) in by_lane {
            // XCLAIM … JUSTID with min-idle 0 resets the idle time without counting
            // a delivery; entries no longer pending (recovered) are ignored. Tokens of
            // interactive jobs (`u` + entry id) are entries of the lane's urgent stream.
            let (urgent, backlog): (Vec<&str>, Vec<&str>) =
                tokens.into_iter().partition(|t| t.starts_with('u'));
            for (stream, ids) in [
                (self.lane_stream(project, lane), backlog),
                (
                    self.urgent_stream(project, lane),
                    urgent.iter().map(|t| &t[1..]).collect(),
                ),
            ] {
                if ids.is_empty() {
                    continue;
                }
                let cmd = pipe.cmd("XCLAIM").arg(stream).arg(GROUP).arg(worker).arg(0);
                for t in ids {
                    cmd.arg(t);
                }
                cmd.arg("JUSTID").ignore();
            }
        }
        let mut conn = self.conn.clone();
        let () = pipe.query_async(&mut conn).await?;
        Ok(())
    }
    async fn settle(&self, items: &[(Lease, Settle)]) -> Result<Vec<SettleReport>, QueueError> {
        {
            let mut at = self.cancels.at_claim.lock().expect("at_claim");
            for (lease, _) in items {
                at.remove(&delivery_key(&lease.project, &lease.token));
            }
        }
        let mut reports = vec![SettleReport::default(); items.len()];
        let mut by_project: HashMap<&str, Vec<(usize, &Lease, &Settle)>> = HashMap::new();
        for (i, (lease, settle)) in items.iter().enumerate() {
            by_project
                .entry(&lease.project)
                .or_default()
                .push((i, lease, settle));
        }
        for (project, group) in by_project {
            self.settle_project(project, &group, &mut reports).await?;
        }
        Ok(reports)
    }
    async fn recover(&self, project: &str, worker: &str) -> Result<Recovered, QueueError> {
        let generation = self.cancel_gen(project).await?;
        let [delayed, dlq] = self.core_keys(project);
        let mut inv = self.scripts.recover.prepare_invoke();
        inv.key(&delayed).key(&dlq);
        inv.arg(self.base(project))
            .arg(GROUP)
            .arg(worker)
            .arg(self.options.visibility.as_millis() as u64)
            .arg(500)
            .arg(now_ms())
            .arg(self.options.max_deliveries)
            .arg(self.options.retention.as_secs().max(1));
        let mut conn = self.conn.clone();
        let (flat, dead, completed): (Vec<String>, Vec<String>, Vec<String>) =
            inv.invoke_async(&mut conn).await?;
        let claimed = claimed_from_flat(project, &flat);
        self.note_claimed(project, generation, &claimed);
        Ok(Recovered {
            claimed,
            dead,
            completed_batches: completed,
        })
    }
    async fn cancel_requested(&self, lease: &Lease) -> Result<bool, QueueError> {
        let claimed_at = self
            .cancels
            .at_claim
            .lock()
            .expect("at_claim")
            .get(&delivery_key(&lease.project, &lease.token))
            .copied();
        if let Some(g) = claimed_at
            && self.cancel_gen(&lease.project).await? == g
        {
            // No cancel since the job was claimed.
            return Ok(false);
        }
        let mut conn = self.conn.clone();
        // The job's own flag, and its batch's when it has one: one round trip.
        let mut pipe = redis::pipe();
        pipe.hget(self.job_key(&lease.project, &lease.job), job_fields::CANCEL);
        if let Some((batch, _)) = split_job_id(&lease.job) {
            pipe.hget(self.batch_key(&lease.project, batch), batch_fields::CANCEL);
        }
        let flags: Vec<Option<String>> = pipe.query_async(&mut conn).await?;
        Ok(flags.iter().any(|f| f.as_deref() == Some("1")))
    }
    async fn cancel(&self, project: &str, id: &str) -> Result<CancelReport, QueueError> {
        let report = self.cancel_any(project, id).await;
        // This process sees its own cancels at once.
        self.cancels.gens.lock().expect("gens").remove(project);
        report
    }
}

impl RedisQueue {
    async fn settle_project(
        &self,
        project: &str,
        items: &[(usize, &Lease, &Settle)],
        reports: &mut [SettleReport],
    ) -> Result<(), QueueError> {
        let [delayed, dlq] = self.core_keys(project);
        let mut inv = self.scripts.settle.prepare_invoke();
        inv.key(&delayed).key(&dlq);
        let now = now_ms();
        inv.arg(self.base(project))
            .arg(GROUP)
            .arg(now)
            .arg(self.options.retention.as_secs().max(1))
            .arg(self.options.max_wait.as_millis() as u64)
            .arg(MAX_LOG)
            .arg(project)
            .arg(crate::queue::hooks::rfc3339(now).unwrap_or_default());
        for (_, lease, settle) in items {
            inv.arg(&lease.job).arg(&lease.token).arg(&lease.lane);
            match settle {
                Settle::Finish {
                    status,
                    error,
                    result,
                    dead_letter,
                } => {
                    let cost = result
                        .as_ref()
                        .and_then(|r| r.cost_usd)
                        .map_or(0, crate::pricing::to_nano);
                    let result = result
                        .as_ref()
                        .and_then(|r| serde_json::to_string(r).ok())
                        .unwrap_or_default();
                    inv.arg(if *dead_letter { "D" } else { "F" })
                        .arg(status.as_str())
                        .arg(error.as_deref().unwrap_or(""))
                        .arg(result)
                        .arg(cost);
                }
                Settle::Retry {
                    delay,
                    count,
                    error,
                } => {
                    inv.arg("R")
                        .arg("")
                        .arg(error)
                        .arg(delay.as_millis() as u64)
                        .arg(if *count { "1" } else { "0" });
                }
                Settle::Release => {
                    inv.arg("L").arg("").arg("").arg("").arg("0");
                }
            }
        }
        let mut conn = self.conn.clone();
        let codes: Vec<i64> = inv.invoke_async(&mut conn).await?;
        if codes.len() != items.len() {
            return Err(QueueError::Corrupt(format!(
                "settle returned {} results for {} items",
                codes.len(),
                items.len()
            )));
        }
        for ((i, _, _), code) in items.iter().zip(codes) {
            reports[*i] = SettleReport {
                applied: code & 1 == 1,
                batch_completed: code & 2 == 2,
            };
        }
        Ok(())
    }
}

/// Claimed jobs from a script's flat reply: token, job, spec, attempts, deliveries, line.
fn claimed_from_flat(project: &str, flat: &[String]) -> Vec<Claimed> {
    flat.chunks_exact(7)
        .map(|c| Claimed {
            lease: Lease {
                project: project.to_string(),
                job: c[1].clone(),
                token: c[0].clone(),
                lane: c[6].clone(),
            },
            payload: c[2].clone(),
            attempts: c[3].parse().unwrap_or(0),
            deliveries: c[4].parse().unwrap_or(1),
            line: c[5].parse().ok(),
        })
        .collect()
}

/// Queues the hashes of an idempotent submit's jobs on `pipe`: 4 bytes per position,
/// one SETRANGE per run of consecutive positions.
fn push_hashes(pipe: &mut redis::Pipeline, key: &str, jobs: &[NewJob]) {
    let mut run: Option<(u64, Vec<u8>)> = None;
    for job in jobs {
        let Some(h) = job.hash else { continue };
        match &mut run {
            Some((start, bytes)) if *start + (bytes.len() / 4) as u64 == job.seq => {
                bytes.extend_from_slice(&h.to_be_bytes())
            }
            _ => {
                if let Some((start, bytes)) = run.take() {
                    pipe.setrange(key, (start * 4) as isize, bytes).ignore();
                }
                run = Some((job.seq, h.to_be_bytes().to_vec()));
            }
        }
    }
    if let Some((start, bytes)) = run {
        pipe.setrange(key, (start * 4) as isize, bytes).ignore();
    }
}
