//! `process_job`: one delivery of one job, from claimed payload to a [`Settle`]
//! decision. Each step is a function of its own:
//! decode → admit → call → classify → store → record. (Notify — webhooks — follows the
//! settle, in the runtime, because only the settle knows whether the batch completed.)
//!
//! Retries are durable: a transient error ends this delivery with `Settle::Retry` and
//! the queue hands the job out again after the backoff delay, so a waiting job never
//! holds a worker slot and a crash never loses the retry.

use std::time::{Duration, Instant};

use backon::BackoffBuilder as _;

use crate::job::result::{CompactResult, JobResult, redacted_request, turn_by_reference};
use crate::job::{JobSpec, JobStatus, split_job_id};
use crate::limits::Throttle;
use crate::providers::{ImageProvider, ProviderError, ProviderOutput, TransientKind};
use crate::queue::{Claimed, JobQueue, Settle};
use crate::storage::{JobLocation, OutputStore, StorageError, StoredImage};

/// Attempts and capped exponential backoff with full jitter for transient errors.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Cap of the first delay.
    pub min_delay: Duration,
    /// Cap of any delay.
    pub max_delay: Duration,
    /// Provider attempts per job, the first included.
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            min_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            max_attempts: 5,
        }
    }
}

impl RetryPolicy {
    /// From the `[worker]` settings.
    pub fn from_settings(w: &crate::config::WorkerConfig) -> Self {
        RetryPolicy {
            min_delay: w.retry_min,
            max_delay: w.retry_max,
            max_attempts: w.max_attempts,
        }
    }

    /// Delay before attempt `attempt + 1` after `attempt` failed ones (1-based): full
    /// jitter over backon's capped exponential schedule, never shorter than the delay
    /// Google advised.
    pub fn delay(&self, attempt: u32, advised: Option<Duration>) -> Duration {
        let cap = backon::ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(attempt as usize + 1)
            .build()
            .nth(attempt.saturating_sub(1) as usize)
            .unwrap_or(self.max_delay);
        let jittered = cap.mul_f64(rand::random::<f64>());
        advised.map_or(jittered, |a| a.max(jittered))
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
    /// Retry policy for transient errors.
    pub retry: RetryPolicy,
    /// When daily quotas reset (`HH:MM` UTC): how long a spent one parks its lane.
    pub quota_reset_utc: crate::config::ResetTime,
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
                path: None,
                labels: img.labels.clone(),
            });
            continue;
        }
        let mut image = store
            .put_image(loc, i, &img.mime_type, img.bytes.clone())
            .await?;
        image.labels.clone_from(&img.labels);
        stored.push(image);
    }
    Ok(stored)
}

/// Step "classify": what a provider error means for this job.
fn classify(
    err: &ProviderError,
    attempt: u32,
    policy: &RetryPolicy,
    reset_utc: crate::config::ResetTime,
) -> Outcome {
    if let Some(reason) = err.hold() {
        // An outage (credentials, a model gone or forbidden): hold the project or the
        // lane for every worker; the job waits queued without using an attempt.
        return Outcome::Defer {
            throttle: Throttle::Hold {
                reason,
                message: err.to_string(),
            },
            delay: Duration::ZERO,
            error: err.to_string(),
        };
    }
    match err {
        ProviderError::Blocked { .. } => Outcome::Finish(JobStatus::Blocked, err.to_string()),
        // A 429 is the project+model's capacity, not this job's fault: slow the lane
        // down for every worker and defer the job without using an attempt.
        ProviderError::Transient {
            kind: TransientKind::RateLimited,
            retry_after,
            ..
        } => Outcome::Defer {
            throttle: Throttle::Rate {
                delay: *retry_after,
            },
            delay: policy.delay(1, *retry_after),
            error: err.to_string(),
        },
        // A spent daily quota parks the lane until the advised time or the daily
        // reset; the job waits queued.
        ProviderError::QuotaExhausted { retry_after, .. } => {
            let now = crate::queue::now_ms();
            let until_ms = retry_after
                .map_or_else(|| reset_utc.next_after(now), |d| now + d.as_millis() as u64);
            Outcome::Defer {
                throttle: Throttle::Park {
                    until_ms,
                    reason: err.to_string(),
                },
                delay: Duration::ZERO,
                error: err.to_string(),
            }
        }
        e if e.is_retryable() && attempt < policy.max_attempts => Outcome::Retry {
            delay: policy.delay(attempt, e.retry_after()),
            error: e.to_string(),
        },
        e if e.is_retryable() => Outcome::Finish(
            JobStatus::Failed,
            format!("gave up after {attempt} attempts: {e}"),
        ),
        e => Outcome::Finish(JobStatus::Failed, e.to_string()),
    }
}

enum Outcome {
    Finish(JobStatus, String),
    Retry {
        delay: Duration,
        error: String,
    },
    Defer {
        throttle: Throttle,
        delay: Duration,
        error: String,
    },
}

/// One delivery's end: how to settle it, and what the settle's metrics need.
#[derive(Debug, Clone)]
pub struct Ran {
    /// How the queue settles the delivery.
    pub settle: Settle,
    /// The job's operation (`None` when its payload did not decode).
    pub operation: Option<&'static str>,
    /// When the delivery started (a job's duration runs to its settle).
    pub started: Instant,
}

/// One delivery of `claimed`: returns how to settle it. Writes `result.json` for every
/// terminal outcome (deterministic keys: a re-run overwrites).
pub async fn process_job(ctx: &JobContext<'_>, queue: &dyn JobQueue, claimed: &Claimed) -> Ran {
    let started = Instant::now();
    // decode
    let spec = match JobSpec::from_json(&claimed.payload) {
        Ok(spec) => spec,
        Err(e) => {
            let error = format!("undecodable job payload: {e}");
            tracing::error!(job.id = %claimed.lease.job, %error, "dead-lettering");
            let settle = Settle::Finish {
                status: JobStatus::Failed,
                error: Some(error),
                result: None,
                dead_letter: true,
            };
            return Ran {
                settle,
                operation: None,
                started,
            };
        }
    };
    let settle = deliver(ctx, queue, claimed, &spec, started).await;
    Ran {
        settle,
        operation: Some(spec.op.as_str()),
        started,
    }
}

/// Where a job's outputs go, and its result before the call.
fn located<'a>(
    ctx: &JobContext<'a>,
    claimed: &'a Claimed,
    spec: &'a JobSpec,
) -> (JobLocation<'a>, JobResult) {
    let loc = JobLocation {
        line: claimed.line,
        prompt: spec.prompt.as_deref(),
        model: &spec.model,
        ..JobLocation::of(ctx.project, &claimed.lease.job)
    };
    (loc, blank_result(ctx, claimed, spec))
}

/// The steps after decoding: admit (done by the claim) → resolve inputs → call →
/// classify → store → record.
async fn deliver(
    ctx: &JobContext<'_>,
    queue: &dyn JobQueue,
    claimed: &Claimed,
    spec: &JobSpec,
    started: Instant,
) -> Settle {
    if spec.op == crate::job::Operation::Assemble {
        let (loc, result) = located(ctx, claimed, spec);
        return super::story::assemble(ctx, queue, claimed, spec, result, &loc, started).await;
    }
    // Inputs named by other jobs (a story's previous frame, its plan) first: the job's
    // record and result.json say what it ran with.
    let batch = split_job_id(&claimed.lease.job).map(|(b, _)| b);
    let (resolved, inputs) =
        match super::inputs::resolve(queue, ctx.project, batch, ctx.store, spec).await {
            Ok(r) => r,
            Err(super::inputs::OutputError::Missing(error)) => {
                let (loc, result) = located(ctx, claimed, spec);
                return record(ctx, &loc, result, JobStatus::Failed, Some(error), started).await;
            }
            Err(super::inputs::OutputError::Queue(error)) => {
                return Settle::Retry {
                    delay: ctx.retry.delay(claimed.attempts + 1, None),
                    count: false,
                    error,
                };
            }
        };
    let spec = resolved.as_ref().unwrap_or(spec);
    let (loc, mut result) = located(ctx, claimed, spec);
    result.inputs = inputs;
    result.tier = Some(spec.tier.unwrap_or_default());
    let out = match call(ctx, queue, claimed, spec).await {
        Called::Answered(out) => out,
        Called::Settle(settle) => return settle,
        Called::Finish(status, error) => {
            return record(ctx, &loc, result, status, Some(error), started).await;
        }
    };
    // safe point 2: a cancel that arrived during the call wins over storing.
    if cancelled(queue, claimed).await {
        let error = Some("cancelled by request".into());
        return record(ctx, &loc, result, JobStatus::Cancelled, error, started).await;
    }
    let settle = store(ctx, &loc, result, &out, claimed.attempts + 1, started).await;
    if let (
        Some(session),
        Settle::Finish {
            status: JobStatus::Succeeded,
            result: Some(r),
            ..
        },
    ) = (&spec.session, &settle)
    {
        // Kept with the session before the settle releases the next turn, which reads
        // it (should this fail, that turn reads this job's record instead).
        let answer = r.answer();
        let kept = queue.answer_turn(ctx.project, &session.id, session.turn, &answer);
        if let Err(e) = kept.await {
            tracing::warn!(session = %session.id, error = %e, "keeping a chat answer with its session");
        }
    }
    settle
}

/// The result record before the call: everything known from the claim and the spec.
fn blank_result(ctx: &JobContext<'_>, claimed: &Claimed, spec: &JobSpec) -> JobResult {
    let job_id = claimed.lease.job.as_str();
    JobResult {
        job_id: job_id.to_string(),
        batch_id: split_job_id(job_id).map(|(b, _)| b.to_string()),
        project: ctx.project.to_string(),
        line: claimed.line.map(|l| l as usize),
        model: spec.model.clone(),
        model_requested: spec.model_requested.clone(),
        operation: spec.op.to_string(),
        status: JobStatus::Failed,
        request: redacted_request(spec),
        images: Vec::new(),
        inputs: Vec::new(),
        text: Vec::new(),
        enhanced_prompt: None,
        rai_filtered_reasons: Vec::new(),
        safety_attributes: Vec::new(),
        usage: None,
        tier: None,
        cost_usd: None,
        model_turn: None,
        attempts: claimed.attempts + 1,
        error: None,
        started_at: chrono::Utc::now().to_rfc3339(),
        finished_at: String::new(),
        duration_ms: 0,
    }
}

/// What the call step decided.
enum Called {
    /// The provider answered: store its outputs.
    Answered(Box<ProviderOutput>),
    /// A retry or a deferral: settle without a record.
    Settle(Settle),
    /// A terminal outcome to record.
    Finish(JobStatus, String),
}

/// Steps "call" and "classify". A cancel during the call drops the request at once
/// (Google may still bill a call it had finished; docs/design/queue.md
/// "Cancellation").
async fn call(
    ctx: &JobContext<'_>,
    queue: &dyn JobQueue,
    claimed: &Claimed,
    spec: &JobSpec,
) -> Called {
    let job_id = claimed.lease.job.as_str();
    let attempt = claimed.attempts + 1;
    let metrics = crate::metrics::get();
    let called = Instant::now();
    let outcome = tokio::select! {
        out = ctx.provider.call(spec) => out,
        () = cancel_arrives(queue, claimed) => {
            tracing::info!(job.id = job_id, "cancelled during the provider call: request dropped");
            return Called::Finish(JobStatus::Cancelled, "cancelled by request".into());
        }
    };
    metrics.provider_response(
        ctx.project,
        &spec.model,
        outcome.as_ref().map(|_| ()),
        called.elapsed(),
    );
    let e = match outcome {
        Ok(out) => return Called::Answered(Box::new(out)),
        Err(e) => e,
    };
    match classify(&e, attempt, &ctx.retry, ctx.quota_reset_utc) {
        Outcome::Defer {
            throttle,
            delay,
            error,
        } => {
            tracing::info!(job.id = job_id, lane = %claimed.lease.lane, %error, "deferred");
            metrics.deferral(ctx.project, e.label());
            match queue
                .throttle(ctx.project, &claimed.lease.lane, &throttle)
                .await
            {
                // Said once per hold, by the worker whose call started it.
                Ok(true) => {
                    if let Throttle::Hold { reason, .. } = &throttle {
                        let scope = if reason.project_wide() {
                            "the project".to_string()
                        } else {
                            format!("model {}", claimed.lease.lane)
                        };
                        tracing::warn!(project = ctx.project, reason = reason.as_str(), %error, "holding {scope}: its jobs wait queued and one probe at a time checks whether the outage is over (or run `imagegen unpark`)");
                    }
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "recording a 429 or an outage for the lane"),
            }
            Called::Settle(Settle::Retry {
                delay,
                count: false,
                error,
            })
        }
        Outcome::Retry { delay, error } => {
            // Counted in the job's attempts_log and the metrics; a warning per
            // attempt would drown the log (and `run`'s progress bar).
            tracing::info!(job.id = job_id, attempt, retry_in_ms = delay.as_millis() as u64, %error, "transient provider error");
            metrics.retry(ctx.project, e.label());
            Called::Settle(Settle::Retry {
                delay,
                count: true,
                error,
            })
        }
        Outcome::Finish(status, error) => Called::Finish(status, error),
    }
}

/// Step "store": writes the outputs, then records the job.
async fn store(
    ctx: &JobContext<'_>,
    loc: &JobLocation<'_>,
    mut result: JobResult,
    out: &ProviderOutput,
    attempt: u32,
    started: Instant,
) -> Settle {
    let metrics = crate::metrics::get();
    absorb(&mut result, out);
    match store_outputs(ctx.store, loc, out).await {
        Ok(images) => {
            for img in images.iter().filter(|i| i.bytes > 0) {
                metrics.image_written(ctx.project, img.bytes);
            }
            // A chat answer is kept as the next turn's history needs it.
            if result.operation == crate::job::Operation::Chat.as_str() {
                result.model_turn = out
                    .model_turn
                    .as_ref()
                    .map(|turn| turn_by_reference(turn, &images));
            }
            result.images = images;
            priced(&mut result);
            record(ctx, loc, result, JobStatus::Succeeded, None, started).await
        }
        Err(e) if attempt < ctx.retry.max_attempts => {
            metrics.retry(ctx.project, "storage");
            Settle::Retry {
                delay: ctx.retry.delay(attempt, None),
                count: true,
                error: format!("storing outputs: {e}"),
            }
        }
        Err(e) => {
            let error = format!("storing outputs: {e}");
            record(ctx, loc, result, JobStatus::Failed, Some(error), started).await
        }
    }
}

/// How often a running call looks for a cancel (the Redis queue answers from a
/// per-project generation it reads at most every 100 ms, so this is cheap).
const CANCEL_POLL: Duration = Duration::from_millis(100);

/// Resolves when the job is asked to stop; never otherwise.
async fn cancel_arrives(queue: &dyn JobQueue, claimed: &Claimed) {
    let mut tick = tokio::time::interval(CANCEL_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        if cancelled(queue, claimed).await {
            return;
        }
    }
}

/// Copies the provider's extras (text, enhanced prompt, safety, usage) into the result.
fn absorb(result: &mut JobResult, out: &ProviderOutput) {
    result.text = out.text.clone();
    result.enhanced_prompt = out.images.iter().find_map(|i| i.enhanced_prompt.clone());
    result.rai_filtered_reasons = out.rai_filtered_reasons.clone();
    result.safety_attributes = out
        .images
        .iter()
        .filter_map(|i| i.safety_attributes.clone())
        .chain(out.prompt_safety_attributes.clone())
        .collect();
    result.usage = out.usage.clone();
    if let Some(served) = out.served_tier {
        result.tier = Some(served);
    }
}

/// Its cost from its usage at the tier it was served at (the price table), counted in
/// `imagegen_cost_usd_total`.
fn priced(result: &mut JobResult) {
    let tier = result.tier.unwrap_or_default();
    let images = result.images.len() as u32;
    result.cost_usd =
        crate::pricing::table().cost(&result.model, tier, result.usage.as_ref(), images);
    if let Some(cost) = result.cost_usd {
        crate::metrics::get().cost(&result.project, &result.model, tier.as_str(), cost);
    }
}

async fn cancelled(queue: &dyn JobQueue, claimed: &Claimed) -> bool {
    queue
        .cancel_requested(&claimed.lease)
        .await
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "checking for cancellation");
            false
        })
}

/// Step "record": writes `result.json` and returns the terminal settle.
pub(super) async fn record(
    ctx: &JobContext<'_>,
    loc: &JobLocation<'_>,
    mut result: JobResult,
    status: JobStatus,
    error: Option<String>,
    started: Instant,
) -> Settle {
    result.status = status;
    result.error = error;
    result.finished_at = chrono::Utc::now().to_rfc3339();
    result.duration_ms = started.elapsed().as_millis() as u64;
    if let Err(e) = ctx.store.put_result(loc, &result).await {
        tracing::error!(error = %e, "writing result.json");
        if result.status == JobStatus::Succeeded {
            result.status = JobStatus::Failed;
            result.error = Some(format!("writing result.json: {e}"));
        }
    }
    Settle::Finish {
        status: result.status,
        error: result.error.clone(),
        result: Some(Box::new(CompactResult::of(&result, loc.prompt))),
        dead_letter: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_are_capped_and_honour_advice() {
        let p = RetryPolicy {
            min_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            max_attempts: 10,
        };
        for _ in 0..200 {
            assert!(p.delay(1, None) <= Duration::from_millis(100));
            assert!(p.delay(3, None) <= Duration::from_millis(400));
            assert!(p.delay(9, None) <= Duration::from_millis(1000));
            assert!(p.delay(2, Some(Duration::from_secs(7))) >= Duration::from_secs(7));
        }
        // Full jitter: spread over the whole range, not bunched at the cap.
        let small = (0..200)
            .filter(|_| p.delay(9, None) < Duration::from_millis(500))
            .count();
        assert!(
            (40..160).contains(&small),
            "{small} of 200 below half the cap"
        );
    }
}
