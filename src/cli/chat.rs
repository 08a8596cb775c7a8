//! `imagegen chat`: an interactive chat session in the terminal. Each line is a
//! message; the answer's text and the path (or URL) of each image it made are printed.
//! `/image PATH` attaches an image to the next message, `/session` shows the session's
//! id, `/quit` (or end of input) ends.
//!
//! It is a client of the HTTP API's own routes, called in this process (no port): a
//! session here is the same resource as `POST /v1/sessions`, with the same checks,
//! ordering and history. On embedded defaults (no `--fleet`) the session lives in this
//! process's in-memory queue with a worker beside it, on the built-in emulator when no
//! project is configured, as `run` does; with `--fleet` it lives in Redis and the
//! fleet's workers answer it, so it can be resumed (`--session`) and seen through the
//! API.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use base64::Engine as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

use super::common;
use super::serve::{self, Embedded};
use crate::api::{ApiState, Tokens};
use crate::config::Settings;

/// Arguments of `imagegen chat`.
#[derive(Debug, clap::Args)]
pub struct ChatArgs {
    /// Project (default: the only configured one, or the built-in emulator's `local`).
    #[arg(long)]
    pub project: Option<String>,
    /// Model of the session (default: the project's).
    #[arg(long)]
    pub model: Option<String>,
    /// System instruction of every turn.
    #[arg(long)]
    pub system: Option<String>,
    /// Talk to the fleet through Redis (its workers answer; the session is kept there
    /// and seen by the API) instead of running turns in this process.
    #[arg(long)]
    pub fleet: bool,
    /// Resume this session (with `--fleet`).
    #[arg(long, requires = "fleet")]
    pub session: Option<String>,
}

/// The API in this process, and the worker when the turns run here.
struct Client {
    state: Arc<ApiState>,
    router: axum::Router,
    token: String,
    project: String,
    stop: Option<(
        tokio::sync::watch::Sender<bool>,
        tokio::task::JoinHandle<anyhow::Result<crate::worker::runtime::ShutdownReport>>,
    )>,
    _emulator: Option<crate::emulator::EmulatorHandle>,
}

impl Client {
    /// Calls a route; its status and JSON body.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Value,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))?;
        let resp = self.router.clone().oneshot(req).await?;
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await?;
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok((status, value))
    }

    async fn close(self) -> anyhow::Result<()> {
        if let Some((tx, worker)) = self.stop {
            let _ = tx.send(true);
            worker.await??;
        }
        Ok(())
    }
}

/// Runs `imagegen chat`.
pub async fn chat(args: ChatArgs, settings: Settings) -> anyhow::Result<ExitCode> {
    let client = client(&args, &settings).await?;
    let result = converse(&args, &client).await;
    client.close().await?;
    result
}

/// The in-process API over the fleet's Redis, or over this process's queue and worker.
async fn client(args: &ChatArgs, settings: &Settings) -> anyhow::Result<Client> {
    let token = format!("ig_{}", uuid::Uuid::new_v4().simple());
    if args.fleet {
        let project = common::pick_project(settings, args.project.as_deref())?;
        let queue = common::redis_queue(settings).await?;
        let mut tokens = Tokens::default();
        tokens.add(&project, &token);
        let state = Arc::new(serve::state(settings, queue, Default::default(), tokens)?);
        return Ok(Client {
            router: crate::api::router(state.clone()),
            state,
            token,
            project,
            stop: None,
            _emulator: None,
        });
    }
    let Embedded {
        queue,
        mut state,
        workers,
        local,
    } = Embedded::new(settings, None, None).await?;
    let project = match &local {
        Some(_) => match args.project.as_deref() {
            None | Some("local") => "local".to_string(),
            Some(p) => bail!(
                "no project `{p}` is configured: without projects, chat runs on the built-in emulator's `local`"
            ),
        },
        None => common::pick_project(settings, args.project.as_deref())?,
    };
    state.tokens.add(&project, &token);
    let state = Arc::new(state);
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let options = crate::worker::WorkerOptions {
        webhooks: None,
        ..common::worker_options(settings, None)
    };
    let worker = tokio::spawn(crate::worker::run_worker(
        queue,
        workers,
        options,
        None,
        async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        },
    ));
    Ok(Client {
        router: crate::api::router(state.clone()),
        state,
        token,
        project,
        stop: Some((stop_tx, worker)),
        _emulator: local.and_then(|(_, _, emulator)| emulator),
    })
}

/// The loop: a line in, the answer out.
async fn converse(args: &ChatArgs, client: &Client) -> anyhow::Result<ExitCode> {
    let session = match &args.session {
        Some(id) => {
            let (status, body) = client
                .call(Method::GET, &format!("/v1/sessions/{id}"), Value::Null)
                .await?;
            if !status.is_success() {
                bail!("session {id}: {}", message_of(&body));
            }
            id.clone()
        }
        None => {
            let (status, body) = client
                .call(
                    Method::POST,
                    "/v1/sessions",
                    json!({"model": args.model, "system_prompt": args.system}),
                )
                .await?;
            if !status.is_success() {
                bail!("cannot open a session: {}", message_of(&body));
            }
            for w in body["warnings"].as_array().into_iter().flatten() {
                eprintln!("warning: {}", w.as_str().unwrap_or_default());
            }
            body["session_id"].as_str().unwrap_or_default().to_string()
        }
    };
    let interactive = std::io::stdin().is_terminal();
    println!(
        "session {session} ({}): type a message; /image PATH attaches an image, /quit ends",
        client.project
    );
    let (tx, mut lines) = tokio::sync::mpsc::channel::<String>(16);
    // stdin is read on a thread of its own: a blocking read must not hold the runtime.
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    let mut image: Option<(String, String)> = None;
    let mut failures = 0usize;
    loop {
        if interactive {
            print!("> ");
            std::io::stdout().flush()?;
        }
        let Some(line) = lines.recv().await else {
            break;
        };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(command) = line.strip_prefix('/') {
            let (name, rest) = command.split_once(' ').unwrap_or((command, ""));
            match name {
                "quit" | "exit" => break,
                "session" => println!("session {session}"),
                "image" => match attach(rest.trim()) {
                    Ok(img) => {
                        println!("attached {} to the next message", rest.trim());
                        image = Some(img);
                    }
                    Err(e) => println!("error: {e:#}"),
                },
                _ => println!("unknown command /{name}: /image PATH, /session, /quit"),
            }
            continue;
        }
        let mut body = json!({"message": line});
        if let Some((data, mime)) = image.take() {
            body["image"] = json!(format!("data:{mime};base64,{data}"));
        }
        let path = format!("/v1/sessions/{session}/messages");
        let (status, answer) = client.call(Method::POST, &path, body).await?;
        if !status.is_success() {
            failures += 1;
            println!("error: {}", message_of(&answer));
            continue;
        }
        show(client, &answer).await?;
    }
    println!("session {session} ended");
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The image at `path`, as base64 and its MIME type.
fn attach(path: &str) -> anyhow::Result<(String, String)> {
    if path.is_empty() {
        bail!("/image PATH: name the file");
    }
    let bytes = std::fs::read(path).with_context(|| format!("reading {path}"))?;
    let mime = crate::job::image::sniff_mime(&bytes)
        .with_context(|| format!("{path} is not a PNG, JPEG or WebP image"))?;
    Ok((
        base64::engine::general_purpose::STANDARD.encode(&bytes),
        mime.to_string(),
    ))
}

/// Prints an answer: its text, then where each image is (a path for local outputs).
async fn show(client: &Client, answer: &Value) -> anyhow::Result<()> {
    let turn = answer["turn"].as_u64().unwrap_or_default();
    let job = answer["job_id"].as_str().unwrap_or_default();
    if answer["status"] != "succeeded" {
        // Still running when the API stopped waiting: it finishes in its own time.
        println!(
            "turn {turn}: {} (job {job}; see `imagegen status {job}`)",
            answer["status"].as_str().unwrap_or("queued")
        );
        return Ok(());
    }
    println!("turn {turn} (job {job}):");
    let text = answer["text"].as_str().unwrap_or_default().trim();
    if !text.is_empty() {
        println!("{text}");
    }
    let record = client.state.queue.job(&client.project, job).await?;
    let images = record
        .and_then(|r| r.result)
        .map(|r| r.images)
        .unwrap_or_default();
    for img in &images {
        let shown = img
            .url
            .strip_prefix("file://")
            .map_or_else(|| img.url.clone(), str::to_string);
        println!("turn {turn} image: {shown}");
    }
    if images.is_empty() {
        println!("turn {turn}: no image");
    }
    Ok(())
}

/// An error answer's message.
fn message_of(body: &Value) -> String {
    body.pointer("/error/message")
        .and_then(Value::as_str)
        .map_or_else(|| body.to_string(), str::to_string)
}
