//! `imagegen cancel ID`: cancel a job or a whole batch, from any machine.

use std::process::ExitCode;

use super::common;
use crate::config::Settings;
use crate::queue::{Jobs as _, Lanes as _};

/// Arguments of `imagegen cancel`.
#[derive(Debug, clap::Args)]
pub struct CancelArgs {
    /// A batch id or a job id.
    pub id: String,
    /// The project (default: searched among the configured ones).
    #[arg(long)]
    pub project: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `cancel`.
pub async fn run(args: CancelArgs, settings: Settings) -> anyhow::Result<ExitCode> {
    let queue = common::redis_queue(&settings).await?;
    let project =
        common::project_of(queue.as_ref(), &settings, args.project.as_deref(), &args.id).await?;
    let report = queue.cancel(&project, &args.id).await?;
    anyhow::ensure!(
        !report.kind.is_empty(),
        "no job or batch `{}` in project `{project}`",
        args.id
    );
    if report.batch_completed
        && let Some(batch) = crate::job::split_job_id(&args.id)
            .map(|(b, _)| b.to_string())
            .or((report.kind == "batch").then(|| args.id.clone()))
    {
        let store = common::output_store(&settings, &project, None)?;
        crate::manifest::write(queue.as_ref(), &store, &project, &batch).await?;
    }
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "{} {}: {} queued job(s) cancelled, {} running job(s) will stop at their next safe point, {} already finished",
            report.kind, args.id, report.cancelled, report.flagged, report.already_finished
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `imagegen unpark`.
#[derive(Debug, clap::Args)]
pub struct UnparkArgs {
    /// The project.
    pub project: String,
    /// The model (see `imagegen status --project P`).
    pub model: String,
}

/// Runs `unpark`: the operator says the daily quota is back (raised, or reset early).
pub async fn unpark(args: UnparkArgs, settings: Settings) -> anyhow::Result<ExitCode> {
    let queue = common::redis_queue(&settings).await?;
    let lanes = queue.lanes(&args.project).await?;
    anyhow::ensure!(
        lanes.iter().any(|l| l.model == args.model),
        "project `{}` has no jobs for model `{}` (models: {})",
        args.project,
        args.model,
        lanes
            .iter()
            .map(|l| l.model.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let was = queue.unpark(&args.project, &args.model).await?;
    println!(
        "{}/{}: {}",
        args.project,
        args.model,
        if was {
            "unparked; admission resumes now"
        } else {
            "was not parked"
        }
    );
    Ok(ExitCode::SUCCESS)
}
