//! Webhooks and metrics through the fleet: real Redis, the emulator, `imagegen worker`
//! processes, and a receiver (`tests/webhooks/receiver.py`) that verifies every delivery
//! with the Standard Webhooks reference library from the test venv.

use std::collections::HashMap;
use std::io::Write as _;
use std::process::{Child, Command, Stdio};

use imagegen::webhooks::Signer;

use super::*;

/// A running receiver.
pub(super) struct Receiver {
    child: Child,
    pub(super) url: String,
    log: PathBuf,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(super) fn python() -> PathBuf {
    std::env::var_os("IMAGEGEN_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"))
}

impl Receiver {
    fn start(dir: &Path, secrets: &[&str], fail_first: u32) -> Receiver {
        let py = python();
        assert!(
            py.exists(),
            "{} not found: run scripts/test (it installs standardwebhooks into .venv), or set IMAGEGEN_TEST_PYTHON",
            py.display()
        );
        let log = dir.join(format!("receiver-{}.jsonl", uuid::Uuid::new_v4().simple()));
        let mut child = Command::new(py)
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/webhooks/receiver.py"))
            .arg("--log")
            .arg(&log)
            .arg("--secrets")
            .arg(secrets.join(" "))
            .arg("--fail-first")
            .arg(fail_first.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let url = first.trim().rsplit(' ').next().unwrap().to_string();
        assert!(url.starts_with("http://"), "receiver said {first:?}");
        Receiver { child, url, log }
    }

    pub(super) fn records(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Waits until `pred` holds for the records.
    pub(super) fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let r = self.records();
            if pred(&r) {
                return r;
            }
            assert!(
                start.elapsed() < timeout,
                "{what}: not after {timeout:?}; got {r:#?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The project config lines for webhooks to `url`, signed with the secret in `$HOOK_SECRET`.
pub(super) fn hook_config(url: &str, schedule: &str, private: bool) -> String {
    format!(
        "concurrency = 64\nwebhook_url = \"{url}\"\nwebhook_secret = \"env:HOOK_SECRET\"\n\
         [webhooks]\nallow_private_networks = {private}\nretry_schedule = {schedule}\ntimeout = \"2s\"\n"
    )
}

pub(super) fn of_type<'a>(records: &'a [Value], t: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["body"]["type"] == t).collect()
}

fn verified_by(r: &Value, secret: &str) -> bool {
    r["verified"][secret] == true
}

/// A receiver answering 503 to the first `fail_first` attempts of each message, and a
/// fleet whose workers sign with a fresh secret (`$HOOK_SECRET`); `extra` gets the
/// receiver's URL and returns the project config lines.
pub(super) fn hooked_fleet(
    fail_first: u32,
    scenario: &str,
    extra: impl FnOnce(&str) -> String,
) -> (tempfile::TempDir, Receiver, Fleet, String) {
    let secret = Signer::generate();
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start(dir.path(), &[&secret], fail_first);
    let mut fleet = Fleet::start(scenario, &extra(&rx.url), 0);
    fleet.envs.push(("HOOK_SECRET".into(), secret.clone()));
    (dir, rx, fleet, secret)
}

/// Polls `status ID` until its webhook delivery is in `state`.
fn wait_webhook(fleet: &Fleet, id: &str, state: &str) -> Value {
    let start = Instant::now();
    loop {
        let s = fleet.status(id);
        if s["webhook"]["state"] == state {
            return s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "webhook not {state}: {s}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Replaces the fleet's workers by one signing with `secrets`.
fn restart_with_secret(fleet: &mut Fleet, secrets: String) {
    for w in &mut fleet.workers {
        let _ = w.kill();
        let _ = w.wait();
    }
    fleet.workers.clear();
    fleet.envs = vec![("HOOK_SECRET".into(), secrets)];
    fleet.spawn_worker(8);
}

#[test]
fn deliveries_verify_with_the_reference_library_across_a_secret_rotation() {
    let (old, new) = (Signer::generate(), Signer::generate());
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start(dir.path(), &[&old, &new], 0);
    let mut fleet = Fleet::start(
        "latency_ms = 5\n",
        &hook_config(&format!("{}/hook", rx.url), r#"["0s", "1s"]"#, true),
        0,
    );
    fleet.envs.push(("HOOK_SECRET".into(), old.clone()));
    fleet.spawn_worker(8);
    let file = fleet.file("a.txt", &prompts(3));
    let batch = fleet.submit(&file, &[]);
    fleet.wait_completed(&batch, Duration::from_secs(60));
    let recs = rx.wait_for(
        "3 job events and 1 batch event",
        Duration::from_secs(30),
        |r| r.len() >= 4,
    );
    assert_eq!(recs.len(), 4, "{recs:#?}");
    for r in &recs {
        assert!(
            verified_by(r, &old),
            "not verified with the current secret: {r}"
        );
        assert!(
            !verified_by(r, &new),
            "verified with a secret not yet in use: {r}"
        );
        assert_eq!(r["answered"], 200);
    }
    let jobs = of_type(&recs, "job.succeeded");
    assert_eq!(jobs.len(), 3);
    for j in &jobs {
        let d = &j["body"]["data"];
        assert_eq!(d["batch_id"], batch.as_str());
        assert_eq!(d["status"], "succeeded");
        assert_eq!(d["project"], "acme");
        assert_eq!(j["id"], format!("msg_{}", d["job_id"].as_str().unwrap()));
        let url = d["images"][0]["url"].as_str().unwrap();
        assert!(
            Path::new(url.strip_prefix("file://").unwrap()).exists(),
            "{url}"
        );
        assert!(d["result_url"].as_str().unwrap().ends_with("/result.json"));
        assert!(j["body"]["timestamp"].as_str().unwrap().ends_with('Z'));
    }
    let done = of_type(&recs, "batch.completed");
    assert_eq!(done.len(), 1);
    let d = &done[0]["body"]["data"];
    assert_eq!(d["batch_id"], batch.as_str());
    assert_eq!(d["counts"]["succeeded"], 3);
    assert_eq!(d["total"], 3);
    assert!(
        d["manifest_url"]
            .as_str()
            .unwrap()
            .ends_with("manifest.jsonl")
    );
    // Status shows the delivery and its attempt.
    let job_id = jobs[0]["body"]["data"]["job_id"].as_str().unwrap();
    let s = fleet.status(job_id);
    assert_eq!(s["webhook"]["state"], "delivered", "{s}");
    assert_eq!(s["webhook"]["attempts"][0]["status"], 200, "{s}");
    assert_eq!(fleet.status(&batch)["webhook"]["event"], "batch.completed");

    // Rotation: sign with the new secret and the old one at once...
    restart_with_secret(&mut fleet, format!("{new} {old}"));
    let b2 = fleet.submit(&fleet.file("b.txt", &prompts(2)), &[]);
    fleet.wait_completed(&b2, Duration::from_secs(60));
    let recs = rx.wait_for("3 more", Duration::from_secs(30), |r| r.len() >= 7);
    for r in &recs[4..] {
        assert!(verified_by(r, &old) && verified_by(r, &new), "{r}");
        assert_eq!(
            r["signature"].as_str().unwrap().split(' ').count(),
            2,
            "{r}"
        );
    }
    // ...then with the new one only.
    restart_with_secret(&mut fleet, new.clone());
    let b3 = fleet.submit(&fleet.file("c.txt", &prompts(1)), &[]);
    fleet.wait_completed(&b3, Duration::from_secs(60));
    let recs = rx.wait_for("2 more", Duration::from_secs(30), |r| r.len() >= 9);
    for r in &recs[7..] {
        assert!(verified_by(r, &new) && !verified_by(r, &old), "{r}");
    }
    assert_eq!(recs.len(), 9, "one delivery per event: {recs:#?}");
    let log = fleet.worker_log(0);
    assert!(
        !log.contains("webhook"),
        "webhook warnings in the worker log:\n{log}"
    );
}

#[test]
fn a_delivery_survives_three_failures_and_a_worker_kill_with_one_webhook_id() {
    // The receiver is "down" (503) for the first 3 attempts of every message.
    let (_dir, rx, mut fleet, secret) = hooked_fleet(3, "latency_ms = 5\n", |url| {
        hook_config(
            &format!("{url}/hook"),
            r#"["0s", "2s", "2s", "2s", "2s"]"#,
            true,
        )
    });
    fleet.spawn_worker(4);
    let batch = fleet.submit(&fleet.file("a.txt", &prompts(1)), &[]);
    fleet.wait_completed(&batch, Duration::from_secs(60));
    // First attempts failed: kill the worker between attempts (the next is ≥ 2 s away).
    rx.wait_for("first attempts", Duration::from_secs(30), |r| {
        r.iter().filter(|x| x["answered"] == 503).count() >= 2
    });
    let s = fleet.status(&batch);
    assert_eq!(s["webhook"]["state"], "pending", "{s}");
    let w = &mut fleet.workers[0];
    w.kill().unwrap();
    w.wait().unwrap();
    fleet.workers.clear();
    std::thread::sleep(Duration::from_secs(3));
    fleet.spawn_worker(4);
    let recs = rx.wait_for("both events delivered", Duration::from_secs(90), |r| {
        r.iter().filter(|x| x["answered"] == 200).count() >= 2
    });
    let mut by_id: HashMap<String, Vec<&Value>> = HashMap::new();
    for r in &recs {
        by_id
            .entry(r["id"].as_str().unwrap().into())
            .or_default()
            .push(r);
    }
    assert_eq!(by_id.len(), 2, "one job event, one batch event: {recs:#?}");
    for (id, attempts) in &by_id {
        let answered: Vec<u64> = attempts
            .iter()
            .map(|a| a["answered"].as_u64().unwrap())
            .collect();
        assert_eq!(answered, [503, 503, 503, 200], "{id}");
        let bodies: Vec<&Value> = attempts.iter().map(|a| &a["body"]).collect();
        assert!(
            bodies.windows(2).all(|w| w[0] == w[1]),
            "same body every attempt: {id}"
        );
        for a in attempts {
            assert!(a["verified"][&secret] == true, "{a}");
        }
    }
    // Every attempt is recorded, in order, on the delivery.
    let s = fleet.status(&batch);
    let attempts = s["webhook"]["attempts"].as_array().unwrap();
    let codes: Vec<u64> = attempts
        .iter()
        .map(|a| a["status"].as_u64().unwrap())
        .collect();
    assert_eq!(codes, [503, 503, 503, 200], "{s}");
    assert_eq!(s["webhook"]["state"], "delivered");
}

#[test]
fn a_ten_thousand_job_batch_fires_exactly_one_batch_completed() {
    // No project default: only the batch's own webhook, which gets batch.completed only.
    let (_dir, rx, mut fleet, secret) = hooked_fleet(0, "latency_ms = 1\n", |_| {
        "concurrency = 64\nwebhook_secret = \"env:HOOK_SECRET\"\n[webhooks]\nallow_private_networks = true\n".into()
    });
    fleet.spawn_worker(32);
    fleet.spawn_worker(32);
    let file = fleet.file("big.txt", &prompts(10_000));
    let hook = format!("{}/hook", rx.url);
    let batch = fleet.submit(&file, &["--webhook", &hook]);
    let s = fleet.wait_completed(&batch, Duration::from_secs(600));
    assert_eq!(count(&s, "succeeded"), 10_000);
    rx.wait_for("batch.completed", Duration::from_secs(30), |r| {
        !r.is_empty()
    });
    std::thread::sleep(Duration::from_secs(3));
    let recs = rx.records();
    assert_eq!(recs.len(), 1, "exactly one delivery: {recs:#?}");
    assert_eq!(recs[0]["body"]["type"], "batch.completed");
    assert_eq!(recs[0]["body"]["data"]["counts"]["succeeded"], 10_000);
    assert!(recs[0]["verified"][&secret] == true);
}

#[test]
fn private_destinations_are_refused_and_redirects_not_followed() {
    let secret = Signer::generate();
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start(dir.path(), &[&secret], 0);
    let port = rx.url.rsplit(':').next().unwrap().to_string();
    // Private networks not allowed (the default); the project's default webhook is a
    // name that resolves to 127.0.0.1, which only the delivery's resolver can refuse.
    let mut fleet = Fleet::start(
        "latency_ms = 5\n",
        &format!(
            "concurrency = 8\nwebhook_url = \"http://localhost:{port}/hook\"\nwebhook_secret = \"env:HOOK_SECRET\"\n"
        ),
        0,
    );
    fleet.envs.push(("HOOK_SECRET".into(), secret.clone()));
    let file = fleet.file("a.txt", &prompts(1));
    for (url, says) in [
        (
            format!("http://127.0.0.1:{port}/hook"),
            "127.0.0.1, a loopback address",
        ),
        (
            "http://10.0.0.1/hook".to_string(),
            "10.0.0.1, a private address",
        ),
        (
            "http://169.254.169.254/latest".to_string(),
            "169.254.169.254, a link-local address",
        ),
        (
            format!("http://[::ffff:127.0.0.1]:{port}/hook"),
            "127.0.0.1, a loopback address",
        ),
        (
            format!("http://localhost:{port}/hook"),
            "a loopback address",
        ),
    ] {
        let out = fleet.run(&[
            "submit",
            "--project",
            "acme",
            file.to_str().unwrap(),
            "--webhook",
            &url,
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{url} was accepted");
        assert!(
            err.contains("--webhook") && err.contains(says) && err.contains("refused"),
            "{url}: {err}"
        );
    }
    // Nothing was enqueued by the refused submits.
    let counts: HashMap<String, i64> = redis::cmd("HGETALL")
        .arg(format!("{}:counts", fleet.base()))
        .query(&mut fleet.redis())
        .unwrap();
    assert!(counts.values().all(|v| *v == 0), "{counts:?}");

    // At delivery: the resolved address is checked before connecting.
    fleet.spawn_worker(4);
    let batch = fleet.submit(&file, &[]);
    fleet.wait_completed(&batch, Duration::from_secs(60));
    let s = wait_webhook(&fleet, &batch, "failed");
    let err = s["webhook"]["error"].as_str().unwrap();
    assert!(
        err.contains("localhost resolves to")
            && err.contains("loopback")
            && err.contains("refused"),
        "{err}"
    );
    assert!(
        s["webhook"]["attempts"][0].get("status").is_none(),
        "no request was made: {s}"
    );
    assert!(
        rx.records().is_empty(),
        "the receiver was reached: {:#?}",
        rx.records()
    );
    drop(fleet);

    // Redirects are not followed; a 410 disables the endpoint for the project.
    let mut fleet = Fleet::start(
        "latency_ms = 5\n",
        &hook_config(&format!("{}/redirect", rx.url), r#"["0s"]"#, true),
        0,
    );
    fleet.envs.push(("HOOK_SECRET".into(), secret.clone()));
    fleet.spawn_worker(4);
    let batch = fleet.submit(&fleet.file("b.txt", &prompts(1)), &[]);
    fleet.wait_completed(&batch, Duration::from_secs(60));
    let recs = rx.wait_for("two redirected attempts", Duration::from_secs(30), |r| {
        r.len() >= 2
    });
    std::thread::sleep(Duration::from_secs(1));
    let recs_now = rx.records();
    assert_eq!(recs_now.len(), recs.len());
    assert!(
        recs_now.iter().all(|r| r["path"] == "/redirect"),
        "a redirect was followed: {recs_now:#?}"
    );
    let s = fleet.status(&batch);
    assert_eq!(s["webhook"]["attempts"][0]["status"], 302, "{s}");
    assert!(
        s["webhook"]["attempts"][0]["error"]
            .as_str()
            .unwrap()
            .contains("not followed"),
        "{s}"
    );
}

#[test]
fn a_410_disables_the_endpoint_until_it_is_enabled() {
    let (_dir, rx, mut fleet, _) = hooked_fleet(0, "latency_ms = 5\n", |_| {
        "concurrency = 8\nwebhook_secret = \"env:HOOK_SECRET\"\n[webhooks]\nallow_private_networks = true\nretry_schedule = [\"0s\", \"1s\"]\n".into()
    });
    let gone = format!("{}/gone", rx.url);
    fleet.spawn_worker(4);
    let b1 = fleet.submit(&fleet.file("a.txt", &prompts(1)), &["--webhook", &gone]);
    fleet.wait_completed(&b1, Duration::from_secs(60));
    rx.wait_for("the 410", Duration::from_secs(30), |r| r.len() == 1);
    let out = fleet.run(&["webhooks", "disabled", "acme"]);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(listed.contains(&gone) && listed.contains("410"), "{listed}");
    // The next event for it is not sent.
    let b2 = fleet.submit(&fleet.file("b.txt", &prompts(1)), &["--webhook", &gone]);
    fleet.wait_completed(&b2, Duration::from_secs(60));
    let s = wait_webhook(&fleet, &b2, "failed");
    assert!(
        s["webhook"]["error"].as_str().unwrap().contains("not sent"),
        "{s}"
    );
    assert_eq!(rx.records().len(), 1);
    let out = fleet.run(&["webhooks", "enable", "acme", &gone]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("enabled"));
    let b3 = fleet.submit(&fleet.file("c.txt", &prompts(1)), &["--webhook", &gone]);
    fleet.wait_completed(&b3, Duration::from_secs(60));
    rx.wait_for("sent again", Duration::from_secs(30), |r| r.len() == 2);
}

/// Scrapes a worker's metrics address from its log.
pub(super) fn metrics_addr(fleet: &Fleet, i: usize) -> String {
    let start = Instant::now();
    loop {
        let log = fleet.worker_log(i);
        if let Some(url) = log
            .lines()
            .filter(|l| l.starts_with("imagegen worker started "))
            .find_map(|l| l.split(' ').find_map(|kv| kv.strip_prefix("metrics=")))
        {
            return url.trim_end_matches("/metrics").to_string();
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no metrics address in {log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `name{labels}` → value, for one exposition.
pub(super) fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn promtool_check(text: &str) {
    let promtool = std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".into());
    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{promtool}: {e} (scripts/test installs Debian's prometheus package)")
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn metrics_pass_promtool_and_match_the_batch_exactly() {
    let mut fleet = Fleet::start(
        "latency_ms = 5\nfault_markers = true\n",
        "concurrency = 16\n",
        0,
    );
    fleet
        .envs
        .push(("IMAGEGEN__WORKER__MAX_ATTEMPTS".into(), "2".into()));
    for i in 0..2 {
        let log = std::fs::File::create(fleet.dir.path().join(format!("worker-{i}.log"))).unwrap();
        let child = fleet
            .cmd()
            .args([
                "worker",
                "--concurrency",
                "8",
                "--metrics-listen",
                "127.0.0.1:0",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        fleet.workers.push(child);
    }
    let addrs: Vec<String> = (0..2).map(|i| metrics_addr(&fleet, i)).collect();
    for a in &addrs {
        assert_eq!(http("GET", a, "/healthz", "").0, 200);
        assert_eq!(http("GET", a, "/readyz", "").0, 200);
    }
    let mut lines = String::new();
    for i in 0..30 {
        lines.push_str(&format!("a fine picture {i}\n"));
    }
    for i in 0..5 {
        lines.push_str(&format!("something [[blocked]] {i}\n"));
    }
    for i in 0..5 {
        lines.push_str(&format!("a flaky one [[fail:503]] {i}\n"));
    }
    let batch = fleet.submit(&fleet.file("mixed.txt", &lines), &[]);
    let s = fleet.wait_completed(&batch, Duration::from_secs(90));
    assert_eq!(
        (
            count(&s, "succeeded"),
            count(&s, "blocked"),
            count(&s, "failed")
        ),
        (30, 5, 5),
        "{s}"
    );
    let mut total: HashMap<String, f64> = HashMap::new();
    let mut cluster = HashMap::new();
    for a in &addrs {
        let (status, text) = http("GET", a, "/metrics", "");
        assert_eq!(status, 200);
        promtool_check(&text);
        for (k, v) in samples(&text) {
            if k.starts_with("imagegen_queue_jobs") || k.starts_with("imagegen_jobs_enqueued_total")
            {
                cluster.insert(k, v);
            } else {
                *total.entry(k).or_default() += v;
            }
        }
    }
    let get = |m: &HashMap<String, f64>, k: &str| m.get(k).copied().unwrap_or(0.0);
    for (outcome, n) in [("succeeded", 30.0), ("blocked", 5.0), ("failed", 5.0)] {
        let k = format!(
            r#"imagegen_jobs_finished_total{{operation="generate",outcome="{outcome}",project="acme"}}"#
        );
        assert_eq!(
            get(&total, &k),
            n,
            "{k} summed over both workers: {total:#?}"
        );
        let k = format!(r#"imagegen_queue_jobs{{project="acme",state="{outcome}"}}"#);
        assert_eq!(get(&cluster, &k), n, "{k}");
    }
    assert_eq!(
        get(
            &cluster,
            r#"imagegen_jobs_enqueued_total{operation="generate",project="acme"}"#
        ),
        40.0
    );
    assert_eq!(
        get(&total, r#"imagegen_images_written_total{project="acme"}"#),
        30.0
    );
    // 30 images + 5 blocked answers; 5 jobs × 2 attempts of 503; one counted retry each.
    assert_eq!(
        get(
            &total,
            r#"imagegen_provider_responses_total{code="200",model="gemini-3.1-flash-image",project="acme"}"#
        ),
        35.0
    );
    assert_eq!(
        get(
            &total,
            r#"imagegen_provider_responses_total{code="503",model="gemini-3.1-flash-image",project="acme"}"#
        ),
        10.0
    );
    assert_eq!(
        get(
            &total,
            r#"imagegen_job_retries_total{project="acme",reason="server"}"#
        ),
        5.0
    );
    assert_eq!(
        get(&total, r#"imagegen_jobs_in_flight{project="acme"}"#),
        0.0
    );
    assert_eq!(
        get(
            &total,
            r#"imagegen_job_duration_seconds_count{operation="generate",project="acme"}"#
        ),
        40.0
    );
}

#[test]
fn a_job_lines_own_webhook_url_gets_its_event() {
    let (_dir, rx, mut fleet, secret) = hooked_fleet(0, "latency_ms = 5\n", |_| {
        "concurrency = 8\nwebhook_secret = \"env:HOOK_SECRET\"\n[webhooks]\nallow_private_networks = true\n".into()
    });
    fleet.spawn_worker(4);
    let own = format!("{}/own", rx.url);
    let lines = format!(
        "{{\"prompt\": \"with its own hook\", \"webhook_url\": \"{own}\", \"metadata\": {{\"ref\": 42}}}}\n{{\"prompt\": \"without\"}}\n"
    );
    let batch = fleet.submit(&fleet.file("a.jsonl", &lines), &[]);
    fleet.wait_completed(&batch, Duration::from_secs(60));
    let recs = rx.wait_for("the job's own event", Duration::from_secs(30), |r| {
        !r.is_empty()
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        rx.records().len(),
        1,
        "no project default: only the job with its own URL: {recs:#?}"
    );
    assert_eq!(recs[0]["path"], "/own");
    let d = &recs[0]["body"]["data"];
    assert_eq!(
        (d["line"].as_u64(), &d["metadata"]["ref"]),
        (Some(1), &Value::from(42))
    );
    assert!(recs[0]["verified"][&secret] == true);
    // A bad one is refused before anything is enqueued, naming the field.
    let out = fleet.run(&[
        "submit",
        "--project",
        "acme",
        fleet
            .file(
                "b.jsonl",
                "{\"prompt\": \"x\", \"webhook_url\": \"ftp://nope\"}\n",
            )
            .to_str()
            .unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("webhook_url"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(fleet);

    // A project without a secret signs nothing: the event ends, saying why.
    let mut fleet = Fleet::start("latency_ms = 5\n", "concurrency = 8\n", 0);
    fleet.spawn_worker(4);
    let batch = fleet.submit(&fleet.file("c.jsonl", &lines), &[]);
    fleet.wait_completed(&batch, Duration::from_secs(60));
    let job = format!("{batch}.000000");
    let s = wait_webhook(&fleet, &job, "failed");
    assert!(
        s["webhook"]["error"]
            .as_str()
            .unwrap()
            .contains("no webhook_secret"),
        "{s}"
    );
    assert_eq!(rx.records().len(), 1);
}

#[test]
fn batch_completed_of_a_cancelled_batch_says_so() {
    let (_dir, rx, mut fleet, _secret) = hooked_fleet(0, "latency_ms = 20000\n", |url| {
        hook_config(&format!("{url}/hook"), r#"["0s", "1s"]"#, true)
    });
    fleet.spawn_worker(2);
    let file = fleet.file("a.txt", "fine\nslow one\nslow two\n[[blocked]] here\n");
    let batch = fleet.submit(&file, &[]);
    fleet.wait_until(&batch, Duration::from_secs(30), "2 running", |s| {
        count(s, "running") == 2
    });
    let out = fleet.run(&["cancel", &batch]);
    assert!(out.status.success());
    fleet.wait_completed(&batch, Duration::from_secs(30));
    let recs = rx.wait_for("batch.completed", Duration::from_secs(30), |r| {
        !of_type(r, "batch.completed").is_empty()
    });
    let done = of_type(&recs, "batch.completed");
    let d = &done[0]["body"]["data"];
    assert_eq!(d["status"], "cancelled", "{d}");
    assert_eq!(d["counts"]["cancelled"], 4, "{d}");
    assert_eq!(d["cancelled_job_ids"].as_array().unwrap().len(), 4, "{d}");
    assert!(d["failed_job_ids"].as_array().unwrap().is_empty(), "{d}");
    // The typed body reads back with the product's own struct.
    let typed: imagegen::webhooks::payload::Event<imagegen::webhooks::payload::BatchEvent> =
        serde_json::from_value(done[0]["body"].clone()).unwrap();
    assert_eq!(typed.data.cancelled_job_ids.len(), 4);
}

#[test]
fn a_retired_model_migrates_and_says_so_in_submit_record_manifest_and_webhook() {
    // gemini-2.5-flash-image is past its Gemini API shutdown (2026-10-02); the fleet's
    // project is a Gemini API one, so its lines run on the replacement.
    let (_dir, rx, mut fleet, secret) = hooked_fleet(0, "latency_ms = 5\n", |url| {
        hook_config(&format!("{url}/hook"), r#"["0s"]"#, true)
    });
    fleet.spawn_worker(4);
    let file = fleet.file(
        "old.jsonl",
        "{\"prompt\": \"a fox\", \"model\": \"gemini-2.5-flash-image\"}\n{\"prompt\": \"a hare\"}\n",
    );
    let out = fleet.run(&[
        "submit",
        "--project",
        "acme",
        file.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: line 1: gemini-2.5-flash-image is shut down on the Gemini API since 2026-10-02; its replacement is gemini-3.1-flash-image: running on gemini-3.1-flash-image instead"),
        "{stderr}"
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        summary["warnings"].as_array().unwrap().len(),
        1,
        "{summary}"
    );
    let batch = summary["batch_id"].as_str().unwrap().to_string();
    let status = fleet.wait_completed(&batch, Duration::from_secs(60));
    let manifest = fleet.manifest(&status);
    let migrated: Vec<&Value> = manifest
        .iter()
        .filter(|l| l["model_requested"] == "gemini-2.5-flash-image")
        .collect();
    assert_eq!(migrated.len(), 1, "{manifest:#?}");
    assert_eq!(migrated[0]["model"], "gemini-3.1-flash-image");
    // result.json beside the image says the same.
    let url = migrated[0]["images"][0]["url"].as_str().unwrap();
    let result_json = Path::new(url.strip_prefix("file://").unwrap()).with_file_name("result.json");
    let result: Value = serde_json::from_slice(&std::fs::read(&result_json).unwrap()).unwrap();
    assert_eq!(result["model"], "gemini-3.1-flash-image");
    assert_eq!(result["model_requested"], "gemini-2.5-flash-image");
    let recs = rx.wait_for("2 job events", Duration::from_secs(30), |r| {
        of_type(r, "job.succeeded").len() == 2
    });
    let events = of_type(&recs, "job.succeeded");
    let hooked: Vec<&&Value> = events
        .iter()
        .filter(|r| r["body"]["data"]["model_requested"] == "gemini-2.5-flash-image")
        .collect();
    assert_eq!(hooked.len(), 1, "{recs:#?}");
    assert_eq!(hooked[0]["body"]["data"]["model"], "gemini-3.1-flash-image");
    assert!(verified_by(hooked[0], &secret));
    // The other line named no model: nothing to say about it.
    assert!(
        events
            .iter()
            .any(|r| r["body"]["data"]["model_requested"].is_null())
    );
}

#[test]
fn a_hold_sends_one_lane_held_and_one_lane_resumed() {
    let model = "gemini-3.1-flash-image";
    let (_dir, rx, mut fleet, secret) = hooked_fleet(
        0,
        &format!("latency_ms = 20\nretired_models = [\"{model}\"]\n"),
        |url| hook_config(&format!("{url}/hook"), r#"["0s", "1s"]"#, true),
    );
    fleet
        .envs
        .push(("IMAGEGEN__WORKER__HOLD_PROBE".into(), "1s".into()));
    let log = std::fs::File::create(fleet.dir.path().join("worker-0.log")).unwrap();
    let child = fleet
        .cmd()
        .args([
            "worker",
            "--concurrency",
            "4",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    fleet.workers.push(child);
    fleet.spawn_worker(4);
    let metrics = metrics_addr(&fleet, 0);
    let held_gauge = || {
        let (status, text) = http("GET", &metrics, "/metrics", "");
        assert_eq!(status, 200);
        let key = format!(
            r#"imagegen_lane_held{{model="{model}",project="acme",reason="model_unavailable"}}"#
        );
        samples(&text)
            .into_iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    };
    let file = fleet.file("p.txt", &prompts(12));
    let batch = fleet.submit(&file, &[]);
    let held = rx.wait_for("lane.held", Duration::from_secs(30), |r| {
        !of_type(r, "lane.held").is_empty()
    });
    let h = of_type(&held, "lane.held")[0];
    assert!(verified_by(h, &secret), "{h}");
    let data = &h["body"]["data"];
    assert_eq!(data["project"], "acme");
    assert_eq!(data["model"], model);
    assert_eq!(data["reason"], "model_unavailable");
    assert!(data["message"].as_str().unwrap().contains("404"), "{h}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(held_gauge(), Some(1.0), "imagegen_lane_held while held");
    fleet.post_scenario("latency_ms = 20\n");
    fleet.wait_completed(&batch, Duration::from_secs(60));
    rx.wait_for("lane.resumed", Duration::from_secs(30), |r| {
        !of_type(r, "lane.resumed").is_empty() && !of_type(r, "batch.completed").is_empty()
    });
    std::thread::sleep(Duration::from_millis(500));
    let recs = rx.records();
    assert_eq!(of_type(&recs, "lane.held").len(), 1, "{recs:#?}");
    let resumed = of_type(&recs, "lane.resumed");
    assert_eq!(resumed.len(), 1, "{recs:#?}");
    let r = &resumed[0]["body"]["data"];
    assert_eq!(r["model"], model);
    assert_eq!(r["held_since_ms"], data["held_since_ms"], "{r}");
    assert!(r["held_for_ms"].as_u64().unwrap() >= 2_000, "{r}");
    assert!(
        resumed[0]["body"]["timestamp"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    assert!(verified_by(resumed[0], &secret));
    assert_eq!(
        held_gauge(),
        Some(0.0),
        "imagegen_lane_held after the resume"
    );
}
