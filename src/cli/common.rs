//! Pieces several subcommands share: opening the queue and stores, building project
//! runtimes, finding which project an id belongs to, printing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};

use crate::catalog::Backend;
use crate::config::Settings;
use crate::job::batch_file::LineDefaults;
use crate::job::{Operation, ValidationContext};
use crate::queue::{JobQueue, QueueOptions, RedisQueue};
use crate::storage::OutputStore;
use crate::submit::{self, Checked, JobFile, UrlChecks};
use crate::worker::{ProjectRuntime, RetryPolicy, WorkerOptions, worker_identity};

pub use crate::catalog::DEFAULT_MODEL;

/// The job-file arguments `run` and `submit` share.
#[derive(Debug, clap::Args)]
pub struct JobFileArgs {
    /// Job file: JSONL job specs, CSV with a `prompt` column, or one prompt per line.
    pub file: PathBuf,
    /// Model for lines that name none (default: the project's `default_model`, else
    /// gemini-3.1-flash-image).
    #[arg(long)]
    pub model: Option<String>,
    /// Operation for text/CSV lines.
    #[arg(long)]
    pub op: Option<Operation>,
    /// Go ahead with the valid lines even if some are invalid.
    #[arg(long)]
    pub skip_invalid: bool,
    /// Tier for lines that name none: standard, flex or priority (default: the
    /// project's `tier`, else standard). Flex and Priority are half and about twice the
    /// price, where the model offers them.
    #[arg(long)]
    pub tier: Option<crate::job::spec::Tier>,
}

impl JobFileArgs {
    /// The file, read with these defaults, validated for `backend`, its image URLs
    /// checked against `[inputs]`.
    pub fn job_file(
        &self,
        settings: &Settings,
        backend: Backend,
        project_model: Option<&str>,
        project_tier: Option<crate::job::spec::Tier>,
    ) -> anyhow::Result<JobFile<'_>> {
        Ok(JobFile {
            path: &self.file,
            format: submit::detect(&self.file)?,
            defaults: LineDefaults {
                model: Some(
                    self.model
                        .as_deref()
                        .or(project_model)
                        .unwrap_or(DEFAULT_MODEL)
                        .to_string(),
                ),
                op: self.op,
                tier: self.tier.or(project_tier),
            },
            validation: ValidationContext {
                backend,
                check_local_files: true,
            },
            urls: UrlChecks::new(crate::netguard::NetPolicy::for_inputs(&settings.inputs)?),
            models: submit::ModelPolicy::from_config(&settings.models),
        })
    }

    /// First pass over `file`. With invalid lines and no `--skip-invalid`, reports them
    /// and returns the exit code (2): nothing may be `done` ("run", "enqueued") with
    /// the file, which `verb` ("run", "enqueue") names.
    pub async fn check(
        &self,
        file: &JobFile<'_>,
        done: &str,
        verb: &str,
    ) -> anyhow::Result<Result<Checked, ExitCode>> {
        let checked = file.check().await?;
        for w in &checked.warnings {
            eprintln!("warning: {w}");
        }
        if checked.invalid > 0 {
            report_invalid(&self.file, &checked);
            if !self.skip_invalid {
                eprintln!(
                    "nothing was {done} (use --skip-invalid to {verb} the {} valid line(s))",
                    checked.valid
                );
                return Ok(Err(ExitCode::from(2)));
            }
        }
        anyhow::ensure!(checked.valid > 0, "{} has no jobs", self.file.display());
        Ok(Ok(checked))
    }
}

/// Prints the first invalid lines of a job file.
fn report_invalid(path: &std::path::Path, checked: &Checked) {
    eprintln!("{} invalid line(s) in {}:", checked.invalid, path.display());
    for e in &checked.errors {
        eprintln!("  {e}");
    }
    if checked.invalid > checked.errors.len() as u64 {
        eprintln!(
            "  … and {} more",
            checked.invalid - checked.errors.len() as u64
        );
    }
}

/// The Redis queue of the configuration.
pub async fn redis_queue(settings: &Settings) -> anyhow::Result<Arc<RedisQueue>> {
    let queue = RedisQueue::open(
        &settings.redis.url,
        &settings.redis.key_prefix,
        QueueOptions::from_settings(settings),
    )
    .await
    .with_context(|| format!("cannot connect to Redis at {}", settings.redis.url))?;
    Ok(Arc::new(queue))
}

/// The output location of a project: `--out`, the project's `output_url`, or
/// `[output].url`.
pub fn output_url(settings: &Settings, project: &str, out: Option<&str>) -> String {
    out.map(str::to_string)
        .or_else(|| {
            settings
                .projects
                .get(project)
                .and_then(|p| p.output_url.clone())
        })
        .unwrap_or_else(|| settings.output.url.clone())
}

/// Opens a project's output store, naming files by `output.name_template`.
pub fn output_store(
    settings: &Settings,
    project: &str,
    out: Option<&str>,
) -> anyhow::Result<OutputStore> {
    let url = output_url(settings, project, out);
    let template = crate::storage::NameTemplate::parse(&settings.output.name_template)
        .map_err(|e| anyhow::anyhow!("configuration key `output.name_template`: {e}"))?;
    Ok(
        OutputStore::from_url(&url, settings.output.resolved_options()?)?
            .with_name_template(template),
    )
}

/// How a project's jobs read their input images: through the SSRF guard of
/// `[inputs]`, the project's store for uploaded inputs, local paths only when
/// `local_paths` (embedded `run`).
pub fn input_resolver(
    settings: &Settings,
    store: &OutputStore,
    local_paths: bool,
) -> anyhow::Result<crate::providers::InputResolver> {
    let i = &settings.inputs;
    Ok(crate::providers::InputResolver::new(
        crate::providers::InputOptions {
            policy: Arc::new(crate::netguard::NetPolicy::for_inputs(i)?),
            timeout: i.timeout,
            max_redirects: i.max_redirects,
            store_options: settings.output.resolved_options()?,
            store: Some(store.clone()),
            local_paths,
        },
    ))
}

/// What identifies the way a worker runs `project`: where it calls and where it
/// writes (a digest, and the two in words for warnings).
pub fn config_fingerprint(settings: &Settings, name: &str) -> (String, String, String) {
    use sha2::Digest as _;
    let Some(p) = settings.projects.get(name) else {
        return (String::new(), String::new(), String::new());
    };
    let endpoint = crate::providers::Target::from_config(p).base_url;
    let output = output_url(settings, name, None);
    let text = format!(
        "{}\n{}\n{}\n{}\n{endpoint}\n{}\n{output}\n{}",
        p.backend.as_str(),
        p.gcp_project.as_deref().unwrap_or(""),
        p.location,
        p.api_version(),
        p.credentials,
        settings.output.name_template
    );
    let digest = sha2::Sha256::digest(text.as_bytes());
    let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    (hex, endpoint, output)
}

/// Provider + store for each named project (all configured ones when `only` is empty).
pub fn project_runtimes(
    settings: &Settings,
    only: &[String],
) -> anyhow::Result<HashMap<String, ProjectRuntime>> {
    let timeout = settings.worker.request_timeout;
    for p in only {
        if !settings.projects.contains_key(p) {
            bail!(
                "no project `{p}` in the configuration (configured: {})",
                configured(settings)
            );
        }
    }
    settings
        .projects
        .iter()
        .filter(|(name, _)| only.is_empty() || only.contains(name))
        .map(|(name, p)| {
            let store = output_store(settings, name, None)?;
            let inputs = input_resolver(settings, &store, false)?;
            let provider = crate::providers::from_config(p, timeout, inputs)
                .with_context(|| format!("project `{name}`"))?;
            let (config, endpoint, output) = config_fingerprint(settings, name);
            Ok((
                name.clone(),
                ProjectRuntime {
                    provider,
                    store,
                    fingerprint: crate::worker::Fingerprint {
                        config,
                        endpoint,
                        output,
                    },
                    limits: crate::limits::ProjectLimits::from_config(p),
                    weight: p.weight,
                    webhook: crate::webhooks::project_signer(name, p)?.map(|signer| {
                        crate::worker::ProjectWebhook {
                            signer: Arc::new(signer),
                            default_url: p.webhook_url.clone(),
                        }
                    }),
                },
            ))
        })
        .collect()
}

/// Worker options from the settings.
pub fn worker_options(settings: &Settings, concurrency: Option<usize>) -> WorkerOptions {
    let w = &settings.worker;
    WorkerOptions {
        name: worker_identity(),
        concurrency: concurrency.unwrap_or(w.concurrency as usize).max(1),
        // A job is one provider call plus storing: the request timeout and a margin.
        job_timeout: w.request_timeout + Duration::from_secs(60),
        visibility: w.visibility_timeout,
        retry: RetryPolicy::from_settings(w),
        shutdown_grace: w.shutdown_grace,
        quota_reset_utc: w.quota_reset_utc,
        webhooks: Some(crate::webhooks::Settings {
            api_url: Some(settings.api.public_url.clone()).filter(|u| !u.is_empty()),
            ..crate::webhooks::Settings::from_config(&settings.webhooks)
                .expect("validated with the settings")
        }),
    }
}

/// The project a command runs in: `--project`, or the only one configured.
pub fn project_arg(settings: &Settings, project: Option<&str>) -> anyhow::Result<String> {
    match project {
        Some(p) if settings.projects.contains_key(p) => Ok(p.to_string()),
        Some(p) => bail!(
            "no project `{p}` in the configuration (configured: {})",
            configured(settings)
        ),
        None if settings.projects.len() == 1 => {
            Ok(settings.projects.keys().next().cloned().unwrap_or_default())
        }
        None if settings.projects.is_empty() => bail!(
            "no project configured: add a [projects.<name>] table to the --config file (see config/default.toml)"
        ),
        None => bail!(
            "several projects are configured ({}): choose one with --project",
            configured(settings)
        ),
    }
}

/// Configured project names, comma-separated.
pub fn configured(settings: &Settings) -> String {
    let names: Vec<&str> = settings.projects.keys().map(String::as_str).collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// The configured project `--project` names, or the only one.
pub fn pick_project(settings: &Settings, project: Option<&str>) -> anyhow::Result<String> {
    match project {
        Some(p) if settings.projects.contains_key(p) => Ok(p.to_string()),
        Some(p) => bail!(
            "no project `{p}` in the configuration (configured: {})",
            configured(settings)
        ),
        None if settings.projects.len() == 1 => {
            Ok(settings.projects.keys().next().cloned().unwrap_or_default())
        }
        None if settings.projects.is_empty() => {
            bail!("no project is configured: add one under [projects.<name>]")
        }
        None => bail!(
            "several projects are configured ({}): choose one with --project",
            configured(settings)
        ),
    }
}

/// The project an id (job or batch) belongs to: `--project`, or the configured
/// project whose queue knows it.
pub async fn project_of(
    queue: &dyn JobQueue,
    settings: &Settings,
    project: Option<&str>,
    id: &str,
) -> anyhow::Result<String> {
    if let Some(p) = project {
        return Ok(p.to_string());
    }
    for name in settings.projects.keys() {
        if queue.batch(name, id).await?.is_some() || queue.job(name, id).await?.is_some() {
            return Ok(name.clone());
        }
    }
    bail!(
        "no job or batch `{id}` in any configured project ({}); finished records are kept for {}",
        configured(settings),
        human_ms(settings.worker.retention.as_millis() as u64)
    )
}

/// Resolves when the process gets SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// A duration as people write it: `850ms`, `1.2s`, `12s`, `3m 4s`, `2h 5m`, `3d`.
pub fn human_ms(ms: u64) -> String {
    const S: u64 = 1000;
    const M: u64 = 60 * S;
    const H: u64 = 60 * M;
    const D: u64 = 24 * H;
    let two = |big: u64, bu: &str, small: u64, su: &str| {
        if small == 0 {
            format!("{big}{bu}")
        } else {
            format!("{big}{bu} {small}{su}")
        }
    };
    match ms {
        ms if ms < S => format!("{ms}ms"),
        ms if ms < 10 * S => format!("{:.1}s", ms as f64 / 1000.0),
        ms if ms < M => format!("{}s", ms / S),
        ms if ms < H => two(ms / M, "m", ms % M / S, "s"),
        ms if ms < D => two(ms / H, "h", ms % H / M, "m"),
        ms => two(ms / D, "d", ms % D / H, "h"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_read_like_people_write_them() {
        let cases = [
            (850, "850ms"),
            (1_234, "1.2s"),
            (12_000, "12s"),
            (184_000, "3m 4s"),
            (7_500_000, "2h 5m"),
            (259_200_000, "3d"),
            (3_600_000, "1h"),
        ];
        for (ms, want) in cases {
            assert_eq!(super::human_ms(ms), want, "{ms}");
        }
    }
}
