//! `RedisQueue`: the fleet's queue on Redis Streams + Lua (design:
//! `docs/design/queue.md`).
//!
//! Per project, under the hash tag `{p:<project>}`: one stream per lane (model) with
//! consumer group `workers` whose entries carry the job id (and, until the first claim,
//! its spec and line); job records as hashes; a ZSET of delayed retries (ms scores,
//! moved back by `claim.lua`); a dead-letter stream; counters per status for the
//! project and each batch; per lane, the admission state of `crate::limits` (in-flight,
//! AIMD concurrency, GCRA, pause, parking). Scripts are loaded once and called by SHA
//! (`redis::Script` reloads them after a Redis restart).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use futures::FutureExt as _;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands as _, Script, Value};

use super::hooks::{AttemptRecord, DeliveryRecord, DueDelivery, HookSettle};
use super::records::{batch_fields, job_fields};
use super::{
    BatchHandle, BatchRecord, CancelReport, Claim, Claimed, DeadLetter, Fut, JobQueue, JobRecord,
    Lease, MAX_LOG, NewBatch, NewJob, ProjectCounts, QueueError, QueueOptions, Recovered, Settle,
    SettleReport, WorkerInfo, now_ms,
};
use crate::job::{JobId, batch_job_id, split_job_id};
use crate::limits::{LaneView, ProjectLimits, Throttle};

mod hooks;

const LIB: &str = include_str!("lib.lua");
const GROUP: &str = "workers";
/// Idempotency keys live this long (DESIGN: "same key within 24 h").
const IDEMPOTENCY_TTL_S: u64 = 86_400;

struct Scripts {
    claim: Script,
    settle: Script,
    recover: Script,
    cancel: Script,
    cancel_scan: Script,
    seal: Script,
    throttle: Script,
    hooks_claim: Script,
    hooks_settle: Script,
}

impl Scripts {
    fn new() -> Self {
        let s = |body: &str| Script::new(&format!("{LIB}\n{body}"));
        Scripts {
            claim: s(include_str!("claim.lua")),
            settle: s(include_str!("settle.lua")),
            recover: s(include_str!("recover.lua")),
            cancel: s(include_str!("cancel.lua")),
            cancel_scan: s(include_str!("cancel_scan.lua")),
            seal: s(include_str!("seal.lua")),
            throttle: s(include_str!("throttle.lua")),
            hooks_claim: s(include_str!("hooks_claim.lua")),
            hooks_settle: s(include_str!("hooks_settle.lua")),
        }
    }
}

/// The Redis implementation of [`JobQueue`]. Cheap to clone.
#[derive(Clone)]
pub struct RedisQueue {
    conn: ConnectionManager,
    prefix: String,
    options: QueueOptions,
    scripts: Arc<Scripts>,
    /// (project, lane) pairs whose stream and group this process has made sure of.
    groups: Arc<Mutex<HashSet<(String, String)>>>,
    limits: Arc<Mutex<HashMap<String, ProjectLimits>>>,
    cancels: Arc<CancelWatch>,
}

/// How long a read of a project's cancel generation is trusted.
const CANCEL_GEN_TTL: std::time::Duration = std::time::Duration::from_millis(100);

/// Saves a round trip per job at its cancellation safe point. Every cancel bumps the
/// project's generation (`…:cxgen`, after setting its flags); a job's flags can only
/// have changed if the generation moved since the job was claimed. The generation is
/// read at most every 100 ms per project, so a cancel issued by another process is
/// seen by safe points reached 100 ms or more after it (at once in this process,
/// which forgets its cached value when it cancels).
#[derive(Default)]
struct CancelWatch {
    /// project → (generation, when read)
    gens: Mutex<HashMap<String, (u64, std::time::Instant)>>,
    /// "project\0token" → the generation read before the job was claimed
    at_claim: Mutex<HashMap<String, u64>>,
}

fn delivery_key(project: &str, token: &str) -> String {
    format!("{project}\0{token}")
}

/// Connects with a manager that reconnects on its own; responses time out after 30 s
/// (a big enqueue pipeline is not an error), connecting after 5 s.
pub async fn connect(url: &str) -> Result<ConnectionManager, QueueError> {
    let client = redis::Client::open(url)?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(std::time::Duration::from_secs(5)))
        .set_response_timeout(Some(std::time::Duration::from_secs(30)))
        .set_number_of_retries(3)
        .set_max_delay(std::time::Duration::from_secs(2));
    Ok(ConnectionManager::new_with_config(client, config).await?)
}

impl RedisQueue {
    /// A queue over `conn`, keys under `prefix`.
    pub fn new(conn: ConnectionManager, prefix: &str, options: QueueOptions) -> Self {
        RedisQueue {
            conn,
            prefix: prefix.to_string(),
            options,
            scripts: Arc::new(Scripts::new()),
            groups: Arc::default(),
            limits: Arc::default(),
            cancels: Arc::default(),
        }
    }

    /// Connects to `url`.
    pub async fn open(url: &str, prefix: &str, options: QueueOptions) -> Result<Self, QueueError> {
        Ok(Self::new(connect(url).await?, prefix, options))
    }

    /// The connection (for benchmarks and tests that inspect Redis).
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// `<prefix>:{p:<project>}`: every key of the project starts with it.
    pub fn base(&self, project: &str) -> String {
        format!("{}:{{p:{project}}}", self.prefix)
    }

    fn key(&self, project: &str, suffix: &str) -> String {
        format!("{}:{suffix}", self.base(project))
    }

    fn job_key(&self, project: &str, job: &str) -> String {
        self.key(project, &format!("job:{job}"))
    }

    fn batch_key(&self, project: &str, batch: &str) -> String {
        self.key(project, &format!("batch:{batch}"))
    }

    /// Delayed set and dead-letter stream: the KEYS of most scripts (lane streams and
    /// records are derived from the base, in the same slot).
    fn core_keys(&self, project: &str) -> [String; 2] {
        [self.key(project, "delayed"), self.key(project, "dlq")]
    }

    /// A lane's stream.
    pub fn lane_stream(&self, project: &str, lane: &str) -> String {
        self.key(project, &format!("q:{lane}"))
    }

    /// Creates a lane's stream and consumer group once per process (claim and recover
    /// recreate them if Redis lost them).
    async fn ensure_group(&self, project: &str, lane: &str) -> Result<(), QueueError> {
        let id = (project.to_string(), lane.to_string());
        if self.groups.lock().expect("groups").contains(&id) {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        let stream = self.lane_stream(project, lane);
        let res: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&stream)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        match res {
            Ok(()) => {}
            Err(e) if e.code() == Some("BUSYGROUP") => {}
            Err(e) => return Err(e.into()),
        }
        let () = conn.sadd(self.key(project, "lanes"), lane).await?;
        self.groups.lock().expect("groups").insert(id);
        Ok(())
    }

    /// The project's cancel generation, as read at most [`CANCEL_GEN_TTL`] ago.
    async fn cancel_gen(&self, project: &str) -> Result<u64, QueueError> {
        if let Some((g, at)) = self.cancels.gens.lock().expect("gens").get(project)
            && at.elapsed() < CANCEL_GEN_TTL
        {
            return Ok(*g);
        }
        let mut conn = self.conn.clone();
        let g: Option<u64> = conn.get(self.key(project, "cxgen")).await?;
        let g = g.unwrap_or(0);
        self.cancels
            .gens
            .lock()
            .expect("gens")
            .insert(project.to_string(), (g, std::time::Instant::now()));
        Ok(g)
    }

    /// Notes the generation read before `jobs` were claimed.
    fn note_claimed(&self, project: &str, generation: u64, jobs: &[Claimed]) {
        let mut at = self.cancels.at_claim.lock().expect("at_claim");
        for c in jobs {
            at.insert(delivery_key(project, &c.lease.token), generation);
        }
    }

    async fn admit_inner(
        &self,
        project: &str,
        worker: &str,
        max: usize,
    ) -> Result<Claim, QueueError> {
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
        inv.arg(self.base(project))
            .arg(GROUP)
            .arg(worker)
            .arg(max.max(1))
            .arg(now_ms())
            .arg(self.options.max_deliveries)
            .arg(self.options.retention.as_secs().max(1))
            .arg(self.options.max_wait.as_millis() as u64)
            .arg(limits.project.concurrency)
            .arg(limits.project.rpm);
        for (model, l) in &limits.models {
            inv.arg(model).arg(l.concurrency).arg(l.rpm);
        }
        let mut conn = self.conn.clone();
        let (wake, flat): (u64, Vec<String>) = inv.invoke_async(&mut conn).await?;
        let jobs = claimed_from_flat(project, &flat);
        self.note_claimed(project, generation, &jobs);
        Ok(Claim {
            jobs,
            wake_ms: (wake > 0).then_some(wake),
        })
    }

    async fn settle_project(
        &self,
        project: &str,
        items: &[(usize, &Lease, &Settle)],
        reports: &mut [SettleReport],
    ) -> Result<(), QueueError> {
        let [delayed, dlq] = self.core_keys(project);
        let mut inv = self.scripts.settle.prepare_invoke();
        inv.key(&delayed).key(&dlq);
        inv.arg(self.base(project))
            .arg(GROUP)
            .arg(now_ms())
            .arg(self.options.retention.as_secs().max(1))
            .arg(self.options.max_wait.as_millis() as u64)
            .arg(MAX_LOG);
        for (_, lease, settle) in items {
            inv.arg(&lease.job).arg(&lease.token).arg(&lease.lane);
            match settle {
                Settle::Finish {
                    status,
                    error,
                    result,
                    dead_letter,
                } => {
                    let result = result
                        .as_ref()
                        .and_then(|r| serde_json::to_string(r).ok())
                        .unwrap_or_default();
                    inv.arg(if *dead_letter { "D" } else { "F" })
                        .arg(status.as_str())
                        .arg(error.as_deref().unwrap_or(""))
                        .arg(result)
                        .arg("0");
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

    async fn create_batch_inner(&self, batch: &NewBatch) -> Result<BatchHandle, QueueError> {
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
                    let record = self.batch_inner(&batch.project, &existing).await?;
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
        let () = conn.hset_multiple(&bk, &fields).await?;
        Ok(BatchHandle {
            id,
            existing: false,
            enqueued: 0,
            sealed: false,
            digest: None,
        })
    }

    async fn enqueue_inner(
        &self,
        project: &str,
        batch: &str,
        jobs: Vec<NewJob>,
    ) -> Result<u64, QueueError> {
        if jobs.is_empty() {
            return Ok(0);
        }
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
            // A queued job is only its stream entry (id, spec, line): the record is
            // created when it is first claimed. That keeps a queued job's overhead to
            // the entry itself (docs/benchmarks.md: memory per queued job).
            *per_lane.entry(job.lane.as_str()).or_default() += 1;
            *per_op.entry(job.op.as_str()).or_default() += 1;
            if let Some(url) = &job.webhook {
                // The job's own webhook: its record starts with it (finish reads `wh`).
                pipe.hset(
                    self.job_key(project, &batch_job_id(batch, job.seq)),
                    job_fields::WEBHOOK,
                    url,
                )
                .ignore();
            }
            let cmd = pipe
                .cmd("XADD")
                .arg(self.lane_stream(project, &job.lane))
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
        // Hashes of an idempotent submit's jobs, 4 bytes per position, one SETRANGE per
        // run of consecutive positions.
        let mut run: Option<(u64, Vec<u8>)> = None;
        for job in &jobs {
            let Some(h) = job.hash else { continue };
            match &mut run {
                Some((start, bytes)) if *start + (bytes.len() / 4) as u64 == job.seq => {
                    bytes.extend_from_slice(&h.to_be_bytes())
                }
                _ => {
                    if let Some((start, bytes)) = run.take() {
                        pipe.setrange(format!("{bk}:lh"), (start * 4) as isize, bytes)
                            .ignore();
                    }
                    run = Some((job.seq, h.to_be_bytes().to_vec()));
                }
            }
        }
        if let Some((start, bytes)) = run {
            pipe.setrange(format!("{bk}:lh"), (start * 4) as isize, bytes)
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
        let mut conn = self.conn.clone();
        let () = pipe.query_async(&mut conn).await?;
        Ok(n)
    }

    async fn batch_inner(
        &self,
        project: &str,
        id: &str,
    ) -> Result<Option<BatchRecord>, QueueError> {
        let mut conn = self.conn.clone();
        let bk = self.batch_key(project, id);
        let (map, failures, cancelled): (HashMap<String, String>, Vec<String>, Vec<String>) =
            redis::pipe()
                .hgetall(&bk)
                .lrange(format!("{bk}:fail"), 0, 999)
                .lrange(format!("{bk}:cx"), 0, 999)
                .query_async(&mut conn)
                .await?;
        Ok(BatchRecord::from_fields(
            project, id, &map, failures, cancelled,
        ))
    }

    async fn recover_inner(&self, project: &str, worker: &str) -> Result<Recovered, QueueError> {
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

    async fn throttle_inner(
        &self,
        project: &str,
        lane: &str,
        throttle: &Throttle,
    ) -> Result<(), QueueError> {
        let aimd = self.options.aimd;
        let (kind, delay, reason) = match throttle {
            Throttle::Rate { delay } => ("rate", delay.map_or(0, |d| d.as_millis() as u64), ""),
            Throttle::Park { until_ms, reason } => {
                ("park", until_ms.saturating_sub(now_ms()), reason.as_str())
            }
        };
        let mut conn = self.conn.clone();
        let _: i64 = self
            .scripts
            .throttle
            .arg(self.base(project))
            .arg(lane)
            .arg(now_ms())
            .arg(kind)
            .arg(delay)
            .arg(aimd.default_pause.as_millis() as u64)
            .arg(aimd.decrease)
            .arg(aimd.decrease_interval.as_millis() as u64)
            .arg(reason)
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }

    async fn lanes_inner(&self, project: &str) -> Result<Vec<LaneView>, QueueError> {
        let mut conn = self.conn.clone();
        let mut lanes: Vec<String> = conn.smembers(self.key(project, "lanes")).await?;
        if lanes.is_empty() {
            return Ok(Vec::new());
        }
        lanes.sort();
        let mut pipe = redis::pipe();
        for lane in &lanes {
            pipe.hgetall(self.key(project, &format!("lane:{lane}")));
        }
        let maps: Vec<HashMap<String, String>> = pipe.query_async(&mut conn).await?;
        let now = now_ms();
        Ok(lanes
            .into_iter()
            .zip(maps)
            .map(|(model, m)| lane_view(model, &m, now))
            .collect())
    }

    async fn cancel_inner(&self, project: &str, id: &str) -> Result<CancelReport, QueueError> {
        if let Some(batch) = self.batch_inner(project, id).await? {
            return self.cancel_batch(project, id, batch).await;
        }
        if self.job_inner(project, id).await?.is_none() {
            return Ok(CancelReport::default());
        }
        let mut conn = self.conn.clone();
        let r: [u64; 4] = self
            .scripts
            .cancel
            .key(self.key(project, "delayed"))
            .arg(self.base(project))
            .arg(now_ms())
            .arg(self.options.retention.as_secs().max(1))
            .arg(id)
            .invoke_async(&mut conn)
            .await?;
        Ok(CancelReport {
            kind: "job".into(),
            cancelled: r[0],
            flagged: r[1],
            already_finished: r[2],
            batch_completed: r[3] == 1,
        })
    }

    /// A job's record; a job that is only a stream entry (queued, never claimed) reads
    /// as `queued` when its batch says it was enqueued.
    async fn job_inner(&self, project: &str, id: &str) -> Result<Option<JobRecord>, QueueError> {
        let mut conn = self.conn.clone();
        let map: HashMap<String, String> = conn.hgetall(self.job_key(project, id)).await?;
        if let Some(r) = JobRecord::from_fields(project, id, &map) {
            return Ok(Some(r));
        }
        let Some((batch, seq)) = split_job_id(id) else {
            return Ok(None);
        };
        let batch = self.batch_inner(project, batch).await?;
        Ok(batch
            .filter(|b| seq < b.enqueued && b.completed_ms.is_none())
            .map(|_| queued_record(project, id)))
    }

    async fn cancel_batch(
        &self,
        project: &str,
        id: &str,
        batch: BatchRecord,
    ) -> Result<CancelReport, QueueError> {
        let mut report = CancelReport {
            kind: "batch".into(),
            ..CancelReport::default()
        };
        if batch.completed_ms.is_some() {
            report.already_finished = batch.done;
            return Ok(report);
        }
        let mut conn = self.conn.clone();
        let () = conn
            .hset(self.batch_key(project, id), batch_fields::CANCEL, 1)
            .await?;
        // First the jobs that are only stream entries (they carry their line), lane by
        // lane; then every job by seq (running ones are flagged, retries cancelled).
        // A submit still running sees the flag and stops.
        let mut lanes: Vec<String> = conn.smembers(self.key(project, "lanes")).await?;
        lanes.sort();
        let mut scanned = 0;
        for lane in &lanes {
            let mut start = "-".to_string();
            loop {
                let (next, n, done): (String, u64, u64) = self
                    .scripts
                    .cancel_scan
                    .arg(self.base(project))
                    .arg(now_ms())
                    .arg(self.options.retention.as_secs().max(1))
                    .arg(id)
                    .arg(lane)
                    .arg(&start)
                    .arg(500)
                    .invoke_async(&mut conn)
                    .await?;
                scanned += n;
                report.batch_completed |= done == 1;
                if next.is_empty() {
                    break;
                }
                start = next;
            }
        }
        report.cancelled += scanned;
        let enqueued = self
            .batch_inner(project, id)
            .await?
            .map_or(batch.enqueued, |b| b.enqueued);
        let mut seq = 0;
        while seq < enqueued {
            let end = (seq + 1000).min(enqueued);
            let mut inv = self.scripts.cancel.prepare_invoke();
            inv.key(self.key(project, "delayed"))
                .arg(self.base(project))
                .arg(now_ms())
                .arg(self.options.retention.as_secs().max(1));
            for s in seq..end {
                inv.arg(batch_job_id(id, s));
            }
            let r: [u64; 4] = inv.invoke_async(&mut conn).await?;
            report.cancelled += r[0];
            report.flagged += r[1];
            report.already_finished += r[2];
            report.batch_completed |= r[3] == 1;
            seq = end;
        }
        // The scan's cancellations were seen again as finished.
        report.already_finished = report.already_finished.saturating_sub(scanned);
        Ok(report)
    }
}

/// The record of a job that is still only a stream entry.
fn queued_record(project: &str, id: &str) -> JobRecord {
    let fields = HashMap::from([(job_fields::STATUS.to_string(), "queued".to_string())]);
    JobRecord::from_fields(project, id, &fields).expect("non-empty fields")
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

/// A lane's state hash as [`LaneView`].
fn lane_view(model: String, m: &HashMap<String, String>, now: u64) -> LaneView {
    let num = |k: &str| m.get(k).and_then(|v| v.parse::<f64>().ok());
    let int = |k: &str| num(k).map_or(0, |v| v.max(0.0) as u64);
    let concurrency = int("cap") as u32;
    // The minute window counts only while it is current (the previous one for another
    // minute).
    let age = now.saturating_sub(int("wst"));
    let (w429, wok) = if age < 120_000 {
        (int("w429"), int("wok"))
    } else {
        (0, 0)
    };
    let (p429, pok) = if age < 60_000 {
        (int("p429"), int("pok"))
    } else {
        (0, 0)
    };
    LaneView {
        concurrency,
        rpm: int("rpm") as u32,
        effective_concurrency: num("eff").unwrap_or(concurrency as f64),
        in_flight: int("run"),
        queued: int("qd"),
        paused_until_ms: Some(int("pause")).filter(|t| *t > now),
        parked_until_ms: Some(int("park")).filter(|t| *t > now),
        parked_reason: m.get("why").cloned().filter(|_| int("park") > now),
        recent_429: w429 + p429,
        recent_answered: wok + pok,
        model,
    }
}

impl JobQueue for RedisQueue {
    fn create_batch<'a>(&'a self, batch: &'a NewBatch) -> Fut<'a, BatchHandle> {
        self.create_batch_inner(batch).boxed()
    }

    fn enqueue<'a>(&'a self, project: &'a str, batch: &'a str, jobs: Vec<NewJob>) -> Fut<'a, u64> {
        self.enqueue_inner(project, batch, jobs).boxed()
    }

    fn seal<'a>(&'a self, project: &'a str, batch: &'a str, total: u64) -> Fut<'a, bool> {
        async move {
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
        .boxed()
    }

    fn set_limits(&self, project: &str, limits: ProjectLimits) {
        self.limits
            .lock()
            .expect("limits")
            .insert(project.to_string(), limits);
    }

    fn admit<'a>(&'a self, project: &'a str, worker: &'a str, max: usize) -> Fut<'a, Claim> {
        self.admit_inner(project, worker, max).boxed()
    }

    fn throttle<'a>(
        &'a self,
        project: &'a str,
        lane: &'a str,
        throttle: &'a Throttle,
    ) -> Fut<'a, ()> {
        self.throttle_inner(project, lane, throttle).boxed()
    }

    fn unpark<'a>(&'a self, project: &'a str, lane: &'a str) -> Fut<'a, bool> {
        async move {
            let mut conn = self.conn.clone();
            let n: u64 = redis::cmd("HDEL")
                .arg(self.key(project, &format!("lane:{lane}")))
                .arg("park")
                .arg("why")
                .arg("pause")
                .query_async(&mut conn)
                .await?;
            Ok(n > 0)
        }
        .boxed()
    }

    fn lanes<'a>(&'a self, project: &'a str) -> Fut<'a, Vec<LaneView>> {
        self.lanes_inner(project).boxed()
    }

    fn extend<'a>(&'a self, worker: &'a str, leases: &'a [Lease]) -> Fut<'a, ()> {
        async move {
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
                // a delivery; entries no longer pending (recovered) are ignored.
                let cmd = pipe
                    .cmd("XCLAIM")
                    .arg(self.lane_stream(project, lane))
                    .arg(GROUP)
                    .arg(worker)
                    .arg(0);
                for t in tokens {
                    cmd.arg(t);
                }
                cmd.arg("JUSTID").ignore();
            }
            let mut conn = self.conn.clone();
            let () = pipe.query_async(&mut conn).await?;
            Ok(())
        }
        .boxed()
    }

    fn settle<'a>(&'a self, items: &'a [(Lease, Settle)]) -> Fut<'a, Vec<SettleReport>> {
        async move {
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
        .boxed()
    }

    fn recover<'a>(&'a self, project: &'a str, worker: &'a str) -> Fut<'a, Recovered> {
        self.recover_inner(project, worker).boxed()
    }

    fn cancel_requested<'a>(&'a self, lease: &'a Lease) -> Fut<'a, bool> {
        async move {
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
        .boxed()
    }

    fn cancel<'a>(&'a self, project: &'a str, id: &'a str) -> Fut<'a, CancelReport> {
        async move {
            let report = self.cancel_inner(project, id).await;
            // This process sees its own cancels at once.
            self.cancels.gens.lock().expect("gens").remove(project);
            report
        }
        .boxed()
    }

    fn job<'a>(&'a self, project: &'a str, id: &'a str) -> Fut<'a, Option<JobRecord>> {
        self.job_inner(project, id).boxed()
    }

    fn batch<'a>(&'a self, project: &'a str, id: &'a str) -> Fut<'a, Option<BatchRecord>> {
        self.batch_inner(project, id).boxed()
    }

    fn batch_jobs<'a>(
        &'a self,
        project: &'a str,
        batch: &'a str,
        from: u64,
        to: u64,
    ) -> Fut<'a, Vec<Option<JobRecord>>> {
        async move {
            let mut pipe = redis::pipe();
            let ids: Vec<String> = (from..to).map(|s| batch_job_id(batch, s)).collect();
            for id in &ids {
                pipe.hgetall(self.job_key(project, id));
            }
            let mut conn = self.conn.clone();
            let maps: Vec<HashMap<String, String>> = pipe.query_async(&mut conn).await?;
            let record = self.batch_inner(project, batch).await?;
            let live = record.filter(|b| b.completed_ms.is_none());
            Ok(ids
                .iter()
                .zip(from..to)
                .zip(maps)
                .map(|((id, seq), m)| {
                    JobRecord::from_fields(project, id, &m).or_else(|| {
                        live.as_ref()
                            .filter(|b| seq < b.enqueued)
                            .map(|_| queued_record(project, id))
                    })
                })
                .collect())
        }
        .boxed()
    }

    fn set_manifest<'a>(&'a self, project: &'a str, batch: &'a str, url: &'a str) -> Fut<'a, ()> {
        async move {
            let mut conn = self.conn.clone();
            let () = conn
                .hset(self.batch_key(project, batch), batch_fields::MANIFEST, url)
                .await?;
            Ok(())
        }
        .boxed()
    }

    fn dead_letters<'a>(&'a self, project: &'a str, max: usize) -> Fut<'a, Vec<DeadLetter>> {
        async move {
            let mut conn = self.conn.clone();
            let v: Value = redis::cmd("XREVRANGE")
                .arg(self.key(project, "dlq"))
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(max)
                .query_async(&mut conn)
                .await?;
            let entries: Vec<(String, HashMap<String, String>)> = redis::from_redis_value(v)
                .map_err(|e| QueueError::Corrupt(format!("reading the dead-letter stream: {e}")))?;
            Ok(entries
                .into_iter()
                .map(|(_, f)| DeadLetter {
                    job: f.get("j").cloned().unwrap_or_default(),
                    reason: f.get("reason").cloned().unwrap_or_default(),
                    at_ms: f.get("at").and_then(|a| a.parse().ok()).unwrap_or(0),
                })
                .collect())
        }
        .boxed()
    }

    fn project_counts<'a>(&'a self, project: &'a str) -> Fut<'a, ProjectCounts> {
        async move {
            let mut conn = self.conn.clone();
            let (counts, enq, pending): (HashMap<String, i64>, HashMap<String, u64>, u64) =
                redis::pipe()
                    .hgetall(self.key(project, "counts"))
                    .hgetall(self.key(project, "enq"))
                    .zcard(self.key(project, "wh:due"))
                    .query_async(&mut conn)
                    .await?;
            Ok(ProjectCounts {
                by_status: crate::job::JobStatus::ALL
                    .into_iter()
                    .map(|st| {
                        (
                            st,
                            counts.get(st.as_str()).copied().unwrap_or(0).max(0) as u64,
                        )
                    })
                    .collect(),
                enqueued_by_op: enq.into_iter().collect(),
                webhooks_pending: pending,
            })
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
            let mut conn = self.conn.clone();
            let key = format!("{}:lh", self.batch_key(project, batch));
            let bytes: Vec<u8> = redis::cmd("GETRANGE")
                .arg(key)
                .arg(from * 4)
                .arg((to * 4).saturating_sub(1))
                .query_async(&mut conn)
                .await?;
            let mut out: Vec<u32> = bytes
                .chunks_exact(4)
                .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            out.resize(to.saturating_sub(from) as usize, 0);
            Ok(out)
        }
        .boxed()
    }

    fn register_worker<'a>(&'a self, project: &'a str, info: &'a WorkerInfo) -> Fut<'a, ()> {
        async move {
            let mut conn = self.conn.clone();
            let json = serde_json::to_string(info)
                .map_err(|e| QueueError::Corrupt(format!("worker info: {e}")))?;
            let () = conn
                .hset(self.key(project, "workers"), &info.worker, json)
                .await?;
            Ok(())
        }
        .boxed()
    }

    fn workers<'a>(&'a self, project: &'a str, live_ms: u64) -> Fut<'a, Vec<WorkerInfo>> {
        async move {
            let mut conn = self.conn.clone();
            let key = self.key(project, "workers");
            let all: HashMap<String, String> = conn.hgetall(&key).await?;
            let now = now_ms();
            let mut live = Vec::new();
            let mut gone = Vec::new();
            for (name, json) in all {
                match serde_json::from_str::<WorkerInfo>(&json) {
                    Ok(w) if now.saturating_sub(w.seen_ms) <= live_ms => live.push(w),
                    // Long gone: forget it (a day, so `status` can still say who left).
                    Ok(w) if now.saturating_sub(w.seen_ms) < 86_400_000 => {}
                    _ => gone.push(name),
                }
            }
            if !gone.is_empty() {
                let () = conn.hdel(&key, gone).await?;
            }
            live.sort_by(|a, b| a.worker.cmp(&b.worker));
            Ok(live)
        }
        .boxed()
    }

    fn set_default_webhook<'a>(&'a self, project: &'a str, url: Option<&'a str>) -> Fut<'a, ()> {
        self.set_default_webhook_inner(project, url).boxed()
    }

    fn hooks_due<'a>(
        &'a self,
        project: &'a str,
        worker: &'a str,
        max: usize,
        lease: std::time::Duration,
    ) -> Fut<'a, Vec<DueDelivery>> {
        self.hooks_due_inner(project, worker, max, lease).boxed()
    }

    fn hooks_body<'a>(&'a self, project: &'a str, id: &'a str, body: &'a str) -> Fut<'a, String> {
        self.hooks_body_inner(project, id, body).boxed()
    }

    fn hooks_settle<'a>(
        &'a self,
        project: &'a str,
        id: &'a str,
        token: &'a str,
        attempt: Option<&'a AttemptRecord>,
        settle: &'a HookSettle,
    ) -> Fut<'a, bool> {
        self.hooks_settle_inner(project, id, token, attempt, settle)
            .boxed()
    }

    fn hook<'a>(&'a self, project: &'a str, id: &'a str) -> Fut<'a, Option<DeliveryRecord>> {
        self.hook_inner(project, id).boxed()
    }

    fn hooks_disabled<'a>(&'a self, project: &'a str) -> Fut<'a, Vec<(String, String)>> {
        self.hooks_disabled_inner(project).boxed()
    }

    fn hooks_enable<'a>(&'a self, project: &'a str, url: &'a str) -> Fut<'a, bool> {
        self.hooks_enable_inner(project, url).boxed()
    }
}
