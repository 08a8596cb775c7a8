//! Costs and tiers through the fleet: every job priced from the emulator's usage at
//! Google's list prices, a batch's cost the sum of its jobs', `submit --estimate` close
//! to it, and Flex/Priority sent as `serviceTier` with a downgrade priced at standard.

use std::time::Duration;

use super::webhooks::{hook_config, hooked_fleet, metrics_addr, of_type, samples};
use super::*;

/// Google's list prices per 1M tokens (input, output text, output image), written out
/// here apart from the product's table: ai.google.dev/gemini-api/docs/pricing.
fn list_price(model: &str) -> (f64, f64, f64) {
    match model {
        "gemini-3.1-flash-image" => (0.50, 3.00, 60.0),
        "gemini-3-pro-image" => (2.00, 12.00, 120.0),
        other => panic!("no list price for {other}"),
    }
}

/// A job's cost from the usage the emulator reported, at `multiplier` × list.
fn expected_cost(row: &Value, multiplier: f64) -> f64 {
    let (input, text, image) = list_price(row["model"].as_str().unwrap());
    let u = &row["usage"];
    let prompt = u["promptTokenCount"].as_f64().unwrap_or(0.0);
    let candidates = u["candidatesTokenCount"].as_f64().unwrap_or(0.0);
    let image_tokens: f64 = u["candidatesTokensDetails"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["modality"] == "IMAGE")
        .map(|d| d["tokenCount"].as_f64().unwrap())
        .sum();
    assert!(image_tokens > 0.0, "{row}");
    let thoughts = u["thoughtsTokenCount"].as_f64().unwrap_or(0.0);
    multiplier
        * (prompt * input + (candidates - image_tokens + thoughts) * text + image_tokens * image)
        / 1e6
}

#[test]
fn a_batch_costs_the_sum_of_its_jobs_priced_from_their_usage_and_the_estimate_is_close() {
    let mut fleet = Fleet::start("latency_ms = 5\n", "concurrency = 8\n", 0);
    // Sizes, models and prompt lengths that price differently.
    let mut lines = String::new();
    let sizes = ["512", "1K", "2K", "4K"];
    for i in 0..24 {
        let words = "a lighthouse on a cliff at dawn, painted in oils ".repeat(1 + i % 5);
        let line = if i % 6 == 5 {
            serde_json::json!({"model": "gemini-3-pro-image", "prompt": words,
                "image_size": if i % 12 == 5 { "4K" } else { "1K" }})
        } else {
            serde_json::json!({"prompt": words, "image_size": sizes[i % 4]})
        };
        lines.push_str(&format!("{line}\n"));
    }
    let file = fleet.file("jobs.jsonl", &lines);
    let out = fleet.run(&[
        "submit",
        "--project",
        "acme",
        "--estimate",
        "--json",
        file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let estimate: Value = serde_json::from_slice(&out.stdout).unwrap();
    let estimate = estimate["estimate_usd"].as_f64().unwrap();
    // Nothing was enqueued.
    let mut conn = fleet.redis();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:*", fleet.base()))
        .query(&mut conn)
        .unwrap();
    assert!(
        keys.iter().all(|k| !k.contains(":batch:")),
        "--estimate enqueued: {keys:?}"
    );

    fleet.spawn_worker_with(8, &["--metrics-listen", "127.0.0.1:0"]);
    let batch = fleet.submit(&file, &[]);
    let status = fleet.wait_completed(&batch, Duration::from_secs(120));
    assert_eq!(count(&status, "succeeded"), 24, "{status}");
    let rows = fleet.manifest(&status);
    let mut sum = 0.0;
    for row in &rows {
        let cost = row["cost_usd"].as_f64().unwrap_or_else(|| panic!("{row}"));
        let want = expected_cost(row, 1.0);
        assert!((cost - want).abs() < 1e-9, "{cost} vs {want}: {row}");
        assert_eq!(row["tier"], "standard", "{row}");
        sum += cost;
    }
    let batch_cost = status["cost_usd"].as_f64().unwrap();
    // Summed in whole nano-dollars: at most half a nano-dollar off per job.
    assert!((batch_cost - sum).abs() < 24e-9, "{batch_cost} vs {sum}");
    eprintln!("estimate ${estimate:.6}, cost ${batch_cost:.6}");
    assert!(
        (estimate - batch_cost).abs() <= 0.10 * batch_cost,
        "estimate {estimate} vs cost {batch_cost}"
    );
    // result.json carries it too.
    let image = rows[0]["images"][0]["path"].as_str().unwrap();
    let result_json = Path::new(image).parent().unwrap().join("result.json");
    let result: Value =
        serde_json::from_str(&std::fs::read_to_string(&result_json).unwrap()).unwrap();
    assert_eq!(result["cost_usd"], rows[0]["cost_usd"]);
    // The worker's counter, by model and tier.
    let metrics = metrics_addr(&fleet, 0);
    let (code, text) = http("GET", &metrics, "/metrics", "");
    assert_eq!(code, 200);
    let counted: f64 = samples(&text)
        .into_iter()
        .filter(|(k, _)| {
            k.starts_with("imagegen_cost_usd_total{") && k.contains(r#"tier="standard""#)
        })
        .map(|(_, v)| v)
        .sum();
    assert!((counted - sum).abs() < 1e-9, "{counted} vs {sum}");
    // Status shows it.
    let text = fleet.run(&["status", &batch]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains(&format!("${batch_cost:.4}")), "{text}");
}

#[test]
fn flex_and_priority_send_service_tier_and_a_downgrade_is_priced_at_standard() {
    // Every Priority call over its limit: served at standard.
    let mut fleet = Fleet::start("latency_ms = 5\npriority_downgrade_rate = 1.0\n", "", 0);
    fleet.spawn_worker(4);
    let mut lines = String::new();
    for i in 0..4 {
        lines.push_str(&format!(
            "{{\"model\": \"gemini-3-pro-image\", \"prompt\": \"flex fox {i}\"}}\n"
        ));
    }
    for i in 0..4 {
        lines.push_str(&format!(
            "{{\"model\": \"gemini-3-pro-image\", \"prompt\": \"priority fox {i}\", \"tier\": \"priority\"}}\n"
        ));
    }
    let file = fleet.file("tiers.jsonl", &lines);
    // `--tier` is the default of lines that name none.
    let batch = fleet.submit(&file, &["--tier", "flex"]);
    let status = fleet.wait_completed(&batch, Duration::from_secs(60));
    assert_eq!(count(&status, "succeeded"), 8, "{status}");
    let stats = fleet.emulator_stats();
    let tiers = &stats["service_tiers"]["default/gemini-3-pro-image"];
    assert_eq!(tiers["flex->flex"], 4, "{stats}");
    assert_eq!(tiers["priority->standard"], 4, "{stats}");
    for row in fleet.manifest(&status) {
        let prompt = row["prompt"].as_str().unwrap();
        let (tier, multiplier) = if prompt.starts_with("flex") {
            ("flex", 0.5)
        } else {
            // Asked for priority, served (and priced) at standard.
            ("standard", 1.0)
        };
        assert_eq!(row["tier"], tier, "{row}");
        let cost = row["cost_usd"].as_f64().unwrap();
        let want = expected_cost(&row, multiplier);
        assert!((cost - want).abs() < 1e-9, "{cost} vs {want}: {row}");
    }
    // A model Google does not offer at Flex is refused at submit, naming the field.
    let bad = fleet.file("bad.jsonl", "{\"prompt\": \"x\", \"tier\": \"flex\"}\n");
    let out = fleet.run(&["submit", "--project", "acme", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 1") && err.contains("tier"), "{err}");
}

#[test]
fn a_daily_budget_holds_the_project_across_two_workers_and_a_larger_one_resumes_it() {
    // $0.0672 and a little for each 1K image: $1.00 is spent by the 15th job; the
    // fleet may start at most what runs beyond that (2 workers × 3).
    let (_dir, rx, mut fleet, secret) = hooked_fleet(0, "latency_ms = 100\n", |url| {
        hook_config(&format!("{url}/hook"), r#"["0s", "1s"]"#, true).replace(
            "concurrency = 64\n",
            "concurrency = 6\nbudget_usd_per_day = 1.0\n",
        )
    });
    fleet.spawn_worker(3);
    fleet.spawn_worker(3);
    let file = fleet.file("p.txt", &prompts(40));
    let batch = fleet.submit(&file, &[]);
    let held = fleet.wait_until(&batch, Duration::from_secs(60), "the budget's hold", |s| {
        s["hold"]["reason"] == "budget_exhausted" && count(s, "running") == 0
    });
    let done = count(&held, "succeeded");
    eprintln!("held after {done} jobs, ${}", held["cost_usd"]);
    assert!(
        (15..=15 + 6).contains(&done),
        "{done} jobs before the hold: {held}"
    );
    assert!(held["cost_usd"].as_f64().unwrap() >= 1.0, "{held}");
    assert_eq!(
        count(&held, "failed") + count(&held, "blocked"),
        0,
        "{held}"
    );
    assert_eq!(count(&held, "queued"), 40 - done, "{held}");
    let message = held["hold"]["message"].as_str().unwrap();
    assert!(message.contains("of its $1.00 daily budget"), "{message}");
    // `status --project` shows the day's spend against the budget, and the hold.
    let out = fleet.run(&["status", "--project", "acme"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let spent = held["cost_usd"].as_f64().unwrap();
    assert!(
        text.contains(&format!("spent     ${spent:.4} today (UTC) of $1.00 a day")),
        "{text}"
    );
    assert!(
        text.contains("held: budget_exhausted") && text.contains("the day resets in"),
        "{text}"
    );
    let out = fleet.run(&["status", "--project", "acme", "--json"]);
    let lanes: Value = serde_json::from_slice(&out.stdout).unwrap();
    let lane = &lanes["acme"][0];
    assert!(
        (lane["spent_today_usd"].as_f64().unwrap() - spent).abs() < 1e-9,
        "{lane}"
    );
    // Said once, signed (checked with the Standard Webhooks library).
    let held_events = rx.wait_for("lane.held", Duration::from_secs(30), |r| {
        !of_type(r, "lane.held").is_empty()
    });
    let h = of_type(&held_events, "lane.held");
    assert_eq!(h.len(), 1, "{held_events:?}");
    assert_eq!(h[0]["body"]["data"]["reason"], "budget_exhausted");
    assert_eq!(h[0]["verified"][&secret], true, "{:?}", h[0]);
    // Held work stays held.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(count(&fleet.status(&batch), "succeeded"), done);
    // A larger budget (workers restarted with it) resumes the project.
    for w in &mut fleet.workers {
        w.kill().unwrap();
        w.wait().unwrap();
    }
    fleet.workers.clear();
    fleet.envs.push((
        "IMAGEGEN__PROJECTS__ACME__BUDGET_USD_PER_DAY".into(),
        "100".into(),
    ));
    fleet.spawn_worker(3);
    fleet.spawn_worker(3);
    let status = fleet.wait_completed(&batch, Duration::from_secs(120));
    assert_eq!(count(&status, "succeeded"), 40, "{status}");
    assert!(status["hold"].is_null(), "{status}");
    let all = rx.wait_for("lane.resumed", Duration::from_secs(30), |r| {
        !of_type(r, "lane.resumed").is_empty()
    });
    let resumed = of_type(&all, "lane.resumed");
    assert_eq!(resumed.len(), 1, "{all:?}");
    assert_eq!(resumed[0]["body"]["data"]["reason"], "budget_exhausted");
    assert_eq!(of_type(&all, "lane.held").len(), 1, "{all:?}");
}
