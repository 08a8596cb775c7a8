//! Outages hold work instead of failing it: a model Google answers 404 for holds its
//! lane, credentials that cannot be had hold the project; held jobs wait queued using no
//! attempts, one probe at a time checks the outage, and the work resumes by itself when
//! it is over. Two worker processes, real Redis, the emulator.

use super::*;

fn lane_of<'a>(status: &'a Value, model: &str) -> &'a Value {
    status["lanes"]
        .as_array()
        .and_then(|ls| ls.iter().find(|l| l["model"] == model))
        .unwrap_or(&Value::Null)
}

#[test]
fn a_model_answering_404_holds_its_lane_and_resumes_by_itself() {
    let model = "gemini-3.1-flash-image";
    let mut fleet = Fleet::start(
        &format!("latency_ms = 20\nretired_models = [\"{model}\"]\n"),
        "concurrency = 8\n",
        0,
    );
    fleet
        .envs
        .push(("IMAGEGEN__WORKER__HOLD_PROBE".into(), "1s".into()));
    fleet.spawn_worker(4);
    fleet.spawn_worker(4);
    let n = 40;
    let file = fleet.file("prompts.txt", &prompts(n));
    let batch = fleet.submit(&file, &[]);
    let held = fleet.wait_until(&batch, Duration::from_secs(30), "the lane held", |s| {
        lane_of(s, model)["state"] == "held"
    });
    let hold = &lane_of(&held, model)["hold"];
    assert_eq!(hold["reason"], "model_unavailable", "{held}");
    assert!(hold["message"].as_str().unwrap().contains("404"), "{hold}");
    // Nothing failed, nothing used an attempt: the jobs wait queued.
    assert_eq!(count(&held, "failed"), 0, "{held}");
    let at_hold = responses(&fleet.emulator_stats(), "404");
    assert!(
        at_hold <= 8,
        "{at_hold} calls before the hold: more than were in flight"
    );
    // While held: one probe per interval (1 s, then 2 s, 4 s …), not a stream of 404s.
    std::thread::sleep(Duration::from_millis(3_500));
    let during = responses(&fleet.emulator_stats(), "404") - at_hold;
    assert!(during <= 3, "{during} probes in 3.5 s");
    let status = fleet.status(&batch);
    assert_eq!(count(&status, "failed"), 0, "{status}");
    assert_eq!(count(&status, "succeeded"), 0, "{status}");
    // `status --project` says it too, and the metric would count it.
    let out = fleet.run(&["status", "--project", "acme"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("held: model_unavailable"), "{text}");
    // The model comes back: the next probe succeeds and everything runs, no operator.
    fleet.post_scenario("latency_ms = 20\n");
    let done = fleet.wait_completed(&batch, Duration::from_secs(60));
    assert_eq!(count(&done, "succeeded"), n as u64, "{done}");
    assert_eq!(lane_of(&done, model)["state"], "ok", "{done}");
    for row in fleet.manifest(&done) {
        assert_eq!(row["attempts"], 1, "a hold used an attempt: {row}");
    }
    // Logged once per hold, by the worker that started it; not once per job.
    let logs: String = (0..2).map(|i| fleet.worker_log(i)).collect();
    assert_eq!(logs.matches("holding model").count(), 1, "{logs}");
}

#[test]
fn a_credentials_outage_holds_the_project_and_resumes_by_itself() {
    // Project `meta` gets its tokens from the metadata server stand-in, which is down.
    let extra = "concurrency = 8\n\
        [projects.meta]\nbackend = \"vertex\"\ngcp_project = \"demo-proj\"\nlocation = \"us-central1\"\n\
        credentials = \"metadata\"\nendpoint = \"EMULATOR_URL\"\nconcurrency = 8\n\
        default_model = \"gemini-3.1-flash-image\"\n";
    let mut fleet = Fleet::start("latency_ms = 20\nmetadata_unavailable = true\n", extra, 0);
    let host = fleet.emulator_url.trim_start_matches("http://").to_string();
    fleet.envs.push(("GCE_METADATA_HOST".into(), host));
    fleet
        .envs
        .push(("IMAGEGEN__WORKER__HOLD_PROBE".into(), "1s".into()));
    fleet.spawn_worker(4);
    fleet.spawn_worker(4);
    let n = 20;
    let file = fleet.file("prompts.txt", &prompts(n));
    let batch = fleet.submit_to("meta", &file, &[]);
    let held = fleet.wait_until(&batch, Duration::from_secs(30), "the project held", |s| {
        s["hold"]["reason"] == "credentials_error"
    });
    assert!(
        held["hold"]["message"]
            .as_str()
            .unwrap()
            .contains("credentials"),
        "{held}"
    );
    std::thread::sleep(Duration::from_millis(2_000));
    let status = fleet.status(&batch);
    assert_eq!(count(&status, "failed"), 0, "{status}");
    assert_eq!(count(&status, "succeeded"), 0, "{status}");
    // Every lane of the project shows the hold.
    assert!(
        status["lanes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["state"] == "held"),
        "{status}"
    );
    // The metadata server comes back: the work resumes without an operator.
    fleet.post_scenario("latency_ms = 20\n");
    let done = fleet.wait_completed(&batch, Duration::from_secs(60));
    assert_eq!(count(&done, "succeeded"), n as u64, "{done}");
    assert!(done["hold"].is_null(), "{done}");
}

#[test]
fn max_wait_still_ends_held_work_and_not_one_probe_at_a_time() {
    let model = "gemini-3.1-flash-image";
    let mut fleet = Fleet::start(
        &format!("latency_ms = 20\nretired_models = [\"{model}\"]\n"),
        "concurrency = 8\n",
        0,
    );
    // Probes far apart: only the sweep can end the jobs in time.
    fleet.envs.extend([
        ("IMAGEGEN__WORKER__HOLD_PROBE".into(), "30s".into()),
        ("IMAGEGEN__WORKER__MAX_WAIT".into(), "3s".into()),
    ]);
    fleet.spawn_worker(4);
    fleet.spawn_worker(4);
    let n = 300;
    let file = fleet.file("prompts.txt", &prompts(n));
    let batch = fleet.submit(&file, &[]);
    let done = fleet.wait_completed(&batch, Duration::from_secs(30));
    assert_eq!(count(&done, "failed"), n as u64, "{done}");
    let called = responses(&fleet.emulator_stats(), "404");
    assert!(called <= 9, "{called} calls: the held jobs were called");
    let failures = done["failures"].to_string();
    assert!(failures.contains("max_wait 3 s"), "{failures}");
}
