//! Webhook deliveries on Redis (`src/queue/hooks.rs` has the design): the due set, the
//! delivery records and their attempt logs, under the project's hash tag.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use redis::AsyncCommands as _;

use super::RedisQueue;
use crate::queue::hooks::{AttemptRecord, DeliveryRecord, DueDelivery, HookSettle};
use crate::queue::{Outbox, QueueError, now_ms};

#[async_trait]
impl Outbox for RedisQueue {
    async fn set_default_webhook(
        &self,
        project: &str,
        url: Option<&str>,
    ) -> Result<(), QueueError> {
        let mut conn = self.conn.clone();
        let key = self.key(project, "cfg");
        match url {
            Some(u) => conn.hset::<_, _, _, ()>(key, "hook", u).await?,
            None => conn.hdel::<_, _, ()>(key, "hook").await?,
        }
        Ok(())
    }
    async fn hooks_due(
        &self,
        project: &str,
        worker: &str,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<DueDelivery>, QueueError> {
        let mut conn = self.conn.clone();
        let now = now_ms();
        let token = format!("{worker}:{now}");
        let flat: Vec<String> = self
            .scripts
            .hooks_claim
            .arg(self.base(project))
            .arg(now)
            .arg(lease.as_millis() as u64)
            .arg(max.max(1))
            .arg(&token)
            .invoke_async(&mut conn)
            .await?;
        Ok(flat
            .chunks_exact(8)
            .map(|c| DueDelivery {
                id: c[0].clone(),
                token: token.clone(),
                url: c[1].clone(),
                event: c[2].clone(),
                subject: c[3].clone(),
                attempts: c[4].parse().unwrap_or(0),
                created_ms: c[5].parse().unwrap_or(0),
                body: Some(c[6].clone()).filter(|b| !b.is_empty()),
                disabled: Some(c[7].clone()).filter(|d| !d.is_empty()),
            })
            .collect())
    }
    async fn hooks_body(&self, project: &str, id: &str, body: &str) -> Result<String, QueueError> {
        let mut conn = self.conn.clone();
        let key = self.key(project, &format!("wh:{id}"));
        let (stored,): (Option<String>,) = redis::pipe()
            .atomic()
            .hset_nx(&key, "body", body)
            .ignore()
            .hget(&key, "body")
            .query_async(&mut conn)
            .await?;
        Ok(stored.unwrap_or_else(|| body.to_string()))
    }
    async fn hooks_settle(
        &self,
        project: &str,
        id: &str,
        token: &str,
        attempt: Option<&AttemptRecord>,
        settle: &HookSettle,
    ) -> Result<bool, QueueError> {
        let mut conn = self.conn.clone();
        let (kind, at, reason) = settle.wire();
        let attempt = attempt
            .map(|a| serde_json::to_string(a).unwrap_or_default())
            .unwrap_or_default();
        let applied: i64 = self
            .scripts
            .hooks_settle
            .arg(self.base(project))
            .arg(now_ms())
            .arg(self.options.retention.as_secs().max(1))
            .arg(id)
            .arg(token)
            .arg(kind)
            .arg(at)
            .arg(attempt)
            .arg(reason)
            .invoke_async(&mut conn)
            .await?;
        Ok(applied == 1)
    }
    async fn hook(&self, project: &str, id: &str) -> Result<Option<DeliveryRecord>, QueueError> {
        let mut conn = self.conn.clone();
        let key = self.key(project, &format!("wh:{id}"));
        let (map, log): (HashMap<String, String>, Vec<String>) = redis::pipe()
            .hgetall(&key)
            .lrange(format!("{key}:log"), 0, -1)
            .query_async(&mut conn)
            .await?;
        Ok(DeliveryRecord::from_fields(id, &map, &log))
    }
    async fn hooks_disabled(&self, project: &str) -> Result<Vec<(String, String)>, QueueError> {
        let mut conn = self.conn.clone();
        let map: HashMap<String, String> = conn.hgetall(self.key(project, "wh:off")).await?;
        let mut v: Vec<(String, String)> = map.into_iter().collect();
        v.sort();
        Ok(v)
    }
    async fn hooks_enable(&self, project: &str, url: &str) -> Result<bool, QueueError> {
        let mut conn = self.conn.clone();
        let n: i64 = conn.hdel(self.key(project, "wh:off"), url).await?;
        Ok(n > 0)
    }
}
