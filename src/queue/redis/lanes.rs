//! The lanes role on Redis: limits (sent with every claim), 429 feedback
//! (`throttle.lua`), parking, and the lanes' state hashes as views.

use std::collections::HashMap;

use async_trait::async_trait;
use redis::AsyncCommands as _;

use super::RedisQueue;
use crate::limits::{HoldView, LaneView, ProjectLimits, Throttle};
use crate::queue::hooks::{LaneEvent, lane_event_body, lane_subject};
use crate::queue::{Lanes, QueueError, now_ms};

#[async_trait]
impl Lanes for RedisQueue {
    fn set_limits(&self, project: &str, limits: ProjectLimits) {
        self.limits
            .lock()
            .expect("limits")
            .insert(project.to_string(), limits);
    }
    async fn throttle(
        &self,
        project: &str,
        lane: &str,
        throttle: &Throttle,
    ) -> Result<bool, QueueError> {
        let aimd = self.options.aimd;
        let probe = self.options.hold_probe.as_millis() as u64;
        let (kind, delay, reason, message, scope) = match throttle {
            Throttle::Rate { delay } => (
                "rate",
                delay.map_or(0, |d| d.as_millis() as u64),
                "",
                "",
                "lane",
            ),
            Throttle::Park { until_ms, reason } => (
                "park",
                until_ms.saturating_sub(now_ms()),
                reason.as_str(),
                "",
                "lane",
            ),
            Throttle::Hold { reason, message } => (
                "hold",
                probe,
                reason.as_str(),
                message.as_str(),
                if reason.project_wide() {
                    "project"
                } else {
                    "lane"
                },
            ),
        };
        let now = now_ms();
        // The lane.held event, rendered here and enqueued by the script that starts the
        // hold (nothing is enqueued when it was held already).
        let (body, subject) = match throttle {
            Throttle::Hold { reason, message } => {
                let model = (!reason.project_wide()).then_some(lane);
                let event = LaneEvent {
                    project: project.to_string(),
                    model: model.map(str::to_string),
                    reason: reason.as_str().to_string(),
                    message: message.clone(),
                    held_since_ms: now,
                    held_for_ms: None,
                };
                (
                    lane_event_body("lane.held", now, &event),
                    lane_subject("lane.held", model, now),
                )
            }
            _ => (String::new(), String::new()),
        };
        let mut conn = self.conn.clone();
        let started: i64 = self
            .scripts
            .throttle
            .arg(self.base(project))
            .arg(lane)
            .arg(now)
            .arg(kind)
            .arg(delay)
            .arg(aimd.default_pause_ms)
            .arg(aimd.decrease)
            .arg(aimd.interval_ms)
            .arg(reason)
            .arg(message)
            .arg(scope)
            .arg(body)
            .arg(subject)
            .invoke_async(&mut conn)
            .await?;
        Ok(kind == "hold" && started == 1)
    }
    async fn unpark(&self, project: &str, lane: &str) -> Result<bool, QueueError> {
        let mut conn = self.conn.clone();
        let (lane_n, project_n): (u64, u64) = redis::pipe()
            .atomic()
            .cmd("HDEL")
            .arg(self.key(project, &format!("lane:{lane}")))
            .arg(&["park", "why", "pause"])
            .arg(&HOLD_FIELDS)
            .cmd("HDEL")
            .arg(self.key(project, "limits"))
            .arg(&HOLD_FIELDS)
            .query_async(&mut conn)
            .await?;
        Ok(lane_n + project_n > 0)
    }
    async fn project_hold(&self, project: &str) -> Result<Option<HoldView>, QueueError> {
        let mut conn = self.conn.clone();
        let m: HashMap<String, String> = conn.hgetall(self.key(project, "limits")).await?;
        Ok(hold_view(&m))
    }
    async fn spend_on(
        &self,
        project: &str,
        now: u64,
    ) -> Result<std::collections::BTreeMap<String, u64>, QueueError> {
        let mut conn = self.conn.clone();
        let m: HashMap<String, u64> = conn.hgetall(self.key(project, "spend")).await?;
        Ok(crate::queue::spend_of_day(
            m.iter().map(|(k, v)| (k, *v)),
            now,
        ))
    }
    async fn lanes(&self, project: &str) -> Result<Vec<LaneView>, QueueError> {
        let mut conn = self.conn.clone();
        let mut lanes: Vec<String> = conn.smembers(self.key(project, "lanes")).await?;
        if lanes.is_empty() {
            return Ok(Vec::new());
        }
        lanes.sort();
        let mut pipe = redis::pipe();
        for lane in &lanes {
            pipe.hgetall(self.key(project, &format!("lane:{lane}")));
        }
        let maps: Vec<HashMap<String, String>> = pipe.query_async(&mut conn).await?;
        let now = now_ms();
        Ok(lanes
            .into_iter()
            .zip(maps)
            .map(|(model, m)| lane_view(model, &m, now))
            .collect())
    }
}

/// A hold's fields in a lane's or the project's limits hash (`throttle.lua` writes
/// them, `claim.lua` moves `hprobe`/`hn`, `settle.lua` deletes them).
const HOLD_FIELDS: [&str; 5] = ["hold", "hmsg", "hsince", "hprobe", "hn"];

/// The hold kept in a lane's or a project's hash, if any.
fn hold_view(m: &HashMap<String, String>) -> Option<HoldView> {
    let int = |k: &str| {
        m.get(k)
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0, |v| v.max(0.0) as u64)
    };
    if !m.contains_key("hold") && m.contains_key("bud") {
        // A spent budget: nothing is probed; it ends with the day (or a larger budget).
        return Some(HoldView {
            reason: crate::limits::HoldReason::BudgetExhausted.as_str().into(),
            message: m.get("bmsg").cloned().unwrap_or_default(),
            since_ms: int("bud"),
            next_probe_ms: crate::queue::rules::next_day_ms(int("bud")),
            probes: 0,
        });
    }
    Some(HoldView {
        reason: m.get("hold")?.clone(),
        message: m.get("hmsg").cloned().unwrap_or_default(),
        since_ms: int("hsince"),
        next_probe_ms: int("hprobe"),
        probes: int("hn") as u32,
    })
}

/// A lane's state hash as [`LaneView`].
fn lane_view(model: String, m: &HashMap<String, String>, now: u64) -> LaneView {
    let num = |k: &str| m.get(k).and_then(|v| v.parse::<f64>().ok());
    let int = |k: &str| num(k).map_or(0, |v| v.max(0.0) as u64);
    let concurrency = int("cap") as u32;
    // The minute window counts only while it is current (the previous one for another
    // minute).
    let age = now.saturating_sub(int("wst"));
    let (w429, wok) = if age < 120_000 {
        (int("w429"), int("wok"))
    } else {
        (0, 0)
    };
    let (p429, pok) = if age < 60_000 {
        (int("p429"), int("pok"))
    } else {
        (0, 0)
    };
    LaneView {
        concurrency,
        rpm: int("rpm") as u32,
        effective_concurrency: num("eff").unwrap_or(concurrency as f64),
        in_flight: int("run"),
        queued: int("qd"),
        paused_until_ms: Some(int("pause")).filter(|t| *t > now),
        parked_until_ms: Some(int("park")).filter(|t| *t > now),
        parked_reason: m.get("why").cloned().filter(|_| int("park") > now),
        hold: hold_view(m),
        recent_429: w429 + p429,
        recent_answered: wok + pok,
        model,
    }
}
