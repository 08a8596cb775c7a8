//! The command line: one file per subcommand; this file parses and dispatches.

pub mod bench;
pub mod cancel;
pub mod chat;
pub mod common;
pub mod emulator;
pub mod results;
pub mod run;
pub mod serve;
pub mod status;
pub mod story;
pub mod submit;
pub mod webhooks;
pub mod worker;

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
    /// Run a story in this process, like `run` (or `--submit` it to the fleet): a plan,
    /// frames made from each other and a contact sheet (`imagegen story "…" --frames 6`).
    Story(story::StoryArgs),
    /// Chat with an image model in the terminal: a session whose turns see each other
    /// (`/image PATH` attaches an image). In this process like `run`, or `--fleet`.
    Chat(chat::ChatArgs),
    /// Validate a job file and enqueue it as a batch in Redis; prints the batch id.
    Submit(submit::SubmitArgs),
    /// Run jobs from Redis for the configured projects until SIGTERM/SIGINT.
    Worker(worker::WorkerArgs),
    /// Show a job or a batch: counts, progress, ETA, failures.
    Status(status::StatusArgs),
    /// List a batch's outputs; --download copies them locally.
    Results(results::ResultsArgs),
    /// Cancel a job or a whole batch.
    Cancel(cancel::CancelArgs),
    /// Resume a project+model parked by a spent daily quota (status quota_exhausted).
    Unpark(cancel::UnparkArgs),
    /// Webhook secrets and endpoints: `secret`, `disabled PROJECT`, `enable PROJECT URL`.
    Webhooks(webhooks::WebhooksArgs),
    /// Run the local stand-in for Vertex AI and the Gemini Developer API.
    Emulator(emulator::EmulatorArgs),
    /// Serve the HTTP API over Redis for the configured projects (workers run apart).
    Api(serve::ApiArgs),
    /// Everything in one process, no Redis: the HTTP API, a worker, and the built-in
    /// emulator when no project is configured (prints the URL and the token).
    Serve(serve::ServeArgs),
    /// Measure the queue and worker against the configured Redis (see docs/benchmarks.md).
    Bench(bench::BenchArgs),
}

/// Entry point used by `main.rs`.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if !cli.command.serves() {
        // `imagegen status … | head` closes our stdout early: end quietly, as `ls` or
        // `cat` do, instead of panicking in println!. (Servers keep Rust's default,
        // SIGPIPE ignored: a closed socket is an error to handle, not a reason to die.)
        // SAFETY: called before any thread is started; SIG_DFL is always valid.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
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
            eprintln!("error: {}", error_chain(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

impl Command {
    /// True for the long-running commands (they serve; the others print and exit).
    fn serves(&self) -> bool {
        matches!(
            self,
            Command::Worker(_)
                | Command::Emulator(_)
                | Command::Bench(_)
                | Command::Api(_)
                | Command::Serve(_)
        )
    }
}

/// An error and its causes, each said once: a cause whose text its parent already
/// includes (`configuration: X` caused by `X`) is not repeated.
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// Settings for the short-lived commands, which only log warnings.
fn quiet_settings(config: &Option<PathBuf>) -> anyhow::Result<Settings> {
    crate::telemetry::init("warn");
    load(config)
}

/// The settings, with the checks of the modules that own their values (webhook URLs
/// against the `[webhooks]` policy).
fn load(config: &Option<PathBuf>) -> anyhow::Result<Settings> {
    let settings = Settings::load(config.as_deref())?;
    crate::webhooks::check_settings(&settings)?;
    crate::pricing::install(&settings.prices);
    for notice in &settings.notices {
        eprintln!("warning: {notice}");
    }
    Ok(settings)
}

async fn dispatch(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    match cli.command {
        Command::Emulator(args) => {
            crate::telemetry::init("info");
            emulator::run(args).await
        }
        Command::Run(args) => {
            crate::telemetry::init("warn");
            run::run(args, load(&cli.config)?).await
        }
        Command::Story(args) => {
            crate::telemetry::init("warn");
            story::story(args, load(&cli.config)?).await
        }
        Command::Chat(args) => {
            crate::telemetry::init("warn");
            chat::chat(args, load(&cli.config)?).await
        }
        Command::Api(args) => {
            crate::telemetry::init("info");
            serve::api(args, load(&cli.config)?).await
        }
        Command::Serve(args) => {
            crate::telemetry::init("warn");
            serve::serve(args, load(&cli.config)?).await
        }
        Command::Worker(args) => {
            crate::telemetry::init("info");
            worker::run(args, load(&cli.config)?).await
        }
        Command::Submit(args) => {
            submit::run(args, quiet_settings(&cli.config)?, cli.config.as_deref()).await
        }
        Command::Status(args) => status::run(args, quiet_settings(&cli.config)?).await,
        Command::Results(args) => results::run(args, quiet_settings(&cli.config)?).await,
        Command::Cancel(args) => cancel::run(args, quiet_settings(&cli.config)?).await,
        Command::Unpark(args) => cancel::unpark(args, quiet_settings(&cli.config)?).await,
        Command::Webhooks(args) => {
            let settings = quiet_settings(&cli.config);
            webhooks::run(args, settings.ok()).await
        }
        Command::Bench(args) => bench::run(args, quiet_settings(&cli.config)?).await,
    }
}
