//! The fleet through its public interface: a real Redis, the emulator as its own
//! process, `imagegen worker` processes, and `imagegen submit/status/results/cancel`.
//! Each test gets its own key prefix (and, where it kills connections, its own Redis
//! database), so tests run in parallel without seeing each other.

mod costs;
mod crash;
mod hardening;
mod holds;
mod limits;
mod load;
mod ops;
mod shutdown;
mod stores;
mod stories;
mod webhooks;

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The Redis the suite runs against (`REDIS_URL`, default 127.0.0.1:6379), on `db`.
pub fn redis_url(db: u8) -> String {
    let base = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let mut url = url::Url::parse(&base).expect("REDIS_URL");
    url.set_path(&format!("/{db}"));
    url.to_string()
}

/// A running fleet: emulator, config, workers.
pub struct Fleet {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub prefix: String,
    pub redis: String,
    pub emulator_url: String,
    emulator: Child,
    pub workers: Vec<Child>,
    /// Extra environment for every `imagegen` this fleet runs.
    pub envs: Vec<(String, String)>,
}

impl Fleet {
    /// Starts an emulator with `scenario` (TOML) and writes a config with project
    /// `acme` against it, plus `extra` config lines.
    pub fn start(scenario: &str, extra: &str, db: u8) -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let scenario_path = dir.path().join("scenario.toml");
        std::fs::write(&scenario_path, scenario).unwrap();
        let mut emulator = Command::new(env!("CARGO_BIN_EXE_imagegen"))
            .args(["emulator", "--listen", "127.0.0.1:0", "--scenario"])
            .arg(&scenario_path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(emulator.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let emulator_url = first
            .trim()
            .rsplit(' ')
            .next()
            .expect("emulator address")
            .to_string();
        // `extra` may name the emulator (another project against it).
        let extra = extra.replace("EMULATOR_URL", &emulator_url);
        let prefix = format!("t{}", uuid::Uuid::new_v4().simple());
        let out = dir.path().join("out");
        let config = dir.path().join("imagegen.toml");
        std::fs::write(
            &config,
            format!(
                r#"
[redis]
key_prefix = "{prefix}"
[output]
url = "file://{out}"
[worker]
visibility_timeout = "3s"
retry_min = "50ms"
retry_max = "500ms"
shutdown_grace = "10s"
[projects.acme]
backend = "gemini-api"
endpoint = "{emulator_url}"
credentials = "env:FLEET_TEST_KEY"
default_model = "gemini-3.1-flash-image"
{extra}
"#,
                out = out.display()
            ),
        )
        .unwrap();
        Fleet {
            dir,
            config,
            prefix,
            redis: redis_url(db),
            emulator_url,
            emulator,
            workers: Vec::new(),
            envs: Vec::new(),
        }
    }

    /// `imagegen` with this fleet's config and Redis.
    pub fn cmd(&self) -> Command {
        self.cmd_with(&self.config)
    }

    /// `imagegen` with this fleet's Redis and environment, and another config file.
    pub fn cmd_with(&self, config: &Path) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_imagegen"));
        cmd.env_remove("IMAGEGEN_CONFIG");
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("IMAGEGEN__")) {
            cmd.env_remove(k);
        }
        cmd.env("REDIS_URL", &self.redis)
            .env("FLEET_TEST_KEY", "fleet-test-key")
            .env("RUST_LOG", "warn")
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .arg("--config")
            .arg(config);
        cmd
    }

    /// Runs `imagegen ARGS` to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// Starts a worker process; returns its index.
    pub fn spawn_worker(&mut self, concurrency: usize) -> usize {
        self.spawn_worker_with(concurrency, &[])
    }

    /// Starts a worker process with more arguments; returns its index.
    pub fn spawn_worker_with(&mut self, concurrency: usize, args: &[&str]) -> usize {
        let log = std::fs::File::create(
            self.dir
                .path()
                .join(format!("worker-{}.log", self.workers.len())),
        )
        .unwrap();
        let child = self
            .cmd()
            .args(["worker", "--concurrency", &concurrency.to_string()])
            .args(args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.workers.push(child);
        self.workers.len() - 1
    }

    /// A worker's log so far.
    pub fn worker_log(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("worker-{i}.log"))).unwrap_or_default()
    }

    /// Writes a job file into the fleet's folder.
    pub fn file(&self, name: &str, content: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, content).unwrap();
        p
    }

    /// `imagegen submit FILE --project acme ARGS`: the batch id.
    pub fn submit(&self, file: &Path, args: &[&str]) -> String {
        self.submit_to("acme", file, args)
    }

    /// `imagegen submit FILE --project PROJECT ARGS`: the batch id.
    pub fn submit_to(&self, project: &str, file: &Path, args: &[&str]) -> String {
        let out = self
            .cmd()
            .args(["submit", "--project", project])
            .arg(file)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "submit failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// `imagegen status ID --json`.
    pub fn status(&self, id: &str) -> Value {
        let out = self.run(&["status", id, "--json"]);
        assert!(
            out.status.success(),
            "status failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Polls `status ID` every 50 ms until `done` holds for it, failing after `timeout`
    /// with `what` it waited for; returns the last status.
    pub fn wait_until(
        &self,
        id: &str,
        timeout: Duration,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        self.poll_status(id, timeout, Duration::from_millis(50), what, done)
    }

    /// Polls `status` until the batch is completed (and its manifest written).
    pub fn wait_completed(&self, batch: &str, timeout: Duration) -> Value {
        // Every poll is an `imagegen status` process: slower polling for long waits.
        self.poll_status(
            batch,
            timeout,
            Duration::from_millis(250),
            "batch completed",
            |s| s["state"] == "completed" && s.get("manifest").is_some(),
        )
    }

    fn poll_status(
        &self,
        id: &str,
        timeout: Duration,
        every: Duration,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let start = Instant::now();
        loop {
            let s = self.status(id);
            if done(&s) {
                return s;
            }
            assert!(
                start.elapsed() < timeout,
                "{what}: not after {timeout:?}: {s}\nworker 0 log:\n{}",
                self.worker_log(0)
            );
            std::thread::sleep(every);
        }
    }

    /// The emulator's stats.
    pub fn emulator_stats(&self) -> Value {
        let (_, body) = http("GET", &self.emulator_url, "/emulator/stats", "");
        serde_json::from_str(&body).unwrap_or(Value::Null)
    }

    /// Replaces the emulator's scenario (TOML) at runtime.
    pub fn post_scenario(&self, toml: &str) {
        let scenario = imagegen::emulator::Scenario::from_toml_str(toml).unwrap();
        self.post_emulator(
            "/emulator/scenario",
            &serde_json::to_string(&scenario).unwrap(),
        );
    }

    /// Clears the emulator's counters and quota windows.
    pub fn reset_emulator_stats(&self) {
        self.post_emulator("/emulator/stats/reset", "");
    }

    fn post_emulator(&self, path: &str, body: &str) {
        let (status, answer) = http("POST", &self.emulator_url, path, body);
        assert!((200..300).contains(&status), "{status} {answer}");
    }

    /// The manifest's lines.
    pub fn manifest(&self, status: &Value) -> Vec<Value> {
        let url = status["manifest"].as_str().expect("manifest url");
        let path = url.strip_prefix("file://").expect("file url");
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// A Redis connection on the fleet's database.
    pub fn redis(&self) -> redis::Connection {
        redis::Client::open(self.redis.as_str())
            .unwrap()
            .get_connection()
            .unwrap()
    }

    /// Stream entries of the default model's lane that a worker with process id `pid`
    /// holds (its consumer name is `host-pid-xxxxxxxx`): their ids.
    pub fn pending_of(&self, pid: u32) -> Vec<String> {
        let pending: Vec<Vec<redis::Value>> = redis::cmd("XPENDING")
            .arg(format!("{}:q:gemini-3.1-flash-image", self.base()))
            .arg("workers")
            .arg("-")
            .arg("+")
            .arg(10_000)
            .query(&mut self.redis())
            .unwrap();
        let mark = format!("-{pid}-");
        pending
            .iter()
            .filter(|p| {
                matches!(&p[1], redis::Value::BulkString(c) if String::from_utf8_lossy(c).contains(&mark))
            })
            .map(|p| match &p[0] {
                redis::Value::BulkString(t) => String::from_utf8_lossy(t).into_owned(),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    /// The project's key base in Redis.
    pub fn base(&self) -> String {
        format!("{}:{{p:acme}}", self.prefix)
    }
}

impl Fleet {
    /// What a fleet left held after its workers stopped: stream entries still pending
    /// on a lane, and running counters above zero (project and lane). Empty when the
    /// queue is clean, or when its Redis is down (tests that stop it on purpose).
    pub fn stuck(&self) -> Vec<String> {
        let Ok(mut conn) =
            redis::Client::open(self.redis.as_str()).and_then(|c| c.get_connection())
        else {
            return Vec::new();
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:*", self.prefix))
            .query(&mut conn)
            .unwrap_or_default();
        let mut stuck = Vec::new();
        for key in keys {
            let kind: String = redis::cmd("TYPE").arg(&key).query(&mut conn).unwrap();
            let counter = match (kind.as_str(), key.rsplit_once(':')) {
                ("stream", _) if key.contains(":q:") => {
                    let summary: Vec<redis::Value> = redis::cmd("XPENDING")
                        .arg(&key)
                        .arg("workers")
                        .query(&mut conn)
                        .unwrap_or_default();
                    if let Some(redis::Value::Int(n)) = summary.first()
                        && *n > 0
                    {
                        stuck.push(format!("{key}: {n} entries pending"));
                    }
                    continue;
                }
                ("hash", Some((_, "counts"))) => "running",
                ("hash", _) if key.contains(":lane:") => "run",
                _ => continue,
            };
            let n: Option<i64> = redis::cmd("HGET")
                .arg(&key)
                .arg(counter)
                .query(&mut conn)
                .unwrap();
            if let Some(n) = n.filter(|n| *n != 0) {
                stuck.push(format!("{key} {counter} = {n}"));
            }
        }
        stuck
    }
}

/// Asks a process to stop as an operator would (SIGTERM).
pub fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Teardown: workers stop as in production (SIGTERM: finish what runs, hand back the
/// rest), then the queue must hold nothing (see [`Fleet::stuck`]); the fleet's keys go.
impl Drop for Fleet {
    fn drop(&mut self) {
        let check = !std::thread::panicking();
        for w in &mut self.workers {
            if let Ok(None) = w.try_wait() {
                let _ = Command::new("kill")
                    .args(["-TERM", &w.id().to_string()])
                    .status();
            }
        }
        // The test config's grace (10 s) plus the hand-back (5 s) and a margin.
        let by = Instant::now() + Duration::from_secs(20);
        for w in &mut self.workers {
            while matches!(w.try_wait(), Ok(None)) && Instant::now() < by {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = w.kill();
            let _ = w.wait();
        }
        let stuck = if check { self.stuck() } else { Vec::new() };
        let _ = self.emulator.kill();
        let _ = self.emulator.wait();
        if let Ok(mut conn) =
            redis::Client::open(self.redis.as_str()).and_then(|c| c.get_connection())
        {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{}:*", self.prefix))
                .query(&mut conn)
                .unwrap_or_default();
            for chunk in keys.chunks(500) {
                let _: redis::RedisResult<()> = redis::cmd("DEL").arg(chunk).query(&mut conn);
            }
        }
        assert!(
            stuck.is_empty(),
            "teardown: the queue still holds work after the workers stopped: {stuck:#?}"
        );
    }
}

/// The emulator's answers with `status` (`"200"`, `"404"` …) across every project and
/// model, from its stats.
pub fn responses(stats: &Value, status: &str) -> u64 {
    stats["requests"]
        .as_object()
        .map(|m| m.values().filter_map(|codes| codes[status].as_u64()).sum())
        .unwrap_or(0)
}

/// A bare HTTP/1.1 request to `base` (`http://host:port`): (status, body).
pub fn http(method: &str, base: &str, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let addr = base.trim_start_matches("http://").trim_end_matches('/');
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    write!(
        conn,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    conn.read_to_string(&mut text).unwrap();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, body.to_string())
}

/// `n` plain-text prompts.
pub fn prompts(n: usize) -> String {
    (1..=n).map(|i| format!("prompt number {i}\n")).collect()
}

/// Width and height from a PNG's IHDR.
pub fn png_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[1..4], b"PNG", "{} is not a PNG", path.display());
    let w = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    (w, h)
}

/// Asserts every manifest line succeeded with one image of `w`x`h` that exists, job
/// ids unique, lines 1..=n in order.
pub fn assert_manifest_complete(lines: &[Value], n: usize, w: u32, h: u32) {
    assert_eq!(lines.len(), n, "manifest lines");
    let mut ids = std::collections::HashSet::new();
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["status"], "succeeded", "{l}");
        assert_eq!(l["line"], (i + 1) as u64, "manifest in file order");
        assert!(
            ids.insert(l["job_id"].as_str().unwrap().to_string()),
            "duplicate {l}"
        );
        let images = l["images"].as_array().expect("images");
        assert_eq!(images.len(), 1, "{l}");
        let path = images[0]["url"]
            .as_str()
            .unwrap()
            .strip_prefix("file://")
            .unwrap();
        assert_eq!(png_size(Path::new(path)), (w, h), "{path}");
        assert_eq!(images[0]["width"], w);
        // Deterministic keys: exactly one image file per job, however often it ran.
        let dir = Path::new(path).parent().unwrap();
        let pngs = std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "png")
            })
            .count();
        assert_eq!(pngs, 1, "{}", dir.display());
    }
}

/// Sum of a status's counts.
pub fn count(status: &Value, s: &str) -> u64 {
    status["counts"][s].as_u64().unwrap_or(0)
}
