//! Issue 4 through the fleet: cluster-wide limits held by two worker processes,
//! fairness between projects, rate limits, adaptive control on 429s, and parking on a
//! spent daily quota — measured at the emulator, which counts every request.

use std::time::{Duration, Instant};

use super::*;

const MODEL: &str = "gemini-3.1-flash-image";

/// A scenario whose API keys map to projects `acme` and `bravo` (so the emulator counts
/// them apart), with `rest` appended.
fn scenario(rest: &str) -> String {
    format!("{rest}\n[api_keys]\n\"fleet-test-key\" = \"acme\"\n\"bravo-key\" = \"bravo\"\n")
}

/// Config lines for a second project `bravo` on the same emulator.
fn bravo(fleet: &Fleet, extra: &str) -> String {
    format!(
        "\n[projects.bravo]\nbackend = \"gemini-api\"\nendpoint = \"{}\"\ncredentials = \"env:BRAVO_KEY\"\ndefault_model = \"{MODEL}\"\n{extra}\n",
        fleet.emulator_url
    )
}

fn append_config(fleet: &mut Fleet, text: &str) {
    let mut config = std::fs::read_to_string(&fleet.config).unwrap();
    config.push_str(text);
    std::fs::write(&fleet.config, config).unwrap();
    fleet.envs.push(("BRAVO_KEY".into(), "bravo-key".into()));
}

/// Responses the emulator gave `project` for the model, by HTTP status.
fn responses(stats: &Value, project: &str, code: &str) -> u64 {
    stats["requests"][format!("{project}/{MODEL}")][code]
        .as_u64()
        .unwrap_or(0)
}

fn lanes(fleet: &Fleet, project: &str) -> Value {
    let out = fleet.run(&["status", "--project", project, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v[project].clone()
}

#[test]
fn project_concurrency_holds_across_two_workers() {
    let mut fleet = Fleet::start(&scenario("latency_ms = 20\n"), "concurrency = 4\n", 0);
    fleet.spawn_worker(32);
    fleet.spawn_worker(32);
    let file = fleet.file("p.txt", &prompts(2_000));
    let batch = fleet.submit(&file, &[]);
    let s = fleet.wait_completed(&batch, Duration::from_secs(240));
    assert_eq!(count(&s, "succeeded"), 2_000, "{s}");
    let stats = fleet.emulator_stats();
    let peak = stats["peak_concurrency"][format!("acme/{MODEL}")]
        .as_u64()
        .unwrap();
    eprintln!("project concurrency 4: peak at the emulator {peak}");
    assert!(peak <= 4, "peak concurrency {peak} > 4: {stats}");
    assert!(peak >= 3, "the limit was not used: peak {peak}");
    assert_eq!(responses(&stats, "acme", "200"), 2_000, "{stats}");
    let lane = &lanes(&fleet, "acme")[0];
    assert_eq!(lane["model"], MODEL);
    assert_eq!(lane["concurrency"], 4);
    assert_eq!(lane["in_flight"], 0, "{lane}");
}

#[test]
fn a_small_project_is_not_stuck_behind_a_big_one_and_weights_split_the_workers() {
    let mut fleet = Fleet::start(
        &scenario("latency_ms = 40\n"),
        "concurrency = 64\nweight = 3\n",
        0,
    );
    let text = bravo(&fleet, "concurrency = 64\nweight = 1\n");
    append_config(&mut fleet, &text);
    let a = fleet.submit_to("acme", &fleet.file("a.txt", &prompts(5_000)), &[]);
    fleet.spawn_worker(16);
    fleet.spawn_worker(16);
    // A is running flat out when B's 50 arrive: all of B's finish while most of A waits.
    fleet.wait_until(&a, Duration::from_secs(120), "100 of A succeeded", |s| {
        count(s, "succeeded") >= 100
    });
    let b = fleet.submit_to("bravo", &fleet.file("b.txt", &prompts(50)), &[]);
    let sb = fleet.wait_completed(&b, Duration::from_secs(60));
    assert_eq!(count(&sb, "succeeded"), 50);
    let sa = fleet.status(&a);
    assert!(
        count(&sa, "queued") > 4_000,
        "B finished only after A drained: {sa}"
    );
    // Both saturated: completions split by weight, 3:1.
    let b2 = fleet.submit_to("bravo", &fleet.file("b2.txt", &prompts(3_000)), &[]);
    std::thread::sleep(Duration::from_secs(2));
    let (a0, b0) = (
        count(&fleet.status(&a), "succeeded"),
        count(&fleet.status(&b2), "succeeded"),
    );
    std::thread::sleep(Duration::from_secs(8));
    let (a1, b1) = (
        count(&fleet.status(&a), "succeeded"),
        count(&fleet.status(&b2), "succeeded"),
    );
    let (da, db) = ((a1 - a0) as f64, (b1 - b0) as f64);
    assert!(
        count(&fleet.status(&a), "queued") > 0 && count(&fleet.status(&b2), "queued") > 0,
        "both must stay saturated for the measurement"
    );
    let ratio = da / db;
    eprintln!("weighted split: A {da} B {db} ratio {ratio:.2}");
    assert!(
        (2.7..=3.3).contains(&ratio),
        "A {da} vs B {db} completions: ratio {ratio:.2}, want 3 ± 10%"
    );
}

/// Polls the emulator's counters for `acme` until `t` after `start`.
fn counts_at(fleet: &Fleet, start: Instant, t: Duration) -> (u64, u64) {
    while start.elapsed() < t {
        std::thread::sleep(Duration::from_millis(20));
    }
    let stats = fleet.emulator_stats();
    (
        responses(&stats, "acme", "200"),
        responses(&stats, "acme", "429"),
    )
}

#[test]
fn a_configured_rpm_uses_the_quota_without_429s() {
    // Google's quota: 600 rpm (10/s). Ours: the same, cluster-wide.
    let mut fleet = Fleet::start(
        &scenario(&format!(
            "latency_ms = 2000\n[quota.acme.\"{MODEL}\"]\nrpm = 600\n"
        )),
        "concurrency = 64\nrpm = 600\n",
        0,
    );
    fleet.spawn_worker(32);
    fleet.spawn_worker(32);
    let file = fleet.file("p.txt", &prompts(800));
    let batch = fleet.submit(&file, &[]);
    let start = Instant::now();
    let (ok0, r0) = counts_at(&fleet, start, Duration::from_secs(5));
    let (ok1, r1) = counts_at(&fleet, start, Duration::from_secs(65));
    let (ok, rejected) = (ok1 - ok0, r1 - r0);
    eprintln!("configured rpm: {ok} answered, {rejected} 429 in 60 s");
    assert!(ok >= 570, "{ok} of 600 in 60 s: quota underused");
    assert!(
        (rejected as f64) < 0.01 * (ok + rejected) as f64,
        "{rejected} 429s of {}",
        ok + rejected
    );
    assert!(
        count(&fleet.status(&batch), "queued") > 0,
        "ran out of work"
    );
}

#[test]
fn adaptive_control_finds_an_unconfigured_quota() {
    // Google allows 600 rpm; we were told nothing but concurrency 64 (with 2 s calls that
    // is 32 requests a second, three times the quota).
    let mut fleet = Fleet::start(
        &scenario(&format!(
            "latency_ms = 2000\n[quota.acme.\"{MODEL}\"]\nrpm = 600\n"
        )),
        "concurrency = 64\n",
        0,
    );
    fleet.spawn_worker(32);
    fleet.spawn_worker(32);
    let file = fleet.file("p.txt", &prompts(700));
    let batch = fleet.submit(&file, &[]);
    let start = Instant::now();
    let (ok0, r0) = counts_at(&fleet, start, Duration::from_secs(15));
    let (ok1, r1) = counts_at(&fleet, start, Duration::from_secs(60));
    let (ok, rejected) = (ok1 - ok0, r1 - r0);
    eprintln!("adaptive: {ok} answered, {rejected} 429 between 15 s and 60 s");
    let lane = &lanes(&fleet, "acme")[0];
    eprintln!("lane: {lane}");
    assert!(
        (rejected as f64) < 0.05 * (ok + rejected) as f64,
        "{rejected} 429s of {} after the first 15 s",
        ok + rejected
    );
    assert!(
        ok as f64 >= 0.85 * 450.0,
        "{ok} answered in 45 s: under 85% of the 600 rpm quota"
    );
    assert!(
        lane["effective_concurrency"].as_f64().unwrap() < 64.0,
        "{lane}"
    );
    let s = fleet.wait_completed(&batch, Duration::from_secs(120));
    assert_eq!(count(&s, "succeeded"), 700, "{s}");
}

#[test]
fn an_advised_delay_pauses_every_worker_and_a_daily_quota_parks() {
    // 8 rpm with a bucket of 1: a second request is refused with retryDelay 7.5 s.
    let mut fleet = Fleet::start(
        &scenario(&format!(
            "latency_ms = 5\n[quota.acme.\"{MODEL}\"]\nrpm = 8\nburst = 1\n"
        )),
        "",
        0,
    );
    fleet.spawn_worker(4);
    fleet.spawn_worker(4);
    let batch = fleet.submit(&fleet.file("p.txt", &prompts(3)), &[]);
    let start = Instant::now();
    let first_429 = loop {
        if responses(&fleet.emulator_stats(), "acme", "429") > 0 {
            break Instant::now();
        }
        assert!(start.elapsed() < Duration::from_secs(20), "no 429");
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(Duration::from_millis(1000));
    let total = |s: &Value| responses(s, "acme", "200") + responses(s, "acme", "429");
    let seen = total(&fleet.emulator_stats());
    let lane = &lanes(&fleet, "acme")[0];
    assert_eq!(lane["state"], "paused", "{lane}");
    let next = loop {
        if total(&fleet.emulator_stats()) > seen {
            break Instant::now();
        }
        assert!(
            first_429.elapsed() < Duration::from_secs(30),
            "no request after the pause"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let gap = next - first_429;
    eprintln!("next request {gap:?} after the 429");
    assert!(gap >= Duration::from_secs(7), "paused only {gap:?}");
    let s = fleet.wait_completed(&batch, Duration::from_secs(60));
    assert_eq!(count(&s, "succeeded"), 3, "{s}");
    for l in fleet.manifest(&s) {
        assert_eq!(l["attempts"], 1, "a 429 used an attempt: {l}");
    }

    // A daily quota of 2: the third request parks the lane; nothing burns attempts.
    let text = format!("latency_ms = 5\n[quota.acme.\"{MODEL}\"]\nrpd = 2\n");
    fleet.post_scenario(&scenario(&text));
    fleet.reset_emulator_stats();
    let batch = fleet.submit(&fleet.file("d.txt", &prompts(5)), &[]);
    let start = Instant::now();
    loop {
        let lane = &lanes(&fleet, "acme")[0];
        if lane["state"] == "quota_exhausted" {
            assert!(
                lane["parked_reason"].as_str().unwrap().contains("PerDay"),
                "{lane}"
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "not parked: {lane}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    let s = fleet.status(&batch);
    assert_eq!(count(&s, "succeeded"), 2, "{s}");
    assert_eq!(count(&s, "failed"), 0, "{s}");
    assert_eq!(count(&s, "queued") + count(&s, "running"), 3, "{s}");
    let parked_429s = responses(&fleet.emulator_stats(), "acme", "429");
    // The quota is raised; the operator unparks; the rest run with one attempt each.
    fleet.post_scenario(&scenario("latency_ms = 5\n"));
    let out = fleet.run(&["unpark", "acme", MODEL]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = fleet.wait_completed(&batch, Duration::from_secs(60));
    assert_eq!(count(&s, "succeeded"), 5, "{s}");
    for l in fleet.manifest(&s) {
        assert_eq!(l["attempts"], 1, "parking used an attempt: {l}");
    }
    assert!(
        parked_429s >= 2,
        "few 429s while parked is fine, but the first parks"
    );
}
