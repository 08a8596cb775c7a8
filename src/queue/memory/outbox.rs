//! The webhook outbox in memory (as the `hooks_*.lua` scripts).

use std::time::Duration;

use async_trait::async_trait;

use super::MemoryQueue;
use crate::queue::hooks::{AttemptRecord, DeliveryRecord, DueDelivery, HookSettle};
use crate::queue::{Outbox, QueueError, now_ms};

#[async_trait]
impl Outbox for MemoryQueue {
    async fn set_default_webhook(
        &self,
        project: &str,
        url: Option<&str>,
    ) -> Result<(), QueueError> {
        self.with(project, |p, _| p.hooks.default = url.map(str::to_string));
        Ok(())
    }

    async fn hooks_due(
        &self,
        project: &str,
        worker: &str,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<DueDelivery>, QueueError> {
        Ok(self.with(project, |p, _| {
            let now = now_ms();
            let token = format!("{worker}:{now}");
            let mut due: Vec<(u64, String)> = p
                .hooks
                .due
                .iter()
                .filter(|(_, at)| **at <= now)
                .map(|(id, at)| (*at, id.clone()))
                .collect();
            due.sort();
            due.truncate(max.max(1));
            let mut out = Vec::new();
            for (_, id) in due {
                let Some(d) = p.hooks.records.get_mut(&id) else {
                    p.hooks.due.remove(&id);
                    continue;
                };
                p.hooks
                    .due
                    .insert(id.clone(), now + lease.as_millis() as u64);
                d.state = "delivering";
                d.token = Some(token.clone());
                out.push(DueDelivery {
                    id,
                    token: token.clone(),
                    event: d.event.clone(),
                    subject: d.subject.clone(),
                    attempts: d.attempts,
                    created_ms: d.created_ms,
                    body: d.body.clone(),
                    disabled: p.hooks.off.get(&d.url).cloned(),
                    url: d.url.clone(),
                });
            }
            out
        }))
    }

    async fn hooks_body(&self, project: &str, id: &str, body: &str) -> Result<String, QueueError> {
        Ok(
            self.with(project, |p, _| match p.hooks.records.get_mut(id) {
                Some(d) => d.body.get_or_insert_with(|| body.to_string()).clone(),
                None => body.to_string(),
            }),
        )
    }

    async fn hooks_settle(
        &self,
        project: &str,
        id: &str,
        token: &str,
        attempt: Option<&AttemptRecord>,
        settle: &HookSettle,
    ) -> Result<bool, QueueError> {
        Ok(self.with(project, |p, _| {
            let Some(d) = p.hooks.records.get_mut(id) else {
                return false;
            };
            if d.token.as_deref() != Some(token) {
                return false;
            }
            d.token = None;
            if let Some(a) = attempt {
                d.log.push(a.clone());
                d.attempts += 1;
            }
            match settle {
                HookSettle::Retry { at_ms } | HookSettle::Defer { at_ms } => {
                    d.state = "pending";
                    d.next_ms = Some(*at_ms);
                    p.hooks.due.insert(id.to_string(), *at_ms);
                    return true;
                }
                HookSettle::Delivered => {
                    d.state = "delivered";
                    d.error = None;
                }
                HookSettle::Failed { reason } => {
                    d.state = "failed";
                    d.error = Some(reason.clone());
                }
                HookSettle::Disable { reason } => {
                    p.hooks.off.insert(d.url.clone(), reason.clone());
                    d.state = "failed";
                    d.error = Some(reason.clone());
                }
            }
            d.next_ms = None;
            p.hooks.due.remove(id);
            true
        }))
    }

    async fn hook(&self, project: &str, id: &str) -> Result<Option<DeliveryRecord>, QueueError> {
        Ok(self.with(project, |p, _| {
            p.hooks.records.get(id).map(|d| d.record(id))
        }))
    }

    async fn hooks_disabled(&self, project: &str) -> Result<Vec<(String, String)>, QueueError> {
        Ok(self.with(project, |p, _| {
            p.hooks
                .off
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        }))
    }

    async fn hooks_enable(&self, project: &str, url: &str) -> Result<bool, QueueError> {
        Ok(self.with(project, |p, _| p.hooks.off.remove(url).is_some()))
    }
}
