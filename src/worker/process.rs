//! `process_job`: one job from spec to stored outputs and a `JobResult`. Each step is a
//! function of its own: call (with retries) → classify (in `providers`) → store → record.

use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable as _};

use crate::job::result::{JobResult, redacted_request};
use crate::job::{JobSpec, JobStatus};
use crate::providers::{ImageProvider, ProviderError, ProviderOutput};
use crate::storage::{JobLocation, OutputStore, StorageError, StoredImage};

/// Capped exponential backoff with jitter for transient errors.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// First delay.
    pub min_delay: Duration,
    /// Cap on one delay.
    pub max_delay: Duration,
    /// Retries after the first attempt.
    pub max_retries: usize,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            min_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            max_retries: 5,
        }
    }
}

/// What a job runs against.
pub struct JobContext<'a> {
    /// The project's provider.
    pub provider: &'a dyn ImageProvider,
    /// Where outputs go.
    pub store: &'a OutputStore,
    /// Project name (first path segment of outputs).
    pub project: &'a str,
    /// Batch id, if the job belongs to one.
    pub batch: Option<&'a str>,
    /// Retry policy for transient errors.
    pub retry: RetryPolicy,
}

/// Calls the provider, retrying transient errors; returns the outcome and attempts made.
pub async fn call_with_retries(
    ctx: &JobContext<'_>,
    spec: &JobSpec,
) -> (Result<ProviderOutput, ProviderError>, u32) {
    let attempts = std::sync::atomic::AtomicU32::new(0);
    let backoff = ExponentialBuilder::default()
        .with_min_delay(ctx.retry.min_delay)
        .with_max_delay(ctx.retry.max_delay)
        .with_max_times(ctx.retry.max_retries)
        .with_jitter();
    let call = || async {
        attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        ctx.provider.call(spec).await
    };
    let outcome = call
        .retry(backoff)
        .when(ProviderError::is_retryable)
        // Google's advised delay (RetryInfo / Retry-After) wins over our own schedule,
        // but never extends the retry budget.
        .adjust(|e: &ProviderError, dur| dur.map(|d| e.retry_after().map_or(d, |r| r.max(d))))
        .notify(|e: &ProviderError, dur| tracing::warn!(error = %e, retry_in_ms = dur.as_millis() as u64, "transient provider error"))
        .await;
    (outcome, attempts.load(std::sync::atomic::Ordering::Relaxed))
}

/// Writes every image of `out`; returns what was stored.
pub async fn store_outputs(
    store: &OutputStore,
    loc: &JobLocation<'_>,
    out: &ProviderOutput,
) -> Result<Vec<StoredImage>, StorageError> {
    let mut stored = Vec::with_capacity(out.images.len());
    for (i, img) in out.images.iter().enumerate() {
        if let Some(uri) = &img.gcs_uri {
            // Google wrote it (output_gcs_uri): record where, do not copy.
            stored.push(StoredImage {
                index: i,
                url: uri.clone(),
                mime_type: img.mime_type.clone(),
                bytes: 0,
                sha256: String::new(),
                width: 0,
                height: 0,
            });
            continue;
        }
        stored.push(
            store
                .put_image(loc, i, &img.mime_type, img.bytes.clone())
                .await?,
        );
    }
    Ok(stored)
}

/// Runs one job to a terminal state and writes its `result.json`. `line` is the job
/// file line the job came from, if any.
pub async fn process_job(
    ctx: &JobContext<'_>,
    job_id: &str,
    line: Option<usize>,
    spec: &JobSpec,
) -> JobResult {
    let started = Instant::now();
    let started_at = chrono::Utc::now();
    let _span =
        tracing::info_span!("job", job.id = job_id, project = ctx.project, operation = %spec.op)
            .entered();
    let loc = JobLocation {
        project: ctx.project,
        batch: ctx.batch,
        job: job_id,
    };
    let (outcome, attempts) = call_with_retries(ctx, spec).await;
    let mut result = JobResult {
        job_id: job_id.to_string(),
        batch_id: ctx.batch.map(str::to_string),
        project: ctx.project.to_string(),
        line,
        model: spec.model.clone(),
        operation: spec.op.to_string(),
        status: JobStatus::Failed,
        request: redacted_request(spec),
        images: Vec::new(),
        text: Vec::new(),
        enhanced_prompt: None,
        rai_filtered_reasons: Vec::new(),
        safety_attributes: Vec::new(),
        usage: None,
        attempts,
        error: None,
        started_at: started_at.to_rfc3339(),
        finished_at: String::new(),
        duration_ms: 0,
    };
    match outcome {
        Ok(out) => {
            result.absorb(&out);
            match store_outputs(ctx.store, &loc, &out).await {
                Ok(images) => {
                    result.images = images;
                    result.status = JobStatus::Succeeded;
                }
                Err(e) => result.error = Some(format!("storing outputs: {e}")),
            }
        }
        Err(e @ ProviderError::Blocked { .. }) => {
            result.status = JobStatus::Blocked;
            result.error = Some(e.to_string());
        }
        Err(e) => result.error = Some(e.to_string()),
    }
    result.finished_at = chrono::Utc::now().to_rfc3339();
    result.duration_ms = started.elapsed().as_millis() as u64;
    if let Err(e) = ctx.store.put_result(&loc, &result).await {
        tracing::error!(error = %e, "writing result.json");
        if result.status == JobStatus::Succeeded {
            result.status = JobStatus::Failed;
            result.error = Some(format!("writing result.json: {e}"));
        }
    }
    result
}
