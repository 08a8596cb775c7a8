//! Submitting a job file as a batch: validate every line first (streaming), then enqueue
//! in chunks (each chunk atomic, several in flight), then seal. Memory stays constant
//! whatever the file's size: only the first errors, the current chunks and small
//! caches (hosts checked, files uploaded) are held.
//!
//! Besides validation, a submit does what only the submitting machine can do:
//! - image URLs are checked against the SSRF policy of `[inputs]` ([`checks`]):
//!   literal addresses and names that resolve to refused ranges are refused here, with
//!   the line and field, before anything is enqueued;
//! - local image paths are read, sniffed and uploaded to the project's output store
//!   under `inputs/` (content-addressed, [`inputs`]), and the job carries the store
//!   key: a worker on another machine reads it from there;
//! - with an idempotency key, a digest of the jobs is kept with the batch, so the same
//!   key with other content is a conflict naming the first line that differs.

pub mod checks;
pub mod inputs;

use std::path::Path;

use futures::StreamExt as _;
use futures::stream::FuturesOrdered;
use sha2::Digest as _;

use crate::catalog::{Backend, Decision, Lifecycle};
use crate::config::{ModelsConfig, OnRetired};
use crate::job::batch_file::{self, FileFormat, LineDefaults, LineError};
use crate::job::{JobSpec, ValidationContext, validate};
use crate::queue::{BatchHandle, JobQueue, NewBatch, NewJob, QueueError};

pub use checks::UrlChecks;
pub use inputs::Uploader;

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
    /// Digest of the valid jobs, in order (hex SHA-256).
    pub digest: String,
    /// What the user should know about valid lines (a model migrated, a shutdown
    /// near), each once, with the first line it concerns.
    pub warnings: Vec<String>,
    /// What the valid lines' jobs are expected to cost (USD, the price table).
    pub estimate_usd: f64,
    /// Valid lines whose model the price table does not know (not in the estimate).
    pub unpriced: u64,
}

/// What a valid line's jobs are expected to cost: a story line's plan, frames and
/// assembly; `None` when the price table does not know a model of it.
pub fn estimate_line(spec: &JobSpec) -> Option<f64> {
    let table = crate::pricing::table();
    if spec.op == crate::job::Operation::Story {
        return crate::job::story::expand(spec, 0, 0)
            .iter()
            .map(|j| table.estimate(&j.spec, j.spec.tier.unwrap_or_default()))
            .sum();
    }
    table.estimate(spec, spec.tier.unwrap_or_default())
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
    /// The idempotency key names a batch of other jobs.
    #[error(
        "idempotency key `{key}` was used for different jobs (batch {batch}): {difference}; nothing was enqueued (use another key for other jobs)"
    )]
    Conflict {
        /// The key.
        key: String,
        /// The batch it names.
        batch: String,
        /// Where the jobs differ first.
        difference: String,
    },
    /// An input image could not be stored for the workers.
    #[error("line {line}: {message}")]
    Input {
        /// Line of the job file.
        line: usize,
        /// What went wrong.
        message: String,
    },
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
    /// How image URLs are checked before anything is enqueued.
    pub urls: UrlChecks,
    /// What a line naming a retired model does.
    pub models: ModelPolicy,
}

/// What submit does with a job whose model Google has retired or will retire soon.
#[derive(Debug, Clone)]
pub struct ModelPolicy {
    /// The lifecycle table (built in, with the configured changes).
    pub lifecycle: Lifecycle,
    /// Migrate or refuse.
    pub on_retired: OnRetired,
    /// The day decisions are made for.
    pub today: chrono::NaiveDate,
    /// Where `segment` lines naming a Gemini image model (or none) run.
    pub segment_model: String,
}

impl ModelPolicy {
    /// From `[models]`, for today.
    pub fn from_config(c: &ModelsConfig) -> Self {
        ModelPolicy {
            lifecycle: Lifecycle::with_overrides(&c.lifecycle),
            on_retired: c.on_retired,
            today: crate::catalog::lifecycle::today(),
            segment_model: c.segment_model.clone(),
        }
    }

    /// Routes `segment` lines on Gemini image models to the segmentation model, then
    /// applies the lifecycle to `spec`: a retired model is migrated to its replacement
    /// (`model_requested` keeps what was named) or refused; returns a warning to show.
    /// The error is a validation message (`field: message`).
    pub fn apply(&self, spec: &mut JobSpec, backend: Backend) -> Result<Option<String>, String> {
        if spec.model_requested.is_some() {
            return Err("model_requested: is recorded by imagegen when it migrates a retired model; remove it".into());
        }
        // Gemini image models do not segment; a Gemini text model answers boxes and
        // masks (spec §11). Routed before the lifecycle, which then judges that model.
        if spec.op == crate::job::spec::Operation::Segment
            && crate::catalog::lookup_or_infer(&spec.model).is_some_and(|m| m.family.is_gemini())
        {
            spec.model.clone_from(&self.segment_model);
        }
        match self.lifecycle.decide(&spec.model, backend, self.today) {
            Decision::Run => Ok(None),
            Decision::RunWarn(w) => Ok(Some(w)),
            Decision::Retired {
                why,
                replacement: Some(to),
            } if self.on_retired == OnRetired::Migrate => {
                spec.model_requested = Some(std::mem::replace(&mut spec.model, to.clone()));
                Ok(Some(format!("{why}: running on {to} instead")))
            }
            Decision::Retired { why, replacement } => Err(match replacement {
                Some(to) => format!("model: {why} ([models] on_retired = \"refuse\"): use {to}"),
                None => format!("model: {why}, and no replacement is known"),
            }),
        }
    }
}

/// The short hash of one job kept per position by an idempotent submit.
fn job_hash(spec_json: &str) -> u32 {
    let d = sha2::Sha256::digest(spec_json.as_bytes());
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
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

    /// One line, migrated, validated and checked; the spec as JSON when it is a job,
    /// and a warning to show.
    async fn line(
        &self,
        item: Result<(usize, JobSpec), LineError>,
    ) -> Result<(usize, JobSpec, String, Option<String>), LineError> {
        let (line, mut spec) = item?;
        let fail = |message: String| LineError { line, message };
        let warning = self
            .models
            .apply(&mut spec, self.validation.backend)
            .map_err(fail)?;
        validate(&spec, &self.validation).map_err(|e| fail(e.to_string()))?;
        self.urls.check(&spec).await.map_err(fail)?;
        let json = serde_json::to_string(&spec).map_err(|e| fail(e.to_string()))?;
        Ok((line, spec, json, warning))
    }

    /// First pass: parse, validate and check every line.
    pub async fn check(&self) -> Result<Checked, SubmitError> {
        let mut out = Checked::default();
        let mut digest = sha2::Sha256::new();
        // Each warning once: (first line, lines).
        let mut warned: Vec<(String, usize, u64)> = Vec::new();
        for item in self.read()? {
            match self.line(item).await {
                Ok((line, spec, json, warning)) => {
                    out.valid += 1;
                    match estimate_line(&spec) {
                        Some(usd) => out.estimate_usd += usd,
                        None => out.unpriced += 1,
                    }
                    digest.update(json.as_bytes());
                    digest.update(b"\n");
                    if let Some(w) = warning {
                        match warned.iter_mut().find(|(t, ..)| *t == w) {
                            Some((_, _, n)) => *n += 1,
                            None => warned.push((w, line, 1)),
                        }
                    }
                }
                Err(e) => {
                    out.invalid += 1;
                    if out.errors.len() < MAX_ERRORS {
                        out.errors.push(e);
                    }
                }
            }
        }
        out.digest = digest
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        out.warnings = warned
            .into_iter()
            .map(|(w, line, n)| match n {
                1 => format!("line {line}: {w}"),
                n => format!("line {line} and {} more: {w}", n - 1),
            })
            .collect();
        Ok(out)
    }

    /// The jobs of the valid lines in file order, each with its position in the batch:
    /// a line is a job, except a story line, which is the jobs of its story
    /// (`job::story::expand`), waiting for each other.
    fn valid(&self) -> Result<impl futures::Stream<Item = Item> + '_, SubmitError> {
        let lines = self.read()?;
        let mut next = 0u64;
        Ok(futures::stream::iter(lines)
            .then(move |item| self.line(item))
            .filter_map(|r| async move { r.ok() })
            .flat_map(move |(line, spec, json, _)| {
                let first = next;
                let items: Vec<Item> = if spec.op == crate::job::Operation::Story {
                    story_jobs(&spec, line, first)
                        .into_iter()
                        .enumerate()
                        .map(|(i, (spec, deps))| Item {
                            seq: first + i as u64,
                            line,
                            json: serde_json::to_string(&spec).unwrap_or_default(),
                            spec,
                            deps,
                        })
                        .collect()
                } else {
                    vec![Item {
                        seq: first,
                        line,
                        spec,
                        json,
                        deps: Vec::new(),
                    }]
                };
                next += items.len() as u64;
                futures::stream::iter(items)
            }))
    }
}

/// The jobs of story line `line` (its plan, frames and assembly) when its first job is
/// at `first` of its batch, each with the jobs of the batch it waits for.
pub fn story_jobs(
    spec: &JobSpec,
    line: usize,
    first: u64,
) -> Vec<(JobSpec, Vec<crate::queue::Dependency>)> {
    crate::job::story::expand(spec, line, first)
        .into_iter()
        .map(|job| {
            let deps = job.deps.into_iter().map(|(offset, name, any)| {
                crate::queue::Dependency::in_batch(first + offset, name, any)
            });
            (job.spec, deps.collect())
        })
        .collect()
}

/// The lane a job runs in: its model's; an assembly calls no model and has its own.
pub fn lane_of(spec: &JobSpec) -> String {
    if spec.op == crate::job::Operation::Assemble {
        crate::job::story::ASSEMBLY_LANE.to_string()
    } else {
        spec.model.clone()
    }
}

/// One job of a submit, in batch order.
struct Item {
    /// Its position in the batch.
    seq: u64,
    /// The line it came from.
    line: usize,
    spec: JobSpec,
    /// The spec as enqueued.
    json: String,
    /// Jobs of the batch it waits for (a story's).
    deps: Vec<crate::queue::Dependency>,
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
    /// The ids of its stories (`<batch>.story-<line>`), in file order.
    pub stories: Vec<String>,
}

/// Second pass: enqueues the valid jobs of `file` as a batch and seals it. A batch found
/// by idempotency key is resumed where its interrupted submit stopped (chunks are
/// atomic and job ids deterministic, so nothing is enqueued twice) — when its jobs are
/// the same; other jobs under the same key are a [`SubmitError::Conflict`].
/// `uploader` stores local input files for the workers (`None`: paths stay paths, for
/// a worker in this process). `progress` is called with the jobs enqueued so far.
pub async fn enqueue_file(
    queue: &dyn JobQueue,
    file: &JobFile<'_>,
    batch: &NewBatch,
    uploader: Option<&Uploader>,
    mut progress: impl FnMut(u64),
) -> Result<Submitted, SubmitError> {
    let handle = queue.create_batch(batch).await?;
    if let Some(done) = already_submitted(queue, file, batch, &handle).await? {
        return Ok(done);
    }
    let project = batch.project.as_str();
    let id = handle.id.clone();
    let keep_hashes = batch.idempotency_key.is_some();
    // Resume: the first `enqueued` jobs are already in.
    let skip = handle.enqueued;
    let mut jobs = std::pin::pin!(file.valid()?);
    let mut seq_total = 0u64;
    let mut enqueued_now = 0u64;
    let mut in_flight = FuturesOrdered::new();
    let mut chunks_sent = 0u64;
    let mut stories = Vec::new();
    loop {
        let mut chunk = Vec::with_capacity(CHUNK);
        while chunk.len() < CHUNK {
            let Some(item) = jobs.next().await else {
                break;
            };
            seq_total = item.seq + 1;
            if item.spec.op == crate::job::Operation::Assemble {
                let story = crate::stories::StoryId {
                    batch: id.clone(),
                    line: item.line as u64,
                };
                stories.push(story.text());
            }
            if item.seq < skip {
                continue;
            }
            let hash = keep_hashes.then(|| job_hash(&item.json));
            chunk.push(new_job(item, hash, uploader).await?);
        }
        let last = chunk.len() < CHUNK;
        if !chunk.is_empty() {
            in_flight.push_back(queue.enqueue(project, &id, chunk));
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
            if let Some(r) = queue.batch(project, &id).await?
                && r.cancel_requested
            {
                let total = r.enqueued;
                queue.seal(project, &id, total).await?;
                return Err(SubmitError::Cancelled(id.clone()));
            }
        }
        if last {
            break;
        }
    }
    let completed = queue.seal(project, &id, seq_total).await?;
    Ok(Submitted {
        batch: handle,
        enqueued_now,
        total: seq_total,
        completed,
        stories,
    })
}

/// A batch found by idempotency key: a conflict when its jobs differ from `file`'s,
/// its result when it was sealed already, `None` when its submit is to be resumed (or
/// the batch is new).
async fn already_submitted(
    queue: &dyn JobQueue,
    file: &JobFile<'_>,
    batch: &NewBatch,
    handle: &BatchHandle,
) -> Result<Option<Submitted>, SubmitError> {
    if handle.existing
        && let (Some(key), Some(ours), Some(theirs)) =
            (&batch.idempotency_key, &batch.digest, &handle.digest)
        && ours != theirs
    {
        let difference = first_difference(queue, file, &batch.project, handle).await?;
        return Err(SubmitError::Conflict {
            key: key.clone(),
            batch: handle.id.clone(),
            difference,
        });
    }
    if !handle.sealed {
        return Ok(None);
    }
    let record = queue.batch(&batch.project, &handle.id).await?;
    let total = record.and_then(|r| r.total).unwrap_or(handle.enqueued);
    Ok(Some(Submitted {
        batch: handle.clone(),
        enqueued_now: 0,
        total,
        completed: false,
        stories: Vec::new(),
    }))
}

/// One job of a chunk; its local input files uploaded first when `uploader` is given.
async fn new_job(
    Item {
        seq,
        line,
        mut spec,
        json,
        deps,
    }: Item,
    hash: Option<u32>,
    uploader: Option<&Uploader>,
) -> Result<NewJob, SubmitError> {
    let json = match uploader {
        Some(u) if u.wants(&spec) => {
            u.store_all(&mut spec)
                .await
                .map_err(|message| SubmitError::Input { line, message })?;
            serde_json::to_string(&spec).map_err(|e| SubmitError::Input {
                line,
                message: e.to_string(),
            })?
        }
        _ => json,
    };
    Ok(NewJob {
        seq,
        line: Some(line as u64),
        spec: json,
        op: spec.op.to_string(),
        lane: lane_of(&spec),
        webhook: spec.webhook_url,
        hash,
        interactive: false,
        deps,
    })
}

/// Where `file`'s jobs first differ from those of the batch an idempotency key names
/// (compared by the hashes kept per position), in words.
async fn first_difference(
    queue: &dyn JobQueue,
    file: &JobFile<'_>,
    project: &str,
    handle: &BatchHandle,
) -> Result<String, SubmitError> {
    let theirs_total = queue
        .batch(project, &handle.id)
        .await?
        .map_or(handle.enqueued, |r| r.total.unwrap_or(r.enqueued));
    let mut jobs = std::pin::pin!(file.valid()?);
    let mut from = 0u64;
    let mut theirs: Vec<u32> = Vec::new();
    let mut last_line = 0;
    while let Some(Item {
        seq, line, json, ..
    }) = jobs.next().await
    {
        last_line = line;
        if seq >= theirs_total {
            return Ok(format!(
                "line {line} is job {} of this file, and the batch has {theirs_total} job(s)",
                seq + 1
            ));
        }
        if seq >= from + theirs.len() as u64 {
            from = seq;
            let to = (from + CHUNK as u64).min(theirs_total);
            theirs = queue.job_hashes(project, &handle.id, from, to).await?;
        }
        if theirs[(seq - from) as usize] != job_hash(&json) {
            return Ok(format!("line {line} (job {}) differs", seq + 1));
        }
    }
    Ok(format!(
        "this file ends after line {last_line} with fewer jobs than the batch's {theirs_total}"
    ))
}

/// Format of a job file from its name/content.
pub fn detect(path: &Path) -> Result<FileFormat, SubmitError> {
    batch_file::detect_format(path).map_err(|source| SubmitError::Io {
        path: path.display().to_string(),
        source,
    })
}
