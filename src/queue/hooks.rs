//! Webhook deliveries as the queue keeps them: a durable queue of its own beside the
//! job queue (same Redis, same project hash tag, same Lua machinery).
//!
//! - A terminal job transition and a batch completion enqueue their event *in the same
//!   script* that records them, so no crash can separate the two. The target is the
//!   job's own `webhook_url`, else the project's default (job events); the batch's
//!   `--webhook`, else the project's default (`batch.completed`).
//! - One record per event, id `msg_<subject>`: the Standard Webhooks `webhook-id`, the
//!   same for every attempt. Due deliveries sit in a sorted set by due time; a worker
//!   that takes one pushes its score to the end of a lease, so a worker that dies
//!   mid-delivery only delays it (another takes it when the lease ends).
//! - Every attempt is appended to the record's log (time, status, latency, error).

use serde::{Deserialize, Serialize};

/// `data` of `lane.held` and `lane.resumed`: an outage began or ended for a lane (or,
/// `model` absent, for the whole project). The queue renders these bodies itself, in
/// the script that starts or ends the hold, so no crash separates the two.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaneEvent {
    /// Project.
    pub project: String,
    /// The lane's model; absent when the whole project is held (credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// `credentials_error`, `model_unavailable`, `permission_denied`.
    pub reason: String,
    /// The provider's message.
    pub message: String,
    /// When the hold began (unix ms).
    pub held_since_ms: u64,
    /// `lane.resumed`: how long it was held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_for_ms: Option<u64>,
}

/// A whole event body (`{"type", "timestamp", "data"}`, as every webhook), at `at_ms`.
pub fn lane_event_body(event: &str, at_ms: u64, data: &LaneEvent) -> String {
    let timestamp = rfc3339(at_ms).unwrap_or_default();
    serde_json::json!({"type": event, "timestamp": timestamp, "data": data}).to_string()
}

/// RFC 3339 with milliseconds, UTC (`2026-12-03T14:50:00.123Z`), as every webhook
/// timestamp is written.
pub fn rfc3339(ms: u64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// The subject (hence the message id) of a lane event: one per hold and event.
pub fn lane_subject(event: &str, model: Option<&str>, held_since_ms: u64) -> String {
    format!("{event}.{}.{held_since_ms}", model.unwrap_or("*"))
}

/// A delivery taken by a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueDelivery {
    /// Message id (`webhook-id`).
    pub id: String,
    /// Fences the settle: a delivery whose lease ran out belongs to whoever took it next.
    pub token: String,
    /// Event type (`job.succeeded`, `batch.completed`, …).
    pub event: String,
    /// Job or batch id.
    pub subject: String,
    /// Target URL.
    pub url: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the event happened (ms).
    pub created_ms: u64,
    /// The body, once the first attempt built it (every attempt sends the same bytes).
    pub body: Option<String>,
    /// Set when the endpoint was disabled (a 410): why.
    pub disabled: Option<String>,
}

/// One attempt, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// When it started (ms).
    pub at_ms: u64,
    /// HTTP status, when there was a response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// How long it took (ms).
    pub latency_ms: u64,
    /// What went wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// How a delivery attempt ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookSettle {
    /// A 2xx: done.
    Delivered,
    /// Try again at `at_ms`.
    Retry {
        /// When (unix ms).
        at_ms: u64,
    },
    /// Not again (attempts spent, refused destination, disabled endpoint).
    Failed {
        /// Why.
        reason: String,
    },
    /// A 410: the endpoint is disabled for the project, and this delivery ends.
    Disable {
        /// Why.
        reason: String,
    },
    /// Not attempted (not ready yet): due again at `at_ms`, no attempt recorded.
    Defer {
        /// When (unix ms).
        at_ms: u64,
    },
}

/// A delivery as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryRecord {
    /// Message id.
    pub id: String,
    /// Event type.
    pub event: String,
    /// Job or batch id.
    pub subject: String,
    /// Target.
    pub url: String,
    /// `pending`, `delivering`, `delivered`, `failed`.
    pub state: String,
    /// When the event happened (ms).
    pub created_ms: u64,
    /// Next attempt (pending only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_ms: Option<u64>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Every attempt, oldest first.
    pub attempts: Vec<AttemptRecord>,
}

/// Message id of the event about `subject` (a job or batch id).
pub fn message_id(subject: &str) -> String {
    format!("msg_{subject}")
}

impl HookSettle {
    /// (kind, at ms, reason) as the settle script takes them.
    pub fn wire(&self) -> (&'static str, u64, &str) {
        match self {
            HookSettle::Delivered => ("ok", 0, ""),
            HookSettle::Retry { at_ms } => ("retry", *at_ms, ""),
            HookSettle::Failed { reason } => ("fail", 0, reason),
            HookSettle::Disable { reason } => ("off", 0, reason),
            HookSettle::Defer { at_ms } => ("defer", *at_ms, ""),
        }
    }
}

impl DeliveryRecord {
    /// Reads a delivery from its hash fields and attempt log; `None` for an empty map.
    pub fn from_fields(
        id: &str,
        map: &std::collections::HashMap<String, String>,
        log: &[String],
    ) -> Option<Self> {
        let url = map.get("url")?;
        let num = |k: &str| map.get(k).and_then(|v| v.parse::<u64>().ok());
        let state = map.get("st").cloned().unwrap_or_else(|| "pending".into());
        Some(DeliveryRecord {
            id: id.to_string(),
            event: map.get("type").cloned().unwrap_or_default(),
            subject: map.get("sub").cloned().unwrap_or_default(),
            url: url.clone(),
            created_ms: num("c").unwrap_or(0),
            next_ms: num("next").filter(|_| state == "pending"),
            error: map.get("err").filter(|e| !e.is_empty()).cloned(),
            state,
            attempts: log
                .iter()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect(),
        })
    }
}
