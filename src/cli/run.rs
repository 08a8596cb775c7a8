//! `imagegen run FILE`: the embedded mode. No Redis: jobs from the file run in this
//! process against the configured project — or, when none is configured, against the
//! emulator started in-process — and outputs go to `[output].url` (default
//! `./imagegen-out`). Prints a progress bar, a summary and where the images are; exits
//! non-zero when any job did not succeed.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use super::common;
use crate::catalog::Backend;
use crate::config::{ProjectConfig, Settings};
use crate::emulator::{self, EmulatorHandle, Scenario};
use crate::job::JobStatus;
use crate::providers::auth::{CredentialSource, Credentials};
use crate::providers::{self, ImageProvider, Target, VertexProvider};
use crate::queue::{
    BatchRecord, JobRecord, Lanes as _, MemoryQueue, NewBatch, QueueOptions, Records as _,
};
use crate::submit;
use crate::worker::backend::OnBatchComplete;
use crate::worker::{ProjectRuntime, WorkerOptions, run_worker};

/// Arguments of `imagegen run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The job file.
    #[command(flatten)]
    pub job: common::JobFileArgs,
    /// Configured project to run against (default: the only one, or the built-in
    /// emulator when none is configured).
    #[arg(long)]
    pub project: Option<String>,
    /// Jobs in flight at once (default: `[worker].concurrency`).
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Output location (any object_store URL; default `[output].url`).
    #[arg(long)]
    pub out: Option<String>,
}

pub(super) struct Runtime {
    pub(super) provider: Box<dyn ImageProvider>,
    pub(super) store: crate::storage::OutputStore,
    pub(super) project: String,
    pub(super) backend: Backend,
    pub(super) default_model: Option<String>,
    pub(super) tier: Option<crate::job::spec::Tier>,
    pub(super) _emulator: Option<EmulatorHandle>,
}

/// Runs the file.
pub async fn run(args: RunArgs, settings: Settings) -> anyhow::Result<ExitCode> {
    let runtime = runtime(&args, &settings).await?;
    let file = args.job.job_file(
        &settings,
        runtime.backend,
        runtime.default_model.as_deref(),
        runtime.tier,
    )?;
    if let Err(code) = args.job.check(&file, "run", "run").await? {
        return Ok(code);
    }
    let store = runtime.store.clone();
    let queue = Arc::new(MemoryQueue::new(QueueOptions::from_settings(&settings)));
    let started = Instant::now();
    let batch = NewBatch {
        project: runtime.project.clone(),
        source: args.job.file.display().to_string(),
        ..NewBatch::default()
    };
    // One machine: local paths stay paths, read by the worker in this process.
    let submitted = submit::enqueue_file(queue.as_ref(), &file, &batch, None, |_| {}).await?;
    let batch_id = submitted.batch.id.clone();

    // The worker runs until the batch is complete and its manifest written.
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let done_tx = std::sync::Mutex::new(Some(done_tx));
    let on_complete: OnBatchComplete = Arc::new(move |_, _| {
        if let Some(tx) = done_tx.lock().ok().and_then(|mut t| t.take()) {
            let _ = tx.send(());
        }
    });
    let projects = HashMap::from([(
        runtime.project.clone(),
        embedded_project(&settings, &runtime.project, runtime.provider, store.clone()),
    )]);
    let options = WorkerOptions {
        webhooks: None,
        ..common::worker_options(&settings, args.concurrency)
    };
    let interrupted = Arc::new(AtomicBool::new(false));
    let shutdown = {
        let interrupted = interrupted.clone();
        async move {
            tokio::select! {
                _ = done_rx => {}
                () = common::shutdown_signal() => interrupted.store(true, Ordering::SeqCst),
            }
        }
    };
    let worker = tokio::spawn(run_worker(
        queue.clone(),
        projects,
        options,
        Some(on_complete),
        shutdown,
    ));
    follow(
        queue.as_ref(),
        &runtime.project,
        &batch_id,
        submitted.total,
        &worker,
    )
    .await?;
    worker.await??;
    let record = queue
        .batch(&runtime.project, &batch_id)
        .await?
        .context("the batch record vanished")?;
    let jobs = queue
        .batch_jobs(&runtime.project, &batch_id, 0, submitted.total)
        .await?;
    print_summary(&record, &jobs, started.elapsed());
    if interrupted.load(Ordering::SeqCst) {
        eprintln!(
            "interrupted: {} of {} job(s) finished",
            record.done, submitted.total
        );
        return Ok(ExitCode::from(130));
    }
    let all_ok = jobs
        .iter()
        .all(|j| j.as_ref().is_some_and(|j| j.status == JobStatus::Succeeded));
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The one project of an embedded run.
pub(super) fn embedded_project(
    settings: &Settings,
    name: &str,
    provider: Box<dyn ImageProvider>,
    store: crate::storage::OutputStore,
) -> ProjectRuntime {
    ProjectRuntime {
        provider,
        store,
        limits: settings
            .projects
            .get(name)
            .map(crate::limits::ProjectLimits::from_config)
            .unwrap_or_default(),
        weight: 1,
        // Embedded runs keep nothing after they exit: webhooks need the fleet's
        // durable delivery queue (`submit` + `worker`).
        webhook: None,
        fingerprint: Default::default(),
    }
}

/// Shows the batch's progress until the worker stops.
async fn follow<T>(
    queue: &MemoryQueue,
    project: &str,
    batch_id: &str,
    total: u64,
    worker: &tokio::task::JoinHandle<T>,
) -> anyhow::Result<()> {
    let bar = progress_bar(total);
    let mut said = None;
    while !worker.is_finished() {
        if let Some(b) = queue.batch(project, batch_id).await? {
            bar.set_position(b.done);
            let failed = b.done - b.counts.get(&JobStatus::Succeeded).copied().unwrap_or(0);
            if failed > 0 {
                bar.set_message(format!("{failed} not succeeded"));
            }
        }
        // An outage holds the work: say what and why (once per hold), not a silent bar.
        let held = held_text(queue, project).await?;
        if held != said {
            if let Some(text) = &held {
                bar.suspend(|| eprintln!("{text}"));
            }
            said = held;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bar.finish_and_clear();
    Ok(())
}

/// What an outage holds in `project`, in words (`None`: nothing is held).
async fn held_text(queue: &MemoryQueue, project: &str) -> anyhow::Result<Option<String>> {
    if let Some(h) = queue.project_hold(project).await? {
        return Ok(Some(format!(
            "held: the project's credentials fail ({}); jobs wait and are retried by a probe",
            h.message
        )));
    }
    let lanes = queue.lanes(project).await?;
    Ok(lanes.iter().find_map(|l| {
        l.hold.as_ref().map(|h| {
            format!(
                "held: model {} is {} ({}); its jobs wait and are retried by a probe",
                l.model, h.reason, h.message
            )
        })
    }))
}

/// A progress bar for `total` jobs.
pub fn progress_bar(total: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} jobs ({per_sec}, eta {eta}) {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

async fn runtime(args: &RunArgs, settings: &Settings) -> anyhow::Result<Runtime> {
    let timeout = settings.worker.request_timeout;
    if settings.projects.is_empty() && args.project.as_deref().is_none_or(|p| p == "local") {
        let store = common::output_store(settings, "local", args.out.as_deref())?;
        return local_runtime(settings, timeout, store).await;
    }
    let configured = settings
        .projects
        .keys()
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    let (name, project): (&String, &ProjectConfig) = match &args.project {
        Some(p) => settings.projects.get_key_value(p).with_context(|| {
            format!("no project `{p}` in the configuration (configured: {configured})")
        })?,
        None if settings.projects.len() == 1 => {
            settings.projects.iter().next().context("no project")?
        }
        None => bail!("several projects are configured ({configured}): choose one with --project"),
    };
    let store = common::output_store(settings, name, args.out.as_deref())?;
    // One machine: local paths in the job file are read here, directly.
    let inputs = common::input_resolver(settings, &store, true)?;
    Ok(Runtime {
        provider: providers::from_config(project, timeout, inputs)?,
        store,
        project: name.clone(),
        backend: project.backend,
        default_model: project.default_model.clone(),
        tier: project.tier,
        _emulator: None,
    })
}

/// No project configured: start the emulator in-process and talk to it as the Gemini
/// Developer API with a local key.
pub(super) async fn local_runtime(
    settings: &Settings,
    timeout: Duration,
    store: crate::storage::OutputStore,
) -> anyhow::Result<Runtime> {
    let scenario = if settings.emulator.scenario.is_empty() {
        Scenario::default()
    } else {
        Scenario::from_file(std::path::Path::new(&settings.emulator.scenario))?
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot bind the in-process emulator")?;
    let handle = emulator::spawn(listener, scenario).await?;
    // Vertex in express mode (an API key, no project in the path): the one surface
    // that serves every model family, so `local` runs every operation the catalog has.
    let target = Target {
        backend: Backend::Vertex,
        base_url: handle.base_url(),
        version: "v1".into(),
        project: None,
        location: "global".into(),
        express: true,
    };
    let key = CredentialSource::ApiKey(secrecy::SecretString::from(
        "local-emulator-key".to_string(),
    ));
    let credentials = Credentials::new(key, providers::client::http_client(timeout)?)?;
    eprintln!(
        "no project configured: using the built-in emulator at {} (model {})",
        handle.base_url(),
        common::DEFAULT_MODEL
    );
    let inputs = common::input_resolver(settings, &store, true)?;
    Ok(Runtime {
        provider: Box::new(VertexProvider::new(target, credentials, timeout, inputs)?),
        store,
        project: "local".into(),
        backend: Backend::Vertex,
        default_model: Some(common::DEFAULT_MODEL.into()),
        tier: None,
        _emulator: Some(handle),
    })
}

fn print_summary(batch: &BatchRecord, jobs: &[Option<JobRecord>], elapsed: Duration) {
    let images: usize = jobs.iter().flatten().map(|j| image_list(j).len()).sum();
    let retries: usize = jobs.iter().flatten().map(|j| j.attempts_log.len()).sum();
    let retried = if retries > 0 {
        format!(", {retries} retry(ies) or deferral(s) on the way (see result.json)")
    } else {
        String::new()
    };
    println!(
        "batch {}: {} job(s) in {:.1}s, {images} image(s), ${:.4} at list prices{retried}",
        batch.id,
        jobs.len(),
        elapsed.as_secs_f64(),
        batch.cost_usd
    );
    println!("  {:<10} {:>8}", "status", "jobs");
    for (status, n) in batch.counts.iter().filter(|(_, n)| **n > 0) {
        println!("  {:<10} {n:>8}", status.as_str());
    }
    println!("  {:<6} {:<10} file", "line", "status");
    let mut shown = 0;
    for job in jobs.iter().flatten() {
        if shown == 20 {
            break;
        }
        let line = job.line.map_or_else(|| "-".to_string(), |l| l.to_string());
        let files: Vec<String> = job
            .result
            .iter()
            .flat_map(|r| &r.images)
            .map(|i| i.path.clone().unwrap_or_else(|| i.url.clone()))
            .collect();
        let what = if files.is_empty() {
            job.error.clone().unwrap_or_default()
        } else {
            files.join(" ")
        };
        println!("  {line:<6} {:<10} {what}", job.status.as_str());
        shown += 1;
    }
    if jobs.len() > shown {
        println!(
            "  … and {} more job(s): see the manifest",
            jobs.len() - shown
        );
    }
    match &batch.manifest {
        Some(m) => println!("manifest: {m}"),
        None => println!("manifest: not written"),
    }
}

/// (width, height, url) of a finished job's images, from its compact result.
pub fn image_list(job: &JobRecord) -> Vec<(u32, u32, String)> {
    job.result
        .iter()
        .flat_map(|r| &r.images)
        .map(|i| (i.width, i.height, i.url.clone()))
        .collect()
}
