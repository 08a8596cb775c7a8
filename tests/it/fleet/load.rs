//! Volume: 10,000 jobs through two workers; a 20,000-job burst with a poison payload
//! while the workers' Redis connections are killed.

use std::time::Duration;

use imagegen::queue::{Jobs as _, NewBatch, NewJob, QueueOptions, RedisQueue};

use super::*;

/// Emulator answering in ~5 ms: the queue, not the model, is under test.
const FAST: &str = "latency_ms = 5\n";

/// Successful requests the emulator answered.
pub fn ok_requests(stats: &Value) -> u64 {
    responses(stats, "200")
}

#[test]
fn ten_thousand_jobs_through_two_worker_processes() {
    let mut fleet = Fleet::start(FAST, "concurrency = 64\n", 0);
    // The default visibility timeout, not the fleet's 3 s (made for the takeover
    // tests): on 2 cores shared with the rest of the suite, a lease extension can be
    // more than 2 s late, and a lease that lapses is rightly run again by the other
    // worker, which this test's "nothing ran twice" would count against it.
    fleet
        .envs
        .push(("IMAGEGEN__WORKER__VISIBILITY_TIMEOUT".into(), "10s".into()));
    fleet.spawn_worker(32);
    fleet.spawn_worker(32);
    let file = fleet.file("prompts.txt", &prompts(10_000));
    let batch = fleet.submit(&file, &[]);
    let status = fleet.wait_completed(&batch, Duration::from_secs(600));
    assert_eq!(status["total"], 10_000);
    assert_eq!(status["done"], 10_000);
    assert_eq!(count(&status, "succeeded"), 10_000, "{status}");
    for s in ["queued", "running", "failed", "blocked", "cancelled"] {
        assert_eq!(count(&status, s), 0, "{s}: {status}");
    }
    assert_eq!(status["progress"], 1.0);
    assert_manifest_complete(&fleet.manifest(&status), 10_000, 1024, 1024);
    // No crash, so no job ran twice.
    assert_eq!(ok_requests(&fleet.emulator_stats()), 10_000);
    // Both workers took part.
    let mut conn = fleet.redis();
    let workers: std::collections::HashSet<String> = (0..10_000)
        .step_by(97)
        .filter_map(|seq| {
            redis::cmd("HGET")
                .arg(format!("{}:job:{batch}.{seq:06}", fleet.base()))
                .arg("w")
                .query::<Option<String>>(&mut conn)
                .unwrap()
        })
        .collect();
    assert_eq!(workers.len(), 2, "{workers:?}");
    // Project counters moved with every transition.
    let counts: std::collections::HashMap<String, i64> = redis::cmd("HGETALL")
        .arg(format!("{}:counts", fleet.base()))
        .query(&mut conn)
        .unwrap();
    assert_eq!(counts.get("succeeded"), Some(&10_000));
    assert_eq!(counts.get("queued").copied().unwrap_or(0), 0);
    assert_eq!(counts.get("running").copied().unwrap_or(0), 0);
}

#[test]
fn burst_of_20k_with_a_poison_payload_survives_killed_connections() {
    // Database 9: CLIENT KILL below must only hit this test's workers.
    let mut fleet = Fleet::start(FAST, "concurrency = 64\n", 9);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let queue = rt
        .block_on(RedisQueue::open(
            &fleet.redis,
            &fleet.prefix,
            QueueOptions::default(),
        ))
        .unwrap();
    let spec = r#"{"op":"generate","model":"gemini-3.1-flash-image","prompt":"burst"}"#;
    let batch = rt
        .block_on(async {
            let b = queue
                .create_batch(&NewBatch {
                    project: "acme".into(),
                    source: "burst".into(),
                    ..NewBatch::default()
                })
                .await?;
            // One burst: 20,000 jobs due at once, plus one payload no worker can decode.
            let mut jobs: Vec<NewJob> = (0..20_000u64)
                .map(|seq| NewJob {
                    seq,
                    line: Some(seq + 1),
                    spec: spec.into(),
                    lane: "gemini-3.1-flash-image".into(),
                    op: "generate".into(),
                    webhook: None,
                    hash: None,
                    interactive: false,
                    deps: Vec::new(),
                })
                .collect();
            jobs.insert(
                7_777,
                NewJob {
                    seq: 20_000,
                    line: Some(20_001),
                    spec: "{not json at all".into(),
                    lane: "gemini-3.1-flash-image".into(),
                    op: "generate".into(),
                    webhook: None,
                    hash: None,
                    interactive: false,
                    deps: Vec::new(),
                },
            );
            queue.enqueue("acme", &b.id, jobs).await?;
            queue.seal("acme", &b.id, 20_001).await?;
            Ok::<_, imagegen::queue::QueueError>(b.id)
        })
        .unwrap();
    fleet.spawn_worker(64);
    fleet.spawn_worker(64);
    // Mid-batch, kill every connection of this database's clients (the workers'), twice.
    let mut conn = fleet.redis();
    for _ in 0..2 {
        let start = std::time::Instant::now();
        loop {
            let s = fleet.status(&batch);
            if s["done"].as_u64().unwrap_or(0) >= 3_000
                || start.elapsed() > Duration::from_secs(120)
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let clients: String = redis::cmd("CLIENT").arg("LIST").query(&mut conn).unwrap();
        let me: i64 = redis::cmd("CLIENT").arg("ID").query(&mut conn).unwrap();
        let mut killed = 0;
        for line in clients.lines().filter(|l| l.contains(" db=9 ")) {
            let id: i64 = line
                .split(' ')
                .find_map(|f| f.strip_prefix("id="))
                .unwrap()
                .parse()
                .unwrap();
            if id != me {
                let _: redis::RedisResult<i64> = redis::cmd("CLIENT")
                    .arg("KILL")
                    .arg("ID")
                    .arg(id)
                    .query(&mut conn);
                killed += 1;
            }
        }
        assert!(
            killed >= 2,
            "killed {killed} connections:\n{clients}\nworker 0:\n{}\nworker 1:\n{}",
            fleet.worker_log(0),
            fleet.worker_log(1)
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    let status = fleet.wait_completed(&batch, Duration::from_secs(600));
    assert_eq!(status["done"], 20_001);
    assert_eq!(count(&status, "succeeded"), 20_000, "{status}");
    assert_eq!(count(&status, "failed"), 1, "{status}");
    // The poison payload is in the dead-letter stream with its reason.
    let dlq: Vec<(String, std::collections::HashMap<String, String>)> = redis::cmd("XRANGE")
        .arg(format!("{}:dlq", fleet.base()))
        .arg("-")
        .arg("+")
        .query(&mut conn)
        .unwrap();
    assert_eq!(dlq.len(), 1, "{dlq:?}");
    assert_eq!(dlq[0].1["j"], format!("{batch}.020000"));
    assert!(
        dlq[0].1["reason"].contains("undecodable job payload"),
        "{dlq:?}"
    );
    let poison = fleet.status(&format!("{batch}.020000"));
    assert_eq!(poison["status"], "failed");
    // Both workers are still alive: no Redis error ended them.
    for (i, w) in fleet.workers.iter_mut().enumerate() {
        assert!(
            w.try_wait().unwrap().is_none(),
            "worker {i} exited:\n{}",
            fleet_log(&fleet.dir, i)
        );
    }
}

fn fleet_log(dir: &tempfile::TempDir, i: usize) -> String {
    std::fs::read_to_string(dir.path().join(format!("worker-{i}.log"))).unwrap_or_default()
}
