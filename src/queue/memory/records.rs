//! Records and status in memory: jobs, batches, dead letters, counters, workers.

use async_trait::async_trait;

use super::MemoryQueue;
use crate::job::{JobStatus, batch_job_id};
use crate::queue::{
    BatchRecord, DeadLetter, JobRecord, Notice, ProjectCounts, QueueError, Records, WorkerInfo,
    now_ms,
};

#[async_trait]
impl Records for MemoryQueue {
    async fn job(&self, project: &str, id: &str) -> Result<Option<JobRecord>, QueueError> {
        Ok(self.with(project, |p, _| {
            p.jobs.get(id).map(|j| j.record(project, id))
        }))
    }

    async fn batch(&self, project: &str, id: &str) -> Result<Option<BatchRecord>, QueueError> {
        Ok(self.with(project, |p, _| {
            p.batches.get(id).map(|b| b.record(project, id))
        }))
    }

    async fn batch_jobs(
        &self,
        project: &str,
        batch: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<Option<JobRecord>>, QueueError> {
        Ok(self.with(project, |p, _| {
            (from..to)
                .map(|s| {
                    let id = batch_job_id(batch, s);
                    p.jobs.get(&id).map(|j| j.record(project, &id))
                })
                .collect()
        }))
    }

    async fn set_manifest(&self, project: &str, batch: &str, url: &str) -> Result<(), QueueError> {
        self.with(project, |p, _| {
            if let Some(bt) = p.batches.get_mut(batch) {
                bt.manifest = Some(url.to_string());
            }
        });
        Ok(())
    }

    async fn story_span(
        &self,
        project: &str,
        batch: &str,
        line: u64,
    ) -> Result<Option<(u64, u64)>, QueueError> {
        Ok(self.with(project, |p, _| {
            p.batches
                .get(batch)
                .and_then(|b| b.stories.get(&line).copied())
        }))
    }

    async fn dead_letters(&self, project: &str, max: usize) -> Result<Vec<DeadLetter>, QueueError> {
        Ok(self.with(project, |p, _| {
            p.dlq.iter().rev().take(max).cloned().collect()
        }))
    }

    async fn project_counts(&self, project: &str) -> Result<ProjectCounts, QueueError> {
        Ok(self.with(project, |p, _| ProjectCounts {
            by_status: JobStatus::ALL
                .into_iter()
                .map(|s| (s, p.counts.get(&s).copied().unwrap_or(0).max(0) as u64))
                .collect(),
            enqueued_by_op: p.enqueued_by_op.clone(),
            webhooks_pending: p.hooks.due.len() as u64,
        }))
    }

    async fn job_hashes(
        &self,
        project: &str,
        batch: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<u32>, QueueError> {
        Ok(self.with(project, |p, _| {
            let hashes = p.batches.get(batch).map(|b| b.hashes.as_slice());
            (from..to)
                .map(|i| hashes.and_then(|h| h.get(i as usize)).copied().unwrap_or(0))
                .collect()
        }))
    }

    async fn register_worker(&self, project: &str, info: &WorkerInfo) -> Result<(), QueueError> {
        self.with(project, |p, _| {
            p.workers.insert(info.worker.clone(), info.clone());
        });
        Ok(())
    }

    async fn notices(&self, project: &str) -> Option<tokio::sync::broadcast::Receiver<Notice>> {
        Some(self.with(project, |p, _| {
            p.notices
                .get_or_insert_with(|| tokio::sync::broadcast::channel(4096).0)
                .subscribe()
        }))
    }

    async fn workers(&self, project: &str, live_ms: u64) -> Result<Vec<WorkerInfo>, QueueError> {
        let now = now_ms();
        Ok(self.with(project, |p, _| {
            p.workers
                .values()
                .filter(|w| now.saturating_sub(w.seen_ms) <= live_ms)
                .cloned()
                .collect()
        }))
    }
}
