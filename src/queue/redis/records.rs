//! Records and status on Redis: job and batch hashes, the dead-letter stream, the
//! project's counters, the worker registry.

use std::collections::HashMap;

use async_trait::async_trait;
use redis::{AsyncCommands as _, Value};

use super::RedisQueue;
use crate::job::{batch_job_id, split_job_id};
use crate::queue::records::{batch_fields, job_fields};
use crate::queue::{
    BatchRecord, DeadLetter, JobRecord, Notice, ProjectCounts, QueueError, Records, WorkerInfo,
    now_ms,
};

#[async_trait]
impl Records for RedisQueue {
    /// A job's record; a job that is only a stream entry (queued, never claimed) reads
    /// as `queued` when its batch says it was enqueued.
    async fn job(&self, project: &str, id: &str) -> Result<Option<JobRecord>, QueueError> {
        let mut conn = self.conn.clone();
        let map: HashMap<String, String> = conn.hgetall(self.job_key(project, id)).await?;
        if let Some(r) = JobRecord::from_fields(project, id, &map) {
            return Ok(Some(r));
        }
        let Some((batch, seq)) = split_job_id(id) else {
            return Ok(None);
        };
        let batch = Records::batch(self, project, batch).await?;
        Ok(batch
            .filter(|b| seq < b.enqueued && b.completed_ms.is_none())
            .map(|_| queued_record(project, id)))
    }
    async fn batch(&self, project: &str, id: &str) -> Result<Option<BatchRecord>, QueueError> {
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
    async fn batch_jobs(
        &self,
        project: &str,
        batch: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<Option<JobRecord>>, QueueError> {
        let mut pipe = redis::pipe();
        let ids: Vec<String> = (from..to).map(|s| batch_job_id(batch, s)).collect();
        for id in &ids {
            pipe.hgetall(self.job_key(project, id));
        }
        let mut conn = self.conn.clone();
        let maps: Vec<HashMap<String, String>> = pipe.query_async(&mut conn).await?;
        let record = Records::batch(self, project, batch).await?;
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
    async fn set_manifest(&self, project: &str, batch: &str, url: &str) -> Result<(), QueueError> {
        let mut conn = self.conn.clone();
        let () = conn
            .hset(self.batch_key(project, batch), batch_fields::MANIFEST, url)
            .await?;
        Ok(())
    }
    async fn story_span(
        &self,
        project: &str,
        batch: &str,
        line: u64,
    ) -> Result<Option<(u64, u64)>, QueueError> {
        let mut conn = self.conn.clone();
        let span: Option<String> = conn
            .hget(self.batch_key(project, batch), format!("s{line}"))
            .await?;
        Ok(span.and_then(|s| {
            let (a, b) = s.split_once(',')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        }))
    }
    async fn dead_letters(&self, project: &str, max: usize) -> Result<Vec<DeadLetter>, QueueError> {
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
    async fn project_counts(&self, project: &str) -> Result<ProjectCounts, QueueError> {
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
    async fn job_hashes(
        &self,
        project: &str,
        batch: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<u32>, QueueError> {
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
    async fn register_worker(&self, project: &str, info: &WorkerInfo) -> Result<(), QueueError> {
        let mut conn = self.conn.clone();
        let json = serde_json::to_string(info)
            .map_err(|e| QueueError::Corrupt(format!("worker info: {e}")))?;
        let () = conn
            .hset(self.key(project, "workers"), &info.worker, json)
            .await?;
        Ok(())
    }
    async fn notices(&self, project: &str) -> Option<tokio::sync::broadcast::Receiver<Notice>> {
        self.subscribe_notices(project).await
    }

    async fn workers(&self, project: &str, live_ms: u64) -> Result<Vec<WorkerInfo>, QueueError> {
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
}

/// The record of a job that is still only a stream entry.
fn queued_record(project: &str, id: &str) -> JobRecord {
    let fields = HashMap::from([(job_fields::STATUS.to_string(), "queued".to_string())]);
    JobRecord::from_fields(project, id, &fields).expect("non-empty fields")
}
