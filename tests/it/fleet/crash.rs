//! `kill -9` of a worker mid-batch: nothing lost, every job terminal, the dead worker's
//! jobs recovered within 15 s, duplicates only among the jobs it had in flight, and no
//! duplicated outputs.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::load::ok_requests;
use super::*;

#[test]
fn kill_9_of_one_of_two_workers_loses_nothing() {
    // 100 ms per image so plenty of jobs are in flight at the kill.
    let mut fleet = Fleet::start("latency_ms = 100\n", "concurrency = 64\n", 0);
    fleet.spawn_worker(16);
    fleet.spawn_worker(16);
    let n = 2_000;
    let file = fleet.file("prompts.txt", &prompts(n));
    let batch = fleet.submit(&file, &[]);
    fleet.wait_until(&batch, Duration::from_secs(120), "300 jobs done", |s| {
        s["done"].as_u64().unwrap_or(0) >= 300
    });
    // Which jobs does worker 0 hold? Its consumer name is in the job records.
    let victim_pid = fleet.workers[0].id();
    fleet.workers[0].kill().unwrap(); // SIGKILL
    let killed_at = Instant::now();
    fleet.workers[0].wait().unwrap();
    let mut conn = fleet.redis();
    let base = fleet.base();
    let victim_tokens = fleet.pending_of(victim_pid);
    assert!(
        !victim_tokens.is_empty(),
        "the killed worker held no jobs:\n{}",
        fleet.worker_log(0)
    );
    let mut victim_jobs = Vec::new();
    for t in &victim_tokens {
        let entries: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
            .arg(format!("{base}:q:gemini-3.1-flash-image"))
            .arg(t)
            .arg(t)
            .query(&mut conn)
            .unwrap();
        victim_jobs.extend(entries.into_iter().map(|(_, f)| f["j"].clone()));
    }
    // Recovery: every job the dead worker held is finished by the survivor within 15 s.
    loop {
        let unfinished = victim_jobs
            .iter()
            .filter(|j| {
                let st: Option<String> = redis::cmd("HGET")
                    .arg(format!("{base}:job:{j}"))
                    .arg("st")
                    .query(&mut conn)
                    .unwrap();
                !matches!(
                    st.as_deref(),
                    Some("succeeded" | "failed" | "blocked" | "cancelled")
                )
            })
            .count();
        if unfinished == 0 {
            break;
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(15),
            "{unfinished} of the dead worker's {} jobs still unfinished 15 s after the kill",
            victim_jobs.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let recovered_in = killed_at.elapsed();
    let status = fleet.wait_completed(&batch, Duration::from_secs(300));
    assert_eq!(count(&status, "succeeded"), n as u64, "{status}");
    assert_eq!(status["done"], n as u64);
    assert_manifest_complete(&fleet.manifest(&status), n, 1024, 1024);
    // Duplicates: at most the jobs that were in flight on the dead worker.
    let extra = ok_requests(&fleet.emulator_stats()) - n as u64;
    assert!(
        extra <= victim_jobs.len() as u64,
        "{extra} duplicate calls, but only {} jobs were in flight on the killed worker",
        victim_jobs.len()
    );
    eprintln!(
        "kill -9: {} jobs in flight on the victim, recovered in {recovered_in:?}, {extra} duplicate calls",
        victim_jobs.len()
    );
}
