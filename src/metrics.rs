//! Prometheus metrics (the `prometheus` crate): one registry per process, served at
//! `/metrics` by the health module (`imagegen worker --metrics-listen`).
//!
//! Two kinds of series, named so a dashboard can tell them apart:
//! - **This process** (counters and histograms it moves as it works): jobs finished by
//!   project, operation and outcome (only settles the queue applied, so a stale
//!   delivery never counts twice), job duration, provider responses and latency,
//!   retries and deferrals by reason, in-flight jobs, images and bytes written, webhook
//!   deliveries and their latency, Redis errors. Sum them across workers.
//! - **Cluster-wide** (read from the queue's counters at scrape time by the
//!   health module, never a scan):
//!   jobs by state, jobs enqueued by operation, per-lane limits / effective concurrency
//!   / pause / parking, pending webhook deliveries. Every worker exports the same
//!   values: aggregate them with `max`, not `sum`.
//!
//! Names are `imagegen_*`, in base units (seconds, bytes), counters end in `_total`;
//! labels are bounded: project, model, operation, outcome, code, reason, state.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus::{
    Encoder as _, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::limits::{HoldReason, LaneView};
use crate::providers::ProviderError;

/// Every metric of the process.
pub struct Metrics {
    registry: Registry,
    jobs_finished: IntCounterVec,
    job_duration: HistogramVec,
    provider_responses: IntCounterVec,
    provider_latency: HistogramVec,
    retries: IntCounterVec,
    deferrals: IntCounterVec,
    in_flight: IntGaugeVec,
    images_written: IntCounterVec,
    output_bytes: IntCounterVec,
    cost: prometheus::CounterVec,
    webhook_deliveries: IntCounterVec,
    webhook_latency: HistogramVec,
    redis_errors: IntCounterVec,
    // cluster-wide, refreshed at scrape
    queue_jobs: IntGaugeVec,
    jobs_enqueued: IntCounterVec,
    lane_limit: IntGaugeVec,
    lane_effective: prometheus::GaugeVec,
    lane_in_flight: IntGaugeVec,
    lane_queued: IntGaugeVec,
    lane_paused: IntGaugeVec,
    lane_quota_exhausted: IntGaugeVec,
    lane_held: IntGaugeVec,
    webhooks_pending: IntGaugeVec,
    api_requests: IntCounterVec,
    api_duration: HistogramVec,
    up: IntGauge,
}

/// API request latencies: a sync request waits for its job, so up to minutes.
const API_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0,
];

const LATENCY_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0,
];
const WEBHOOK_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0,
];

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("metric");
    r.register(Box::new(c.clone())).expect("register");
    c
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("metric");
    r.register(Box::new(g.clone())).expect("register");
    g
}

fn histogram(r: &Registry, name: &str, help: &str, labels: &[&str], b: &[f64]) -> HistogramVec {
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(b.to_vec()), labels)
        .expect("metric");
    r.register(Box::new(h.clone())).expect("register");
    h
}

impl Metrics {
    fn new() -> Self {
        let r = Registry::new();
        let info = IntGaugeVec::new(
            Opts::new("imagegen_build_info", "Build information (always 1)."),
            &["version"],
        )
        .expect("metric");
        r.register(Box::new(info.clone())).expect("register");
        info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let up = IntGauge::new("imagegen_up", "1 while the process runs.").expect("metric");
        r.register(Box::new(up.clone())).expect("register");
        up.set(1);
        Metrics {
            jobs_finished: counter(
                &r,
                "imagegen_jobs_finished_total",
                "Jobs this process finished, by outcome (succeeded, blocked, failed, cancelled).",
                &["project", "operation", "outcome"],
            ),
            job_duration: histogram(
                &r,
                "imagegen_job_duration_seconds",
                "Wall time of the delivery that finished a job.",
                &["project", "operation"],
                LATENCY_BUCKETS,
            ),
            provider_responses: counter(
                &r,
                "imagegen_provider_responses_total",
                "Provider calls by model and HTTP status (code \"none\": no response).",
                &["project", "model", "code"],
            ),
            provider_latency: histogram(
                &r,
                "imagegen_provider_request_duration_seconds",
                "Provider call latency.",
                &["project", "model"],
                LATENCY_BUCKETS,
            ),
            retries: counter(
                &r,
                "imagegen_job_retries_total",
                "Counted retries (transient errors), by reason.",
                &["project", "reason"],
            ),
            deferrals: counter(
                &r,
                "imagegen_job_deferrals_total",
                "Uncounted deferrals (rate limits, spent daily quotas), by reason.",
                &["project", "reason"],
            ),
            in_flight: gauge(
                &r,
                "imagegen_jobs_in_flight",
                "Jobs this process is running.",
                &["project"],
            ),
            cost: {
                let c = prometheus::CounterVec::new(
                    Opts::new(
                        "imagegen_cost_usd_total",
                        "What this process's finished jobs cost (USD, the price table applied to their usage at the tier they were served at).",
                    ),
                    &["project", "model", "tier"],
                )
                .expect("metric");
                r.register(Box::new(c.clone())).expect("register");
                c
            },
            images_written: counter(
                &r,
                "imagegen_images_written_total",
                "Images written to the output store.",
                &["project"],
            ),
            output_bytes: counter(
                &r,
                "imagegen_output_bytes_total",
                "Image bytes written to the output store.",
                &["project"],
            ),
            webhook_deliveries: counter(
                &r,
                "imagegen_webhook_deliveries_total",
                "Webhook delivery attempts by outcome (delivered, retried, failed, gone, refused, disabled).",
                &["project", "outcome"],
            ),
            webhook_latency: histogram(
                &r,
                "imagegen_webhook_delivery_duration_seconds",
                "Webhook attempt latency.",
                &["project"],
                WEBHOOK_BUCKETS,
            ),
            redis_errors: counter(
                &r,
                "imagegen_redis_errors_total",
                "Queue (Redis) operations that failed.",
                &["operation"],
            ),
            queue_jobs: gauge(
                &r,
                "imagegen_queue_jobs",
                "Cluster-wide jobs by state, from the queue's counters.",
                &["project", "state"],
            ),
            jobs_enqueued: counter(
                &r,
                "imagegen_jobs_enqueued_total",
                "Cluster-wide jobs ever enqueued, by operation, from the queue's counters.",
                &["project", "operation"],
            ),
            lane_limit: gauge(
                &r,
                "imagegen_lane_concurrency_limit",
                "Configured concurrency per project+model (0: none).",
                &["project", "model"],
            ),
            lane_effective: {
                let g = prometheus::GaugeVec::new(
                    Opts::new(
                        "imagegen_lane_concurrency_effective",
                        "Adaptive (AIMD) concurrency per project+model.",
                    ),
                    &["project", "model"],
                )
                .expect("metric");
                r.register(Box::new(g.clone())).expect("register");
                g
            },
            lane_in_flight: gauge(
                &r,
                "imagegen_lane_in_flight",
                "Cluster-wide requests in flight per project+model.",
                &["project", "model"],
            ),
            lane_queued: gauge(
                &r,
                "imagegen_lane_queued",
                "Jobs waiting per project+model (not yet delivered).",
                &["project", "model"],
            ),
            lane_paused: gauge(
                &r,
                "imagegen_lane_paused",
                "1 while a 429 pause holds the project+model.",
                &["project", "model"],
            ),
            lane_quota_exhausted: gauge(
                &r,
                "imagegen_lane_quota_exhausted",
                "1 while a spent daily quota parks the project+model.",
                &["project", "model"],
            ),
            lane_held: gauge(
                &r,
                "imagegen_lane_held",
                "1 while an outage holds the project+model (model=\"*\": the whole project), by reason.",
                &["project", "model", "reason"],
            ),
            webhooks_pending: gauge(
                &r,
                "imagegen_webhooks_pending",
                "Cluster-wide webhook deliveries not yet finished.",
                &["project"],
            ),
            api_requests: counter(
                &r,
                "imagegen_api_requests_total",
                "HTTP API requests by route (its pattern) and status.",
                &["route", "status"],
            ),
            api_duration: histogram(
                &r,
                "imagegen_api_request_duration_seconds",
                "HTTP API request latency by route (sync requests include the job).",
                &["route"],
                API_BUCKETS,
            ),
            up,
            registry: r,
        }
    }

    /// One HTTP API request answered.
    pub fn api_request(&self, route: &str, status: u16, took: Duration) {
        self.api_requests
            .with_label_values(&[route, &status.to_string()])
            .inc();
        self.api_duration
            .with_label_values(&[route])
            .observe(took.as_secs_f64());
    }

    /// A job this process finished (its settle was applied).
    pub fn job_finished(&self, project: &str, operation: &str, outcome: &str, took: Duration) {
        self.jobs_finished
            .with_label_values(&[project, operation, outcome])
            .inc();
        if operation != "unknown" {
            self.job_duration
                .with_label_values(&[project, operation])
                .observe(took.as_secs_f64());
        }
    }

    /// A provider call returned.
    pub fn provider_response(
        &self,
        project: &str,
        model: &str,
        result: Result<(), &ProviderError>,
        took: Duration,
    ) {
        let code = match result {
            Ok(()) => Some(200),
            Err(e) => http_status(e),
        };
        let code = code.map_or_else(|| "none".to_string(), |c| c.to_string());
        self.provider_responses
            .with_label_values(&[project, model, &code])
            .inc();
        self.provider_latency
            .with_label_values(&[project, model])
            .observe(took.as_secs_f64());
    }

    /// A counted retry.
    pub fn retry(&self, project: &str, reason: &str) {
        self.retries.with_label_values(&[project, reason]).inc();
    }

    /// An uncounted deferral.
    pub fn deferral(&self, project: &str, reason: &str) {
        self.deferrals.with_label_values(&[project, reason]).inc();
    }

    /// A job started (+1) or ended (−1) in this process.
    pub fn in_flight(&self, project: &str, delta: i64) {
        self.in_flight.with_label_values(&[project]).add(delta);
    }

    /// A finished job's cost.
    pub fn cost(&self, project: &str, model: &str, tier: &str, usd: f64) {
        self.cost
            .with_label_values(&[project, model, tier])
            .inc_by(usd.max(0.0));
    }

    /// An image written.
    pub fn image_written(&self, project: &str, bytes: u64) {
        self.images_written.with_label_values(&[project]).inc();
        self.output_bytes
            .with_label_values(&[project])
            .inc_by(bytes);
    }

    /// A webhook attempt (or a delivery not sent: `disabled`).
    pub fn webhook_delivery(&self, project: &str, outcome: &str, took: Option<Duration>) {
        self.webhook_deliveries
            .with_label_values(&[project, outcome])
            .inc();
        if let Some(t) = took {
            self.webhook_latency
                .with_label_values(&[project])
                .observe(t.as_secs_f64());
        }
    }

    /// A failed queue operation.
    pub fn redis_error(&self, operation: &str) {
        self.redis_errors.with_label_values(&[operation]).inc();
    }

    /// A project's jobs by state, cluster-wide (as the queue counts them).
    pub fn set_queue_jobs(&self, project: &str, state: &str, n: u64) {
        self.queue_jobs
            .with_label_values(&[project, state])
            .set(n as i64);
    }

    /// Jobs ever enqueued by operation, cluster-wide: the counter follows the queue's
    /// (it only moves forward).
    pub fn set_jobs_enqueued(&self, project: &str, op: &str, n: u64) {
        let c = self.jobs_enqueued.with_label_values(&[project, op]);
        if n > c.get() {
            c.inc_by(n - c.get());
        }
    }

    /// Webhook deliveries waiting, cluster-wide.
    pub fn set_webhooks_pending(&self, project: &str, n: u64) {
        self.webhooks_pending
            .with_label_values(&[project])
            .set(n as i64);
    }

    /// A lane's limits and state, cluster-wide, at `now`.
    pub fn set_lane(&self, project: &str, l: &LaneView, now: u64) {
        let labels = [project, l.model.as_str()];
        self.lane_limit
            .with_label_values(&labels)
            .set(i64::from(l.concurrency));
        self.lane_effective
            .with_label_values(&labels)
            .set(l.effective_concurrency);
        self.lane_in_flight
            .with_label_values(&labels)
            .set(l.in_flight as i64);
        self.lane_queued
            .with_label_values(&labels)
            .set(l.queued as i64);
        let state = l.state(now);
        self.lane_paused
            .with_label_values(&labels)
            .set(i64::from(state == "paused"));
        self.lane_quota_exhausted
            .with_label_values(&labels)
            .set(i64::from(state == "quota_exhausted"));
        self.set_held(project, &l.model, l.hold.as_ref());
    }

    /// `imagegen_lane_held` for a lane (or `*`, the project): 1 for the hold's reason,
    /// 0 for the others.
    pub fn set_held(&self, project: &str, model: &str, hold: Option<&crate::limits::HoldView>) {
        for reason in [
            HoldReason::CredentialsError,
            HoldReason::ModelUnavailable,
            HoldReason::PermissionDenied,
            HoldReason::BudgetExhausted,
        ] {
            let on = hold.is_some_and(|h| h.reason == reason.as_str());
            self.lane_held
                .with_label_values(&[project, model, reason.as_str()])
                .set(i64::from(on));
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding");
        String::from_utf8(out).expect("utf-8")
    }

    /// Marks the process as going down.
    pub fn stopping(&self) {
        self.up.set(0);
    }
}

/// The HTTP status behind a provider error (`None`: no response).
pub fn http_status(e: &ProviderError) -> Option<u16> {
    match e {
        ProviderError::Blocked { .. } => Some(200),
        ProviderError::Transient { status, .. } => *status,
        ProviderError::QuotaExhausted { .. } => Some(429),
        ProviderError::Unauthenticated { .. } => Some(401),
        ProviderError::Credentials { .. } => None,
        ProviderError::Permanent { status, .. } => Some(*status).filter(|s| *s != 0),
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn get() -> &'static Metrics {
    &METRICS
}
