//! Signed webhooks with durable delivery (Standard Webhooks v1).
//!
//! - [`sign`]: `webhook-id` / `webhook-timestamp` / `webhook-signature` with `whsec_`
//!   secrets, several at once during a rotation.
//! - [`crate::netguard`]: the destination guard (resolved-address checks, pinning, no
//!   redirects), shared with input-image fetches.
//! - [`payload`]: the `{type, timestamp, data}` bodies built from job and batch records.
//! - [`Dispatcher`]: the delivery loop every worker runs beside its jobs. Events are
//!   enqueued by the queue's own scripts in the transition that causes them
//!   (`src/queue/hooks.rs`), so a crash loses none; the dispatcher takes due ones,
//!   builds the body once (every attempt sends the same bytes), signs each attempt,
//!   and records it. Retries follow `webhooks.retry_schedule`, never sooner than a
//!   429/503's `Retry-After`; a 410 disables the endpoint for the project.

pub mod payload;
pub mod setup;
mod sign;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt as _;

use crate::config::{ConfigError, WebhooksConfig};
use crate::queue::hooks::{AttemptRecord, DueDelivery, HookSettle};
use crate::queue::{JobQueue, now_ms};
use crate::storage::OutputStore;

pub use crate::netguard::NetPolicy;
pub use setup::{check_settings, project_signer};
pub use sign::Signer;

/// Response bytes kept in an attempt's error text.
const EXCERPT: usize = 200;
/// A `batch.completed` waits this long for the completing worker's manifest before
/// the dispatcher writes it itself (that worker may have died).
const MANIFEST_GRACE_MS: u64 = 30_000;

/// Delivery settings (`[webhooks]`).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Destination policy.
    pub policy: Arc<NetPolicy>,
    /// Delay before each attempt: the first (usually 0), then after each failure.
    pub schedule: Vec<Duration>,
    /// Per-attempt timeout.
    pub timeout: Duration,
    /// Response bytes read at most.
    pub max_response_bytes: usize,
    /// Deliveries in flight per worker.
    pub concurrency: usize,
    /// Lifetime of signed output URLs in payloads.
    pub signed_url_ttl: Duration,
    /// The HTTP API's public URL (`[api] public_url`): where payloads link the images of
    /// API requests when the store cannot sign URLs ([`payload::ApiLinks`]).
    pub api_url: Option<String>,
}

impl Settings {
    /// From `[webhooks]` (already validated by the config loader).
    pub fn from_config(c: &WebhooksConfig) -> Result<Self, ConfigError> {
        Ok(Settings {
            policy: Arc::new(NetPolicy::for_webhooks(c)?),
            schedule: c.schedule()?,
            timeout: c.timeout,
            max_response_bytes: c.max_response_bytes,
            concurrency: c.concurrency.max(1),
            signed_url_ttl: c.signed_url_ttl,
            api_url: None,
        })
    }

    /// How long a taken delivery stays invisible to other workers.
    fn lease(&self) -> Duration {
        self.timeout + Duration::from_secs(10)
    }

    /// The HTTP client deliveries go through: the guarded resolver, no proxy (it would
    /// resolve again), no redirects, the attempt timeout.
    pub fn client(&self) -> reqwest::Client {
        crate::netguard::guarded_client(
            self.policy.clone(),
            self.timeout,
            0,
            concat!("imagegen-webhooks/", env!("CARGO_PKG_VERSION")),
        )
    }
}

/// What a project signs and builds payloads with.
#[derive(Clone)]
pub struct ProjectHooks {
    /// Its secrets (`None`: the project has no `webhook_secret`; nothing is sent).
    pub signer: Option<Arc<Signer>>,
    /// Its output store (signed URLs, manifests).
    pub store: OutputStore,
}

/// How one attempt went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// 2xx.
    Delivered,
    /// 410: disable the endpoint.
    Gone,
    /// The destination is refused by the SSRF guard (not retried).
    Refused,
    /// Anything else: retry (no sooner than `retry_after`).
    Failed {
        /// `Retry-After` of a 429/503.
        retry_after: Option<Duration>,
    },
}

/// One attempt: what happened, for the record and the retry decision.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The recorded attempt.
    pub record: AttemptRecord,
    /// What it means.
    pub outcome: AttemptOutcome,
}

/// Sends one signed attempt of `body` as message `id` to `url`.
pub async fn attempt(
    client: &reqwest::Client,
    settings: &Settings,
    signer: &Signer,
    url: &str,
    id: &str,
    body: &str,
) -> Attempt {
    let at_ms = now_ms();
    let started = Instant::now();
    let record = |status: Option<u16>, error: Option<String>| AttemptRecord {
        at_ms,
        status,
        latency_ms: started.elapsed().as_millis() as u64,
        error,
    };
    // Literal addresses never reach the resolver: check them here.
    if let Err(e) = settings.policy.check_url(url) {
        return Attempt {
            record: record(None, Some(e.to_string())),
            outcome: AttemptOutcome::Refused,
        };
    }
    let headers = signer.sign(id, (at_ms / 1000) as i64, body.as_bytes());
    let sent = client
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", &headers.id)
        .header("webhook-timestamp", &headers.timestamp)
        .header("webhook-signature", &headers.signature)
        .body(body.to_string())
        .send()
        .await;
    let mut resp = match sent {
        Ok(r) => r,
        Err(e) => {
            if let Some(refused) = crate::netguard::refusal(&e) {
                return Attempt {
                    record: record(None, Some(refused.to_string())),
                    outcome: AttemptOutcome::Refused,
                };
            }
            return Attempt {
                record: record(None, Some(describe(&e, settings.timeout))),
                outcome: AttemptOutcome::Failed { retry_after: None },
            };
        }
    };
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let location = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let excerpt = read_excerpt(&mut resp, settings.max_response_bytes).await;
    let code = status.as_u16();
    if status.is_success() {
        return Attempt {
            record: record(Some(code), None),
            outcome: AttemptOutcome::Delivered,
        };
    }
    let error = failure_text(code, location.as_deref(), &excerpt);
    let outcome = if code == 410 {
        AttemptOutcome::Gone
    } else {
        AttemptOutcome::Failed {
            retry_after: retry_after.filter(|_| matches!(code, 429 | 503)),
        }
    };
    Attempt {
        record: record(Some(code), Some(error)),
        outcome,
    }
}

/// Reads at most `max` bytes of a receiver's answer; keeps the first [`EXCERPT`] for
/// the record.
async fn read_excerpt(resp: &mut reqwest::Response, max: usize) -> Vec<u8> {
    let mut excerpt = Vec::new();
    let mut read = 0usize;
    while read < max {
        match resp.chunk().await {
            Ok(Some(c)) => {
                read += c.len();
                if excerpt.len() < EXCERPT {
                    excerpt.extend_from_slice(&c[..c.len().min(EXCERPT - excerpt.len())]);
                }
            }
            _ => break,
        }
    }
    excerpt
}

/// What a non-2xx answer is recorded as: its status, and the excerpt or the redirect
/// that was not followed.
fn failure_text(code: u16, location: Option<&str>, excerpt: &[u8]) -> String {
    let text = String::from_utf8_lossy(excerpt).trim().to_string();
    if (300..400).contains(&code) {
        format!(
            "HTTP {code}: redirect to {} not followed",
            location.unwrap_or("(no Location)")
        )
    } else if text.is_empty() {
        format!("HTTP {code}")
    } else {
        format!("HTTP {code}: {text}")
    }
}

fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("timed out after {} s", timeout.as_secs());
    }
    crate::netguard::describe_chain(e)
}

/// `Retry-After`: delay-seconds or an HTTP date; capped at a day.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    let d = if let Ok(s) = v.parse::<u64>() {
        Duration::from_secs(s)
    } else {
        let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
        let ms = at.timestamp_millis() - chrono::Utc::now().timestamp_millis();
        Duration::from_millis(ms.max(0) as u64)
    };
    Some(d.min(Duration::from_secs(86_400)))
}

/// The settle for an attempt that was number `n` (1-based) of a delivery.
pub fn decide(settings: &Settings, n: u32, a: &Attempt, now: u64) -> HookSettle {
    let last = a.record.error.clone().unwrap_or_default();
    match &a.outcome {
        AttemptOutcome::Delivered => HookSettle::Delivered,
        AttemptOutcome::Gone => HookSettle::Disable {
            reason: format!(
                "the endpoint answered 410 Gone at {}: disabled for this project (re-enable with `imagegen webhooks enable`)",
                chrono::DateTime::from_timestamp_millis(a.record.at_ms as i64)
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default()
            ),
        },
        AttemptOutcome::Refused => HookSettle::Failed { reason: last },
        AttemptOutcome::Failed { retry_after } => match settings.schedule.get(n as usize) {
            Some(next) => {
                let wait = retry_after.map_or(*next, |r| r.max(*next));
                HookSettle::Retry {
                    at_ms: now + wait.as_millis() as u64,
                }
            }
            None => HookSettle::Failed {
                reason: format!("gave up after {n} attempts; last: {last}"),
            },
        },
    }
}

/// The delivery loop of one worker process.
pub struct Dispatcher {
    queue: Arc<dyn JobQueue>,
    settings: Settings,
    client: reqwest::Client,
    projects: HashMap<String, ProjectHooks>,
    worker: String,
}

impl Dispatcher {
    /// A dispatcher for `projects` (those with a signing secret).
    pub fn new(
        queue: Arc<dyn JobQueue>,
        settings: Settings,
        projects: HashMap<String, ProjectHooks>,
        worker: String,
    ) -> Self {
        let client = settings.client();
        Dispatcher {
            queue,
            settings,
            client,
            projects,
            worker,
        }
    }

    /// Delivers until `shutdown` resolves; deliveries in flight then finish (each is
    /// bounded by the attempt timeout) or are left to their lease.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        let limit = Arc::new(tokio::sync::Semaphore::new(self.settings.concurrency));
        let mut names: Vec<String> = self.projects.keys().cloned().collect();
        names.sort();
        let mut shutdown = std::pin::pin!(shutdown.fuse());
        let mut tasks = tokio::task::JoinSet::new();
        let mut idle_ms = 10u64;
        loop {
            let mut got = 0;
            for project in &names {
                let free = limit.available_permits();
                if free == 0 {
                    break;
                }
                let due = match self
                    .queue
                    .hooks_due(project, &self.worker, free, self.settings.lease())
                    .await
                {
                    Ok(d) => d,
                    Err(e) => {
                        tracing::warn!(%project, error = %e, "taking due webhook deliveries failed");
                        crate::metrics::get().redis_error("hooks_due");
                        continue;
                    }
                };
                got += due.len();
                for d in due {
                    let permit = limit.clone().acquire_owned().await.expect("semaphore");
                    let me = self.clone();
                    let project = project.clone();
                    tasks.spawn(async move {
                        me.deliver(&project, d).await;
                        drop(permit);
                    });
                }
            }
            while tasks.try_join_next().is_some() {}
            idle_ms = if got > 0 {
                0
            } else {
                (idle_ms * 2).clamp(10, 250)
            };
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep(Duration::from_millis(idle_ms)) => {}
            }
        }
        let grace = self.settings.timeout + Duration::from_secs(1);
        let _ =
            tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    }

    /// One attempt of one delivery, settled.
    async fn deliver(&self, project: &str, d: DueDelivery) {
        let metrics = crate::metrics::get();
        let Some(hooks) = self.projects.get(project) else {
            return;
        };
        let (settle, attempt) = if let Some(why) = &d.disabled {
            metrics.webhook_delivery(project, "disabled", None);
            (
                HookSettle::Failed {
                    reason: format!("not sent: {why}"),
                },
                None,
            )
        } else if hooks.signer.is_none() {
            metrics.webhook_delivery(project, "disabled", None);
            (
                HookSettle::Failed {
                    reason: format!(
                        "not sent: project `{project}` has no webhook_secret to sign with (set projects.{project}.webhook_secret)"
                    ),
                },
                None,
            )
        } else {
            match self.body(project, hooks, &d).await {
                Err(at_ms) => (HookSettle::Defer { at_ms }, None),
                Ok(body) => {
                    let signer = hooks.signer.as_deref().expect("checked above");
                    let a =
                        attempt(&self.client, &self.settings, signer, &d.url, &d.id, &body).await;
                    let settle = decide(&self.settings, d.attempts + 1, &a, now_ms());
                    let outcome = match (&a.outcome, &settle) {
                        (AttemptOutcome::Delivered, _) => "delivered",
                        (AttemptOutcome::Refused, _) => "refused",
                        (AttemptOutcome::Gone, _) => "gone",
                        (_, HookSettle::Retry { .. }) => "retried",
                        _ => "failed",
                    };
                    metrics.webhook_delivery(
                        project,
                        outcome,
                        Some(Duration::from_millis(a.record.latency_ms)),
                    );
                    match &settle {
                        HookSettle::Delivered => {
                            tracing::info!(%project, id = %d.id, event = %d.event, attempt = d.attempts + 1, "webhook delivered")
                        }
                        _ => {
                            tracing::warn!(%project, id = %d.id, event = %d.event, attempt = d.attempts + 1, error = ?a.record.error, "webhook attempt failed")
                        }
                    }
                    (settle, Some(a.record))
                }
            }
        };
        let mut delay = Duration::from_millis(100);
        for _ in 0..8 {
            match self
                .queue
                .hooks_settle(project, &d.id, &d.token, attempt.as_ref(), &settle)
                .await
            {
                Ok(true) => return,
                Ok(false) => {
                    tracing::info!(%project, id = %d.id, "webhook settle refused: its lease ran out and another worker has it");
                    return;
                }
                Err(e) => {
                    metrics.redis_error("hooks_settle");
                    tracing::warn!(%project, id = %d.id, error = %e, "recording a webhook attempt failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// The delivery's body: stored on the record by the first attempt; built now
    /// otherwise. `Err(at)` when it cannot be built yet (a manifest being written).
    async fn body(
        &self,
        project: &str,
        hooks: &ProjectHooks,
        d: &DueDelivery,
    ) -> Result<String, u64> {
        if let Some(b) = &d.body {
            return Ok(b.clone());
        }
        let links = self
            .settings
            .api_url
            .as_deref()
            .zip(hooks.signer.as_deref())
            .map(|(base, signer)| payload::ApiLinks { base, signer });
        let built = match payload::build(
            self.queue.as_ref(),
            &hooks.store,
            project,
            d,
            self.settings.signed_url_ttl,
            MANIFEST_GRACE_MS,
            links,
        )
        .await
        {
            Ok(payload::Built::Body(b)) => b,
            Ok(payload::Built::NotYet) => return Err(now_ms() + 1000),
            Err(e) => {
                tracing::warn!(%project, id = %d.id, error = %e, "building a webhook payload failed; retrying in 5 s");
                return Err(now_ms() + 5000);
            }
        };
        match self.queue.hooks_body(project, &d.id, &built).await {
            Ok(stored) => Ok(stored),
            Err(e) => {
                tracing::warn!(%project, id = %d.id, error = %e, "storing a webhook body failed; retrying in 1 s");
                crate::metrics::get().redis_error("hooks_body");
                Err(now_ms() + 1000)
            }
        }
    }
}
