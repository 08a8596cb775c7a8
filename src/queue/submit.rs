//! Submitting a job file as a batch: validate every line first (streaming), then enqueue
//! in chunks (each chunk atomic, several in flight), then seal. Memory stays constant
//! whatever the file's size: only the first errors and the current chunks are held.

use std::path::Path;

use futures::StreamExt as _;
use futures::stream::FuturesOrdered;

use super::{BatchHandle, JobQueue, NewBatch, NewJob, QueueError};
use crate::job::batch_file::{self, FileFormat, LineDefaults, LineError};
use crate::job::{ValidationContext, validate};

/// Jobs per enqueue call (one MULTI/EXEC pipeline on Redis).
pub const CHUNK: usize = 2_000;
/// Enqueue calls in flight at once.
const IN_FLIGHT: usize = 4;
/// Line errors kept for the report (the count is always exact).
const MAX_ERRORS: usize = 100;

/// What the first pass found.
#[derive(Debug, Default)]
pub struct Checked {
    /// Valid lines.
    pub valid: u64,
    /// Invalid lines, in total.
    pub invalid: u64,
    /// The first invalid lines with their errors.
    pub errors: Vec<LineError>,
}

/// What went wrong submitting.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The queue failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The batch was cancelled while it was being submitted.
    #[error("batch {0} was cancelled while it was being submitted")]
    Cancelled(String),
}

/// A job file and how to read it.
#[derive(Debug, Clone)]
pub struct JobFile<'a> {
    /// Path.
    pub path: &'a Path,
    /// Format.
    pub format: FileFormat,
    /// Model/op for lines that set none.
    pub defaults: LineDefaults,
    /// How lines are validated.
    pub validation: ValidationContext,
}

impl JobFile<'_> {
    fn read(&self) -> Result<batch_file::Lines, SubmitError> {
        batch_file::read(self.path, self.format, self.defaults.clone()).map_err(|source| {
            SubmitError::Io {
                path: self.path.display().to_string(),
                source,
            }
        })
    }

    /// First pass: parse and validate every line.
    pub fn check(&self) -> Result<Checked, SubmitError> {
        let mut out = Checked::default();
        for item in self.read()? {
            match item.and_then(|(line, spec)| {
                validate(&spec, &self.validation).map_err(|e| LineError {
                    line,
                    message: e.to_string(),
                })
            }) {
                Ok(()) => out.valid += 1,
                Err(e) => {
                    out.invalid += 1;
                    if out.errors.len() < MAX_ERRORS {
                        out.errors.push(e);
                    }
                }
            }
        }
        Ok(out)
    }

    /// The valid lines as jobs (`seq` 0 here; the caller numbers them), in file order.
    pub fn valid_jobs(&self) -> Result<impl Iterator<Item = NewJob> + '_, SubmitError> {
        Ok(self.read()?.filter_map(move |item| {
            let (line, spec) = item.ok()?;
            validate(&spec, &self.validation).ok()?;
            let json = serde_json::to_string(&spec).ok()?;
            Some(NewJob {
                seq: 0,
                line: Some(line as u64),
                spec: json,
                op: spec.op.to_string(),
                webhook: spec.webhook_url,
                lane: spec.model,
            })
        }))
    }
}

/// The result of a submit.
#[derive(Debug, Clone)]
pub struct Submitted {
    /// The batch (new, or found by idempotency key).
    pub batch: BatchHandle,
    /// Jobs enqueued by this call.
    pub enqueued_now: u64,
    /// Jobs in the batch.
    pub total: u64,
    /// True when sealing completed the batch at once (every job already terminal).
    pub completed: bool,
}

/// Second pass: enqueues the valid jobs of `file` as a batch and seals it. A batch found
/// by idempotency key is resumed where its interrupted submit stopped (chunks are
/// atomic and job ids deterministic, so nothing is enqueued twice). `progress` is
/// called with the number of jobs enqueued so far.
pub async fn enqueue_file(
    queue: &dyn JobQueue,
    file: &JobFile<'_>,
    batch: &NewBatch,
    mut progress: impl FnMut(u64),
) -> Result<Submitted, SubmitError> {
    let handle = queue.create_batch(batch).await?;
    if handle.sealed {
        let record = queue.batch(&batch.project, &handle.id).await?;
        let total = record.and_then(|r| r.total).unwrap_or(handle.enqueued);
        return Ok(Submitted {
            batch: handle,
            enqueued_now: 0,
            total,
            completed: false,
        });
    }
    let project = batch.project.as_str();
    let id_owned = handle.id.clone();
    let id = id_owned.as_str();
    let mut jobs = file.valid_jobs()?.enumerate().map(|(seq, job)| NewJob {
        seq: seq as u64,
        ..job
    });
    // Resume: the first `enqueued` jobs are already in.
    let skip = handle.enqueued;
    let mut seq_total = 0u64;
    let mut enqueued_now = 0u64;
    let mut in_flight = FuturesOrdered::new();
    let mut chunks_sent = 0u64;
    loop {
        let chunk: Vec<NewJob> = jobs
            .by_ref()
            .inspect(|_| seq_total += 1)
            .filter(|j| j.seq >= skip)
            .take(CHUNK)
            .collect();
        let last = chunk.len() < CHUNK;
        if !chunk.is_empty() {
            in_flight.push_back(queue.enqueue(project, id, chunk));
        }
        while in_flight.len() >= IN_FLIGHT || (last && !in_flight.is_empty()) {
            if let Some(n) = in_flight.next().await {
                enqueued_now += n?;
                progress(skip + enqueued_now);
            }
        }
        chunks_sent += 1;
        if chunks_sent.is_multiple_of(16) || last {
            // A cancel during a long submit stops it (the cancel already cancelled
            // what was enqueued; the rest is never enqueued).
            if let Some(r) = queue.batch(project, id).await?
                && r.cancel_requested
            {
                let total = r.enqueued;
                queue.seal(project, id, total).await?;
                return Err(SubmitError::Cancelled(id.to_string()));
            }
        }
        if last {
            break;
        }
    }
    let completed = queue.seal(project, id, seq_total).await?;
    Ok(Submitted {
        batch: handle,
        enqueued_now,
        total: seq_total,
        completed,
    })
}

/// Format of a job file from its name/content.
pub fn detect(path: &Path) -> Result<FileFormat, SubmitError> {
    batch_file::detect_format(path).map_err(|source| SubmitError::Io {
        path: path.display().to_string(),
        source,
    })
}
