//! The command line: one file per subcommand; this file parses and dispatches.

pub mod emulator;

use clap::{Parser, Subcommand};

/// imagegen: batch image jobs against Google's image models.
#[derive(Debug, Parser)]
#[command(name = "imagegen", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
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
    let result = rt.block_on(async move {
        match cli.command {
            Command::Emulator(args) => emulator::run(args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
