//! `imagegen emulator`: serve the Vertex AI / Gemini Developer API stand-in.
//!
//! Prints exactly one first stdout line, `imagegen emulator listening on http://ADDR`,
//! with the real bound address (so `--listen 127.0.0.1:0` works for tests), then serves
//! until Ctrl-C or SIGTERM.

use std::io::Write as _;

use anyhow::Context as _;

use crate::emulator::{self, Scenario};

/// Arguments of `imagegen emulator`.
#[derive(Debug, clap::Args)]
pub struct EmulatorArgs {
    /// Address to listen on; port 0 picks a free port (printed on the first stdout line).
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub listen: String,
    /// Scenario file (TOML): latency, faults, quotas, markers.
    #[arg(long)]
    pub scenario: Option<std::path::PathBuf>,
}

/// Runs the emulator until interrupted.
pub async fn run(args: EmulatorArgs) -> anyhow::Result<std::process::ExitCode> {
    let scenario = match &args.scenario {
        Some(path) => Scenario::from_file(path)?,
        None => Scenario::default(),
    };
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let handle = emulator::spawn(listener, scenario).await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "imagegen emulator listening on {}", handle.base_url())?;
        out.flush()?;
    }
    shutdown_signal().await;
    handle.shutdown().await;
    Ok(std::process::ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
