//! `imagegen bench`: reproducible measurements of the queue and worker against the
//! configured Redis (`docs/benchmarks.md` records the figures and the commands).
//!
//! Every run uses its own key prefix and deletes its keys afterwards. Drains run the
//! real worker (apalis runtime, backend, settles, leases) in this process over a
//! synthetic provider, so the figure is the queue's and worker's, not a model's.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use futures::future::BoxFuture;

use crate::catalog::Backend;
use crate::config::Settings;
use crate::job::JobSpec;
use crate::providers::{ImageProvider, OutputImage, ProviderError, ProviderOutput, Target};
use crate::queue::{Jobs as _, NewBatch, NewJob, QueueOptions, Records as _, RedisQueue};
use crate::storage::OutputStore;
use crate::submit::CHUNK;
use crate::worker::{ProjectRuntime, RetryPolicy, WorkerOptions, run_worker, worker_identity};

/// Arguments of `imagegen bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: Bench,
}

#[derive(Debug, clap::Subcommand)]
enum Bench {
    /// Bulk enqueue rate (the `submit` path: atomic chunks, several in flight).
    Enqueue {
        /// Jobs to enqueue.
        #[arg(long, default_value_t = 200_000)]
        jobs: u64,
    },
    /// Redis memory per queued job, payload excluded.
    Memory {
        /// Jobs to enqueue.
        #[arg(long, default_value_t = 100_000)]
        jobs: u64,
    },
    /// Drain rate of one worker process: jobs that each take `--job-ms`.
    Drain {
        /// Jobs.
        #[arg(long, default_value_t = 100_000)]
        jobs: u64,
        /// Worker concurrency.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Time each job takes (0: no-op).
        #[arg(long, default_value_t = 0)]
        job_ms: u64,
    },
    /// Peak RSS of a worker with `--concurrency` jobs in flight, each returning
    /// `--images` freshly allocated images of `--image-mb` MB.
    Rss {
        /// Jobs.
        #[arg(long, default_value_t = 512)]
        jobs: u64,
        /// Worker concurrency (jobs in flight).
        #[arg(long, default_value_t = 256)]
        concurrency: usize,
        /// Images per job.
        #[arg(long, default_value_t = 4)]
        images: usize,
        /// Megabytes per image.
        #[arg(long, default_value_t = 2)]
        image_mb: usize,
        /// How long each provider call holds its images before returning (ms).
        #[arg(long, default_value_t = 200)]
        job_ms: u64,
    },
}

const SPEC: &str = r#"{"op":"generate","model":"gemini-3.1-flash-image","prompt":"a lighthouse at dusk, oil painting"}"#;

/// Runs a benchmark and prints one JSON line of results.
pub async fn run(args: BenchArgs, settings: Settings) -> anyhow::Result<ExitCode> {
    let prefix = format!("bench{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let options = QueueOptions::from_settings(&settings);
    let queue = Arc::new(RedisQueue::open(&settings.redis.url, &prefix, options).await?);
    let result = match args.what {
        Bench::Enqueue { jobs } => {
            let (_, secs) = enqueue(queue.as_ref(), jobs).await?;
            serde_json::json!({"bench": "enqueue", "jobs": jobs, "seconds": secs,
                "jobs_per_s": (jobs as f64 / secs).round()})
        }
        Bench::Memory { jobs } => {
            let before = used_memory(queue.as_ref()).await?;
            enqueue(queue.as_ref(), jobs).await?;
            let after = used_memory(queue.as_ref()).await?;
            let per_job = (after.saturating_sub(before)) as f64 / jobs as f64;
            serde_json::json!({"bench": "memory", "jobs": jobs, "bytes_per_job_total": per_job.round(),
                "payload_bytes": SPEC.len(), "bytes_per_job_excluding_payload": (per_job - SPEC.len() as f64).round()})
        }
        Bench::Drain {
            jobs,
            concurrency,
            job_ms,
        } => {
            let provider = Synthetic {
                delay: Duration::from_millis(job_ms),
                images: 0,
                image_bytes: 0,
                target: target(),
            };
            let (secs, with_manifest) =
                drain(queue.clone(), jobs, concurrency, provider, "memory://").await?;
            let mut r = serde_json::json!({"bench": "drain", "jobs": jobs, "concurrency": concurrency,
                "job_ms": job_ms, "seconds": secs, "jobs_per_s": (jobs as f64 / secs).round(),
                "seconds_with_manifest": with_manifest});
            if job_ms > 0 {
                let ceiling = concurrency as f64 * 1000.0 / job_ms as f64;
                r["ceiling_jobs_per_s"] = ceiling.into();
                r["fraction_of_ceiling"] = ((jobs as f64 / secs) / ceiling).into();
            }
            r
        }
        Bench::Rss {
            jobs,
            concurrency,
            images,
            image_mb,
            job_ms,
        } => {
            let provider = Synthetic {
                delay: Duration::from_millis(job_ms),
                images,
                image_bytes: image_mb << 20,
                target: target(),
            };
            let dir = std::env::temp_dir().join(&prefix);
            let url = format!("file://{}", dir.display());
            let baseline = rss_kib("VmRSS");
            let (secs, _) = drain(queue.clone(), jobs, concurrency, provider, &url).await?;
            let peak = rss_kib("VmHWM");
            let _ = std::fs::remove_dir_all(&dir);
            let in_flight_bytes = (concurrency * images * (image_mb << 20)) as f64;
            serde_json::json!({"bench": "rss", "jobs": jobs, "concurrency": concurrency,
                "images_per_job": images, "image_mb": image_mb, "seconds": secs,
                "baseline_rss_mb": baseline / 1024, "peak_rss_mb": peak / 1024,
                "decoded_bytes_in_flight_mb": in_flight_bytes / 1048576.0,
                "peak_over_in_flight": (peak as f64 * 1024.0) / in_flight_bytes})
        }
    };
    cleanup(queue.as_ref()).await;
    println!("{result}");
    Ok(ExitCode::SUCCESS)
}

async fn enqueue(queue: &RedisQueue, jobs: u64) -> anyhow::Result<(String, f64)> {
    let batch = queue
        .create_batch(&NewBatch {
            project: "bench".into(),
            source: "bench".into(),
            ..NewBatch::default()
        })
        .await?;
    let started = Instant::now();
    let mut in_flight = futures::stream::FuturesUnordered::new();
    let mut seq = 0;
    use futures::StreamExt as _;
    while seq < jobs {
        let end = (seq + CHUNK as u64).min(jobs);
        let chunk = (seq..end)
            .map(|s| NewJob {
                seq: s,
                line: Some(s + 1),
                spec: SPEC.to_string(),
                lane: "gemini-3.1-flash-image".into(),
                op: "generate".into(),
                webhook: None,
                hash: None,
                interactive: false,
                deps: Vec::new(),
            })
            .collect();
        in_flight.push(queue.enqueue("bench", &batch.id, chunk));
        if in_flight.len() >= 4 {
            in_flight.next().await.transpose()?;
        }
        seq = end;
    }
    while let Some(r) = in_flight.next().await {
        r?;
    }
    drop(in_flight);
    queue.seal("bench", &batch.id, jobs).await?;
    Ok((batch.id.clone(), started.elapsed().as_secs_f64()))
}

/// Returns (seconds until the last job settled, seconds including the manifest).
async fn drain(
    queue: Arc<RedisQueue>,
    jobs: u64,
    concurrency: usize,
    provider: Synthetic,
    out: &str,
) -> anyhow::Result<(f64, f64)> {
    let (batch, _) = enqueue(queue.as_ref(), jobs).await?;
    let mut projects = HashMap::new();
    projects.insert(
        "bench".to_string(),
        ProjectRuntime {
            provider: Box::new(provider),
            store: OutputStore::from_url(out, Vec::new())?,
            limits: Default::default(),
            weight: 1,
            webhook: None,
            fingerprint: Default::default(),
        },
    );
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let tx = std::sync::Mutex::new(Some(tx));
    let options = WorkerOptions {
        name: worker_identity(),
        concurrency,
        job_timeout: Duration::from_secs(300),
        visibility: Duration::from_secs(30),
        retry: RetryPolicy::default(),
        shutdown_grace: Duration::from_secs(5),
        quota_reset_utc: crate::config::ResetTime { hour: 8, minute: 0 },
        webhooks: None,
    };
    let started = Instant::now();
    let started_ms = crate::queue::now_ms();
    run_worker(
        queue.clone(),
        projects,
        options,
        Some(Arc::new(move |_, _| {
            if let Some(tx) = tx.lock().ok().and_then(|mut t| t.take()) {
                let _ = tx.send(());
            }
        })),
        async move {
            let _ = rx.await;
        },
    )
    .await?;
    let with_manifest = started.elapsed().as_secs_f64();
    let record = queue
        .batch("bench", &batch)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the batch vanished"))?;
    anyhow::ensure!(
        record.done == jobs,
        "only {} of {jobs} jobs finished",
        record.done
    );
    // The drain ends when the last job is settled; writing the manifest comes after.
    let drained = record
        .completed_ms
        .unwrap_or(started_ms)
        .saturating_sub(started_ms) as f64
        / 1000.0;
    Ok((drained, with_manifest))
}

async fn used_memory(queue: &RedisQueue) -> anyhow::Result<u64> {
    let mut conn = queue.connection();
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut conn)
        .await?;
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no used_memory in INFO"))
}

async fn cleanup(queue: &RedisQueue) {
    let mut conn = queue.connection();
    let pattern = format!("{}*", queue.base("bench"));
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(&pattern)
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    for chunk in keys.chunks(1000) {
        let _: redis::RedisResult<()> =
            redis::cmd("UNLINK").arg(chunk).query_async(&mut conn).await;
    }
}

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(&format!("{field}:")))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn target() -> Target {
    Target {
        backend: Backend::GeminiApi,
        base_url: "synthetic://".into(),
        version: "v1beta".into(),
        project: None,
        location: "global".into(),
        express: false,
    }
}

/// A provider that waits `delay` and returns `images` freshly allocated images.
struct Synthetic {
    delay: Duration,
    images: usize,
    image_bytes: usize,
    target: Target,
}

impl ImageProvider for Synthetic {
    fn call<'a>(
        &'a self,
        _spec: &'a JobSpec,
    ) -> BoxFuture<'a, Result<ProviderOutput, ProviderError>> {
        async move {
            // Allocate like a decoded response would, then hold it for the call's time.
            let images = (0..self.images)
                .map(|i| OutputImage {
                    bytes: bytes::Bytes::from(vec![(i as u8).wrapping_add(1); self.image_bytes]),
                    gcs_uri: None,
                    mime_type: "image/png".into(),
                    enhanced_prompt: None,
                    safety_attributes: None,
                    labels: None,
                })
                .collect();
            if !self.delay.is_zero() {
                tokio::time::sleep(self.delay).await;
            }
            Ok(ProviderOutput {
                images,
                ..ProviderOutput::default()
            })
        }
        .boxed()
    }

    fn target(&self) -> &Target {
        &self.target
    }
}
