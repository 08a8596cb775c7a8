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
    let shutdown = futures::FutureExt::shared(Box::pin(common::shutdown_signal()));
    let metrics = match args.metrics_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("--metrics-listen {addr}"))?;
            let bound = listener.local_addr()?;
            eprintln!("metrics on http://{bound}/metrics");
            tracing::info!(%bound, "serving /metrics, /healthz, /readyz");
            let ready = crate::metrics::Readiness {
                queue: queue.clone(),
                projects: names.iter().map(|s| s.to_string()).collect(),
            };
            Some(tokio::spawn(crate::metrics::serve(
                listener,
                ready,
                shutdown.clone(),
            )))
        }
        None => None,
    };
    run_worker(queue, projects, options, None, shutdown).await?;
    crate::metrics::get().stopping();
    if let Some(m) = metrics {
        let _ = m.await;
    }
    tracing::info!("worker stopped");
    Ok(ExitCode::SUCCESS)
}
