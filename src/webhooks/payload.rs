//! Event bodies: `{"type", "timestamp", "data"}` (Standard Webhooks), thin enough to
//! stay far below the spec's 20 kB: ids, status, counts, error reason, output URLs
//! (signed ones where the store can sign), never image bytes.

use std::time::Duration;

use serde_json::{Value, json};

use crate::queue::hooks::DueDelivery;
use crate::queue::{JobQueue, now_ms};
use crate::storage::{JobLocation, OutputStore};

/// Longest error text carried in a payload.
const MAX_ERROR: usize = 2000;
/// Failed job ids listed in `batch.completed`.
const MAX_FAILED_IDS: usize = 100;

/// A body, or "not yet" (a batch's manifest is still being written).
#[derive(Debug)]
pub enum Built {
    /// The JSON body.
    Body(String),
    /// Try again shortly.
    NotYet,
}

fn rfc3339(ms: u64) -> Value {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .map(|t| Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)))
        .unwrap_or(Value::Null)
}

fn clip(s: &str) -> String {
    if s.len() <= MAX_ERROR {
        return s.to_string();
    }
    let mut end = MAX_ERROR;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Builds the body of delivery `d` from the records it is about.
pub async fn build(
    queue: &dyn JobQueue,
    store: &OutputStore,
    project: &str,
    d: &DueDelivery,
    signed_ttl: Duration,
    manifest_grace_ms: u64,
) -> anyhow::Result<Built> {
    let (timestamp, data) = if d.event == "batch.completed" {
        let Some(b) = queue.batch(project, &d.subject).await? else {
            return Ok(Built::Body(body(
                &d.event,
                d.created_ms,
                json!({"batch_id": d.subject, "project": project, "status": "unknown",
                       "error": "the batch's record has expired"}),
            )));
        };
        let manifest = match &b.manifest {
            Some(m) => m.clone(),
            None if now_ms().saturating_sub(b.completed_ms.unwrap_or(0)) < manifest_grace_ms => {
                return Ok(Built::NotYet);
            }
            // The worker that completed the batch died before writing its manifest.
            None => {
                crate::worker::runtime::write_manifest(queue, store, project, &d.subject).await?
            }
        };
        let mut failed: Vec<&String> = b.failures.iter().take(MAX_FAILED_IDS).collect();
        failed.sort();
        let counts: serde_json::Map<String, Value> = b
            .counts
            .iter()
            .filter(|(s, _)| s.is_terminal())
            .map(|(s, n)| (s.as_str().to_string(), json!(n)))
            .collect();
        let mut data = json!({
            "batch_id": b.id,
            "project": project,
            "status": "completed",
            "source": b.source,
            "total": b.total.unwrap_or(b.enqueued),
            "counts": counts,
            "manifest_url": manifest,
            "created_at": rfc3339(b.created_ms),
            "completed_at": b.completed_ms.map_or(Value::Null, rfc3339),
            "failed_job_ids": failed,
        });
        if let Some(s) = store.signed_url(&manifest, signed_ttl).await {
            data["manifest_signed_url"] = json!(s);
        }
        (b.completed_ms.unwrap_or(d.created_ms), data)
    } else {
        let Some(r) = queue.job(project, &d.subject).await? else {
            return Ok(Built::Body(body(
                &d.event,
                d.created_ms,
                json!({"job_id": d.subject, "project": project, "status": "unknown",
                       "error": "the job's record has expired"}),
            )));
        };
        let mut data = json!({
            "job_id": r.id,
            "project": project,
            "status": r.status,
            "attempts": r.attempts,
        });
        if let Some(b) = &r.batch {
            data["batch_id"] = json!(b);
        }
        if let Some(l) = r.line {
            data["line"] = json!(l);
        }
        if let Some(e) = &r.error {
            data["error"] = json!(clip(e));
        }
        if let Some(t) = r.started_ms {
            data["started_at"] = rfc3339(t);
        }
        data["finished_at"] = r.finished_ms.map_or(Value::Null, rfc3339);
        if let Some(Value::Object(res)) = &r.result {
            for k in [
                "model",
                "operation",
                "usage",
                "text",
                "metadata",
                "duration_ms",
            ] {
                if let Some(v) = res.get(k) {
                    data[k] = v.clone();
                }
            }
            let mut images = Vec::new();
            for img in res
                .get("images")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let mut img = img.clone();
                if let Some(url) = img.get("url").and_then(Value::as_str)
                    && let Some(s) = store.signed_url(url, signed_ttl).await
                {
                    img["signed_url"] = json!(s);
                }
                images.push(img);
            }
            data["images"] = Value::Array(images);
            let loc = JobLocation {
                project,
                batch: r.batch.as_deref(),
                job: &r.id,
            };
            let result_url = store.result_url(&loc);
            if let Some(s) = store.signed_url(&result_url, signed_ttl).await {
                data["result_signed_url"] = json!(s);
            }
            data["result_url"] = json!(result_url);
        }
        (r.finished_ms.unwrap_or(d.created_ms), data)
    };
    Ok(Built::Body(body(&d.event, timestamp, data)))
}

fn body(event: &str, at_ms: u64, data: Value) -> String {
    json!({"type": event, "timestamp": rfc3339(at_ms), "data": data}).to_string()
}
