//! `imagegen api`: the fleet's HTTP API over Redis (workers run as `imagegen worker`;
//! any number of API processes behind a load balancer). `imagegen serve`: everything in
//! one process with no Redis — the API, a worker over the in-memory queue, and the
//! built-in emulator when no project is configured; what a newcomer runs to try the
//! Gemini image guide's examples.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use secrecy::ExposeSecret as _;

use super::{common, run};
use crate::api::{ApiProject, ApiState, Tokens};
use crate::config::Settings;
use crate::queue::{JobQueue, MemoryQueue, QueueOptions};
use crate::submit::{ModelPolicy, UrlChecks};

/// Arguments of `imagegen api`.
#[derive(Debug, clap::Args)]
pub struct ApiArgs {
    /// Address to listen on (default `[api].listen`, 127.0.0.1:8000).
    #[arg(long)]
    pub listen: Option<String>,
}

/// Arguments of `imagegen serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (default `[api].listen`, 127.0.0.1:8000).
    #[arg(long)]
    pub listen: Option<String>,
    /// API token of the built-in `local` project (default `$IMAGEGEN_API_TOKEN`, else a
    /// random one, printed once).
    #[arg(long, env = "IMAGEGEN_API_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Webhook secret of the built-in `local` project, `whsec_<base64>` (default
    /// `$IMAGEGEN_WEBHOOK_SECRET`, else a random one, printed once).
    #[arg(long, env = "IMAGEGEN_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// Jobs the in-process worker runs at once (default `[worker].concurrency`).
    #[arg(long)]
    pub concurrency: Option<usize>,
}

/// The API's state over `queue` for the configured projects (and `extra` ones).
pub(super) fn state(
    settings: &Settings,
    queue: Arc<dyn JobQueue>,
    mut projects: HashMap<String, ApiProject>,
    mut tokens: Tokens,
) -> anyhow::Result<ApiState> {
    for (name, p) in &settings.projects {
        projects.insert(
            name.clone(),
            ApiProject {
                backend: p.backend,
                default_model: p
                    .default_model
                    .clone()
                    .unwrap_or_else(|| common::DEFAULT_MODEL.into()),
                tier: p.tier,
                store: common::output_store(settings, name, None)?,
                webhooks: crate::webhooks::project_signer(name, p)?.map(Arc::new),
            },
        );
        if let Some(source) = &p.api_tokens {
            let key = format!("projects.{name}.api_tokens");
            let list = crate::config::read_secret(&key, source)?;
            tokens.add_list(name, list.expose_secret());
        }
    }
    let api = &settings.api;
    Ok(ApiState {
        queue,
        projects,
        tokens,
        models: ModelPolicy::from_config(&settings.models),
        // Remote producers: a path would name a file of the server's.
        urls: UrlChecks::new(crate::netguard::NetPolicy::for_inputs(&settings.inputs)?)
            .remote_only(),
        sync_timeout: api.sync_timeout,
        signed_url_ttl: settings.webhooks.signed_url_ttl,
        max_file_bytes: api.max_file_bytes,
        max_body_bytes: usize::try_from(api.max_body_bytes).unwrap_or(usize::MAX),
        max_batch_bytes: api.max_batch_bytes,
        webhook_policy: Arc::new(crate::netguard::NetPolicy::for_webhooks(
            &settings.webhooks,
        )?),
        limiter: crate::api::RateLimiter::new(api.requests_per_second, api.burst),
        limiter_rate: api.requests_per_second,
    })
}

async fn listen(addr: &str) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
}

/// Runs `imagegen api`.
pub async fn api(args: ApiArgs, settings: Settings) -> anyhow::Result<ExitCode> {
    let queue = common::redis_queue(&settings).await?;
    let state = state(&settings, queue, HashMap::new(), Tokens::default())?;
    if state.tokens.is_empty() {
        bail!("no project has api_tokens: set `api_tokens = \"env:VAR\"` under [projects.<name>]");
    }
    let listener = listen(args.listen.as_deref().unwrap_or(&settings.api.listen)).await?;
    let addr = listener.local_addr()?;
    println!(
        "imagegen api listening on http://{addr} ({} project(s))",
        state.projects.len()
    );
    crate::api::serve(listener, Arc::new(state), common::shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// What `serve` (and `chat` on embedded defaults) runs in one process: the in-memory
/// queue, the API's state over it, and the worker's projects — the built-in `local`
/// project on the emulator when none is configured.
pub(super) struct Embedded {
    /// The queue.
    pub queue: Arc<MemoryQueue>,
    /// The API's state over it.
    pub state: ApiState,
    /// The worker's projects.
    pub workers: HashMap<String, crate::worker::ProjectRuntime>,
    /// The `local` project's token, its webhook secret when generated (to print once),
    /// and the emulator it runs on; `None` with configured projects.
    pub local: Option<(
        String,
        Option<String>,
        Option<crate::emulator::EmulatorHandle>,
    )>,
}

impl Embedded {
    /// Builds it; `token` and `webhook_secret` are the `local` project's (random when
    /// not given).
    pub(super) async fn new(
        settings: &Settings,
        token: Option<String>,
        webhook_secret: Option<String>,
    ) -> anyhow::Result<Embedded> {
        let queue = Arc::new(MemoryQueue::new(QueueOptions::from_settings(settings)));
        let mut api_projects = HashMap::new();
        let mut tokens = Tokens::default();
        let mut local = None;
        let workers = if settings.projects.is_empty() {
            let store = common::output_store(settings, "local", None)?;
            let runtime =
                run::local_runtime(settings, settings.worker.request_timeout, store).await?;
            let token = token.unwrap_or_else(|| format!("ig_{}", uuid::Uuid::new_v4().simple()));
            tokens.add("local", &token);
            let secret = webhook_secret
                .clone()
                .unwrap_or_else(crate::webhooks::Signer::generate);
            let signer =
                Arc::new(crate::webhooks::Signer::parse(&secret).map_err(|e| {
                    anyhow::anyhow!("--webhook-secret: {e} (expected whsec_<base64>)")
                })?);
            api_projects.insert(
                "local".to_string(),
                ApiProject {
                    backend: runtime.backend,
                    default_model: common::DEFAULT_MODEL.into(),
                    tier: None,
                    store: runtime.store.clone(),
                    webhooks: Some(signer.clone()),
                },
            );
            let mut project =
                run::embedded_project(settings, "local", runtime.provider, runtime.store);
            project.webhook = Some(crate::worker::ProjectWebhook {
                signer,
                default_url: None,
            });
            // Printed once, like the token, unless the caller chose it.
            let shown = webhook_secret.is_none().then_some(secret);
            local = Some((token, shown, runtime._emulator));
            HashMap::from([("local".to_string(), project)])
        } else {
            common::project_runtimes(settings, &[])?
        };
        let state = state(settings, queue.clone(), api_projects, tokens)?;
        Ok(Embedded {
            queue,
            state,
            workers,
            local,
        })
    }
}

/// Runs `imagegen serve`.
pub async fn serve(args: ServeArgs, settings: Settings) -> anyhow::Result<ExitCode> {
    let Embedded {
        queue,
        state,
        workers,
        local: local_runtime,
    } = Embedded::new(&settings, args.token.clone(), args.webhook_secret.clone()).await?;
    if state.tokens.is_empty() {
        bail!("no project has api_tokens: set `api_tokens = \"env:VAR\"` under [projects.<name>]");
    }
    let listener = listen(args.listen.as_deref().unwrap_or(&settings.api.listen)).await?;
    let addr = listener.local_addr()?;
    let mut options = common::worker_options(&settings, args.concurrency);
    if let Some(w) = options.webhooks.as_mut() {
        // Webhooks link images through this process when the store cannot sign.
        w.api_url.get_or_insert_with(|| format!("http://{addr}"));
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut stop_worker = stop_rx.clone();
    let worker = tokio::spawn(crate::worker::run_worker(
        queue,
        workers,
        options,
        None,
        async move {
            let _ = stop_worker.wait_for(|s| *s).await;
        },
    ));
    match &local_runtime {
        Some((token, secret, _)) => {
            println!(
                "imagegen serve: http://{addr} (project local on the built-in emulator; token {token})"
            );
            if let Some(secret) = secret {
                println!("webhook secret of project local (verify deliveries with it): {secret}");
            }
        }
        None => println!(
            "imagegen serve: http://{addr} ({} project(s))",
            state.projects.len()
        ),
    }
    let served = crate::api::serve(listener, Arc::new(state), common::shutdown_signal()).await;
    let _ = stop_tx.send(true);
    worker.await??;
    served?;
    Ok(ExitCode::SUCCESS)
}
