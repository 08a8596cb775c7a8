//! SIGTERM of a worker mid-batch: it stops claiming, finishes and settles the jobs it is
//! running, hands back everything else it holds (its local buffer included) and exits;
//! past `shutdown_grace` it releases what is still running. Nothing is lost, and a
//! job that finished before the exit is never run again.

use std::time::{Duration, Instant};

use super::load::ok_requests;
use super::*;

/// Waits for worker `i` to exit: (exit status, how long it took).
fn wait_exit(fleet: &mut Fleet, i: usize, limit: Duration) -> (std::process::ExitStatus, Duration) {
    let start = Instant::now();
    loop {
        if let Some(status) = fleet.workers[i].try_wait().unwrap() {
            return (status, start.elapsed());
        }
        assert!(
            start.elapsed() < limit,
            "worker {i} still running {limit:?} after SIGTERM\n{}",
            fleet.worker_log(i)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_finishes_running_jobs_and_releases_the_rest() {
    let mut fleet = Fleet::start("latency_ms = 300\n", "concurrency = 64\n", 0);
    fleet.spawn_worker(8);
    let n = 300;
    let file = fleet.file("prompts.txt", &prompts(n));
    let batch = fleet.submit(&file, &[]);
    fleet.wait_until(&batch, Duration::from_secs(60), "24 jobs done", |s| {
        s["done"].as_u64().unwrap_or(0) >= 24
    });
    let pid = fleet.workers[0].id();
    sigterm(&fleet.workers[0]);
    // Running jobs take 300 ms; the grace is 10 s.
    let (status, took) = wait_exit(&mut fleet, 0, Duration::from_secs(8));
    assert!(status.success(), "exit {status:?}\n{}", fleet.worker_log(0));
    // Everything it called is settled, and it holds nothing.
    let called = ok_requests(&fleet.emulator_stats());
    let after = fleet.status(&batch);
    assert_eq!(
        after["done"].as_u64(),
        Some(called),
        "every job it ran is settled: {after}"
    );
    assert!(
        called < n as u64,
        "the worker was stopped before the batch was done"
    );
    assert_eq!(
        fleet.pending_of(pid).len(),
        0,
        "the stopped worker still holds stream entries"
    );
    // Another worker finishes the rest; nothing ran twice.
    fleet.spawn_worker(32);
    let status = fleet.wait_completed(&batch, Duration::from_secs(120));
    assert_eq!(count(&status, "succeeded"), n as u64, "{status}");
    assert_manifest_complete(&fleet.manifest(&status), n, 1024, 1024);
    assert_eq!(
        ok_requests(&fleet.emulator_stats()),
        n as u64,
        "a job ran twice"
    );
    eprintln!("SIGTERM: exited in {took:?} after {called} jobs");
}

#[test]
fn sigterm_past_the_grace_releases_running_jobs() {
    let mut fleet = Fleet::start("latency_ms = 30000\n", "concurrency = 64\n", 0);
    fleet
        .envs
        .push(("IMAGEGEN__WORKER__SHUTDOWN_GRACE".into(), "2s".into()));
    fleet.spawn_worker(8);
    let n = 20;
    let file = fleet.file("prompts.txt", &prompts(n));
    let batch = fleet.submit(&file, &[]);
    fleet.wait_until(&batch, Duration::from_secs(30), "8 jobs running", |s| {
        count(s, "running") >= 8
    });
    let pid = fleet.workers[0].id();
    sigterm(&fleet.workers[0]);
    let (status, took) = wait_exit(&mut fleet, 0, Duration::from_secs(8));
    assert!(status.success(), "exit {status:?}\n{}", fleet.worker_log(0));
    assert!(
        took >= Duration::from_secs(2),
        "left before its grace: {took:?}"
    );
    assert_eq!(
        fleet.pending_of(pid).len(),
        0,
        "the stopped worker still holds stream entries"
    );
    let after = fleet.status(&batch);
    assert_eq!(after["done"], 0, "{after}");
    // The released jobs run at once on another worker (well inside the 3 s visibility
    // timeout a dead worker's jobs would wait for).
    fleet.post_scenario("latency_ms = 10\n");
    fleet.spawn_worker(32);
    let status = fleet.wait_completed(&batch, Duration::from_secs(60));
    assert_eq!(count(&status, "succeeded"), n as u64, "{status}");
    let attempts: Vec<u64> = fleet
        .manifest(&status)
        .iter()
        .map(|l| l["attempts"].as_u64().unwrap())
        .collect();
    assert!(attempts.iter().all(|a| *a <= 2), "{attempts:?}");
    eprintln!("SIGTERM past the grace: exited in {took:?}");
}
