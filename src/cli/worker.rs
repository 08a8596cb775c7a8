//! `imagegen worker`: serve the configured projects' queues until SIGTERM/SIGINT.

use std::process::ExitCode;

use super::common;
use crate::config::Settings;
use crate::queue::JobQueue;
use crate::worker::run_worker;

/// Arguments of `imagegen worker`.
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// Jobs in flight at once (default: `[worker].concurrency`).
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Serve only these projects (comma-separated; default: every configured one).
    #[arg(long, value_delimiter = ',')]
    pub projects: Vec<String>,
}

/// Runs the worker.
pub async fn run(args: WorkerArgs, settings: Settings) -> anyhow::Result<ExitCode> {
    let projects = common::project_runtimes(&settings, &args.projects)?;
    anyhow::ensure!(
        !projects.is_empty(),
        "no projects configured: add a [projects.<name>] table (see config/default.toml)"
    );
    let queue: std::sync::Arc<dyn JobQueue> = common::redis_queue(&settings).await?;
    let options = common::worker_options(&settings, args.concurrency);
    let mut names: Vec<&String> = projects.keys().collect();
    names.sort();
    tracing::info!(worker = %options.name, concurrency = options.concurrency, projects = ?names, "worker started");
    eprintln!(
        "imagegen worker {} serving {} with concurrency {}",
        options.name,
        names
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        options.concurrency
    );
    run_worker(queue, projects, options, None, common::shutdown_signal()).await?;
    tracing::info!("worker stopped");
    Ok(ExitCode::SUCCESS)
}
