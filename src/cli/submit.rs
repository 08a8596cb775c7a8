//! `imagegen submit FILE [--project P]`: validate every line, enqueue the file as a
//! batch in Redis (chunked, pipelined, constant memory), print the batch id; `--wait`
//! follows it to the end (riding through Redis restarts, as workers do).

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;

use super::common;
use super::run::progress_bar;
use crate::config::Settings;
use crate::job::JobStatus;
use crate::queue::NewBatch;
use crate::submit::{self, Checked, SubmitError, Submitted, Uploader};

/// Arguments of `imagegen submit`.
#[derive(Debug, clap::Args)]
pub struct SubmitArgs {
    /// The job file.
    #[command(flatten)]
    pub job: common::JobFileArgs,
    /// Configured project the jobs run in (default: the only one configured).
    #[arg(long)]
    pub project: Option<String>,
    /// Webhook URL for this batch's events.
    #[arg(long)]
    pub webhook: Option<String>,
    /// Submitting again with the same key within 24 h returns the same batch (and
    /// finishes enqueueing it if the first submit was interrupted); the same key with
    /// other jobs is refused.
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// Wait for the batch to complete, with a progress bar; exit non-zero if any job
    /// did not succeed.
    #[arg(long)]
    pub wait: bool,
    /// Print machine-readable JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Print what the batch is expected to cost (the price table applied to each job's
    /// prompt, inputs and outputs at its tier) and enqueue nothing.
    #[arg(long)]
    pub estimate: bool,
}

/// Runs `submit`; `config` is the `--config` file, named again in the hints printed.
pub async fn run(
    args: SubmitArgs,
    settings: Settings,
    config: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let name = common::project_arg(&settings, args.project.as_deref())?;
    let project = &settings.projects[&name];
    if let Some(url) = &args.webhook {
        check_webhook(&settings, &name, url).await?;
    }
    let file = args.job.job_file(
        &settings,
        project.backend,
        project.default_model.as_deref(),
        project.tier,
    )?;
    let checked = match args.job.check(&file, "enqueued", "enqueue").await? {
        Ok(checked) => checked,
        Err(code) => return Ok(code),
    };
    if args.estimate {
        print_estimate(&checked, args.json);
        return Ok(ExitCode::SUCCESS);
    }
    let queue = common::redis_queue(&settings).await?;
    let batch = NewBatch {
        project: name.clone(),
        source: args.job.file.display().to_string(),
        webhook: args.webhook.clone(),
        digest: args
            .idempotency_key
            .as_ref()
            .map(|_| checked.digest.clone()),
        idempotency_key: args.idempotency_key.clone(),
        estimate_usd: Some(checked.estimate_usd),
    };
    let uploader = Uploader::new(common::output_store(&settings, &name, None)?);
    let bar = (!args.json).then(|| progress_bar(checked.valid));
    let submitted = submit::enqueue_file(queue.as_ref(), &file, &batch, Some(&uploader), |n| {
        if let Some(b) = &bar {
            b.set_position(n);
        }
    })
    .await;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let submitted = match submitted {
        Err(e @ (SubmitError::Conflict { .. } | SubmitError::Input { .. })) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
        other => other?,
    };
    let id = &submitted.batch.id;
    print_submitted(&submitted, &name, &checked, args.json, config);
    if !args.wait {
        return Ok(ExitCode::SUCCESS);
    }
    wait_for(queue.as_ref(), &name, id, submitted.total, args.json).await
}

/// `submit --estimate`: the expected cost of the valid lines.
fn print_estimate(checked: &Checked, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::json!({
                "estimate_usd": checked.estimate_usd, "lines": checked.valid,
                "unpriced_lines": checked.unpriced, "invalid_lines": checked.invalid,
            })
        );
        return;
    }
    println!(
        "estimate  ${:.4} for {} line(s)",
        checked.estimate_usd, checked.valid
    );
    if checked.unpriced > 0 {
        println!(
            "          {} line(s) not counted: their model is not in the price table ([prices.models] in the config adds it)",
            checked.unpriced
        );
    }
    println!("nothing was enqueued");
}

/// Refuses a `--webhook` the worker could not deliver to, or could not sign for.
async fn check_webhook(settings: &Settings, name: &str, url: &str) -> anyhow::Result<()> {
    let project = &settings.projects[name];
    // The worker checks every address again when it connects; refusing here means
    // a bad URL never waits in the queue.
    crate::netguard::NetPolicy::for_webhooks(&settings.webhooks)?
        .check_resolved(url)
        .await
        .map_err(|e| anyhow::anyhow!("--webhook: {e}"))?;
    anyhow::ensure!(
        project.webhook_secret.is_some(),
        "--webhook: project `{name}` has no webhook_secret to sign deliveries with: set projects.{name}.webhook_secret (generate one with `imagegen webhooks secret`)",
    );
    Ok(())
}

/// Says what was enqueued: the batch id on stdout (or the JSON summary with `--json`).
fn print_submitted(
    submitted: &Submitted,
    name: &str,
    checked: &Checked,
    json: bool,
    config: Option<&Path>,
) {
    let id = &submitted.batch.id;
    let config_arg = config
        .map(|c| format!("--config {} ", c.display()))
        .unwrap_or_default();
    if json {
        println!(
            "{}",
            serde_json::json!({
                "batch_id": id, "project": name, "total": submitted.total,
                "enqueued": submitted.enqueued_now, "existing": submitted.batch.existing,
                "invalid_lines": checked.invalid, "warnings": checked.warnings,
                "stories": submitted.stories,
            })
        );
    } else if submitted.batch.existing {
        eprintln!(
            "idempotency key matched batch {id}: {} job(s) newly enqueued, {} in total",
            submitted.enqueued_now, submitted.total
        );
        println!("{id}");
    } else {
        eprintln!(
            "enqueued {} job(s) in project {name}; follow with `imagegen {config_arg}status {id}`",
            submitted.total
        );
        for story in &submitted.stories {
            eprintln!("story {story}: `imagegen {config_arg}status {story}`");
        }
        println!("{id}");
    }
}

/// Follows a batch until it completes; exit 0 only if every job succeeded. A queue
/// that stops answering (a Redis restart) is waited out, said once.
pub async fn wait_for(
    queue: &dyn crate::queue::JobQueue,
    project: &str,
    id: &str,
    total: u64,
    quiet: bool,
) -> anyhow::Result<ExitCode> {
    let bar = (!quiet).then(|| progress_bar(total));
    let mut down_since: Option<std::time::Instant> = None;
    loop {
        let b = match queue.batch(project, id).await {
            Ok(b) => {
                if down_since.take().is_some() && !quiet {
                    eprintln!("the queue answers again");
                }
                b.with_context(|| format!("batch {id} vanished"))?
            }
            Err(e) => {
                if down_since.is_none() && !quiet {
                    eprintln!("the queue does not answer ({e}); waiting for it");
                }
                down_since.get_or_insert_with(std::time::Instant::now);
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Some(bar) = &bar {
            bar.set_position(b.done);
        }
        if b.completed_ms.is_some() {
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            let ok = b.counts.get(&JobStatus::Succeeded).copied().unwrap_or(0);
            if !quiet {
                eprintln!("batch {id} completed: {ok} of {total} succeeded");
            }
            return Ok(if ok == total {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
