//! `RedisQueue`: the fleet's queue on Redis Streams + Lua (design:
//! `docs/design/queue.md`).
//!
//! Per project, under the hash tag `{p:<project>}`: one stream per lane (model) with
//! consumer group `workers` whose entries carry the job id (and, until the first claim,
//! its spec and line); job records as hashes; a ZSET of delayed retries (ms scores,
//! moved back by `claim.lua`); a dead-letter stream; counters per status for the
//! project and each batch; per lane, the admission state of `crate::limits` (in-flight,
//! AIMD concurrency, GCRA, pause, parking). Scripts are loaded once and called by SHA
//! (`redis::Script` reloads them after a Redis restart).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use redis::aio::ConnectionManager;
use redis::{AsyncCommands as _, Script};

use super::{Claimed, QueueError, QueueOptions};
use crate::limits::ProjectLimits;

mod cancel;
mod jobs;
mod lanes;
mod outbox;
mod records;
mod sessions;

impl From<redis::RedisError> for QueueError {
    fn from(e: redis::RedisError) -> Self {
        QueueError::Backend {
            backend: "redis",
            message: e.to_string(),
        }
    }
}

/// Prepended to every script: the rules (`rules.lua`, the twin of `queue::rules`),
/// then the shared helpers.
const LIB: &str = concat!(include_str!("rules.lua"), "\n", include_str!("lib.lua"));
/// The rules alone (the parity test runs them through Redis).
pub const RULES_LUA: &str = include_str!("rules.lua");
const GROUP: &str = "workers";
/// Idempotency keys live this long (DESIGN: "same key within 24 h").
const IDEMPOTENCY_TTL_S: u64 = 86_400;

struct Scripts {
    claim: Script,
    settle: Script,
    recover: Script,
    cancel: Script,
    cancel_scan: Script,
    seal: Script,
    throttle: Script,
    hooks_claim: Script,
    hooks_settle: Script,
    session_append: Script,
    session_answer: Script,
    enqueue_wait: Script,
}

impl Scripts {
    fn new() -> Self {
        let s = |body: &str| Script::new(&format!("{LIB}\n{body}"));
        Scripts {
            claim: s(include_str!("claim.lua")),
            settle: s(include_str!("settle.lua")),
            recover: s(include_str!("recover.lua")),
            cancel: s(include_str!("cancel.lua")),
            cancel_scan: s(include_str!("cancel_scan.lua")),
            seal: s(include_str!("seal.lua")),
            throttle: s(include_str!("throttle.lua")),
            hooks_claim: s(include_str!("hooks_claim.lua")),
            hooks_settle: s(include_str!("hooks_settle.lua")),
            session_append: Script::new(include_str!("session_append.lua")),
            session_answer: Script::new(include_str!("session_answer.lua")),
            enqueue_wait: s(include_str!("enqueue_wait.lua")),
        }
    }
}

/// The Redis implementation of the queue's roles ([`super::JobQueue`]). Cheap to clone.
#[derive(Clone)]
pub struct RedisQueue {
    conn: ConnectionManager,
    prefix: String,
    options: QueueOptions,
    scripts: Arc<Scripts>,
    /// (project, lane) pairs whose stream and group this process has made sure of.
    groups: Arc<Mutex<HashSet<(String, String)>>>,
    limits: Arc<Mutex<HashMap<String, ProjectLimits>>>,
    cancels: Arc<CancelWatch>,
    /// The server's URL (set by `open`): finish notices need a subscriber connection.
    url: Option<String>,
    /// Per project, the fan-out of its notices (`…:news`), once subscribed.
    notices: Arc<Mutex<HashMap<String, tokio::sync::broadcast::Sender<super::Notice>>>>,
}

/// How long a read of a project's cancel generation is trusted.
const CANCEL_GEN_TTL: std::time::Duration = std::time::Duration::from_millis(100);

/// Saves a round trip per job at its cancellation safe point. Every cancel bumps the
/// project's generation (`…:cxgen`, after setting its flags); a job's flags can only
/// have changed if the generation moved since the job was claimed. The generation is
/// read at most every 100 ms per project, so a cancel issued by another process is
/// seen by safe points reached 100 ms or more after it (at once in this process,
/// which forgets its cached value when it cancels).
#[derive(Default)]
struct CancelWatch {
    /// project → (generation, when read)
    gens: Mutex<HashMap<String, (u64, std::time::Instant)>>,
    /// "project\0token" → the generation read before the job was claimed
    at_claim: Mutex<HashMap<String, u64>>,
}

fn delivery_key(project: &str, token: &str) -> String {
    format!("{project}\0{token}")
}

/// Connects with a manager that reconnects on its own; responses time out after 30 s
/// (a big enqueue pipeline is not an error), connecting after 5 s.
pub async fn connect(url: &str) -> Result<ConnectionManager, QueueError> {
    let client = redis::Client::open(url)?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(std::time::Duration::from_secs(5)))
        .set_response_timeout(Some(std::time::Duration::from_secs(30)))
        .set_number_of_retries(3)
        .set_max_delay(std::time::Duration::from_secs(2));
    Ok(ConnectionManager::new_with_config(client, config).await?)
}

impl RedisQueue {
    /// A queue over `conn`, keys under `prefix`.
    pub fn new(conn: ConnectionManager, prefix: &str, options: QueueOptions) -> Self {
        RedisQueue {
            conn,
            prefix: prefix.to_string(),
            options,
            scripts: Arc::new(Scripts::new()),
            groups: Arc::default(),
            limits: Arc::default(),
            cancels: Arc::default(),
            url: None,
            notices: Arc::default(),
        }
    }

    /// Connects to `url`.
    pub async fn open(url: &str, prefix: &str, options: QueueOptions) -> Result<Self, QueueError> {
        Ok(RedisQueue {
            url: Some(url.to_string()),
            ..Self::new(connect(url).await?, prefix, options)
        })
    }

    /// Subscribes to the project's notices (`PUBLISH`ed to `…:news`: `f:<job>` by
    /// `finish` in `lib.lua` for interactive jobs, `q:<lane>` by an interactive
    /// enqueue) on a connection of its own, fanned out to every listener of this
    /// process; the subscription ends (and the next listener makes a new one) when the
    /// connection drops, and listeners poll meanwhile.
    pub(super) async fn subscribe_notices(
        &self,
        project: &str,
    ) -> Option<tokio::sync::broadcast::Receiver<super::Notice>> {
        use futures::StreamExt as _;
        if let Some(tx) = self.notices.lock().expect("notices").get(project) {
            return Some(tx.subscribe());
        }
        let client = redis::Client::open(self.url.as_deref()?).ok()?;
        let mut pubsub = client.get_async_pubsub().await.ok()?;
        pubsub.subscribe(self.key(project, "news")).await.ok()?;
        let (tx, rx) = tokio::sync::broadcast::channel(4096);
        let mut map = self.notices.lock().expect("notices");
        if let Some(existing) = map.get(project) {
            return Some(existing.subscribe()); // another listener won the race
        }
        map.insert(project.to_string(), tx.clone());
        drop(map);
        let (notices, project) = (self.notices.clone(), project.to_string());
        tokio::spawn(async move {
            let mut messages = pubsub.into_on_message();
            while let Some(msg) = messages.next().await {
                if let Some(n) = msg
                    .get_payload::<String>()
                    .ok()
                    .and_then(|t| super::Notice::parse(&t))
                {
                    let _ = tx.send(n);
                }
            }
            notices.lock().expect("notices").remove(&project);
        });
        Some(rx)
    }

    /// The connection (for benchmarks and tests that inspect Redis).
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// `<prefix>:{p:<project>}`: every key of the project starts with it.
    pub fn base(&self, project: &str) -> String {
        format!("{}:{{p:{project}}}", self.prefix)
    }

    fn key(&self, project: &str, suffix: &str) -> String {
        format!("{}:{suffix}", self.base(project))
    }

    fn job_key(&self, project: &str, job: &str) -> String {
        self.key(project, &format!("job:{job}"))
    }

    fn batch_key(&self, project: &str, batch: &str) -> String {
        self.key(project, &format!("batch:{batch}"))
    }

    /// Delayed set and dead-letter stream: the KEYS of most scripts (lane streams and
    /// records are derived from the base, in the same slot).
    fn core_keys(&self, project: &str) -> [String; 2] {
        [self.key(project, "delayed"), self.key(project, "dlq")]
    }

    /// A lane's stream.
    pub fn lane_stream(&self, project: &str, lane: &str) -> String {
        self.key(project, &format!("q:{lane}"))
    }

    /// A lane's stream of interactive jobs (read first; `urgent_stream` in lib.lua).
    pub fn urgent_stream(&self, project: &str, lane: &str) -> String {
        self.key(project, &format!("q:{lane}!"))
    }

    /// Creates a lane's stream and consumer group once per process (claim and recover
    /// recreate them if Redis lost them).
    async fn ensure_group(&self, project: &str, lane: &str) -> Result<(), QueueError> {
        let id = (project.to_string(), lane.to_string());
        if self.groups.lock().expect("groups").contains(&id) {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        let stream = self.lane_stream(project, lane);
        let res: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&stream)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        match res {
            Ok(()) => {}
            Err(e) if e.code() == Some("BUSYGROUP") => {}
            Err(e) => return Err(e.into()),
        }
        let () = conn.sadd(self.key(project, "lanes"), lane).await?;
        self.groups.lock().expect("groups").insert(id);
        Ok(())
    }

    /// The project's cancel generation, as read at most [`CANCEL_GEN_TTL`] ago.
    async fn cancel_gen(&self, project: &str) -> Result<u64, QueueError> {
        if let Some((g, at)) = self.cancels.gens.lock().expect("gens").get(project)
            && at.elapsed() < CANCEL_GEN_TTL
        {
            return Ok(*g);
        }
        let mut conn = self.conn.clone();
        let g: Option<u64> = conn.get(self.key(project, "cxgen")).await?;
        let g = g.unwrap_or(0);
        self.cancels
            .gens
            .lock()
            .expect("gens")
            .insert(project.to_string(), (g, std::time::Instant::now()));
        Ok(g)
    }

    /// Notes the generation read before `jobs` were claimed.
    fn note_claimed(&self, project: &str, generation: u64, jobs: &[Claimed]) {
        let mut at = self.cancels.at_claim.lock().expect("at_claim");
        for c in jobs {
            at.insert(delivery_key(project, &c.lease.token), generation);
        }
    }
}
