//! Settles in batches: every finished task sends its settle here and waits for the
//! answer, and one task writes whatever has piled up in a single queue call. Unlike
//! apalis' `Persisted`, the ack completes only once the settle is in the queue, so a
//! crash can lose no finished job (at worst it runs again).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::queue::{JobQueue, Lease, QueueError, Settle, SettleReport};

/// Most settles in one queue call.
const MAX_BATCH: usize = 512;
/// How long a settle keeps being retried while the queue is unreachable. Past this the
/// job's lease has expired anyway and another worker has it.
const GIVE_UP_AFTER: Duration = Duration::from_secs(120);

type Request = (Lease, Settle, oneshot::Sender<Result<SettleReport, String>>);

/// Handle to the settle task.
#[derive(Clone)]
pub struct Settler {
    tx: mpsc::UnboundedSender<Request>,
}

impl Settler {
    /// Starts the settle task for `queue`.
    pub fn spawn(queue: Arc<dyn JobQueue>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(queue, rx));
        Settler { tx }
    }

    /// Settles one delivery; resolves once it is written (or given up on).
    pub async fn settle(&self, lease: Lease, settle: Settle) -> Result<SettleReport, QueueError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send((lease, settle, tx))
            .map_err(|_| QueueError::Invalid("the settle task has stopped".into()))?;
        rx.await
            .map_err(|_| QueueError::Invalid("the settle task has stopped".into()))?
            .map_err(QueueError::Corrupt)
    }
}

async fn run(queue: Arc<dyn JobQueue>, mut rx: mpsc::UnboundedReceiver<Request>) {
    let mut pending: Vec<Request> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        pending.push(first);
        while pending.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => pending.push(r),
                Err(_) => break,
            }
        }
        let items: Vec<(Lease, Settle)> = pending
            .iter()
            .map(|(l, s, _)| (l.clone(), s.clone()))
            .collect();
        let outcome = write(queue.as_ref(), &items).await;
        for (i, (_, _, reply)) in pending.drain(..).enumerate() {
            let _ = reply.send(match &outcome {
                Ok(reports) => Ok(reports.get(i).copied().unwrap_or_default()),
                Err(e) => Err(e.clone()),
            });
        }
    }
}

async fn write(
    queue: &dyn JobQueue,
    items: &[(Lease, Settle)],
) -> Result<Vec<SettleReport>, String> {
    let started = Instant::now();
    let mut delay = Duration::from_millis(50);
    loop {
        match queue.settle(items).await {
            Ok(reports) => return Ok(reports),
            Err(e) if started.elapsed() < GIVE_UP_AFTER => {
                tracing::warn!(error = %e, jobs = items.len(), retry_in_ms = delay.as_millis() as u64, "settling failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(format!("giving up settling {} job(s): {e}", items.len())),
        }
    }
}
