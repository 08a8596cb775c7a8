//! A batch's `manifest.jsonl`: one row per job in job order, written once the batch
//! completes, streamed from the job records (constant memory for a million jobs).
//!
//! Below both the worker (which writes it when a settle completes a batch) and the
//! webhooks (whose `batch.completed` writes it when the completing worker died first).

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt as _;

use crate::job::JobStatus;
use crate::job::result::CompactResult;
use crate::queue::{JobQueue, JobRecord};
use crate::storage::OutputStore;

/// Why a manifest could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The batch is not known (or its record expired).
    #[error("no batch `{batch}` in project `{project}`")]
    NoBatch {
        /// Project.
        project: String,
        /// Batch id.
        batch: String,
    },
    /// The queue failed.
    #[error(transparent)]
    Queue(#[from] crate::queue::QueueError),
    /// Writing to the store failed.
    #[error("writing the manifest: {0}")]
    Write(#[from] std::io::Error),
}

/// One row: the job, how it ended, and what it produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestRow {
    /// Job id.
    pub job_id: String,
    /// Project.
    pub project: String,
    /// Line of the job file.
    #[serde(default)]
    pub line: Option<u64>,
    /// Final status (`unknown` when its record expired).
    pub status: String,
    /// Attempts it used.
    #[serde(default)]
    pub attempts: u32,
    /// Why it did not succeed.
    #[serde(default)]
    pub error: Option<String>,
    /// When it finished.
    #[serde(default)]
    pub finished_ms: Option<u64>,
    /// What it produced (model, prompt, images with their paths, usage, metadata).
    #[serde(flatten)]
    pub result: Option<CompactResult>,
}

impl ManifestRow {
    /// The row of job `id` from its record (`None`: the record has expired).
    pub fn of(project: &str, id: &str, rec: Option<JobRecord>) -> Self {
        match rec {
            None => ManifestRow {
                job_id: id.to_string(),
                project: project.to_string(),
                line: None,
                status: "unknown".into(),
                attempts: 0,
                error: Some("the job's record has expired".into()),
                finished_ms: None,
                result: None,
            },
            Some(r) => ManifestRow {
                job_id: r.id,
                project: project.to_string(),
                line: r.line,
                status: r.status.as_str().to_string(),
                attempts: r.attempts,
                error: r.error,
                finished_ms: r.finished_ms,
                result: r.result,
            },
        }
    }

    /// True when the job succeeded.
    pub fn succeeded(&self) -> bool {
        self.status == JobStatus::Succeeded.as_str()
    }
}

/// Writes `manifest.jsonl` for a completed batch from the job records, in job order,
/// and records its URL on the batch; returns the URL.
pub async fn write(
    queue: &dyn JobQueue,
    store: &OutputStore,
    project: &str,
    batch: &str,
) -> Result<String, ManifestError> {
    let record = queue
        .batch(project, batch)
        .await?
        .ok_or_else(|| ManifestError::NoBatch {
            project: project.to_string(),
            batch: batch.to_string(),
        })?;
    let total = record.total.unwrap_or(record.enqueued);
    let (mut writer, url) = store.manifest_writer(project, batch);
    let mut from = 0;
    while from < total {
        let to = (from + 1000).min(total);
        let mut chunk = Vec::new();
        for (seq, rec) in (from..to).zip(queue.batch_jobs(project, batch, from, to).await?) {
            let id = crate::job::batch_job_id(batch, seq);
            serde_json::to_writer(&mut chunk, &ManifestRow::of(project, &id, rec))
                .map_err(std::io::Error::other)?;
            chunk.push(b'\n');
        }
        writer.write_all(&chunk).await?;
        from = to;
    }
    writer.shutdown().await?;
    queue.set_manifest(project, batch, &url).await?;
    Ok(url)
}
