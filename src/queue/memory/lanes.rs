//! The lanes role in memory: limits, 429 feedback, parking, the lanes' view.

use async_trait::async_trait;

use super::MemoryQueue;
use crate::limits::{LaneView, ProjectLimits, Throttle};
use crate::queue::rules;
use crate::queue::{Lanes, QueueError, now_ms};

#[async_trait]
impl Lanes for MemoryQueue {
    fn set_limits(&self, project: &str, limits: ProjectLimits) {
        self.with(project, |p, _| p.limits = limits);
    }

    async fn throttle(
        &self,
        project: &str,
        lane: &str,
        throttle: &Throttle,
    ) -> Result<(), QueueError> {
        let aimd = self.options.aimd;
        self.with(project, |p, _| {
            let cap = p.limits.lane(lane).concurrency;
            let now = now_ms();
            let l = p.lane(lane);
            l.window = rules::roll_window(l.window, now);
            l.window.throttled += 1;
            match throttle {
                Throttle::Park { until_ms, reason } => {
                    l.state.park_ms = *until_ms;
                    l.why = reason.clone();
                }
                Throttle::Rate { delay } => {
                    let delay = delay.map_or(0, |d| d.as_millis() as u64);
                    let b = rules::on_rate_429(&l.state, l.dec_ms, cap, delay, now, aimd);
                    if let Some(eff) = b.eff {
                        l.state.eff = Some(eff);
                        l.dec_ms = now;
                    }
                    l.state.pause_ms = b.pause_ms;
                }
            }
        });
        Ok(())
    }

    async fn unpark(&self, project: &str, lane: &str) -> Result<bool, QueueError> {
        Ok(self.with(project, |p, _| {
            let l = p.lane(lane);
            let was = l.state.park_ms > 0;
            l.state.park_ms = 0;
            l.state.pause_ms = 0;
            l.why.clear();
            was
        }))
    }

    async fn lanes(&self, project: &str) -> Result<Vec<LaneView>, QueueError> {
        Ok(self.with(project, |p, _| {
            let now = now_ms();
            let names: Vec<String> = p.lanes.keys().cloned().collect();
            names
                .into_iter()
                .map(|model| {
                    let limit = p.limits.lane(&model);
                    let l = p.lane(&model);
                    l.window = rules::roll_window(l.window, now);
                    let (s, w) = (l.state, l.window);
                    LaneView {
                        concurrency: limit.concurrency,
                        rpm: limit.rpm,
                        effective_concurrency: s.eff.unwrap_or(limit.concurrency as f64),
                        in_flight: s.run,
                        queued: l.ready.len() as u64,
                        paused_until_ms: Some(s.pause_ms).filter(|t| *t > now),
                        parked_until_ms: Some(s.park_ms).filter(|t| *t > now),
                        parked_reason: Some(l.why.clone()).filter(|_| s.park_ms > now),
                        recent_429: w.throttled + w.prev_throttled,
                        recent_answered: w.answered + w.prev_answered,
                        model,
                    }
                })
                .collect()
        }))
    }
}
