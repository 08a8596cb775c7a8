//! The `JobQueue` contract, run against both implementations: `MemoryQueue` and
//! `RedisQueue` on the real Redis (`REDIS_URL`).

use std::time::Duration;

use imagegen::job::JobStatus;
use imagegen::queue::{JobQueue, MemoryQueue, NewBatch, NewJob, QueueOptions, RedisQueue, Settle};

const SPEC: &str = r#"{"op":"generate","model":"gemini-2.5-flash-image","prompt":"x"}"#;

fn options() -> QueueOptions {
    QueueOptions {
        visibility: Duration::from_millis(300),
        max_deliveries: 2,
        retention: Duration::from_secs(600),
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
            seq,
            line: Some(seq + 1),
            spec: SPEC.into(),
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
        result: Some(r#"{"images":[]}"#.into()),
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
