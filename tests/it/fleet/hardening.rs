//! Hardening (issue 12), through the public interface: input URLs through the SSRF
//! guard, bounded downloads, local inputs that travel with the job, idempotency
//! conflicts, honest status, shutdown with Redis down, closed pipes, endpoint drift.

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::*;

/// What the test server answers.
#[derive(Clone)]
enum Answer {
    /// 200 with these bytes.
    Bytes(Vec<u8>),
    /// 302 to this URL.
    Redirect(String),
    /// 200 with an endless body: `Content-Length` of 200 MB, or chunked when false.
    Endless { content_length: bool },
}

/// A loopback HTTP server that counts the requests it gets and the bytes it sends.
struct Server {
    base: String,
    hits: Arc<AtomicUsize>,
    sent: Arc<AtomicU64>,
}

impl Server {
    fn start(ip: &str, answer: Answer) -> Server {
        let listener = TcpListener::bind((ip, 0)).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let sent = Arc::new(AtomicU64::new(0));
        let (h, s) = (hits.clone(), sent.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let (h, s, answer) = (h.clone(), s.clone(), answer.clone());
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    let _ = conn.read(&mut buf);
                    h.fetch_add(1, Ordering::SeqCst);
                    let _ = serve(&mut conn, &answer, &s);
                });
            }
        });
        Server { base, hits, sent }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn serve(conn: &mut std::net::TcpStream, answer: &Answer, sent: &AtomicU64) -> std::io::Result<()> {
    match answer {
        Answer::Bytes(b) => {
            write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                b.len()
            )?;
            conn.write_all(b)
        }
        Answer::Redirect(to) => write!(
            conn,
            "HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
        Answer::Endless { content_length } => {
            if *content_length {
                write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 200000000\r\n\r\n"
                )?;
            } else {
                write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n"
                )?;
            }
            let chunk = vec![0x89u8; 65_536];
            for _ in 0..3_000 {
                if !*content_length {
                    write!(conn, "{:x}\r\n", chunk.len())?;
                }
                conn.write_all(&chunk)?;
                if !*content_length {
                    conn.write_all(b"\r\n")?;
                }
                sent.fetch_add(chunk.len() as u64, Ordering::SeqCst);
            }
            Ok(())
        }
    }
}

/// An 8×8 PNG.
fn png() -> Vec<u8> {
    let img = image::RgbImage::from_pixel(8, 8, image::Rgb([200, 30, 30]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn edit_line(image: &str) -> String {
    format!("{{\"op\": \"edit\", \"prompt\": \"make it blue\", \"images\": [\"{image}\"]}}\n")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn input_urls_to_private_addresses_are_refused_at_submit_and_never_fetched() {
    let fleet = Fleet::start("latency_ms = 5\n", "", 0);
    let server = Server::start("127.0.0.1", Answer::Bytes(png()));
    let port = server.base.rsplit(':').next().unwrap().to_string();
    for url in [
        format!("{}/x.png", server.base),
        format!("http://localhost:{port}/x.png"),
        format!("http://[::ffff:127.0.0.1]:{port}/x.png"),
    ] {
        let file = fleet.file(
            "in.jsonl",
            &format!("{{\"prompt\": \"ok\"}}\n{}", edit_line(&url)),
        );
        let out = fleet.run(&["submit", "--project", "acme", file.to_str().unwrap()]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{url}: {err}");
        assert!(
            err.contains("line 2") && err.contains("images[0]") && err.contains("loopback"),
            "{url}: {err}"
        );
        assert!(err.contains("inputs.allow_private_networks"), "{err}");
    }
    assert_eq!(server.hits(), 0, "no request reached the server");
}

#[test]
fn a_redirect_to_a_private_address_is_not_followed_and_an_allowed_one_is() {
    // The first hop is allowed (its range is listed); where it points is not.
    let target = Server::start("127.0.0.1", Answer::Bytes(png()));
    let bounce = Server::start(
        "127.0.0.2",
        Answer::Redirect(format!("{}/secret.png", target.base)),
    );
    let good = Server::start("127.0.0.2", Answer::Bytes(png()));
    let hop = Server::start(
        "127.0.0.2",
        Answer::Redirect(format!("{}/a.png", good.base)),
    );
    let mut fleet = Fleet::start(
        "latency_ms = 5\n",
        "[inputs]\nallow_cidrs = [\"127.0.0.2/32\"]\n",
        0,
    );
    let file = fleet.file(
        "in.jsonl",
        &format!(
            "{}{}",
            edit_line(&format!("{}/x.png", bounce.base)),
            edit_line(&format!("{}/y.png", hop.base))
        ),
    );
    let batch = fleet.submit(&file, &[]);
    fleet.spawn_worker(2);
    let s = fleet.wait_completed(&batch, Duration::from_secs(60));
    let rows = fleet.manifest(&s);
    assert_eq!(rows[0]["status"], "failed", "{}", rows[0]);
    let err = rows[0]["error"].as_str().unwrap();
    assert!(
        err.contains("images[0]") && err.contains("loopback"),
        "{err}"
    );
    assert_eq!(rows[0]["attempts"], 1, "a refusal is not retried");
    assert_eq!(target.hits(), 0, "the redirect target saw no request");
    assert!(bounce.hits() >= 1);
    assert_eq!(rows[1]["status"], "succeeded", "{}", rows[1]);
    assert_eq!(good.hits(), 1);
}

#[tokio::test]
async fn a_worker_refuses_a_private_name_when_it_connects() {
    use imagegen::providers::{InputOptions, InputResolver};
    let server = Server::start("127.0.0.1", Answer::Bytes(png()));
    let port = server.base.rsplit(':').next().unwrap().to_string();
    let resolver = InputResolver::new(InputOptions {
        policy: Arc::new(imagegen::netguard::NetPolicy {
            section: "inputs",
            ..Default::default()
        }),
        ..InputOptions::guarded(Default::default())
    });
    let spec =
        imagegen::job::JobSpec::from_json(&edit_line(&format!("http://localhost:{port}/x.png")))
            .unwrap();
    let err = resolver.resolve(&spec, false, 7_000_000).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("images[0]") && text.contains("loopback"),
        "{text}"
    );
    assert!(!err.is_retryable(), "{text}");
    assert_eq!(server.hits(), 0);
}

/// Peak resident memory of a process (kB), from /proc.
fn peak_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[test]
fn an_input_over_the_size_limit_is_refused_without_reading_it() {
    let announced = Server::start(
        "127.0.0.2",
        Answer::Endless {
            content_length: true,
        },
    );
    let chunked = Server::start(
        "127.0.0.2",
        Answer::Endless {
            content_length: false,
        },
    );
    let mut fleet = Fleet::start(
        "latency_ms = 5\n",
        "[inputs]\nallow_cidrs = [\"127.0.0.2/32\"]\n",
        0,
    );
    let lines: String = (0..4)
        .map(|i| {
            let s = if i % 2 == 0 { &announced } else { &chunked };
            edit_line(&format!("{}/{i}.png", s.base))
        })
        .collect();
    let batch = fleet.submit(&fleet.file("big.jsonl", &lines), &[]);
    fleet.spawn_worker(4);
    let s = fleet.wait_completed(&batch, Duration::from_secs(60));
    for row in fleet.manifest(&s) {
        assert_eq!(row["status"], "failed", "{row}");
        let err = row["error"].as_str().unwrap();
        assert!(err.contains("over the model's 7000000-byte limit"), "{err}");
    }
    let rss_mb = peak_rss_kb(fleet.workers[0].id()) / 1024;
    let sent_mb = chunked.sent.load(Ordering::SeqCst) / 1_000_000;
    eprintln!(
        "worker peak RSS {rss_mb} MB; the chunked server got {sent_mb} MB out before the worker hung up"
    );
    // Four 200 MB bodies at once cost no more than the limit each (and the binary).
    assert!(rss_mb < 150, "peak RSS {rss_mb} MB");
}

#[test]
fn local_inputs_are_stored_once_at_submit_and_read_by_a_worker_elsewhere() {
    let mut fleet = Fleet::start("latency_ms = 5\n", "", 0);
    let here = fleet.dir.path().join("producer");
    let elsewhere = fleet.dir.path().join("worker");
    std::fs::create_dir_all(&here).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    let pic = png();
    std::fs::write(here.join("pic.png"), &pic).unwrap();
    let lines: String = (0..40).map(|_| edit_line("pic.png")).collect();
    std::fs::write(here.join("jobs.jsonl"), lines).unwrap();
    let out = fleet
        .cmd()
        .current_dir(&here)
        .args(["submit", "jobs.jsonl"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let batch = String::from_utf8_lossy(&out.stdout).trim().to_string();
    // The worker runs in a folder without pic.png.
    let log = std::fs::File::create(fleet.dir.path().join("worker-0.log")).unwrap();
    let child = fleet
        .cmd()
        .current_dir(&elsewhere)
        .args(["worker", "--concurrency", "8"])
        .stderr(log)
        .spawn()
        .unwrap();
    fleet.workers.push(child);
    let s = fleet.wait_completed(&batch, Duration::from_secs(60));
    assert_eq!(count(&s, "succeeded"), 40, "{s}");
    let inputs: Vec<_> = std::fs::read_dir(fleet.dir.path().join("out/inputs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(inputs.len(), 1, "one stored copy for 40 lines: {inputs:?}");
    assert_eq!(
        inputs[0].file_name().unwrap().to_str().unwrap(),
        format!("{}.png", sha256_hex(&pic))
    );
    assert_eq!(std::fs::read(&inputs[0]).unwrap(), pic);
}

#[test]
fn a_worker_never_reads_a_local_path_and_non_images_are_refused_at_submit() {
    let mut fleet = Fleet::start("latency_ms = 5\n", "", 0);
    // A declared type does not make a file an image.
    let file = fleet.file(
        "bad.jsonl",
        "{\"op\": \"edit\", \"prompt\": \"x\", \"images\": [{\"path\": \"/etc/hostname\", \"mime_type\": \"image/png\"}]}\n{\"op\": \"edit\", \"prompt\": \"x\", \"images\": [\"data:image/png;base64,bm90IGFuIGltYWdl\"]}\n",
    );
    let out = fleet.run(&["submit", file.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("line 1") && err.contains("line 2"), "{err}");
    // A path that reached the queue anyway (an old producer) fails without being read.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let batch = rt.block_on(async {
        use imagegen::queue::{Jobs as _, NewBatch, NewJob, QueueOptions, RedisQueue};
        let q = RedisQueue::open(&fleet.redis, &fleet.prefix, QueueOptions::default())
            .await
            .unwrap();
        let b = q
            .create_batch(&NewBatch {
                project: "acme".into(),
                source: "old".into(),
                ..NewBatch::default()
            })
            .await
            .unwrap();
        let spec = r#"{"op":"edit","model":"gemini-3.1-flash-image","prompt":"x","images":[{"path":"/etc/hostname","mime_type":"image/png"}]}"#;
        q.enqueue(
            "acme",
            &b.id,
            vec![NewJob {
                seq: 0,
                line: Some(1),
                spec: spec.into(),
                lane: "gemini-3.1-flash-image".into(),
                op: "edit".into(),
                webhook: None,
                hash: None,
                interactive: false,
                deps: Vec::new(),
            }],
        )
        .await
        .unwrap();
        q.seal("acme", &b.id, 1).await.unwrap();
        b.id
    });
    fleet.spawn_worker(1);
    let s = fleet.wait_completed(&batch, Duration::from_secs(60));
    let row = &fleet.manifest(&s)[0];
    assert_eq!(row["status"], "failed");
    assert!(
        row["error"].as_str().unwrap().contains("local path"),
        "{row}"
    );
    let stats = fleet.emulator_stats();
    assert!(
        stats["requests"].as_object().is_none_or(|m| m.is_empty()),
        "nothing was sent to the provider: {stats}"
    );
}

#[test]
fn an_idempotency_key_reused_for_other_jobs_is_a_conflict() {
    let fleet = Fleet::start("latency_ms = 5\n", "", 0);
    let small = fleet.file("p20.txt", &prompts(20));
    let big = fleet.file("p200.txt", &prompts(200));
    let a = fleet.submit(&small, &["--idempotency-key", "k1"]);
    let out = fleet.run(&["submit", big.to_str().unwrap(), "--idempotency-key", "k1"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("`k1`") && err.contains("line 21"), "{err}");
    assert!(err.contains("nothing was enqueued"), "{err}");
    let s = fleet.status(&a);
    assert_eq!(
        (s["total"].as_u64(), s["enqueued"].as_u64()),
        (Some(20), Some(20))
    );
    // A changed line is named too.
    let changed = fleet.file(
        "p20b.txt",
        &prompts(20).replace("prompt number 7\n", "other\n"),
    );
    let out = fleet.run(&[
        "submit",
        changed.to_str().unwrap(),
        "--idempotency-key",
        "k1",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("line 7"), "{}", stderr(&out));
    // The same content resumes as before.
    assert_eq!(fleet.submit(&small, &["--idempotency-key", "k1"]), a);
}

#[test]
fn a_cancel_drops_running_calls_at_once() {
    // Calls take 30 s: a cancel that waited for them would take that long.
    let mut fleet = Fleet::start("latency_ms = 30000\n", "", 0);
    let batch = fleet.submit(&fleet.file("p.txt", &prompts(10)), &[]);
    fleet.spawn_worker(4);
    fleet.wait_until(&batch, Duration::from_secs(30), "4 running", |s| {
        count(s, "running") == 4
    });
    let asked = Instant::now();
    let out = fleet.run(&["cancel", &batch]);
    assert!(out.status.success(), "{}", stderr(&out));
    let s = fleet.wait_completed(&batch, Duration::from_secs(10));
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "took {:?}",
        asked.elapsed()
    );
    assert_eq!(count(&s, "cancelled"), 10, "{s}");
    let rows = fleet.manifest(&s);
    let lines: Vec<u64> = rows.iter().map(|r| r["line"].as_u64().unwrap()).collect();
    assert_eq!(
        lines,
        (1..=10).collect::<Vec<_>>(),
        "queued ones keep their lines"
    );
    // Cancellations are not problems.
    let text = String::from_utf8_lossy(&fleet.run(&["status", &batch]).stdout).into_owned();
    assert!(!text.contains("newest problems"), "{text}");
    assert!(text.contains("cancelled 10 job(s) by request"), "{text}");
}

#[test]
fn status_tells_the_truth() {
    // Half the calls answer 500: jobs succeed after retries.
    let mut fleet = Fleet::start("latency_ms = 5\n[faults]\nrate_500 = 0.5\n", "", 0);
    fleet
        .envs
        .push(("IMAGEGEN__WORKER__MAX_ATTEMPTS".into(), "30".into()));
    let batch = fleet.submit(&fleet.file("p.txt", &prompts(12)), &[]);
    let s = fleet.status(&batch);
    assert_eq!(s["state"], "queued", "no worker yet: {s}");
    let text = String::from_utf8_lossy(&fleet.run(&["status", &batch]).stdout).into_owned();
    assert!(text.contains("workers   0 live"), "{text}");
    assert!(
        text.contains("waiting") && text.contains("in the queue"),
        "{text}"
    );
    fleet.spawn_worker(4);
    let s = fleet.wait_completed(&batch, Duration::from_secs(60));
    assert_eq!(count(&s, "succeeded"), 12);
    let retried: Vec<Value> = (0..12)
        .map(|i| fleet.status(&format!("{batch}.{i:06}")))
        .filter(|j| j["attempts"].as_u64() > Some(1))
        .collect();
    assert!(!retried.is_empty(), "some job was retried");
    for j in &retried {
        assert!(j.get("error").is_none(), "a success shows no error: {j}");
        let log = j["attempts_log"].as_array().expect("attempts_log");
        assert_eq!(log.len() as u64, j["attempts"].as_u64().unwrap() - 1, "{j}");
        assert!(log[0]["error"].as_str().unwrap().contains("500"), "{j}");
    }
    let text = String::from_utf8_lossy(&fleet.run(&["status", &batch]).stdout).into_owned();
    assert!(text.contains("workers   1 live"), "{text}");
    assert!(
        text.contains("running (after"),
        "run time apart from the wait: {text}"
    );
    let out = fleet.run(&["status", "no-such-batch"]);
    assert!(stderr(&out).contains("kept for 3d"), "{}", stderr(&out));
}

#[test]
fn status_and_results_exit_quietly_on_a_closed_pipe() {
    let mut fleet = Fleet::start("latency_ms = 5\n", "", 0);
    let batch = fleet.submit(&fleet.file("p.txt", &prompts(300)), &[]);
    fleet.spawn_worker(16);
    fleet.wait_completed(&batch, Duration::from_secs(120));
    for args in [
        vec!["status", batch.as_str()],
        vec!["results", batch.as_str()],
    ] {
        let mut child = fleet
            .cmd()
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        // `| head -1`: the reader is gone.
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_ne!(out.status.code(), Some(101), "{args:?}: {err}");
    }
}

#[test]
fn workers_with_different_configurations_are_warned_about() {
    let mut fleet = Fleet::start("latency_ms = 5\n", "", 0);
    fleet.spawn_worker(2);
    // A forgotten old worker: same project, another output store.
    let old = fleet.dir.path().join("old.toml");
    let text = std::fs::read_to_string(&fleet.config)
        .unwrap()
        .replace("/out\"", "/old-out\"");
    std::fs::write(&old, text).unwrap();
    let log = std::fs::File::create(fleet.dir.path().join("worker-1.log")).unwrap();
    let child = fleet
        .cmd_with(&old)
        .args(["worker", "--concurrency", "2"])
        .stderr(log)
        .spawn()
        .unwrap();
    fleet.workers.push(child);
    let start = Instant::now();
    loop {
        let logs = fleet.worker_log(0) + &fleet.worker_log(1);
        if logs.contains("different configuration") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no warning:\n{logs}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = fleet.run(&["status", "--project", "acme"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("workers   2 live"), "{text}");
    assert!(
        text.contains("WARNING") && text.contains("old-out"),
        "{text}"
    );
}

/// A Redis of the test's own, with AOF so a restart keeps the queue.
struct OwnRedis {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl OwnRedis {
    fn start(dir: &Path, port: Option<u16>) -> OwnRedis {
        let port = port.unwrap_or_else(|| {
            TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        });
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server");
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        OwnRedis {
            child,
            port,
            dir: dir.to_path_buf(),
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn restart(&mut self) {
        self.kill();
        *self = OwnRedis::start(&self.dir.clone(), Some(self.port));
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

#[test]
fn sigterm_with_redis_down_stops_within_the_grace_and_says_what_it_left() {
    let mut fleet = Fleet::start("latency_ms = 60000\n", "", 0);
    let mut redis = OwnRedis::start(fleet.dir.path(), None);
    fleet.redis = redis.url();
    fleet
        .envs
        .push(("IMAGEGEN__WORKER__SHUTDOWN_GRACE".into(), "2s".into()));
    let batch = fleet.submit(&fleet.file("p.txt", &prompts(8)), &[]);
    fleet.spawn_worker(4);
    fleet.wait_until(&batch, Duration::from_secs(30), "4 running", |s| {
        count(s, "running") == 4
    });
    redis.kill();
    let asked = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &fleet.workers[0].id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = loop {
        if let Some(s) = fleet.workers[0].try_wait().unwrap() {
            break s;
        }
        assert!(
            asked.elapsed() < Duration::from_secs(15),
            "still running:\n{}",
            fleet.worker_log(0)
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = asked.elapsed();
    let log = fleet.worker_log(0);
    eprintln!("stopped in {took:?}");
    // The grace (2 s) and the hand-back (5 s) bound it.
    assert!(took < Duration::from_secs(9), "took {took:?}\n{log}");
    assert!(
        !exit.success(),
        "work was left behind: a failure exit\n{log}"
    );
    assert!(log.contains("could not be handed back"), "{log}");
    assert!(!log.contains("released=4"), "{log}");
}

#[test]
fn submit_wait_rides_through_a_redis_restart() {
    let mut fleet = Fleet::start("latency_ms = 200\n", "", 0);
    let mut redis = OwnRedis::start(fleet.dir.path(), None);
    fleet.redis = redis.url();
    let file = fleet.file("p.txt", &prompts(40));
    let waiter = fleet
        .cmd()
        .args(["submit", file.to_str().unwrap(), "--wait"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    fleet.spawn_worker(2);
    std::thread::sleep(Duration::from_secs(2));
    redis.restart();
    let out = waiter.wait_with_output().unwrap();
    let err = stderr(&out);
    assert!(
        out.status.success(),
        "{err}\nworker:\n{}",
        fleet.worker_log(0)
    );
    assert!(err.contains("completed: 40 of 40 succeeded"), "{err}");
}
