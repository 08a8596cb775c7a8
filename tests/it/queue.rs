//! The `JobQueue` contract, run against both implementations: `MemoryQueue` and
//! `RedisQueue` on the real Redis (`REDIS_URL`).

use std::time::Duration;

use imagegen::job::JobStatus;
use imagegen::limits::{Limit, ProjectLimits, Throttle};
use imagegen::queue::{
    Dependency, JobQueue, Jobs as _, MemoryQueue, NewBatch, NewJob, Notice, QueueOptions,
    RedisQueue, Settle,
};

const SPEC: &str = r#"{"op":"generate","model":"gemini-2.5-flash-image","prompt":"x"}"#;

fn options() -> QueueOptions {
    QueueOptions {
        visibility: Duration::from_millis(300),
        max_deliveries: 2,
        retention: Duration::from_secs(600),
        max_wait: Duration::from_secs(5),
        ..QueueOptions::default()
    }
}

async fn redis() -> RedisQueue {
    let prefix = format!("tq{}", uuid::Uuid::new_v4().simple());
    RedisQueue::open(&crate::fleet::redis_url(0), &prefix, options())
        .await
        .expect("redis")
}

/// Deletes the test's keys (a failed test leaves them for inspection).
async fn cleanup(q: &RedisQueue) {
    let mut conn = q.connection();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}*", q.base("p")))
        .query_async(&mut conn)
        .await
        .unwrap();
    if !keys.is_empty() {
        let () = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}

async fn batch(q: &dyn JobQueue, n: u64) -> String {
    batch_of(q, n, false).await
}

/// A batch of `n` jobs (`interactive`: as the HTTP API enqueues its requests).
async fn batch_of(q: &dyn JobQueue, n: u64, interactive: bool) -> String {
    let b = q
        .create_batch(&NewBatch {
            project: "p".into(),
            source: "test".into(),
            ..NewBatch::default()
        })
        .await
        .unwrap();
    let jobs = (0..n)
        .map(|seq| NewJob {
            interactive,
            ..waiting(seq, &[])
        })
        .collect();
    assert_eq!(q.enqueue("p", &b.id, jobs).await.unwrap(), n);
    assert!(!q.seal("p", &b.id, n).await.unwrap());
    b.id
}

fn finish(status: JobStatus) -> Settle {
    Settle::Finish {
        status,
        error: (status != JobStatus::Succeeded).then(|| "why".to_string()),
        result: Some(Default::default()),
        dead_letter: false,
    }
}

async fn lifecycle_and_exactly_once_completion(q: &dyn JobQueue) {
    let id = batch(q, 3).await;
    let claimed = q.claim("p", "w1", 10).await.unwrap();
    assert_eq!(claimed.len(), 3);
    assert_eq!(claimed[0].line, Some(1));
    assert_eq!(claimed[0].payload, SPEC);
    assert!(
        q.claim("p", "w2", 10).await.unwrap().is_empty(),
        "nothing left"
    );
    let b = q.batch("p", &id).await.unwrap().unwrap();
    assert_eq!(b.counts[&JobStatus::Running], 3);
    assert!(b.first_start_ms.is_some());
    let items = vec![
        (claimed[0].lease.clone(), finish(JobStatus::Succeeded)),
        (claimed[1].lease.clone(), finish(JobStatus::Blocked)),
    ];
    let reports = q.settle(&items).await.unwrap();
    assert!(reports.iter().all(|r| r.applied && !r.batch_completed));
    // Settling the same delivery again changes nothing.
    let again = q.settle(&items[..1]).await.unwrap();
    assert!(!again[0].applied);
    let last = q
        .settle(&[(claimed[2].lease.clone(), finish(JobStatus::Failed))])
        .await
        .unwrap();
    assert!(last[0].applied && last[0].batch_completed);
    let b = q.batch("p", &id).await.unwrap().unwrap();
    assert_eq!(b.done, 3);
    assert_eq!(b.counts[&JobStatus::Succeeded], 1);
    assert_eq!(b.counts[&JobStatus::Blocked], 1);
    assert_eq!(b.counts[&JobStatus::Failed], 1);
    assert_eq!(b.counts[&JobStatus::Running], 0);
    assert_eq!(b.counts[&JobStatus::Queued], 0);
    assert!(b.completed_ms.is_some());
    assert_eq!(b.failures.len(), 2);
    let j = q.job("p", &claimed[1].lease.job).await.unwrap().unwrap();
    assert_eq!(j.status, JobStatus::Blocked);
    assert_eq!(j.error.as_deref(), Some("why"));
    assert_eq!(j.attempts, 1);
    assert!(j.result.is_some());
    let all = q.batch_jobs("p", &id, 0, 3).await.unwrap();
    assert!(all.iter().all(|j| j.as_ref().unwrap().status.is_terminal()));
}

async fn retries_are_delayed_and_counted(q: &dyn JobQueue) {
    let id = batch(q, 1).await;
    let c = q.claim("p", "w1", 1).await.unwrap().remove(0);
    let r = q
        .settle(&[(
            c.lease.clone(),
            Settle::Retry {
                delay: Duration::from_millis(400),
                count: true,
                error: "503".into(),
            },
        )])
        .await
        .unwrap();
    assert!(r[0].applied);
    let b = q.batch("p", &id).await.unwrap().unwrap();
    assert_eq!(b.counts[&JobStatus::Queued], 1);
    assert!(
        q.claim("p", "w1", 1).await.unwrap().is_empty(),
        "not due yet"
    );
    tokio::time::sleep(Duration::from_millis(450)).await;
    let again = q.claim("p", "w1", 1).await.unwrap();
    assert_eq!(again.len(), 1, "due after its delay");
    assert_eq!(again[0].attempts, 1);
    assert_ne!(again[0].lease.token, c.lease.token);
    // An uncounted deferral and a release leave attempts alone.
    q.settle(&[(
        again[0].lease.clone(),
        Settle::Retry {
            delay: Duration::ZERO,
            count: false,
            error: "limit".into(),
        },
    )])
    .await
    .unwrap();
    let third = q.claim("p", "w1", 1).await.unwrap().remove(0);
    assert_eq!(third.attempts, 1);
    q.settle(&[(third.lease.clone(), Settle::Release)])
        .await
        .unwrap();
    let fourth = q.claim("p", "w2", 1).await.unwrap().remove(0);
    assert_eq!(fourth.attempts, 1);
    assert_eq!(
        fourth.deliveries, 1,
        "a release is not an unsettled delivery"
    );
}

async fn expired_leases_are_taken_over_then_dead_lettered(q: &dyn JobQueue) {
    let id = batch(q, 2).await;
    let first = q.claim("p", "dead-worker", 2).await.unwrap();
    assert_eq!(first.len(), 2);
    // One lease is kept alive, the other expires.
    tokio::time::sleep(Duration::from_millis(200)).await;
    q.extend("dead-worker", &[first[0].lease.clone()])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = q.recover("p", "rescuer").await.unwrap();
    assert_eq!(r.claimed.len(), 1, "only the expired lease");
    assert_eq!(r.claimed[0].lease.job, first[1].lease.job);
    assert_eq!(r.claimed[0].deliveries, 2);
    let j = q.job("p", &first[1].lease.job).await.unwrap().unwrap();
    assert_eq!(j.worker.as_deref(), Some("rescuer"));
    // The rescuer dies too: with max_deliveries = 2 the job is dead-lettered.
    tokio::time::sleep(Duration::from_millis(350)).await;
    q.extend("dead-worker", &[first[0].lease.clone()])
        .await
        .unwrap();
    let r = q.recover("p", "rescuer-2").await.unwrap();
    assert_eq!(r.dead, vec![first[1].lease.job.clone()]);
    let j = q.job("p", &first[1].lease.job).await.unwrap().unwrap();
    assert_eq!(j.status, JobStatus::Failed);
    assert!(j.error.unwrap().contains("delivered 2 times"));
    let dl = q.dead_letters("p", 10).await.unwrap();
    assert_eq!(dl.len(), 1);
    // The extended one is settled normally and completes the batch.
    let r = q
        .settle(&[(first[0].lease.clone(), finish(JobStatus::Succeeded))])
        .await
        .unwrap();
    assert!(r[0].applied && r[0].batch_completed);
    let b = q.batch("p", &id).await.unwrap().unwrap();
    assert_eq!((b.done, b.counts[&JobStatus::Failed]), (2, 1));
}

async fn cancel_queued_and_running(q: &dyn JobQueue) {
    let id = batch(q, 3).await;
    let running = q.claim("p", "w", 1).await.unwrap().remove(0);
    let report = q.cancel("p", &id).await.unwrap();
    assert_eq!(report.kind, "batch");
    assert_eq!((report.cancelled, report.flagged), (2, 1));
    assert!(!report.batch_completed);
    assert!(q.cancel_requested(&running.lease).await.unwrap());
    assert!(
        q.claim("p", "w", 5).await.unwrap().is_empty(),
        "cancelled jobs never run"
    );
    let r = q
        .settle(&[(running.lease.clone(), finish(JobStatus::Cancelled))])
        .await
        .unwrap();
    assert!(r[0].batch_completed);
    let b = q.batch("p", &id).await.unwrap().unwrap();
    assert_eq!(b.counts[&JobStatus::Cancelled], 3);
}

async fn idempotency_key_resumes(q: &dyn JobQueue) {
    let nb = NewBatch {
        project: "p".into(),
        source: "f".into(),
        idempotency_key: Some("k1".into()),
        ..NewBatch::default()
    };
    let a = q.create_batch(&nb).await.unwrap();
    assert!(!a.existing);
    q.enqueue(
        "p",
        &a.id,
        vec![NewJob {
            seq: 0,
            line: None,
            spec: SPEC.into(),
            lane: "gemini-2.5-flash-image".into(),
            op: "generate".into(),
            webhook: None,
            hash: None,
            interactive: false,
            deps: Vec::new(),
        }],
    )
    .await
    .unwrap();
    let b = q.create_batch(&nb).await.unwrap();
    assert_eq!(
        (b.id.as_str(), b.existing, b.enqueued, b.sealed),
        (a.id.as_str(), true, 1, false)
    );
}

fn limited(concurrency: u32, rpm: u32) -> ProjectLimits {
    ProjectLimits {
        project: Limit { concurrency, rpm },
        ..ProjectLimits::default()
    }
}

/// Admission: in-flight never exceeds the concurrency; a settle frees a slot.
async fn concurrency_is_admitted_slot_by_slot(q: &dyn JobQueue) {
    let b = batch(q, 10).await;
    q.set_limits("p", limited(3, 0));
    let first = q.claim("p", "w1", 10).await.unwrap();
    assert_eq!(first.len(), 3);
    assert!(q.claim("p", "w2", 10).await.unwrap().is_empty(), "full");
    let lanes = q.lanes("p").await.unwrap();
    assert_eq!(lanes.len(), 1);
    assert_eq!(lanes[0].model, "gemini-2.5-flash-image");
    assert_eq!((lanes[0].in_flight, lanes[0].queued), (3, 7));
    q.settle(&[(first[0].lease.clone(), finish(JobStatus::Succeeded))])
        .await
        .unwrap();
    assert_eq!(q.claim("p", "w2", 10).await.unwrap().len(), 1);
    assert_eq!(q.batch("p", &b).await.unwrap().unwrap().done, 1);
}

/// A settle that carries what the job cost.
fn finish_costing(usd: f64) -> Settle {
    Settle::Finish {
        status: JobStatus::Succeeded,
        error: None,
        result: Some(Box::new(imagegen::job::result::CompactResult {
            cost_usd: Some(usd),
            ..Default::default()
        })),
        dead_letter: false,
    }
}

/// A daily budget: running jobs hold their estimate, the day's spend (added at settle,
/// also to the batch's cost) holds the project once it reaches the budget, and a larger
/// budget resumes it.
async fn a_daily_budget_holds_the_project_once_spent(q: &dyn JobQueue) {
    let b = batch(q, 20).await;
    let budget = |usd: f64| ProjectLimits {
        project: Limit {
            concurrency: 10,
            rpm: 0,
        },
        budget: imagegen::limits::Budget {
            per_day: imagegen::pricing::to_nano(usd),
            job_estimate: imagegen::pricing::to_nano(0.1),
        },
        ..ProjectLimits::default()
    };
    // $0.35 at $0.10 a job: a job starts while any of the budget is left, four here.
    q.set_limits("p", budget(0.35));
    let first = q.claim("p", "w", 10).await.unwrap();
    assert_eq!(
        first.len(),
        4,
        "ceil(0.35 / 0.10) jobs before anything is spent"
    );
    assert!(q.claim("p", "w", 10).await.unwrap().is_empty());
    let settles: Vec<_> = first
        .iter()
        .map(|c| (c.lease.clone(), finish_costing(0.1)))
        .collect();
    q.settle(&settles).await.unwrap();
    let rec = q.batch("p", &b).await.unwrap().unwrap();
    assert!((rec.cost_usd - 0.4).abs() < 1e-9, "{rec:?}");
    // $0.40 spent of $0.35: held, nothing admitted, nothing failed.
    let c = q.admit("p", "w", 10).await.unwrap();
    assert!(c.jobs.is_empty());
    assert!(c.wake_ms.is_some());
    let hold = q.project_hold("p").await.unwrap().expect("held");
    assert_eq!(hold.reason, "budget_exhausted");
    assert!(hold.message.contains("$0.40 of its $0.35"), "{hold:?}");
    let rec = q.batch("p", &b).await.unwrap().unwrap();
    assert_eq!(rec.counts[&JobStatus::Queued], 16);
    // A larger budget: admission resumes and the hold ends.
    q.set_limits("p", budget(1.0));
    assert_eq!(q.claim("p", "w", 10).await.unwrap().len(), 6);
    assert!(q.project_hold("p").await.unwrap().is_none());
}

/// A model's own budget holds its lane, not the project.
async fn a_model_budget_holds_its_lane(q: &dyn JobQueue) {
    batch(q, 10).await;
    let lane = "gemini-2.5-flash-image";
    let limits = |usd: f64| {
        let mut l = ProjectLimits::default();
        l.models.insert(lane.into(), Limit::default());
        l.model_budgets.insert(
            lane.into(),
            imagegen::limits::Budget {
                per_day: imagegen::pricing::to_nano(usd),
                job_estimate: imagegen::pricing::to_nano(0.1),
            },
        );
        l
    };
    q.set_limits("p", limits(0.2));
    let first = q.claim("p", "w", 10).await.unwrap();
    assert_eq!(first.len(), 2);
    let settles: Vec<_> = first
        .iter()
        .map(|c| (c.lease.clone(), finish_costing(0.1)))
        .collect();
    q.settle(&settles).await.unwrap();
    assert!(q.claim("p", "w", 10).await.unwrap().is_empty());
    let view = q.lanes("p").await.unwrap();
    let hold = view[0].hold.as_ref().expect("lane held");
    assert_eq!(hold.reason, "budget_exhausted");
    assert!(q.project_hold("p").await.unwrap().is_none());
    q.set_limits("p", limits(0.5));
    assert_eq!(q.claim("p", "w", 10).await.unwrap().len(), 3);
    assert!(q.lanes("p").await.unwrap()[0].hold.is_none());
}

/// Held by a spent budget, queued jobs still end at `max_wait` (5 s here), named so.
async fn a_spent_budget_still_ends_jobs_at_max_wait(q: &dyn JobQueue) {
    let b = batch(q, 3).await;
    q.set_limits(
        "p",
        ProjectLimits {
            budget: imagegen::limits::Budget {
                per_day: imagegen::pricing::to_nano(0.1),
                job_estimate: imagegen::pricing::to_nano(0.1),
            },
            ..ProjectLimits::default()
        },
    );
    let first = q.claim("p", "w", 10).await.unwrap();
    assert_eq!(first.len(), 1);
    q.settle(&[(first[0].lease.clone(), finish_costing(0.1))])
        .await
        .unwrap();
    assert!(q.claim("p", "w", 10).await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(5_100)).await;
    assert!(q.claim("p", "w", 10).await.unwrap().is_empty());
    let rec = q.batch("p", &b).await.unwrap().unwrap();
    assert_eq!(rec.counts[&JobStatus::Failed], 2, "{rec:?}");
    assert!(rec.completed_ms.is_some(), "{rec:?}");
}

/// A rate limit spaces admissions and says when the next one may go.
async fn rpm_spaces_admissions(q: &dyn JobQueue) {
    batch(q, 20).await;
    q.set_limits("p", limited(0, 600)); // 10/s, burst 5
    let c = q.admit("p", "w", 20).await.unwrap();
    assert_eq!(c.jobs.len(), 5, "the burst");
    let c = q.admit("p", "w", 20).await.unwrap();
    assert!(c.jobs.is_empty());
    let wake = c.wake_ms.expect("a wake-up time");
    let now = imagegen::queue::now_ms();
    assert!(wake > now && wake <= now + 100, "{wake} vs {now}");
    tokio::time::sleep(Duration::from_millis(210)).await;
    let n = q.admit("p", "w", 20).await.unwrap().jobs.len();
    assert!((1..=3).contains(&n), "{n} after 210 ms at 10/s");
}

/// A 429 halves nothing at once but pauses the lane for everyone, lowers the effective
/// concurrency, and answers raise it back; parking holds the lane until unparked; a
/// deferral past max_wait fails the job.
async fn throttle_pause_aimd_and_parking(q: &dyn JobQueue) {
    let b = batch(q, 30).await;
    q.set_limits("p", limited(10, 0));
    let lane = "gemini-2.5-flash-image";
    let got = q.claim("p", "w", 10).await.unwrap();
    assert_eq!(got.len(), 10);
    q.throttle(
        "p",
        lane,
        &Throttle::Rate {
            delay: Some(Duration::from_millis(300)),
        },
    )
    .await
    .unwrap();
    let v = &q.lanes("p").await.unwrap()[0];
    assert!((v.effective_concurrency - 8.5).abs() < 1e-9, "{v:?}");
    assert!(v.paused_until_ms.is_some());
    assert_eq!(v.recent_429, 1);
    // Free every slot: still nothing while paused.
    let items: Vec<_> = got
        .iter()
        .map(|c| (c.lease.clone(), finish(JobStatus::Succeeded)))
        .collect();
    q.settle(&items).await.unwrap();
    assert!(q.claim("p", "w", 10).await.unwrap().is_empty(), "paused");
    tokio::time::sleep(Duration::from_millis(350)).await;
    let v = &q.lanes("p").await.unwrap()[0];
    assert!(v.effective_concurrency > 8.5, "answers raise it: {v:?}");
    let got = q.claim("p", "w", 20).await.unwrap();
    assert_eq!(got.len(), v.effective_concurrency.floor() as usize);
    // Park: nothing is admitted until unparked.
    let until_ms = imagegen::queue::now_ms() + 3_600_000;
    q.throttle(
        "p",
        lane,
        &Throttle::Park {
            until_ms,
            reason: "PerDay".into(),
        },
    )
    .await
    .unwrap();
    let items: Vec<_> = got
        .iter()
        .map(|c| {
            let retry = Settle::Retry {
                delay: Duration::ZERO,
                count: false,
                error: "quota".into(),
            };
            (c.lease.clone(), retry)
        })
        .collect();
    q.settle(&items).await.unwrap();
    assert!(q.claim("p", "w", 10).await.unwrap().is_empty(), "parked");
    let v = &q.lanes("p").await.unwrap()[0];
    assert_eq!(v.state(imagegen::queue::now_ms()), "quota_exhausted");
    assert_eq!(v.parked_reason.as_deref(), Some("PerDay"));
    assert!(q.unpark("p", lane).await.unwrap());
    let again = q.claim("p", "w", 1).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 0, "deferrals are not attempts");
    // Past max_wait (5 s in these options), a deferral ends the job.
    tokio::time::sleep(Duration::from_millis(5_100)).await;
    let retry = Settle::Retry {
        delay: Duration::ZERO,
        count: false,
        error: "429".into(),
    };
    q.settle(&[(again[0].lease.clone(), retry)]).await.unwrap();
    let j = q.job("p", &again[0].lease.job).await.unwrap().unwrap();
    assert_eq!(j.status, JobStatus::Failed);
    assert!(
        j.error.as_deref().unwrap_or("").contains("max_wait"),
        "{j:?}"
    );
    // And jobs still queued past it fail when claimed instead of running.
    for _ in 0..10 {
        assert!(q.claim("p", "w", 30).await.unwrap().is_empty());
    }
    let rec = q.batch("p", &b).await.unwrap().unwrap();
    assert_eq!(rec.done, 30, "{rec:?}");
}

/// Webhook events: enqueued by the transitions themselves, to the most specific URL;
/// taken with a lease; fenced settles; retries; a 410 disables the endpoint.
async fn webhook_events_are_enqueued_leased_and_recorded(q: &dyn JobQueue) {
    use imagegen::queue::hooks::{AttemptRecord, HookSettle, message_id};
    let lease = Duration::from_millis(300);
    q.set_default_webhook("p", Some("http://default.example/h"))
        .await
        .unwrap();
    let b = q
        .create_batch(&NewBatch {
            project: "p".into(),
            source: "test".into(),
            webhook: Some("http://batch.example/h".into()),
            ..NewBatch::default()
        })
        .await
        .unwrap();
    let job = |seq, webhook: Option<&str>| NewJob {
        seq,
        line: Some(seq + 1),
        spec: SPEC.into(),
        lane: "gemini-2.5-flash-image".into(),
        op: "generate".into(),
        webhook: webhook.map(str::to_string),
        hash: None,
        interactive: false,
        deps: Vec::new(),
    };
    q.enqueue(
        "p",
        &b.id,
        vec![
            job(0, Some("http://own.example/h")),
            job(1, None),
            job(2, None),
        ],
    )
    .await
    .unwrap();
    q.seal("p", &b.id, 3).await.unwrap();
    assert!(
        q.hooks_due("p", "w", 10, lease).await.unwrap().is_empty(),
        "nothing finished yet"
    );
    let mut claimed = q.claim("p", "w", 2).await.unwrap();
    claimed.sort_by(|a, b| a.lease.job.cmp(&b.lease.job));
    let items: Vec<_> = vec![
        (claimed[0].lease.clone(), finish(JobStatus::Succeeded)),
        (claimed[1].lease.clone(), finish(JobStatus::Blocked)),
    ];
    q.settle(&items).await.unwrap();
    // The third is cancelled while queued: that completes the batch.
    q.cancel("p", &imagegen::job::batch_job_id(&b.id, 2))
        .await
        .unwrap();
    let mut due = q.hooks_due("p", "w", 10, lease).await.unwrap();
    due.sort_by(|a, b| a.subject.cmp(&b.subject));
    let got: Vec<(&str, &str, &str)> = due
        .iter()
        .map(|d| (d.subject.as_str(), d.event.as_str(), d.url.as_str()))
        .collect();
    let j = |s| imagegen::job::batch_job_id(&b.id, s);
    let (j0, j1, j2) = (j(0), j(1), j(2));
    assert_eq!(
        got,
        [
            (b.id.as_str(), "batch.completed", "http://batch.example/h"),
            (j0.as_str(), "job.succeeded", "http://own.example/h"),
            (j1.as_str(), "job.blocked", "http://default.example/h"),
            (j2.as_str(), "job.cancelled", "http://default.example/h"),
        ]
    );
    assert!(
        due.iter()
            .all(|d| d.id == message_id(&d.subject) && d.attempts == 0 && d.body.is_none())
    );
    // Leased: nobody else gets them until the lease ends.
    assert!(q.hooks_due("p", "w2", 10, lease).await.unwrap().is_empty());
    let d = &due[1];
    assert_eq!(
        q.hooks_body("p", &d.id, r#"{"a":1}"#).await.unwrap(),
        r#"{"a":1}"#
    );
    assert_eq!(
        q.hooks_body("p", &d.id, r#"{"b":2}"#).await.unwrap(),
        r#"{"a":1}"#,
        "the first body stays"
    );
    let attempt = |status| AttemptRecord {
        at_ms: 1,
        status: Some(status),
        latency_ms: 5,
        error: Some("HTTP 503".into()),
    };
    let retry = HookSettle::Retry {
        at_ms: imagegen::queue::now_ms(),
    };
    assert!(
        q.hooks_settle("p", &d.id, &d.token, Some(&attempt(503)), &retry)
            .await
            .unwrap()
    );
    assert!(
        !q.hooks_settle("p", &d.id, &d.token, Some(&attempt(503)), &retry)
            .await
            .unwrap(),
        "a stale token is refused"
    );
    let again = q.hooks_due("p", "w2", 10, lease).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(
        (
            again[0].id.as_str(),
            again[0].attempts,
            again[0].body.as_deref()
        ),
        (d.id.as_str(), 1, Some(r#"{"a":1}"#))
    );
    assert!(
        q.hooks_settle(
            "p",
            &d.id,
            &again[0].token,
            Some(&AttemptRecord {
                error: None,
                ..attempt(200)
            }),
            &HookSettle::Delivered
        )
        .await
        .unwrap()
    );
    let rec = q.hook("p", &d.id).await.unwrap().unwrap();
    assert_eq!(rec.state, "delivered");
    assert_eq!(
        rec.attempts.iter().map(|a| a.status).collect::<Vec<_>>(),
        [Some(503), Some(200)]
    );
    // A 410 disables its endpoint; a lease that ends hands the delivery out again.
    let gone = &due[2];
    let off = HookSettle::Disable {
        reason: "410 Gone".into(),
    };
    assert!(
        q.hooks_settle("p", &gone.id, &gone.token, Some(&attempt(410)), &off)
            .await
            .unwrap()
    );
    assert_eq!(
        q.hooks_disabled("p").await.unwrap(),
        [(
            "http://default.example/h".to_string(),
            "410 Gone".to_string()
        )]
    );
    tokio::time::sleep(lease + Duration::from_millis(100)).await;
    let back = q.hooks_due("p", "w3", 10, lease).await.unwrap();
    let ids: Vec<&str> = back.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(
        back.iter()
            .all(|d| d.disabled.is_some() == (d.url == "http://default.example/h"))
    );
    assert!(
        q.hooks_enable("p", "http://default.example/h")
            .await
            .unwrap()
    );
    assert!(q.hooks_disabled("p").await.unwrap().is_empty());
    let counts = q.project_counts("p").await.unwrap();
    assert_eq!(counts.webhooks_pending, 2);
    assert_eq!(counts.enqueued_by_op["generate"], 3);
    assert_eq!(counts.by_status[&JobStatus::Cancelled], 1);
}

/// One interactive job (a batch of one, as the HTTP API enqueues it).
async fn interactive(q: &dyn JobQueue) -> String {
    imagegen::job::batch_job_id(&batch_of(q, 1, true).await, 0)
}

async fn interactive_jobs_go_ahead_of_the_backlog_under_the_same_limits(q: &dyn JobQueue) {
    q.set_limits("p", limited(2, 0));
    let backlog = batch(q, 50).await;
    let busy = q.claim("p", "w", 2).await.unwrap();
    assert_eq!(busy.len(), 2, "the lane is full");
    let first = interactive(q).await;
    assert!(
        q.claim("p", "w", 5).await.unwrap().is_empty(),
        "the limit holds for interactive jobs too"
    );
    q.settle(&[(busy[0].lease.clone(), finish(JobStatus::Succeeded))])
        .await
        .unwrap();
    let next = q.claim("p", "w", 5).await.unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(
        next[0].lease.job, first,
        "the first free slot is the interactive job's"
    );
    // A retry keeps its place ahead; extend and settle find its stream.
    q.extend("w", &[next[0].lease.clone()]).await.unwrap();
    q.settle(&[(
        next[0].lease.clone(),
        Settle::Retry {
            delay: Duration::ZERO,
            count: true,
            error: "503".into(),
        },
    )])
    .await
    .unwrap();
    let again = q.claim("p", "w", 5).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].lease.job, first, "retried ahead of the backlog");
    // A worker that dies holding it: recovery takes it over like any job.
    tokio::time::sleep(Duration::from_millis(350)).await;
    let r = q.recover("p", "rescuer").await.unwrap();
    let rescued: Vec<&str> = r.claimed.iter().map(|c| c.lease.job.as_str()).collect();
    assert!(rescued.contains(&first.as_str()), "{rescued:?}");
    let lease = r
        .claimed
        .iter()
        .find(|c| c.lease.job == first)
        .unwrap()
        .lease
        .clone();
    let done = q
        .settle(&[(lease, finish(JobStatus::Succeeded))])
        .await
        .unwrap();
    assert!(done[0].applied && done[0].batch_completed);
    assert_eq!(
        q.job("p", &first).await.unwrap().unwrap().status,
        JobStatus::Succeeded
    );
    // A queued interactive job is cancelled with its batch.
    let queued = interactive(q).await;
    let (batch_id, _) = imagegen::job::split_job_id(&queued).unwrap();
    let report = q.cancel("p", batch_id).await.unwrap();
    assert_eq!(report.cancelled, 1);
    let b = q.batch("p", &backlog).await.unwrap().unwrap();
    assert_eq!(
        b.done, 1,
        "only the one settled: the backlog still waits: {b:?}"
    );
}

/// The job at `seq` of a test batch, waiting for `deps` (seq, name).
fn waiting(seq: u64, deps: &[(u64, &str)]) -> NewJob {
    NewJob {
        seq,
        line: Some(seq + 1),
        spec: SPEC.into(),
        lane: "gemini-2.5-flash-image".into(),
        op: "generate".into(),
        webhook: None,
        hash: None,
        interactive: false,
        deps: deps
            .iter()
            .map(|(seq, name)| Dependency::in_batch(*seq, *name, false))
            .collect(),
    }
}

async fn new_batch(q: &dyn JobQueue) -> String {
    q.create_batch(&NewBatch {
        project: "p".into(),
        source: "deps".into(),
        ..NewBatch::default()
    })
    .await
    .unwrap()
    .id
}

async fn claim_ids(q: &dyn JobQueue) -> Vec<imagegen::queue::Claimed> {
    q.claim("p", "w", 100).await.unwrap()
}

/// A chain (`previous`): each job waits for the one before; a blocked one cancels every
/// job after it, naming it, and the batch completes.
async fn a_chain_runs_in_order_and_a_failure_cancels_the_rest(q: &dyn JobQueue) {
    let b = new_batch(q).await;
    let jobs = vec![
        waiting(0, &[]),
        waiting(1, &[(0, "frame 1")]),
        waiting(2, &[(1, "frame 2")]),
        waiting(3, &[(2, "frame 3")]),
    ];
    q.enqueue("p", &b, jobs).await.unwrap();
    q.seal("p", &b, 4).await.unwrap();
    let first = claim_ids(q).await;
    assert_eq!(first.len(), 1, "only the first frame is ready");
    let r = q
        .job("p", &imagegen::job::batch_job_id(&b, 2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((r.status, r.waiting_for), (JobStatus::Queued, Some(1)));
    q.settle(&[(first[0].lease.clone(), finish(JobStatus::Succeeded))])
        .await
        .unwrap();
    let second = claim_ids(q).await;
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].lease.job, imagegen::job::batch_job_id(&b, 1));
    assert_eq!(second[0].payload, SPEC);
    assert_eq!(second[0].line, Some(2));
    assert!(claim_ids(q).await.is_empty(), "frame 3 waits for frame 2");
    let report = q
        .settle(&[(second[0].lease.clone(), finish(JobStatus::Blocked))])
        .await
        .unwrap();
    assert!(
        report[0].batch_completed,
        "the rest were cancelled: the batch is done"
    );
    for (seq, why) in [
        (2, "frame 2 was blocked: why"),
        (3, "frame 3 was cancelled: frame 2 was blocked: why"),
    ] {
        let r = q
            .job("p", &imagegen::job::batch_job_id(&b, seq))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.status, JobStatus::Cancelled, "{seq}");
        assert_eq!(r.error.as_deref(), Some(why));
        assert_eq!(r.waiting_for, None);
    }
    let rec = q.batch("p", &b).await.unwrap().unwrap();
    assert_eq!(rec.done, 4);
    assert_eq!(rec.counts[&JobStatus::Cancelled], 2);
    assert_eq!(rec.counts[&JobStatus::Queued], 0);
    assert!(claim_ids(q).await.is_empty());
}

/// An anchor: every other job waits for the first, then all run at once; a job
/// enqueued after its dependency ended is settled at enqueue.
async fn an_anchor_releases_its_dependents_together(q: &dyn JobQueue) {
    let b = new_batch(q).await;
    let mut jobs = vec![waiting(0, &[])];
    jobs.extend((1..6).map(|s| waiting(s, &[(0, "frame 1")])));
    q.enqueue("p", &b, jobs).await.unwrap();
    let first = claim_ids(q).await;
    assert_eq!(first.len(), 1);
    q.settle(&[(first[0].lease.clone(), finish(JobStatus::Succeeded))])
        .await
        .unwrap();
    let rest = claim_ids(q).await;
    assert_eq!(rest.len(), 5, "all five released at once");
    // Enqueued later: frame 1 succeeded (runs at once), frame 2 failed (cancelled).
    let late = vec![waiting(6, &[(0, "frame 1")]), waiting(7, &[(1, "frame 2")])];
    let frame2 = rest
        .iter()
        .find(|c| c.lease.job == imagegen::job::batch_job_id(&b, 1))
        .unwrap();
    q.settle(&[(frame2.lease.clone(), finish(JobStatus::Failed))])
        .await
        .unwrap();
    q.enqueue("p", &b, late).await.unwrap();
    let now = claim_ids(q).await;
    assert_eq!(now.len(), 1);
    assert_eq!(now[0].lease.job, imagegen::job::batch_job_id(&b, 6));
    let r = q
        .job("p", &imagegen::job::batch_job_id(&b, 7))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.status, JobStatus::Cancelled);
    assert_eq!(r.error.as_deref(), Some("frame 2 was failed: why"));
    // A dependency must come earlier in its batch.
    let e = q.enqueue("p", &b, vec![waiting(8, &[(9, "later")])]).await;
    assert!(e.is_err(), "{e:?}");
}

/// Cancelling a batch cancels its waiting jobs too, and a dependency that succeeds
/// after the cancel releases nothing.
async fn a_cancelled_batch_releases_no_waiting_job(q: &dyn JobQueue) {
    let b = new_batch(q).await;
    let jobs = vec![
        waiting(0, &[]),
        waiting(1, &[(0, "frame 1")]),
        waiting(2, &[(1, "frame 2")]),
    ];
    q.enqueue("p", &b, jobs).await.unwrap();
    q.seal("p", &b, 3).await.unwrap();
    let first = claim_ids(q).await;
    let report = q.cancel("p", &b).await.unwrap();
    assert_eq!(report.flagged, 1, "{report:?}");
    let settled = q
        .settle(&[(first[0].lease.clone(), finish(JobStatus::Succeeded))])
        .await
        .unwrap();
    assert!(settled[0].batch_completed);
    assert!(claim_ids(q).await.is_empty(), "nothing released");
    let rec = q.batch("p", &b).await.unwrap().unwrap();
    assert_eq!(rec.counts[&JobStatus::Cancelled], 2);
    assert_eq!(rec.counts[&JobStatus::Succeeded], 1);
}

/// An interactive job's finish is told to whoever waits for it (the API's sync
/// requests); a bulk job's is not.
async fn interactive_finishes_are_told(q: &dyn JobQueue) {
    let mut rx = q.notices("p").await.expect("both backends tell");
    let bulk = batch_of(q, 1, false).await;
    let urgent = batch_of(q, 1, true).await;
    let claimed = q.claim("p", "w", 10).await.unwrap();
    assert_eq!(claimed.len(), 2);
    let items: Vec<_> = claimed
        .iter()
        .map(|c| (c.lease.clone(), finish(JobStatus::Succeeded)))
        .collect();
    q.settle(&items).await.unwrap();
    let mut told = Vec::new();
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
        told.push(n);
    }
    assert_eq!(
        told,
        vec![
            Notice::Queued("gemini-2.5-flash-image".into()),
            Notice::Finished(imagegen::job::batch_job_id(&urgent, 0)),
        ],
        "nothing of the bulk batch {bulk}"
    );
}

/// Chat sessions: turns appended atomically in order, each told the turn before it
/// (its job waits for that one); answers kept beside the turns; a deleted session is
/// gone; another project sees nothing of it.
async fn session_turns_are_appended_in_order_with_their_answers(q: &dyn JobQueue) {
    use imagegen::job::{Content, Part};
    use imagegen::queue::{SessionRecord, SessionTurn};
    let session = SessionRecord {
        id: "ses_1".into(),
        model: "gemini-3.1-flash-image".into(),
        model_requested: None,
        system_prompt: Some("be brief".into()),
        created_ms: 1,
        turns: Vec::new(),
    };
    q.create_session("p", &session).await.unwrap();
    let turn = |n: u32| SessionTurn {
        job_id: format!("job{n}"),
        message: format!("message {n}"),
        image: (n == 2).then(|| "file:///out/in.png".to_string()),
        image_mime_type: (n == 2).then(|| "image/png".to_string()),
        at_ms: u64::from(n),
        answer: None,
    };
    assert_eq!(
        q.append_turn("p", "ses_1", &turn(1)).await.unwrap(),
        Some((0, None))
    );
    assert_eq!(
        q.append_turn("p", "ses_1", &turn(2)).await.unwrap(),
        Some((1, Some(turn(1))))
    );
    assert_eq!(
        q.append_turn("p", "ses_nope", &turn(1)).await.unwrap(),
        None
    );
    let answer = Content {
        role: Some("model".into()),
        parts: vec![
            Part::text("done"),
            Part::file("image/png", "file:///out/a.png"),
        ],
    };
    assert!(q.answer_turn("p", "ses_1", 1, &answer).await.unwrap());
    assert!(!q.answer_turn("p", "ses_1", 5, &answer).await.unwrap());
    assert!(!q.answer_turn("p", "ses_nope", 0, &answer).await.unwrap());
    let got = q.session("p", "ses_1").await.unwrap().unwrap();
    let answered = SessionTurn {
        answer: Some(answer),
        ..turn(2)
    };
    assert_eq!(got.turns, vec![turn(1), answered]);
    assert_eq!(got.system_prompt.as_deref(), Some("be brief"));
    // Another project sees nothing of it.
    assert!(q.session("other", "ses_1").await.unwrap().is_none());
    assert!(q.session("p", "ses_nope").await.unwrap().is_none());
    assert!(!q.delete_session("other", "ses_1").await.unwrap());
    assert!(q.delete_session("p", "ses_1").await.unwrap());
    assert!(q.session("p", "ses_1").await.unwrap().is_none());
    assert!(!q.delete_session("p", "ses_1").await.unwrap());
}

/// A job may wait for a job of another batch, even one enqueued after it (a session's
/// turn sent a moment after the one before, by another API process): it runs once that
/// job has ended, whatever became of it when it waits for any end.
async fn a_job_waits_for_another_batchs_job_enqueued_after_it(q: &dyn JobQueue) {
    let (b1, b2) = (new_batch(q).await, new_batch(q).await);
    let first = imagegen::job::batch_job_id(&b1, 0);
    let mut second = waiting(0, &[]);
    second.deps = vec![Dependency {
        seq: 0,
        job: Some(first.clone()),
        name: "turn 1".into(),
        any: true,
    }];
    q.enqueue("p", &b2, vec![second]).await.unwrap();
    q.seal("p", &b2, 1).await.unwrap();
    assert!(
        claim_ids(q).await.is_empty(),
        "it waits for a job not enqueued yet"
    );
    q.enqueue("p", &b1, vec![waiting(0, &[])]).await.unwrap();
    q.seal("p", &b1, 1).await.unwrap();
    let got = claim_ids(q).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].lease.job, first);
    q.settle(&[(got[0].lease.clone(), finish(JobStatus::Failed))])
        .await
        .unwrap();
    let next = claim_ids(q).await;
    assert_eq!(next.len(), 1, "it runs whatever became of the first");
    assert_eq!(next[0].lease.job, imagegen::job::batch_job_id(&b2, 0));
}

macro_rules! both {
    ($name:ident) => {
        mod $name {
            use super::*;
            #[tokio::test]
            async fn memory() {
                super::$name(&MemoryQueue::new(options())).await;
            }
            #[tokio::test]
            async fn redis() {
                let q = super::redis().await;
                super::$name(&q).await;
                super::cleanup(&q).await;
            }
        }
    };
}

both!(lifecycle_and_exactly_once_completion);
both!(retries_are_delayed_and_counted);
both!(expired_leases_are_taken_over_then_dead_lettered);
both!(cancel_queued_and_running);
both!(idempotency_key_resumes);
both!(concurrency_is_admitted_slot_by_slot);
both!(rpm_spaces_admissions);
both!(a_daily_budget_holds_the_project_once_spent);
both!(a_spent_budget_still_ends_jobs_at_max_wait);
both!(a_model_budget_holds_its_lane);
both!(throttle_pause_aimd_and_parking);
both!(webhook_events_are_enqueued_leased_and_recorded);
both!(interactive_jobs_go_ahead_of_the_backlog_under_the_same_limits);
both!(session_turns_are_appended_in_order_with_their_answers);
both!(a_job_waits_for_another_batchs_job_enqueued_after_it);
both!(interactive_finishes_are_told);
both!(a_chain_runs_in_order_and_a_failure_cancels_the_rest);
both!(an_anchor_releases_its_dependents_together);
both!(a_cancelled_batch_releases_no_waiting_job);

/// A cancel from another process reaches a running job's safe point once the cached
/// cancel generation (100 ms) has expired.
#[tokio::test]
async fn a_cancel_from_another_process_reaches_the_safe_point() {
    let worker = redis().await;
    let prefix = worker.base("p");
    let prefix = prefix.trim_end_matches(":{p:p}");
    let other = RedisQueue::open(&crate::fleet::redis_url(0), prefix, options())
        .await
        .unwrap();
    let id = batch(&worker, 2).await;
    let running = worker.claim("p", "w", 2).await.unwrap();
    assert_eq!(running.len(), 2);
    assert!(!worker.cancel_requested(&running[0].lease).await.unwrap());
    let job = running[1].lease.job.clone();
    let report = other.cancel("p", &job).await.unwrap();
    assert_eq!(report.flagged, 1);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(worker.cancel_requested(&running[1].lease).await.unwrap());
    assert!(
        !worker.cancel_requested(&running[0].lease).await.unwrap(),
        "only the cancelled job"
    );
    let r = other.cancel("p", &id).await.unwrap();
    assert_eq!(r.flagged, 2);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(
        worker.cancel_requested(&running[0].lease).await.unwrap(),
        "its batch was cancelled"
    );
    cleanup(&worker).await;
}

/// A session untouched for `session_ttl` is gone; a turn or an answer touches it.
async fn sessions_expire_after_their_ttl_of_inactivity(q: &dyn JobQueue) {
    use imagegen::queue::{SessionRecord, SessionTurn};
    let session = SessionRecord {
        id: "ses_ttl".into(),
        model: "gemini-3.1-flash-image".into(),
        model_requested: None,
        system_prompt: None,
        created_ms: 1,
        turns: Vec::new(),
    };
    q.create_session("p", &session).await.unwrap();
    let turn = SessionTurn {
        job_id: "j".into(),
        message: "hi".into(),
        image: None,
        image_mime_type: None,
        at_ms: 1,
        answer: None,
    };
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    assert!(
        q.append_turn("p", "ses_ttl", &turn)
            .await
            .unwrap()
            .is_some()
    );
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    // 1.4 s after its creation, 0.7 s after its last turn: still there.
    assert!(q.session("p", "ses_ttl").await.unwrap().is_some());
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    assert!(q.session("p", "ses_ttl").await.unwrap().is_none());
}

mod session_ttl {
    use super::*;

    fn short() -> QueueOptions {
        QueueOptions {
            session_ttl: std::time::Duration::from_secs(1),
            ..options()
        }
    }

    #[tokio::test]
    async fn memory() {
        sessions_expire_after_their_ttl_of_inactivity(&MemoryQueue::new(short())).await;
    }

    #[tokio::test]
    async fn redis() {
        let prefix = format!("tq{}", uuid::Uuid::new_v4().simple());
        let q = RedisQueue::open(&crate::fleet::redis_url(0), &prefix, short())
            .await
            .expect("redis");
        sessions_expire_after_their_ttl_of_inactivity(&q).await;
        cleanup(&q).await;
    }
}
