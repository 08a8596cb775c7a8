//! How a finished task settles: apalis hands each task's result to [`SettleAck`],
//! which turns it into the queue's [`Settle`] (and the job metrics' account) and queues
//! it for the settler.

use std::sync::Arc;

use apalis::prelude::*;

use super::backend::Shared;
use crate::job::JobStatus;
use crate::queue::{QueueError, Settle};
use crate::worker::process::{Ran, RetryPolicy};

/// Settles each task from its final result.
#[derive(Clone)]
pub struct SettleAck {
    pub(super) shared: Arc<Shared>,
}

/// How a handler error (not a handler decision) settles: panics are dead-lettered,
/// anything else (a timeout) is a counted retry while attempts remain.
pub fn settle_for_error(e: &BoxDynError, attempt: usize, retry: &RetryPolicy) -> Settle {
    if e.downcast_ref::<AbortError>().is_some() {
        return Settle::Finish {
            status: JobStatus::Failed,
            error: Some(format!("worker error: {e}")),
            result: None,
            dead_letter: true,
        };
    }
    if attempt as u32 >= retry.max_attempts {
        return Settle::Finish {
            status: JobStatus::Failed,
            error: Some(format!("gave up after {attempt} attempts: {e}")),
            result: None,
            dead_letter: false,
        };
    }
    Settle::Retry {
        delay: retry.delay(attempt as u32, None),
        count: true,
        error: e.to_string(),
    }
}

impl Acknowledge<Ran> for SettleAck {
    type Error = QueueError;
    type Future = futures::future::Ready<Result<(), QueueError>>;

    /// Hands the settle to the settle task and returns at once: apalis holds a job's
    /// concurrency slot until its ack completes, and a settle's round trip (about a
    /// millisecond) would otherwise keep the slot idle. The lease stays held (and
    /// counted against claims) until the settle is written; shutdown waits for it.
    fn ack(&mut self, res: &Result<Ran, BoxDynError>, ctx: &ExecutionContext) -> Self::Future {
        let shared = self.shared.clone();
        let job = ctx.task_id().map(ToString::to_string).unwrap_or_default();
        let held = shared.leases.lock().expect("leases").get(&job).cloned();
        match held {
            Some(held) => {
                let ran = match res {
                    Ok(ran) => ran.clone(),
                    // A panic or a timeout: the handler's own account is lost.
                    Err(e) => Ran {
                        settle: settle_for_error(e, ctx.attempt(), &shared.retry),
                        operation: None,
                        started: held.since,
                    },
                };
                self.shared.settling.spawn(async move {
                    if let Err(e) = shared.settle(held.lease, ran).await {
                        tracing::warn!(job.id = %job, error = %e, "settling a finished job failed; its lease will expire and another worker will run it again");
                    }
                });
            }
            None => tracing::error!(job.id = %job, "finished a job this worker holds no lease for"),
        }
        futures::future::ready(Ok(()))
    }
}
