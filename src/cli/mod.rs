//! The command line: one file per subcommand; this file parses and dispatches.

pub mod emulator;
pub mod run;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::Settings;

/// imagegen: batch image jobs against Google's image models.
#[derive(Debug, Parser)]
#[command(name = "imagegen", version, about)]
pub struct Cli {
    /// Configuration file (layered over config/default.toml; also IMAGEGEN_CONFIG).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a job file in this process (no Redis), against the built-in emulator when no
    /// project is configured.
    Run(run::RunArgs),
    /// Run the local stand-in for Vertex AI and the Gemini Developer API.
    Emulator(emulator::EmulatorArgs),
}

/// Entry point used by `main.rs`.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(dispatch(cli));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    match cli.command {
        Command::Emulator(args) => {
            crate::telemetry::init("info");
            emulator::run(args).await
        }
        Command::Run(args) => {
            crate::telemetry::init("warn");
            let settings = Settings::load(cli.config.as_deref())?;
            run::run(args, settings).await
        }
    }
}
