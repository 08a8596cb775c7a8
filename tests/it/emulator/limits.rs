//! Quotas, injected faults, stats and runtime scenario replacement.

use std::time::Instant;

use imagegen::emulator::Scenario;
use serde_json::json;

use super::{Emu, PROJECT, detail, gc_body};

const MODEL: &str = "gemini-2.5-flash-image";

fn quota_scenario(toml_limits: &str) -> Scenario {
    Scenario::from_toml_str(&format!("[quota.{PROJECT}.\"{MODEL}\"]\n{toml_limits}"))
        .expect("scenario")
}

#[tokio::test]
async fn rpm_quota_answers_429_with_retry_info_and_quota_failure() {
    let emu = Emu::start(quota_scenario("rpm = 2")).await;
    for _ in 0..2 {
        assert_eq!(
            emu.vertex(MODEL, "generateContent", &gc_body("x"))
                .await
                .status,
            200
        );
    }
    let r = emu.vertex(MODEL, "generateContent", &gc_body("x")).await;
    assert_eq!(r.status, 429);
    let body = r.json();
    assert_eq!(body["error"]["status"], "RESOURCE_EXHAUSTED");
    assert!(body["error"]["message"].as_str().unwrap_or("").starts_with(
        "Quota exceeded for aiplatform.googleapis.com/generate_content_requests_per_minute_per_project_per_base_model with base model: gemini-2.5-flash-image."
    ));
    let delay = detail(&body, "RetryInfo")
        .and_then(|d| d["retryDelay"].as_str())
        .expect("retryDelay")
        .to_string();
    let secs: f64 = delay.trim_end_matches('s').parse().expect("seconds");
    // 2 rpm: the bucket (2 requests) refills one token every 30 s.
    assert!(secs > 25.0 && secs <= 30.0, "{delay}");
    let v = &detail(&body, "QuotaFailure").expect("QuotaFailure")["violations"][0];
    assert_eq!(v["quotaId"], "GenerateRequestsPerMinutePerProjectPerModel");
    assert_eq!(
        v["quotaDimensions"],
        json!({"location": "us-central1", "model": MODEL})
    );
    assert_eq!(v["quotaValue"], "2");
    let other = emu.post("/v1/projects/other-proj/locations/us-central1/publishers/google/models/gemini-2.5-flash-image:generateContent", &gc_body("x"), Some(&emu.token), None).await;
    assert_eq!(other.status, 200, "quotas are per project");
    let stats = emu.stats().await;
    assert_eq!(
        stats["requests"][format!("{PROJECT}/{MODEL}")],
        json!({"200": 2, "429": 1})
    );
}

#[tokio::test]
async fn rpd_quota_uses_the_per_day_quota_id_and_developer_wording() {
    let mut scenario = Scenario::from_toml_str(&format!("[quota.default.\"{MODEL}\"]\nrpd = 1"))
        .expect("scenario");
    scenario.latency_ms = Some(0);
    let emu = Emu::start(scenario).await;
    assert_eq!(
        emu.dev(MODEL, "generateContent", &gc_body("x"))
            .await
            .status,
        200
    );
    let r = emu.dev(MODEL, "generateContent", &gc_body("x")).await;
    assert_eq!(r.status, 429);
    let body = r.json();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("You exceeded your current quota")
    );
    let v = &detail(&body, "QuotaFailure").expect("QuotaFailure")["violations"][0];
    assert_eq!(v["quotaId"], "GenerateRequestsPerDayPerProjectPerModel");
    assert_eq!(v["quotaDimensions"]["location"], "global");
}

#[tokio::test]
async fn concurrent_quota_refuses_extra_requests_and_peak_concurrency_stays_within_it() {
    let mut scenario = quota_scenario("concurrent = 2");
    scenario.latency_ms = Some(600);
    let emu = std::sync::Arc::new(Emu::start(scenario).await);
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let emu = emu.clone();
        tasks.push(tokio::spawn(async move {
            emu.vertex(MODEL, "generateContent", &gc_body("x")).await
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        let r = t.await.expect("task");
        if r.status == 429 {
            let body = r.json();
            let v = &detail(&body, "QuotaFailure").expect("QuotaFailure")["violations"][0];
            assert_eq!(v["quotaId"], "ConcurrentRequestsPerProjectPerModel");
            assert!(detail(&body, "RetryInfo").is_some());
        }
        statuses.push(r.status);
    }
    statuses.sort();
    assert_eq!(statuses, vec![200, 200, 429, 429, 429, 429]);
    let stats = emu.stats().await;
    assert_eq!(stats["peak_concurrency"][format!("{PROJECT}/{MODEL}")], 2);
    assert_eq!(stats["in_flight"][format!("{PROJECT}/{MODEL}")], 0);
}

#[tokio::test]
async fn fault_markers_produce_each_kind_of_failure() {
    let mut scenario = Scenario::default();
    scenario.faults.timeout_ms = 50;
    let emu = Emu::start(scenario).await;
    let call = |m: &'static str| {
        let body = gc_body(&format!("a cat {m}"));
        let emu = &emu;
        async move { emu.vertex(MODEL, "generateContent", &body).await }
    };
    let r = call("[[fail:500]]").await;
    assert_eq!(
        (r.status, r.json()["error"]["status"].clone()),
        (500, json!("INTERNAL"))
    );
    let r = call("[[fail:503]]").await;
    assert_eq!(
        (r.status, r.json()["error"]["status"].clone()),
        (503, json!("UNAVAILABLE"))
    );
    let r = call("[[fail:429]]").await;
    assert_eq!(r.status, 429);
    assert_eq!(
        r.json(),
        json!({"error": {"code": 429, "message": "Resource has been exhausted (e.g. check quota).", "status": "RESOURCE_EXHAUSTED"}})
    );
    let r = call("[[fail:timeout]]").await;
    assert_eq!(
        (r.status, r.json()["error"]["status"].clone()),
        (504, json!("DEADLINE_EXCEEDED"))
    );
    let r = call("[[fail:non_json]]").await;
    assert_eq!(r.status, 503);
    assert!(r.content_type.starts_with("text/html") && r.text.contains("<html"));
    let r = call("[[fail:malformed]]").await;
    assert_eq!(r.status, 200);
    assert!(serde_json::from_str::<serde_json::Value>(&r.text).is_err());
    let reset = emu.http.post(emu.url(&format!("/v1beta1/projects/{PROJECT}/locations/us-central1/publishers/google/models/{MODEL}:generateContent")))
        .bearer_auth(&emu.token).json(&gc_body("[[fail:reset]]")).send().await;
    let failed = match reset {
        Err(_) => true,
        Ok(resp) => resp.bytes().await.is_err(),
    };
    assert!(failed, "a reset must not deliver a complete response");
    let stats = emu.stats().await;
    let counts = &stats["requests"][format!("{PROJECT}/{MODEL}")];
    assert_eq!(
        counts,
        &json!({"500": 1, "503": 2, "429": 1, "504": 1, "200": 1, "reset": 1})
    );
}

#[tokio::test]
async fn random_faults_follow_the_rates_and_a_seed_reproduces_them() {
    let emu = Emu::start(Scenario::default()).await;
    let mut scenario = Scenario {
        seed: Some(7),
        ..Scenario::default()
    };
    scenario.faults.rate_503 = 0.5;
    let mut runs = Vec::new();
    for _ in 0..2 {
        emu.handle.set_scenario(scenario.clone());
        let mut statuses = Vec::new();
        for i in 0..24 {
            statuses.push(
                emu.vertex(MODEL, "generateContent", &gc_body(&format!("p{i}")))
                    .await
                    .status,
            );
        }
        runs.push(statuses);
    }
    assert_eq!(runs[0], runs[1]);
    assert!(
        runs[0].contains(&503) && runs[0].contains(&200),
        "{:?}",
        runs[0]
    );
    scenario.faults.rate_503 = 0.0;
    scenario.faults.rate_500 = 1.0;
    emu.handle.set_scenario(scenario);
    assert_eq!(
        emu.vertex(MODEL, "generateContent", &gc_body("x"))
            .await
            .status,
        500
    );
}

#[tokio::test]
async fn scenario_can_be_replaced_at_runtime_over_http() {
    let emu = Emu::start(Scenario::default()).await;
    let r = emu
        .http
        .post(emu.url("/emulator/scenario"))
        .json(&json!({"blocked_marker": "FORBIDDEN", "latency_ms": 120}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    let current: serde_json::Value = emu
        .http
        .get(emu.url("/emulator/scenario"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(current["blocked_marker"], "FORBIDDEN");
    let started = Instant::now();
    let r = emu
        .vertex(MODEL, "generateContent", &gc_body("something FORBIDDEN"))
        .await;
    assert!(started.elapsed().as_millis() >= 120, "latency applies");
    assert_eq!(
        r.json()["promptFeedback"]["blockReason"],
        "PROHIBITED_CONTENT"
    );
    let bad = emu
        .http
        .post(emu.url("/emulator/scenario"))
        .json(&json!({"faults": {"rate_500": 2.0}}))
        .send()
        .await
        .expect("post");
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn stats_count_every_status_and_reset_clears_them() {
    let emu = Emu::start(Scenario::default()).await;
    assert_eq!(
        emu.vertex(MODEL, "generateContent", &gc_body("x"))
            .await
            .status,
        200
    );
    assert_eq!(
        emu.vertex(MODEL, "generateContent", &json!({"contents": []}))
            .await
            .status,
        400
    );
    let stats = emu.stats().await;
    assert_eq!(
        stats["requests"][format!("{PROJECT}/{MODEL}")],
        json!({"200": 1, "400": 1})
    );
    let r = emu
        .http
        .post(emu.url("/emulator/stats/reset"))
        .send()
        .await
        .expect("reset");
    assert!(r.status().is_success());
    assert_eq!(emu.stats().await["requests"], json!({}));
}

#[tokio::test]
async fn a_request_abandoned_by_its_client_is_counted_as_499_and_leaves_no_slot() {
    let scenario = Scenario {
        latency_ms: Some(5_000),
        ..quota_scenario("concurrent = 1")
    };
    let emu = Emu::start(scenario).await;
    let impatient = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(200))
        .build()
        .expect("client");
    let url = emu.url(&format!(
        "/v1beta1/projects/{PROJECT}/locations/us-central1/publishers/google/models/{MODEL}:generateContent"
    ));
    let sent = impatient
        .post(&url)
        .bearer_auth(&emu.token)
        .json(&gc_body("x"))
        .send()
        .await;
    assert!(sent.is_err(), "the client gives up first");
    let key = format!("{PROJECT}/{MODEL}");
    let deadline = Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let stats = emu.stats().await;
        if stats["requests"][&key]["499"] == 1 && stats["in_flight"][&key] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "not counted: {stats}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut fast = emu.handle.scenario();
    fast.latency_ms = Some(0);
    emu.handle.set_scenario(fast);
    let r = emu.vertex(MODEL, "generateContent", &gc_body("x")).await;
    assert_eq!(r.status, 200, "the abandoned request released its slot");
}
