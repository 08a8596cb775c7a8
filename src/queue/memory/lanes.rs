//! The lanes role in memory: limits, 429 feedback, parking, the lanes' view.

use async_trait::async_trait;

use super::MemoryQueue;
use super::state::{Hold, Lane, Project, hold_view};
use crate::limits::{HoldReason, HoldView, LaneView, ProjectLimits, Throttle};
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
    ) -> Result<bool, QueueError> {
        let aimd = self.options.aimd;
        let probe = self.options.hold_probe.as_millis() as u64;
        Ok(self.with(project, |p, _| {
            let now = now_ms();
            let cap = p.limits.lane(lane).concurrency;
            match throttle {
                Throttle::Hold { reason, message } => {
                    start_hold(p, project, lane, *reason, message, now + probe, now)
                }
                Throttle::Park { until_ms, reason } => {
                    let l = throttled(p, lane, now);
                    l.state.park_ms = *until_ms;
                    l.why = reason.clone();
                    false
                }
                Throttle::Rate { delay } => {
                    let l = throttled(p, lane, now);
                    let delay = delay.map_or(0, |d| d.as_millis() as u64);
                    let b = rules::on_rate_429(&l.state, l.dec_ms, cap, delay, now, aimd);
                    if let Some(eff) = b.eff {
                        l.state.eff = Some(eff);
                        l.dec_ms = now;
                    }
                    l.state.pause_ms = b.pause_ms;
                    false
                }
            }
        }))
    }

    async fn unpark(&self, project: &str, lane: &str) -> Result<bool, QueueError> {
        Ok(self.with(project, |p, _| {
            let project_held = p.hold.take().is_some();
            p.hold_ms = 0;
            let l = p.lane(lane);
            let was = l.state.park_ms > 0 || l.hold.is_some() || project_held;
            l.state.park_ms = 0;
            l.state.pause_ms = 0;
            l.state.hold_ms = 0;
            l.hold = None;
            l.why.clear();
            was
        }))
    }

    async fn project_hold(&self, project: &str) -> Result<Option<HoldView>, QueueError> {
        Ok(self.with(project, |p, _| {
            hold_view(p.hold.as_ref(), p.hold_ms, p.budget_hold.as_ref())
        }))
    }

    async fn spend_on(
        &self,
        project: &str,
        now: u64,
    ) -> Result<std::collections::BTreeMap<String, u64>, QueueError> {
        Ok(self.with(project, |p, _| {
            crate::queue::spend_of_day(p.spend.iter().map(|(k, v)| (k, *v)), now)
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
                        hold: hold_view(l.hold.as_ref(), s.hold_ms, l.budget_hold.as_ref()),
                        recent_429: w.throttled + w.prev_throttled,
                        recent_answered: w.answered + w.prev_answered,
                        model,
                    }
                })
                .collect()
        }))
    }
}

/// The lane a 429 answered for, counted in its minute window.
fn throttled<'a>(p: &'a mut Project, lane: &str, now: u64) -> &'a mut Lane {
    let l = p.lane(lane);
    l.window = rules::roll_window(l.window, now);
    l.window.throttled += 1;
    l
}

/// Holds the project (credentials) or the lane until `probe_ms`, with its `lane.held`
/// event; false when it was held already (as `throttle.lua`).
fn start_hold(
    p: &mut Project,
    project: &str,
    lane: &str,
    reason: HoldReason,
    message: &str,
    probe_ms: u64,
    now: u64,
) -> bool {
    let model = (!reason.project_wide()).then_some(lane);
    let (slot, next) = if model.is_none() {
        (&mut p.hold, &mut p.hold_ms)
    } else {
        let l = p.lanes.entry(lane.to_string()).or_default();
        (&mut l.hold, &mut l.state.hold_ms)
    };
    if slot.is_some() {
        return false;
    }
    let hold = Hold {
        reason,
        message: message.to_string(),
        since_ms: now,
        probes: 0,
    };
    *slot = Some(hold.clone());
    *next = probe_ms;
    p.held(project, model, &hold, now);
    true
}
