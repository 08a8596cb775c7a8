//! `imagegen run FILE`: the embedded mode. No Redis: jobs from the file run in this
//! process against the configured project — or, when none is configured, against the
//! emulator started in-process — and outputs go to `[output].url` (default
//! `./imagegen-out`). Prints a progress bar, a summary and where the images are; exits
//! non-zero when any job did not succeed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::StreamExt as _;

use crate::catalog::Backend;
use crate::config::{ProjectConfig, Settings};
use crate::emulator::{self, EmulatorHandle, Scenario};
use crate::job::batch_file::{self, LineDefaults, LineError};
use crate::job::result::JobResult;
use crate::job::{JobId, JobSpec, JobStatus, Operation, ValidationContext, validate};
use crate::providers::auth::{CredentialSource, Credentials};
use crate::providers::{self, GeminiApiProvider, ImageProvider, Target};
use crate::storage::OutputStore;
use crate::worker::{JobContext, RetryPolicy, process_job};

/// Arguments of `imagegen run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Job file: JSONL job specs, CSV with a `prompt` column, or one prompt per line.
    pub file: PathBuf,
    /// Configured project to run against (default: the only one, or the built-in
    /// emulator when none is configured).
    #[arg(long)]
    pub project: Option<String>,
    /// Model for lines that name none.
    #[arg(long)]
    pub model: Option<String>,
    /// Operation for text/CSV lines.
    #[arg(long)]
    pub op: Option<Operation>,
    /// Jobs in flight at once (default: `[worker].concurrency`).
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Output location (any object_store URL; default `[output].url`).
    #[arg(long)]
    pub out: Option<String>,
    /// Run the valid lines even if some are invalid.
    #[arg(long)]
    pub skip_invalid: bool,
}

/// The model used when neither the line, `--model` nor the project names one.
pub const DEFAULT_MODEL: &str = "gemini-2.5-flash-image";

struct Runtime {
    provider: Box<dyn ImageProvider>,
    project: String,
    backend: Backend,
    default_model: Option<String>,
    _emulator: Option<EmulatorHandle>,
}

/// Runs the file.
pub async fn run(args: RunArgs, settings: Settings) -> anyhow::Result<ExitCode> {
    let runtime = runtime(&args, &settings).await?;
    let defaults = LineDefaults {
        model: args
            .model
            .clone()
            .or(runtime.default_model.clone())
            .or(Some(DEFAULT_MODEL.into())),
        op: args.op,
    };
    let format = batch_file::detect_format(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let ctx = ValidationContext {
        backend: runtime.backend,
        check_local_files: true,
    };
    let (valid, errors) = check_file(&args, format, &defaults, &ctx)?;
    if !errors.is_empty() {
        eprintln!(
            "{} invalid line(s) in {}:",
            errors.len(),
            args.file.display()
        );
        for e in errors.iter().take(50) {
            eprintln!("  {e}");
        }
        if errors.len() > 50 {
            eprintln!("  … and {} more", errors.len() - 50);
        }
        if !args.skip_invalid {
            eprintln!("nothing was run (use --skip-invalid to run the {valid} valid line(s))");
            return Ok(ExitCode::from(2));
        }
    }
    if valid == 0 {
        bail!("{} has no jobs", args.file.display());
    }
    let out_url = args
        .out
        .clone()
        .or_else(|| project_output(&settings, &runtime.project))
        .unwrap_or_else(|| settings.output.url.clone());
    let store = OutputStore::from_url(&out_url, Vec::new())?;
    let batch_id = JobId::new().0;
    let concurrency = args
        .concurrency
        .unwrap_or(settings.worker.concurrency as usize)
        .max(1);
    let started = Instant::now();
    let results = execute(
        &args,
        format,
        defaults,
        ctx,
        &runtime,
        &store,
        &batch_id,
        concurrency,
        valid,
    )
    .await?;
    let manifest = results
        .iter()
        .map(|r| serde_json::to_value(r).unwrap_or_default())
        .collect();
    let manifest_url = store
        .put_manifest(&runtime.project, &batch_id, manifest)
        .await?;
    print_summary(&results, &manifest_url, started.elapsed());
    let all_ok = results.iter().all(|r| r.status == JobStatus::Succeeded);
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn project_output(settings: &Settings, project: &str) -> Option<String> {
    settings
        .projects
        .get(project)
        .and_then(|p| p.output_url.clone())
}

/// First pass: parse and validate every line (streaming), count the valid ones.
fn check_file(
    args: &RunArgs,
    format: batch_file::FileFormat,
    defaults: &LineDefaults,
    ctx: &ValidationContext,
) -> anyhow::Result<(usize, Vec<LineError>)> {
    let mut valid = 0;
    let mut errors = Vec::new();
    for item in batch_file::read(&args.file, format, defaults.clone())? {
        match item.and_then(|(line, spec)| {
            validate(&spec, ctx).map_err(|e| LineError {
                line,
                message: e.to_string(),
            })
        }) {
            Ok(()) => valid += 1,
            Err(e) => errors.push(e),
        }
    }
    Ok((valid, errors))
}

#[allow(clippy::too_many_arguments)]
async fn execute(
    args: &RunArgs,
    format: batch_file::FileFormat,
    defaults: LineDefaults,
    ctx: ValidationContext,
    runtime: &Runtime,
    store: &OutputStore,
    batch_id: &str,
    concurrency: usize,
    total: usize,
) -> anyhow::Result<Vec<JobResult>> {
    let bar = indicatif::ProgressBar::new(total as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} jobs ({per_sec}, eta {eta}) {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let job_ctx = JobContext {
        provider: runtime.provider.as_ref(),
        store,
        project: &runtime.project,
        batch: Some(batch_id),
        retry: RetryPolicy::default(),
    };
    let specs = batch_file::read(&args.file, format, defaults)?
        .filter_map(Result::ok)
        .filter(|(_, spec)| validate(spec, &ctx).is_ok());
    let job_ctx = &job_ctx;
    let bar_ref = &bar;
    let mut results: Vec<JobResult> = futures::stream::iter(specs)
        .map(|(line, spec): (usize, JobSpec)| async move {
            let id = JobId::new();
            let r = process_job(job_ctx, &id.0, Some(line), &spec).await;
            bar_ref.inc(1);
            if r.status != JobStatus::Succeeded {
                bar_ref.set_message(format!(
                    "last problem: {}",
                    r.error.as_deref().unwrap_or("")
                ));
            }
            r
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    bar.finish_and_clear();
    // The manifest lists jobs in the order of the file, whatever order they finished in.
    results.sort_by_key(|r| r.line);
    Ok(results)
}

async fn runtime(args: &RunArgs, settings: &Settings) -> anyhow::Result<Runtime> {
    let timeout = Duration::from_secs(settings.worker.request_timeout_s);
    if settings.projects.is_empty() && args.project.as_deref().is_none_or(|p| p == "local") {
        return local_runtime(settings, timeout).await;
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
    Ok(Runtime {
        provider: providers::from_config(project, timeout)?,
        project: name.clone(),
        backend: project.backend,
        default_model: project.default_model.clone(),
        _emulator: None,
    })
}

/// No project configured: start the emulator in-process and talk to it as the Gemini
/// Developer API with a local key.
async fn local_runtime(settings: &Settings, timeout: Duration) -> anyhow::Result<Runtime> {
    let scenario = if settings.emulator.scenario.is_empty() {
        Scenario::default()
    } else {
        Scenario::from_file(std::path::Path::new(&settings.emulator.scenario))?
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot bind the in-process emulator")?;
    let handle = emulator::spawn(listener, scenario).await?;
    let target = Target {
        backend: Backend::GeminiApi,
        base_url: handle.base_url(),
        version: "v1beta".into(),
        project: None,
        location: "global".into(),
        express: false,
    };
    let key = CredentialSource::ApiKey(secrecy::SecretString::from(
        "local-emulator-key".to_string(),
    ));
    let credentials = Credentials::new(key, providers::client::http_client(timeout)?)?;
    eprintln!(
        "no project configured: using the built-in emulator at {} (model {DEFAULT_MODEL})",
        handle.base_url()
    );
    Ok(Runtime {
        provider: Box::new(GeminiApiProvider::new(target, credentials, timeout)?),
        project: "local".into(),
        backend: Backend::GeminiApi,
        default_model: Some(DEFAULT_MODEL.into()),
        _emulator: Some(handle),
    })
}

fn print_summary(results: &[JobResult], manifest_url: &str, elapsed: Duration) {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in results {
        *counts.entry(r.status.as_str()).or_default() += 1;
    }
    let images: usize = results.iter().map(|r| r.images.len()).sum();
    println!(
        "{} job(s) in {:.1}s, {images} image(s)",
        results.len(),
        elapsed.as_secs_f64()
    );
    println!("  {:<10} {:>8}", "status", "jobs");
    for (status, n) in &counts {
        println!("  {status:<10} {n:>8}");
    }
    let mut shown = 0;
    for r in results.iter().filter(|r| r.status == JobStatus::Succeeded) {
        for img in &r.images {
            if shown < 20 {
                println!("  {}x{}  {}", img.width, img.height, img.url);
            }
            shown += 1;
        }
    }
    if shown > 20 {
        println!("  … and {} more image(s)", shown - 20);
    }
    for r in results
        .iter()
        .filter(|r| r.status != JobStatus::Succeeded)
        .take(20)
    {
        println!(
            "  {} {}: {}",
            r.status,
            r.job_id,
            r.error.as_deref().unwrap_or("")
        );
    }
    println!("manifest: {manifest_url}");
}
