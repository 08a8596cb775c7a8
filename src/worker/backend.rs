//! Our queue as an apalis (apalis-core 1.0) `Backend`, and the acknowledgement layer
//! that settles every task (design and the 1.0 API facts: `docs/design/apalis-backend.md`).
//!
//! - `poll_next` is only called by apalis when a concurrency slot is free. It claims for
//!   the free slots plus a small *headroom* ([`Pace`]): enough jobs to cover the
//!   round trips of a settle and the next claim at the rate jobs are finishing, so a
//!   freed slot starts its next job at once instead of waiting for Redis. Short jobs get
//!   a headroom; jobs that take seconds get none, so no job waits in a local buffer
//!   holding a lease (and a project's concurrency) while another worker could run it.
//!   The buffer is refilled by a claim started as it runs low, before it runs dry.
//!   Claimed slots are shared among the worker's projects by weight (smooth weighted
//!   round-robin; slots a project cannot use — no work, or its limits are reached — go
//!   to the others in the same round). Admission against the cluster-wide limits happens
//!   inside the queue's claim, and counts buffered jobs as in flight.
//! - It never returns an error or `None`: either would end the worker. An empty queue
//!   or a Redis error backs off and stays `Pending`.
//! - `poll_close` hands back whatever was claimed but not started.
//! - The ack layer sits outside timeout and catch-panic, so it sees the final result:
//!   `Ok(Settle)` from the handler, or the error of a panic (dead letter) or a timeout
//!   (counted retry).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use apalis::prelude::*;
use apalis_core::backend::{BackendConfig, finalize::Ephemeral};
use futures::FutureExt as _;
use futures::future::BoxFuture;

pub use super::pace::Pace;
use super::process::Ran;
use super::settler::Settler;
use crate::queue::{Claimed, JobQueue, Lease, QueueError, Settle};
use crate::worker::process::RetryPolicy;

/// The task apalis runs: one claimed delivery.
#[derive(Debug, Clone)]
pub struct QueuedJob(pub Claimed);

/// Called once per batch when a settle completes it: (project, batch).
pub type OnBatchComplete = Arc<dyn Fn(String, String) + Send + Sync>;

/// State shared by the backend, the ack layer and the lease keeper of one worker.
pub struct Shared {
    /// The queue.
    pub queue: Arc<dyn JobQueue>,
    /// Unique worker identity (`host-pid-xxxxxxxx`): the consumer name.
    pub worker: String,
    /// Projects this worker serves.
    pub projects: Vec<String>,
    /// Their fair-share weights (same order, each ≥ 1).
    pub weights: Vec<u32>,
    /// Jobs in flight at once.
    pub concurrency: usize,
    /// Every lease this worker holds (claimed, buffered or running), by job id.
    pub leases: Mutex<HashMap<String, Held>>,
    /// Batches settles.
    pub settler: Settler,
    /// Attempt budget (a timeout counts as an attempt).
    pub retry: RetryPolicy,
    /// Batch completion hook.
    pub on_batch_complete: OnBatchComplete,
    /// Jobs taken over from dead workers: run before anything newly claimed.
    pub recovered: Mutex<VecDeque<Claimed>>,
    /// How long jobs and queue round trips take: sizes the claim headroom.
    pub pace: Pace,
    /// Settles of finished jobs still being written (shutdown waits for them).
    pub settling: tokio_util::task::TaskTracker,
    /// Told when an interactive job was queued: an idle backend claims at once.
    pub arrived: tokio::sync::Notify,
}

/// A lease this worker holds, and since when (a job that ends in a panic or a timeout
/// is timed from it).
#[derive(Debug, Clone)]
pub struct Held {
    /// The lease.
    pub lease: Lease,
    /// When the worker took it.
    pub since: std::time::Instant,
}

impl Shared {
    /// Snapshot of the held leases.
    pub fn held(&self) -> Vec<Lease> {
        self.leases
            .lock()
            .expect("leases")
            .values()
            .map(|h| h.lease.clone())
            .collect()
    }

    /// Queues jobs taken over from a dead worker to run next.
    pub fn take_over(&self, claimed: Vec<Claimed>) {
        self.hold(&claimed);
        self.recovered.lock().expect("recovered").extend(claimed);
    }

    fn hold(&self, claimed: &[Claimed]) {
        let since = std::time::Instant::now();
        let mut leases = self.leases.lock().expect("leases");
        for c in claimed {
            let lease = c.lease.clone();
            leases.insert(c.lease.job.clone(), Held { lease, since });
        }
    }

    /// Batches a claim completed (their last jobs failed at claim): the same hook as a
    /// completing settle.
    pub fn completed_at_claim(&self, project: &str, batches: &[String]) {
        for batch in batches {
            (self.on_batch_complete)(project.to_string(), batch.clone());
        }
    }

    /// Drops leases this worker no longer holds (handed back).
    pub fn forget<'a>(&self, leases: impl Iterator<Item = &'a Lease>) {
        let mut held = self.leases.lock().expect("leases");
        for lease in leases {
            if held
                .get(&lease.job)
                .is_some_and(|h| h.lease.token == lease.token)
            {
                held.remove(&lease.job);
            }
        }
    }

    fn in_flight(&self) -> usize {
        self.leases.lock().expect("leases").len()
    }

    /// Settles `lease`, forgets it, and fires the batch hook when it completed a batch.
    /// A terminal settle that was applied is counted in the job metrics.
    pub async fn settle(&self, lease: Lease, ran: Ran) -> Result<(), QueueError> {
        let outcome = match &ran.settle {
            Settle::Finish { status, .. } => Some(status.as_str()),
            _ => None,
        };
        let sent = std::time::Instant::now();
        let report = self.settler.settle(lease.clone(), ran.settle).await;
        self.pace.settle(sent.elapsed());
        if let (Some(outcome), Ok(r)) = (outcome, &report)
            && r.applied
        {
            let op = ran.operation.unwrap_or("unknown");
            let took = ran.started.elapsed();
            crate::metrics::get().job_finished(&lease.project, op, outcome, took);
        }
        if report.is_err() {
            crate::metrics::get().redis_error("settle");
        }
        {
            let mut leases = self.leases.lock().expect("leases");
            if leases
                .get(&lease.job)
                .is_some_and(|h| h.lease.token == lease.token)
            {
                leases.remove(&lease.job);
            }
        }
        let report = report?;
        let Some((batch, _)) = crate::job::split_job_id(&lease.job) else {
            return Ok(());
        };
        if report.batch_completed {
            (self.on_batch_complete)(lease.project.clone(), batch.to_string());
        } else if !report.applied {
            tracing::info!(job.id = %lease.job, "settle refused: the job was taken over, or this settle was already written");
            // A settle retried after a lost reply is refused the second time; if the
            // first one completed the batch, nobody else will write its manifest.
            if let Ok(Some(b)) = self.queue.batch(&lease.project, batch).await
                && b.completed_ms.is_some()
                && b.manifest.is_none()
            {
                (self.on_batch_complete)(lease.project.clone(), batch.to_string());
            }
        }
        Ok(())
    }
}

type ClaimFut = BoxFuture<'static, Result<(Vec<Claimed>, Option<u64>), QueueError>>;

/// The apalis backend over a [`JobQueue`].
pub struct QueueBackend {
    shared: Arc<Shared>,
    credits: Vec<i64>,
    buffer: VecDeque<Claimed>,
    claim: Option<ClaimFut>,
    idle: Option<BoxFuture<'static, ()>>,
    idle_ms: u64,
    closing: Option<BoxFuture<'static, ()>>,
}

impl QueueBackend {
    /// A backend for one worker.
    pub fn new(shared: Arc<Shared>) -> Self {
        QueueBackend {
            credits: vec![0; shared.projects.len()],
            shared,
            buffer: VecDeque::new(),
            claim: None,
            idle: None,
            idle_ms: 0,
            closing: None,
        }
    }

    /// Shares `free` slots among the projects by smooth weighted round-robin.
    fn plan(&mut self, free: usize) -> Vec<usize> {
        let weights = &self.shared.weights;
        let total: i64 = weights.iter().map(|w| i64::from(*w)).sum();
        let mut shares = vec![0; weights.len()];
        for _ in 0..free {
            for (c, w) in self.credits.iter_mut().zip(weights) {
                *c += i64::from(*w);
            }
            let (pick, _) = self
                .credits
                .iter()
                .enumerate()
                .max_by_key(|(i, c)| (**c, std::cmp::Reverse(*i)))
                .expect("at least one project");
            self.credits[pick] -= total;
            shares[pick] += 1;
        }
        shares
    }

    /// Jobs to claim now: free slots plus headroom, less every lease held (running,
    /// buffered or being settled).
    fn wanted(&self) -> usize {
        let s = &self.shared;
        (s.concurrency + s.pace.headroom(s.concurrency)).saturating_sub(s.in_flight())
    }

    /// Starts a claim of `want` jobs as a task of its own, so it makes progress while
    /// every slot is busy.
    fn start_claim(&mut self, want: usize) -> ClaimFut {
        let shared = self.shared.clone();
        let shares = self.plan(want);
        let claim = tokio::spawn(async move {
            let sent = std::time::Instant::now();
            let mut got = Vec::new();
            let mut wake: Option<u64> = None;
            let mut full = Vec::new();
            let mut short = 0;
            for (i, share) in shares.iter().enumerate() {
                if *share == 0 {
                    full.push(i);
                    continue;
                }
                let c = shared
                    .queue
                    .admit(&shared.projects[i], &shared.worker, *share)
                    .await?;
                shared.completed_at_claim(&shared.projects[i], &c.completed);
                wake = match (wake, c.wake_ms) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                short += share - c.jobs.len();
                if c.jobs.len() == *share {
                    full.push(i);
                }
                got.extend(c.jobs);
            }
            // Slots a project could not use go to the others.
            for i in full {
                if short == 0 {
                    break;
                }
                let c = shared
                    .queue
                    .admit(&shared.projects[i], &shared.worker, short)
                    .await?;
                shared.completed_at_claim(&shared.projects[i], &c.completed);
                short -= c.jobs.len();
                got.extend(c.jobs);
            }
            shared.hold(&got);
            shared.pace.claim(sent.elapsed());
            Ok((got, wake))
        });
        async move {
            claim
                .await
                .map_err(|e| QueueError::Invalid(format!("the claim task failed: {e}")))?
        }
        .boxed()
    }

    /// Takes a finished claim's jobs into the buffer, or arranges the next try.
    fn claimed(&mut self, res: Result<(Vec<Claimed>, Option<u64>), QueueError>) {
        match res {
            Ok((jobs, _)) if !jobs.is_empty() => {
                self.idle_ms = 0;
                self.buffer.extend(jobs);
            }
            Ok((_, wake)) => {
                // Empty: poll again soon, backing off to 250 ms while idle, or when a
                // limit lets the next job through, if that is sooner. While this
                // worker's own settles are being written, a lane at its concurrency
                // limit is about to have room again: look again in 2 ms.
                if !self.shared.settling.is_empty() {
                    self.idle_ms = 0;
                    self.backoff(2);
                    return;
                }
                self.idle_ms = (self.idle_ms * 2).clamp(5, 250);
                let until = wake.map_or(self.idle_ms, |w| {
                    w.saturating_sub(crate::queue::now_ms())
                        .clamp(1, self.idle_ms)
                });
                self.backoff(until);
            }
            Err(e) => {
                // Never end the worker on a queue error: the connection manager
                // reconnects; try again in a second.
                tracing::warn!(error = %e, "claiming jobs failed; retrying");
                crate::metrics::get().redis_error("claim");
                self.backoff(1000);
            }
        }
    }

    /// With jobs still buffered: starts the next claim once the buffer is down to half
    /// the headroom, unless one is running or the queue was just found empty.
    fn refill(&mut self, cx: &mut Context<'_>) {
        if self.claim.is_some() || self.idle.is_some() {
            return;
        }
        let s = &self.shared;
        if self.buffer.len() * 2 > s.pace.headroom(s.concurrency) {
            return;
        }
        let want = self.wanted();
        if want == 0 {
            return;
        }
        let mut claim = self.start_claim(want);
        // Registers the waker; the result is taken on a later poll.
        if let Poll::Ready(res) = claim.poll_unpin(cx) {
            self.claimed(res);
        } else {
            self.claim = Some(claim);
        }
    }

    /// Waits `ms` before the next claim, or less when an interactive job arrives.
    fn backoff(&mut self, ms: u64) {
        let shared = self.shared.clone();
        self.idle = Some(Box::pin(async move {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(ms)) => {}
                () = shared.arrived.notified() => {}
            }
        }));
    }
}

fn task_of(c: Claimed) -> Task<QueuedJob> {
    let id = c.lease.job.clone();
    let attempts = c.attempts as usize;
    TaskBuilder::new(QueuedJob(c))
        .task_id(TaskId::from_string(id))
        .attempt(attempts)
        .build()
}

impl Backend for QueueBackend {
    type Task = Task<QueuedJob>;
    type Error = QueueError;

    fn poll_ready(
        &mut self,
        _: &mut Context<'_>,
        _: &WorkerContext,
    ) -> Poll<Result<(), QueueError>> {
        Poll::Ready(Ok(()))
    }

    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        _: &WorkerContext,
    ) -> Poll<Option<Result<Task<QueuedJob>, QueueError>>> {
        loop {
            if let Some(claim) = self.claim.as_mut()
                && let Poll::Ready(res) = claim.poll_unpin(cx)
            {
                self.claim = None;
                self.claimed(res);
            }
            let recovered = self.shared.recovered.lock().expect("recovered").pop_front();
            if let Some(c) = recovered.or_else(|| self.buffer.pop_front()) {
                self.refill(cx);
                return Poll::Ready(Some(Ok(task_of(c))));
            }
            if let Some(idle) = self.idle.as_mut() {
                ready!(idle.as_mut().poll(cx));
                self.idle = None;
            }
            if self.claim.is_none() {
                let want = self.wanted().max(1);
                self.claim = Some(self.start_claim(want));
            }
            let res = ready!(self.claim.as_mut().expect("claim").poll_unpin(cx));
            self.claim = None;
            self.claimed(res);
        }
    }

    fn poll_close(
        &mut self,
        cx: &mut Context<'_>,
        _: &WorkerContext,
    ) -> Poll<Result<(), QueueError>> {
        if self.closing.is_none() {
            let claim = self.claim.take();
            let mut buffered: Vec<Claimed> = self.buffer.drain(..).collect();
            buffered.extend(self.shared.recovered.lock().expect("recovered").drain(..));
            let shared = self.shared.clone();
            self.closing = Some(
                async move {
                    let mut unstarted = buffered;
                    if let Some(claim) = claim
                        && let Ok((more, _)) = claim.await
                    {
                        unstarted.extend(more);
                    }
                    // One bounded call: with the queue unreachable, the leases stay
                    // held and the worker's hand-back tries again and counts them.
                    let items: Vec<(Lease, Settle)> = unstarted
                        .into_iter()
                        .map(|c| (c.lease, Settle::Release))
                        .collect();
                    if items.is_empty() {
                        return;
                    }
                    let call = shared.queue.settle(&items);
                    match tokio::time::timeout(crate::worker::runtime::HANDBACK, call).await {
                        Ok(Ok(_)) => shared.forget(items.iter().map(|(l, _)| l)),
                        Ok(Err(e)) => tracing::warn!(error = %e, "releasing unstarted jobs"),
                        Err(_) => tracing::warn!("releasing unstarted jobs timed out"),
                    }
                }
                .boxed(),
            );
        }
        ready!(self.closing.as_mut().expect("closing").poll_unpin(cx));
        Poll::Ready(Ok(()))
    }
}

impl BackendConfig for QueueBackend {
    type Args = QueuedJob;
    type Id = String;
    type Kind = Ephemeral;
    type Config = ();
    type Layer = AcknowledgeLayer<super::ack::SettleAck>;

    fn config(&self) -> &() {
        &()
    }

    fn middleware(&mut self, _: &mut WorkerContext) -> Self::Layer {
        AcknowledgeLayer::new(super::ack::SettleAck {
            shared: self.shared.clone(),
        })
    }
}
