//! `imagegen status [ID]`: a job or a batch — counts by status, progress, ETA, failures
//! with their reasons — and, per project+model (lane), the configured and effective
//! limits, in-flight, queued, pause/parking and the recent 429 rate. Without an id: the
//! lanes of `--project` (or of every configured project).

use std::process::ExitCode;

use super::common;
use crate::config::Settings;
use crate::limits::{HoldView, LaneView};
use crate::queue::{BatchRecord, JobQueue, JobRecord, now_ms};

/// Arguments of `imagegen status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// A batch id, a job id or a story id (`<batch>.story-<line>`; omit it to see only
    /// the projects' lanes).
    pub id: Option<String>,
    /// The project (default: searched among the configured ones).
    #[arg(long)]
    pub project: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Show it again every second until the batch completes (a queue that stops
    /// answering is waited out).
    #[arg(long)]
    pub watch: bool,
}

/// How recently a worker must have registered to count as live.
const LIVE_MS: u64 = 30_000;

/// Runs `status` (again and again with `--watch`).
pub async fn run(args: StatusArgs, settings: Settings) -> anyhow::Result<ExitCode> {
    let queue = common::redis_queue(&settings).await?;
    if !args.watch {
        return show(&args, &settings, queue.as_ref()).await;
    }
    let mut down = false;
    loop {
        match show(&args, &settings, queue.as_ref()).await {
            Ok(_) if finished(&args, &settings, queue.as_ref()).await => {
                return Ok(ExitCode::SUCCESS);
            }
            Ok(_) => down = false,
            Err(e) => {
                if !down {
                    eprintln!("the queue does not answer ({e:#}); waiting for it");
                }
                down = true;
            }
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        if !args.json && !down {
            println!();
        }
    }
}

/// A story: its state, then each frame's.
fn print_story(s: &crate::stories::StoryState) {
    println!("story     {} ({})", s.story_id, s.status);
    if let Some(summary) = &s.summary {
        println!("summary   {summary}");
    }
    for f in &s.frames {
        let state = match (f.status, f.waiting_for) {
            (crate::job::JobStatus::Queued, Some(n)) => format!("waiting for {n}"),
            (status, _) => status.as_str().to_string(),
        };
        print!("frame {:>2}  {:<14} {}", f.index, state, f.job_id);
        if let Some(img) = &f.image {
            print!("  {}", img.path.as_deref().unwrap_or(&img.url));
        }
        println!();
        if let Some(p) = &f.prompt {
            println!("          prompt: {}", first_words(p, 12));
        }
        if let Some(e) = &f.error {
            println!("          error: {e}");
        }
    }
    if let Some(sheet) = &s.contact_sheet {
        println!("sheet     {}", sheet.path.as_deref().unwrap_or(&sheet.url));
    }
    if let Some(json) = &s.story_json {
        println!("story.json {json}");
    }
}

/// The first `n` words of `text`, with an ellipsis when there were more.
fn first_words(text: &str, n: usize) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.len() <= n {
        words.join(" ")
    } else {
        format!("{} …", words[..n].join(" "))
    }
}

/// True when the watched batch (or job, or story) is done.
async fn finished(args: &StatusArgs, settings: &Settings, queue: &dyn JobQueue) -> bool {
    let Some(id) = args.id.as_deref() else {
        return false;
    };
    if let Some(story) = crate::stories::StoryId::parse(id) {
        let Ok(project) =
            common::project_of(queue, settings, args.project.as_deref(), &story.batch).await
        else {
            return false;
        };
        return matches!(crate::stories::read(queue, &project, &story).await,
            Ok(Some(s)) if !["queued", "running"].contains(&s.status.as_str()));
    }
    let Ok(project) = common::project_of(queue, settings, args.project.as_deref(), id).await else {
        return false;
    };
    match queue.batch(&project, id).await {
        Ok(Some(b)) => b.completed_ms.is_some(),
        Ok(None) => matches!(queue.job(&project, id).await, Ok(Some(j)) if j.status.is_terminal()),
        Err(_) => false,
    }
}

async fn show(
    args: &StatusArgs,
    settings: &Settings,
    queue: &dyn JobQueue,
) -> anyhow::Result<ExitCode> {
    let Some(id) = args.id.as_deref() else {
        let projects: Vec<String> = match &args.project {
            Some(p) => vec![p.clone()],
            None => settings.projects.keys().cloned().collect(),
        };
        let mut all = serde_json::Map::new();
        for p in projects {
            let lanes = queue.lanes(&p).await?;
            let hold = queue.project_hold(&p).await?;
            let spend = queue.spend_on(&p, now_ms()).await?;
            if args.json {
                // The lanes, as before (each with its spend today); a batch's status
                // carries its project's workers.
                let mut v = lanes_json(&lanes, hold.as_ref());
                for lane in v.as_array_mut().into_iter().flatten() {
                    let model = lane["model"].as_str().unwrap_or_default();
                    let nano = spend.get(model).copied().unwrap_or(0);
                    lane["spent_today_usd"] = (nano as f64 / crate::pricing::NANO).into();
                }
                all.insert(p, v);
            } else {
                println!("project   {p}");
                let spent = spend.get("").copied().unwrap_or(0) as f64 / crate::pricing::NANO;
                match settings.projects.get(&p).and_then(|c| c.budget_usd_per_day) {
                    Some(b) => println!("spent     ${spent:.4} today (UTC) of ${b:.2} a day"),
                    None => println!("spent     ${spent:.4} today (UTC)"),
                }
                print_hold(hold.as_ref());
                print_workers(&queue.workers(&p, LIVE_MS).await?);
                print_lanes(&lanes);
            }
        }
        if args.json {
            println!("{}", serde_json::to_string_pretty(&all)?);
        }
        return Ok(ExitCode::SUCCESS);
    };
    if let Some(story) = crate::stories::StoryId::parse(id) {
        let project =
            common::project_of(queue, settings, args.project.as_deref(), &story.batch).await?;
        let Some(state) = crate::stories::read(queue, &project, &story).await? else {
            anyhow::bail!("batch {} has no story on line {}", story.batch, story.line);
        };
        if args.json {
            println!("{}", serde_json::to_string_pretty(&state)?);
        } else {
            print_story(&state);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let project = common::project_of(queue, settings, args.project.as_deref(), id).await?;
    let lanes = queue.lanes(&project).await?;
    let hold = queue.project_hold(&project).await?;
    let workers = queue.workers(&project, LIVE_MS).await?;
    let webhook = queue
        .hook(&project, &crate::queue::hooks::message_id(id))
        .await?;
    if let Some(batch) = queue.batch(&project, id).await? {
        let failures = failure_records(queue, &project, &batch).await?;
        if args.json {
            let mut v = serde_json::to_value(&batch)?;
            if let Some(obj) = v.as_object_mut() {
                let now = now_ms();
                obj.insert("state".into(), batch.state().into());
                obj.insert("progress".into(), batch.progress().into());
                obj.insert("eta_ms".into(), batch.eta_ms(now).into());
                obj.insert("cost_to_finish_usd".into(), batch.cost_to_finish().into());
                obj.insert("run_ms".into(), batch.run_ms(now).into());
                obj.insert("wait_ms".into(), batch.wait_ms(now).into());
                obj.insert("workers".into(), serde_json::to_value(&workers)?);
                obj.insert("failures".into(), serde_json::to_value(&failures)?);
                obj.insert("lanes".into(), lanes_json(&lanes, hold.as_ref()));
                obj.insert("hold".into(), serde_json::to_value(&hold)?);
                if let Some(w) = &webhook {
                    obj.insert("webhook".into(), serde_json::to_value(w)?);
                }
            }
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            print_batch(&batch, &failures);
            print_hold(hold.as_ref());
            print_webhook(webhook.as_ref());
            print_workers(&workers);
            print_lanes(&lanes);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let job = queue
        .job(&project, id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no job or batch `{id}` in project `{project}`"))?;
    if args.json {
        let mut v = serde_json::to_value(&job)?;
        if let (Some(obj), Some(w)) = (v.as_object_mut(), &webhook) {
            obj.insert("webhook".into(), serde_json::to_value(w)?);
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print_job(&job);
        print_webhook(webhook.as_ref());
    }
    Ok(ExitCode::SUCCESS)
}

fn time_of(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f UTC").to_string())
        .unwrap_or_default()
}

/// The event delivery about this job or batch, with every attempt.
fn print_webhook(w: Option<&crate::queue::hooks::DeliveryRecord>) {
    let Some(w) = w else {
        return;
    };
    println!("webhook   {} {} → {}", w.event, w.state, w.url);
    println!("  id      {}", w.id);
    if let Some(next) = w.next_ms {
        println!(
            "  next    in {}",
            common::human_ms(next.saturating_sub(now_ms()))
        );
    }
    if let Some(e) = &w.error {
        println!("  error   {e}");
    }
    for (i, a) in w.attempts.iter().enumerate() {
        println!(
            "  #{:<2} {}  {:>4}  {:>6} ms  {}",
            i + 1,
            time_of(a.at_ms),
            a.status.map_or_else(|| "-".to_string(), |s| s.to_string()),
            a.latency_ms,
            a.error.as_deref().unwrap_or("ok")
        );
    }
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
    let now = now_ms();
    println!("state     {}", b.state());
    println!(
        "progress  {}/{} ({:.1}%)",
        b.done,
        total,
        b.progress() * 100.0
    );
    match b.eta_ms(now) {
        Some(0) => {}
        Some(ms) => println!("eta       {}", common::human_ms(ms)),
        None => println!("eta       unknown (no job has finished yet)"),
    }
    match (b.cost_to_finish(), b.completed_ms) {
        (Some(to_finish), None) => println!(
            "cost      ${:.4} so far, about ${to_finish:.4} when it finishes",
            b.cost_usd
        ),
        _ => println!("cost      ${:.4}", b.cost_usd),
    }
    if b.created_ms > 0 {
        let waited = common::human_ms(b.wait_ms(now));
        match b.run_ms(now) {
            Some(ran) => println!(
                "took      {} running (after {waited} in the queue)",
                common::human_ms(ran)
            ),
            None => println!("waiting   {waited} in the queue (no job has started yet)"),
        }
    }
    println!("  {:<10} {:>8}", "status", "jobs");
    for (status, n) in &b.counts {
        println!("  {:<10} {n:>8}", status.as_str());
    }
    if let Some(m) = &b.manifest {
        println!("manifest  {m}");
    }
    if !b.cancelled.is_empty() {
        let n = b
            .counts
            .get(&crate::job::JobStatus::Cancelled)
            .copied()
            .unwrap_or(0);
        println!("cancelled {n} job(s) by request");
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

/// Lanes as JSON, with their state and 429 rate. A project's hold holds every lane:
/// it shows on each that has none of its own.
fn lanes_json(lanes: &[LaneView], project_hold: Option<&HoldView>) -> serde_json::Value {
    let now = now_ms();
    lanes
        .iter()
        .map(|l| {
            let mut l = l.clone();
            if l.hold.is_none() {
                l.hold = project_hold.cloned();
            }
            let mut v = serde_json::to_value(&l).unwrap_or_default();
            if let Some(obj) = v.as_object_mut() {
                obj.insert("state".into(), l.state(now).into());
                obj.insert("recent_429_rate".into(), l.recent_429_rate().into());
            }
            v
        })
        .collect()
}

/// A hold in words: why, since when, and when the next probe goes.
fn hold_text(h: &HoldView) -> String {
    let now = now_ms();
    if h.reason == crate::limits::HoldReason::BudgetExhausted.as_str() {
        // Nothing is probed: the day's end (or a larger budget) ends it.
        return format!(
            "held: {} for {} ({}); the day resets in {}",
            h.reason,
            common::human_ms(now.saturating_sub(h.since_ms)),
            h.message,
            common::human_ms(crate::queue::rules::next_day_ms(now).saturating_sub(now)),
        );
    }
    format!(
        "held: {} for {} ({}); next probe in {}, {} sent; `imagegen unpark` resumes now",
        h.reason,
        common::human_ms(now.saturating_sub(h.since_ms)),
        h.message,
        common::human_ms(h.next_probe_ms.saturating_sub(now)),
        h.probes
    )
}

/// The project's own hold, if any.
fn print_hold(hold: Option<&HoldView>) {
    if let Some(h) = hold {
        println!("project   {}", hold_text(h));
    }
}

fn print_lanes(lanes: &[LaneView]) {
    if lanes.is_empty() {
        return;
    }
    let now = now_ms();
    println!(
        "  {:<28} {:>11} {:>6} {:>9} {:>9} {:>8} {:>7}  state",
        "model", "concurrency", "rpm", "effective", "in flight", "queued", "429s"
    );
    let limit = |n: u32| {
        if n == 0 {
            "-".to_string()
        } else {
            n.to_string()
        }
    };
    for l in lanes {
        let state = match l.state(now) {
            "held" => l.hold.as_ref().map(hold_text).unwrap_or_default(),
            "quota_exhausted" => format!(
                "quota_exhausted until {} ({})",
                common::human_ms(l.parked_until_ms.unwrap_or(now) - now),
                l.parked_reason.as_deref().unwrap_or("")
            ),
            "paused" => format!(
                "paused for {}",
                common::human_ms(l.paused_until_ms.unwrap_or(now) - now)
            ),
            s => s.to_string(),
        };
        println!(
            "  {:<28} {:>11} {:>6} {:>9.1} {:>9} {:>8} {:>6.1}%  {state}",
            l.model,
            limit(l.concurrency),
            limit(l.rpm),
            l.effective_concurrency,
            l.in_flight,
            l.queued,
            l.recent_429_rate() * 100.0,
        );
    }
}

/// The live workers of a project, and a warning when they do not run the same
/// configuration of it (another endpoint or output store: a forgotten old worker).
fn print_workers(workers: &[crate::queue::WorkerInfo]) {
    println!("workers   {} live", workers.len());
    let mut configs: Vec<&str> = workers.iter().map(|w| w.config.as_str()).collect();
    configs.sort_unstable();
    configs.dedup();
    if configs.len() > 1 {
        println!("  WARNING: the workers run different configurations of this project:");
        for w in workers {
            println!(
                "  {}  config {}  endpoint {}  output {}",
                w.worker, w.config, w.endpoint, w.output
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
    if let (Some(q), Some(s)) = (j.enqueued_ms, j.first_started_ms) {
        println!(
            "waited    {} in the queue",
            common::human_ms(s.saturating_sub(q))
        );
    }
    if let (Some(s), Some(f)) = (j.started_ms, j.finished_ms) {
        println!(
            "took      {} (last delivery)",
            common::human_ms(f.saturating_sub(s))
        );
    }
    if let Some(e) = &j.error {
        println!("error     {e}");
    }
    for a in &j.attempts_log {
        let kind = if a.counted { "retried" } else { "deferred" };
        println!("  {}  {kind}: {}", time_of(a.at_ms), a.error);
    }
    for (w, h, url) in super::run::image_list(j) {
        println!("image     {w}x{h}  {url}");
    }
}
