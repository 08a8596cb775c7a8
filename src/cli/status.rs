//! `imagegen status ID`: a job or a batch — counts by status, progress, ETA, failures
//! with their reasons.

use std::process::ExitCode;

use super::common;
use crate::config::Settings;
use crate::queue::{BatchRecord, JobQueue, JobRecord, now_ms};

/// Arguments of `imagegen status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// A batch id or a job id.
    pub id: String,
    /// The project (default: searched among the configured ones).
    #[arg(long)]
    pub project: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `status`.
pub async fn run(args: StatusArgs, settings: Settings) -> anyhow::Result<ExitCode> {
    let queue = common::redis_queue(&settings).await?;
    let project =
        common::project_of(queue.as_ref(), &settings, args.project.as_deref(), &args.id).await?;
    if let Some(batch) = queue.batch(&project, &args.id).await? {
        let failures = failure_records(queue.as_ref(), &project, &batch).await?;
        if args.json {
            let mut v = serde_json::to_value(&batch)?;
            if let Some(obj) = v.as_object_mut() {
                obj.insert("state".into(), batch.state().into());
                obj.insert("progress".into(), batch.progress().into());
                obj.insert("eta_ms".into(), batch.eta_ms(now_ms()).into());
                obj.insert("failures".into(), serde_json::to_value(&failures)?);
            }
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            print_batch(&batch, &failures);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let job = queue
        .job(&project, &args.id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no job or batch `{}` in project `{project}`", args.id))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&job)?);
    } else {
        print_job(&job);
    }
    Ok(ExitCode::SUCCESS)
}

async fn failure_records(
    queue: &dyn JobQueue,
    project: &str,
    batch: &BatchRecord,
) -> anyhow::Result<Vec<JobRecord>> {
    let mut out = Vec::new();
    for id in batch.failures.iter().take(20) {
        if let Some(j) = queue.job(project, id).await? {
            out.push(j);
        }
    }
    Ok(out)
}

fn print_batch(b: &BatchRecord, failures: &[JobRecord]) {
    let total = b.total.unwrap_or(b.enqueued);
    println!("batch     {}", b.id);
    println!("project   {}", b.project);
    println!("source    {}", b.source);
    println!("state     {}", b.state());
    println!(
        "progress  {}/{} ({:.1}%)",
        b.done,
        total,
        b.progress() * 100.0
    );
    match b.eta_ms(now_ms()) {
        Some(0) => {}
        Some(ms) => println!("eta       {}", common::human_ms(ms)),
        None => println!("eta       unknown (no job has finished yet)"),
    }
    if let (Some(done), true) = (b.completed_ms, b.created_ms > 0) {
        println!(
            "took      {}",
            common::human_ms(done.saturating_sub(b.created_ms))
        );
    }
    println!("  {:<10} {:>8}", "status", "jobs");
    for (status, n) in &b.counts {
        println!("  {:<10} {n:>8}", status.as_str());
    }
    if let Some(m) = &b.manifest {
        println!("manifest  {m}");
    }
    if !failures.is_empty() {
        println!("newest problems:");
        for j in failures {
            let line = j.line.map(|l| format!(" line {l}")).unwrap_or_default();
            println!(
                "  {} {}{line} ({} attempt(s)): {}",
                j.status,
                j.id,
                j.attempts,
                j.error.as_deref().unwrap_or("")
            );
        }
    }
}

fn print_job(j: &JobRecord) {
    println!("job       {}", j.id);
    println!("project   {}", j.project);
    if let Some(b) = &j.batch {
        println!("batch     {b}");
    }
    if let Some(l) = j.line {
        println!("line      {l}");
    }
    println!("status    {}", j.status);
    println!("attempts  {}", j.attempts);
    if let Some(w) = &j.worker {
        println!("worker    {w}");
    }
    if let (Some(s), Some(f)) = (j.started_ms, j.finished_ms) {
        println!("took      {} ms (last delivery)", f.saturating_sub(s));
    }
    if let Some(e) = &j.error {
        println!("error     {e}");
    }
    for (w, h, url) in super::run::image_list(j) {
        println!("image     {w}x{h}  {url}");
    }
}
