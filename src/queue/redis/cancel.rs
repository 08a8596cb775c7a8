//! Cancelling on Redis (`cancel.lua`, `cancel_scan.lua`): a job, or a whole batch
//! whatever its size (queued jobs at once, running ones at their next safe point).

use redis::AsyncCommands as _;

use super::RedisQueue;
use crate::job::batch_job_id;
use crate::queue::records::batch_fields;
use crate::queue::{BatchRecord, CancelReport, QueueError, Records, now_ms};

impl RedisQueue {
    pub(super) async fn cancel_any(
        &self,
        project: &str,
        id: &str,
    ) -> Result<CancelReport, QueueError> {
        if let Some(batch) = Records::batch(self, project, id).await? {
            return self.cancel_batch(project, id, batch).await;
        }
        if Records::job(self, project, id).await?.is_none() {
            return Ok(CancelReport::default());
        }
        let mut conn = self.conn.clone();
        let r: [u64; 4] = self
            .scripts
            .cancel
            .key(self.key(project, "delayed"))
            .arg(self.base(project))
            .arg(now_ms())
            .arg(self.options.retention.as_secs().max(1))
            .arg(id)
            .invoke_async(&mut conn)
            .await?;
        Ok(CancelReport {
            kind: "job".into(),
            cancelled: r[0],
            flagged: r[1],
            already_finished: r[2],
            batch_completed: r[3] == 1,
        })
    }
    async fn cancel_batch(
        &self,
        project: &str,
        id: &str,
        batch: BatchRecord,
    ) -> Result<CancelReport, QueueError> {
        let mut report = CancelReport {
            kind: "batch".into(),
            ..CancelReport::default()
        };
        if batch.completed_ms.is_some() {
            report.already_finished = batch.done;
            return Ok(report);
        }
        let mut conn = self.conn.clone();
        let () = conn
            .hset(self.batch_key(project, id), batch_fields::CANCEL, 1)
            .await?;
        // First the jobs that are only stream entries (they carry their line), lane by
        // lane; then every job by seq (running ones are flagged, retries cancelled).
        // A submit still running sees the flag and stops.
        let mut lanes: Vec<String> = conn.smembers(self.key(project, "lanes")).await?;
        lanes.sort();
        let mut scanned = 0;
        let streams = lanes.iter().flat_map(|l| [(l, 0), (l, 1)]);
        for (lane, urgent) in streams {
            let mut start = "-".to_string();
            loop {
                let (next, n, done): (String, u64, u64) = self
                    .scripts
                    .cancel_scan
                    .arg(self.base(project))
                    .arg(now_ms())
                    .arg(self.options.retention.as_secs().max(1))
                    .arg(id)
                    .arg(lane)
                    .arg(&start)
                    .arg(500)
                    .arg(urgent)
                    .invoke_async(&mut conn)
                    .await?;
                scanned += n;
                report.batch_completed |= done == 1;
                if next.is_empty() {
                    break;
                }
                start = next;
            }
        }
        report.cancelled += scanned;
        let enqueued = Records::batch(self, project, id)
            .await?
            .map_or(batch.enqueued, |b| b.enqueued);
        let mut seq = 0;
        while seq < enqueued {
            let end = (seq + 1000).min(enqueued);
            let mut inv = self.scripts.cancel.prepare_invoke();
            inv.key(self.key(project, "delayed"))
                .arg(self.base(project))
                .arg(now_ms())
                .arg(self.options.retention.as_secs().max(1));
            for s in seq..end {
                inv.arg(batch_job_id(id, s));
            }
            let r: [u64; 4] = inv.invoke_async(&mut conn).await?;
            report.cancelled += r[0];
            report.flagged += r[1];
            report.already_finished += r[2];
            report.batch_completed |= r[3] == 1;
            seq = end;
        }
        // The scan's cancellations were seen again as finished.
        report.already_finished = report.already_finished.saturating_sub(scanned);
        Ok(report)
    }
}
