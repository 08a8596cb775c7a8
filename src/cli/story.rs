//! `imagegen story "DESCRIPTION" --frames N`: the one-line form of a story line
//! (`docs/job-spec.md`, "Stories"), run in this process as `imagegen run` runs a file —
//! against the built-in emulator unless `--project` names a configured project — or,
//! with `--submit`, enqueued on the fleet as `imagegen submit` enqueues a file.

use std::process::ExitCode;

use crate::config::Settings;
use crate::job::JobSpec;
use crate::job::story::Chain;

use super::{common, run, submit};

/// Arguments of `imagegen story`.
#[derive(Debug, clap::Args)]
pub struct StoryArgs {
    /// What the sequence shows ("a step-by-step visual guide to making pizza").
    pub description: String,
    /// Frames (1 to 24).
    #[arg(long, default_value_t = 4)]
    pub frames: u32,
    /// The look every frame shares.
    #[arg(long)]
    pub style: Option<String>,
    /// What kind of sequence: recipe, tutorial, story, …
    #[arg(long)]
    pub content_type: Option<String>,
    /// How frames stay consistent: previous (each made from the one before), anchor
    /// (each made from the first), none.
    #[arg(long, value_enum, default_value = "previous")]
    pub chain: ChainArg,
    /// Model of the frames (default: the project's, else gemini-3.1-flash-image).
    #[arg(long)]
    pub model: Option<String>,
    /// The Gemini text model that plans the frames (default gemini-3.5-flash).
    #[arg(long)]
    pub planner_model: Option<String>,
    /// Configured project to run against (default: the only one, or the built-in
    /// emulator when none is configured). This runs in this process, like `run`,
    /// unless `--submit` is given.
    #[arg(long)]
    pub project: Option<String>,
    /// Enqueue the story on the fleet (Redis; its workers run it) instead of running
    /// it here, like `submit`: prints the batch id and the story id for `status`.
    #[arg(long)]
    pub submit: bool,
    /// With `--submit`: follow the story's batch until it completes.
    #[arg(long, requires = "submit")]
    pub wait: bool,
    /// Output location (any object_store URL; default `[output].url`).
    #[arg(long)]
    pub out: Option<String>,
}

/// `--chain`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ChainArg {
    /// Frame k gets frame k-1's image.
    Previous,
    /// Every frame gets the first frame's image.
    Anchor,
    /// Independent frames.
    None,
}

/// Runs the story as a one-line job file.
pub async fn story(args: StoryArgs, settings: Settings) -> anyhow::Result<ExitCode> {
    let line = JobSpec {
        op: crate::job::Operation::Story,
        model: args.model.clone().unwrap_or_default(),
        description: Some(args.description.clone()),
        frames: Some(args.frames),
        style: args.style.clone(),
        content_type: args.content_type.clone(),
        chain: Some(match args.chain {
            ChainArg::Previous => Chain::Previous,
            ChainArg::Anchor => Chain::Anchor,
            ChainArg::None => Chain::None,
        }),
        planner_model: args.planner_model.clone(),
        ..JobSpec::default()
    };
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("story.jsonl");
    std::fs::write(&file, format!("{}\n", serde_json::to_string(&line)?))?;
    let job = common::JobFileArgs {
        file,
        model: args.model,
        op: None,
        skip_invalid: false,
        tier: None,
    };
    if args.submit {
        let submit_args = submit::SubmitArgs {
            job,
            project: args.project,
            webhook: None,
            idempotency_key: None,
            wait: args.wait,
            json: false,
            estimate: false,
        };
        return submit::run(submit_args, settings, None).await;
    }
    let run_args = run::RunArgs {
        job,
        project: args.project,
        concurrency: None,
        out: args.out,
    };
    run::run(run_args, settings).await
}
