//! `imagegen worker`: serve the configured projects' queues until SIGTERM/SIGINT.

use std::process::ExitCode;

use anyhow::Context as _;

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
    /// Serve Prometheus `/metrics`, `/healthz` and `/readyz` on this address
    /// (`127.0.0.1:9464`; port 0 picks a free one and prints it).
    #[arg(long)]
    pub metrics_listen: Option<std::net::SocketAddr>,
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
    let names: Vec<String> = names.into_iter().cloned().collect();
    let shutdown = futures::FutureExt::shared(Box::pin(common::shutdown_signal()));
    let (metrics, url) = match args.metrics_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("--metrics-listen {addr}"))?;
            let bound = listener.local_addr()?;
            let ready = crate::health::Readiness {
                queue: queue.clone(),
                projects: names.clone(),
            };
            let server = tokio::spawn(crate::health::serve(listener, ready, shutdown.clone()));
            (Some(server), format!("http://{bound}/metrics"))
        }
        None => (None, "off".to_string()),
    };
    // One line, key=value, whatever RUST_LOG says: what a person and a log scraper
    // look for first.
    eprintln!(
        "imagegen worker started worker={} projects={} concurrency={} metrics={url}",
        options.name,
        names.join(","),
        options.concurrency
    );
    let report = run_worker(queue, projects, options, None, shutdown).await?;
    crate::metrics::get().stopping();
    if let Some(m) = metrics {
        let _ = m.await;
    }
    if report.not_handed_back > 0 {
        eprintln!(
            "imagegen worker stopped: {} job(s) released, {} could not be handed back (their leases expire and other workers run them)",
            report.released, report.not_handed_back
        );
        return Ok(ExitCode::FAILURE);
    }
    tracing::info!(released = report.released, "worker stopped");
    Ok(ExitCode::SUCCESS)
}
