//! `imagegen results BATCH [--download DIR]`: a batch's outputs, one line per job in
//! job order; `--download` copies every image (and the manifest) to a local folder.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use futures::StreamExt as _;

use super::common;
use crate::config::Settings;
use crate::queue::Records as _;

/// Arguments of `imagegen results`.
#[derive(Debug, clap::Args)]
pub struct ResultsArgs {
    /// The batch id.
    pub batch: String,
    /// The project (default: searched among the configured ones).
    #[arg(long)]
    pub project: Option<String>,
    /// Copy the images into this folder, named by line and prompt
    /// (`0007-a-red-fox-0.png`), with the manifest.
    #[arg(long)]
    pub download: Option<PathBuf>,
    /// Print JSON lines (the manifest's) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `results`.
pub async fn run(args: ResultsArgs, settings: Settings) -> anyhow::Result<ExitCode> {
    let queue = common::redis_queue(&settings).await?;
    let project = common::project_of(
        queue.as_ref(),
        &settings,
        args.project.as_deref(),
        &args.batch,
    )
    .await?;
    let batch = queue
        .batch(&project, &args.batch)
        .await?
        .with_context(|| format!("no batch `{}` in project `{project}`", args.batch))?;
    let store = common::output_store(&settings, &project, None)?;
    if batch.completed_ms.is_some() && batch.manifest.is_none() {
        // Its completing worker died before writing the manifest: write it now.
        crate::manifest::write(queue.as_ref(), &store, &project, &args.batch).await?;
    }
    let total = batch.total.unwrap_or(batch.enqueued);
    let mut images = Vec::new();
    let mut from = 0;
    while from < total {
        let to = (from + 1000).min(total);
        for job in queue
            .batch_jobs(&project, &args.batch, from, to)
            .await?
            .into_iter()
            .flatten()
        {
            if args.json {
                println!("{}", serde_json::to_string(&job)?);
            } else {
                let line = job
                    .line
                    .map(|l| format!("line {l:<6} "))
                    .unwrap_or_default();
                let urls: Vec<String> = super::run::image_list(&job)
                    .into_iter()
                    .map(|(_, _, u)| u)
                    .collect();
                let detail = if urls.is_empty() {
                    job.error.clone().unwrap_or_default()
                } else {
                    urls.join(" ")
                };
                println!("{line}{:<10} {}  {detail}", job.status.as_str(), job.id);
            }
            let line = job.line.unwrap_or(0);
            if let Some(res) = &job.result {
                let slug = crate::storage::layout::slug(res.prompt.as_deref().unwrap_or(""));
                for img in &res.images {
                    let ext = img.url.rsplit('.').next().unwrap_or("png");
                    let name = format!("{line:04}-{slug}-{}.{ext}", img.index);
                    images.push((name, img.url.clone()));
                }
            }
        }
        from = to;
    }
    if let Some(dir) = &args.download {
        download(&store, &project, &args.batch, dir, images).await?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn download(
    store: &crate::storage::OutputStore,
    project: &str,
    batch: &str,
    dir: &std::path::Path,
    images: Vec<(String, String)>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let n = images.len();
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(images)
        .map(|(name, url)| async move {
            let rel = store
                .own_key(&url)
                .with_context(|| format!("{url} is not in the project's output store"))?;
            let bytes = store
                .get(&rel)
                .await
                .with_context(|| format!("reading {url}"))?;
            tokio::fs::write(dir.join(&name), &bytes).await?;
            Ok(())
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let failed: Vec<String> = results
        .into_iter()
        .filter_map(|r| r.err().map(|e| format!("{e:#}")))
        .collect();
    if let Ok(manifest) = store
        .get(&format!("{project}/{batch}/manifest.jsonl"))
        .await
    {
        tokio::fs::write(dir.join("manifest.jsonl"), &manifest).await?;
    }
    anyhow::ensure!(
        failed.is_empty(),
        "{} of {n} image(s) could not be downloaded: {}",
        failed.len(),
        failed.join("; ")
    );
    eprintln!("downloaded {n} image(s) to {}", dir.display());
    Ok(())
}
