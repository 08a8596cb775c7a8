//! Operations on batches: idempotent submit, cancel, status and results, and bad input
//! that enqueues nothing.

use std::time::Duration;

use super::*;

#[test]
fn an_invalid_line_enqueues_nothing_and_names_its_line() {
    let fleet = Fleet::start("latency_ms = 5\n", "", 0);
    let file = fleet.file(
        "jobs.jsonl",
        "{\"prompt\": \"fine\"}\n{\"prompt\": \"bad\", \"aspect_ratio\": \"7:3\"}\n{\"prompt\": \"fine too\"}\n",
    );
    let out = fleet.run(&["submit", "--project", "acme", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 2") && err.contains("aspect_ratio"),
        "{err}"
    );
    assert!(err.contains("nothing was enqueued"), "{err}");
    let mut conn = fleet.redis();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:*job:*", fleet.prefix))
        .query(&mut conn)
        .unwrap();
    assert!(keys.is_empty(), "{keys:?}");
    // With --skip-invalid the two good lines go in, keeping their line numbers.
    let batch = fleet.submit(&file, &["--skip-invalid"]);
    let s = fleet.status(&batch);
    assert_eq!(s["total"], 2);
    let mut fleet = fleet;
    fleet.spawn_worker(4);
    let s = fleet.wait_completed(&batch, Duration::from_secs(60));
    let lines: Vec<u64> = fleet
        .manifest(&s)
        .iter()
        .map(|l| l["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, vec![1, 3]);
}

#[test]
fn the_same_idempotency_key_returns_the_same_batch() {
    let fleet = Fleet::start("latency_ms = 5\n", "", 0);
    let file = fleet.file("p.txt", &prompts(30));
    let a = fleet.submit(&file, &["--idempotency-key", "nightly-42"]);
    let b = fleet.submit(&file, &["--idempotency-key", "nightly-42"]);
    assert_eq!(a, b);
    let c = fleet.submit(&file, &["--idempotency-key", "nightly-43"]);
    assert_ne!(a, c);
    assert_eq!(fleet.status(&a)["total"], 30);
    assert_eq!(fleet.status(&a)["enqueued"], 30, "not enqueued twice");
}

#[test]
fn cancelling_a_batch_stops_queued_jobs_and_completes_it() {
    // Slow model: most jobs are still queued when the cancel comes.
    let mut fleet = Fleet::start("latency_ms = 400\n", "", 0);
    let file = fleet.file("p.txt", &prompts(200));
    let batch = fleet.submit(&file, &[]);
    fleet.spawn_worker(4);
    fleet.wait_until(&batch, Duration::from_secs(30), "a job running", |s| {
        count(s, "running") > 0
    });
    let out = fleet.run(&["cancel", &batch, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["kind"], "batch");
    assert!(report["cancelled"].as_u64().unwrap() >= 150, "{report}");
    let s = fleet.wait_completed(&batch, Duration::from_secs(60));
    assert_eq!(s["done"], 200);
    let cancelled = count(&s, "cancelled");
    let succeeded = count(&s, "succeeded");
    assert_eq!(cancelled + succeeded, 200, "{s}");
    assert!(cancelled >= 150, "{s}");
    // Every job is terminal and queryable, with its reason.
    let lines = fleet.manifest(&s);
    assert_eq!(lines.len(), 200);
    let one = lines.iter().find(|l| l["status"] == "cancelled").unwrap();
    assert_eq!(one["error"], "cancelled by request");
    let job = fleet.status(one["job_id"].as_str().unwrap());
    assert_eq!(job["status"], "cancelled");
}

#[test]
fn status_and_results_of_a_finished_batch() {
    let mut fleet = Fleet::start("latency_ms = 5\n", "", 0);
    let file = fleet.file("p.txt", "a red kite\nsomething [[blocked]]\n");
    let batch = fleet.submit(&file, &[]);
    fleet.spawn_worker(4);
    fleet.wait_completed(&batch, Duration::from_secs(60));
    let out = fleet.run(&["status", &batch]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("state     completed"), "{text}");
    assert!(
        text.contains("succeeded") && text.contains("blocked"),
        "{text}"
    );
    assert!(text.contains("line 2"), "failures list their line: {text}");
    let dl = fleet.dir.path().join("dl");
    let out = fleet.run(&["results", &batch, "--download", dl.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing.contains("succeeded") && listing.contains("blocked"),
        "{listing}"
    );
    // Named by line and prompt.
    let png = dl.join("0001-a-red-kite-0.png");
    assert_eq!(png_size(&png), (1024, 1024));
    assert!(dl.join("manifest.jsonl").exists());
}
