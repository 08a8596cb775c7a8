//! Cluster-wide per-project and per-model limits (issue 4, DESIGN "Queue and
//! coordination"): the vocabulary both queues share, and the arithmetic the in-process
//! queue runs (the Redis queue runs the same arithmetic in `claim.lua`, `settle.lua`
//! and `throttle.lua`, atomically for the whole fleet).
//!
//! - A **lane** is one project + model: Google's quotas are per project and base model,
//!   so that is where limits, 429 feedback and pauses apply. Each lane has its own queue
//!   (stream), so a lane waiting for capacity never blocks another lane or project, and a
//!   waiting job never holds a worker slot: it is simply not claimed.
//! - **Admission** (at claim) lets a job through when the project and the lane have a
//!   free concurrency slot (in-flight below the limit) and a rate token (GCRA, burst of
//!   half a second's worth), and the lane is neither paused nor parked.
//! - **Adaptive control (AIMD)**: a 429 multiplies the lane's effective concurrency by
//!   `decrease` (at most once per `decrease_interval`: one overshoot brings several
//!   429s) and pauses the lane for Google's advised delay; every answered call raises it
//!   by `1/effective` (one slot per "round trip" of the whole window), never above the
//!   configured concurrency.
//! - **Parking**: a spent daily quota parks the lane (`quota_exhausted`) until the
//!   advised time or the configured daily reset, or until an operator unparks it; its
//!   jobs wait queued without using attempts.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::config::{ProjectConfig, WorkerConfig};

/// Concurrency and rate of one scope (0 = no limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Limit {
    /// In-flight requests.
    pub concurrency: u32,
    /// Requests per minute.
    pub rpm: u32,
}

/// A project's configured limits, as every worker of the fleet reads them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProjectLimits {
    /// The whole project (all models).
    pub project: Limit,
    /// Per model; a model without its own concurrency gets the project's.
    pub models: BTreeMap<String, Limit>,
}

impl ProjectLimits {
    /// From a `[projects.X]` section.
    pub fn from_config(p: &ProjectConfig) -> Self {
        ProjectLimits {
            project: Limit {
                concurrency: p.concurrency,
                rpm: p.rpm.unwrap_or(0),
            },
            models: p
                .models
                .iter()
                .map(|(m, l)| {
                    (
                        m.clone(),
                        Limit {
                            concurrency: l.concurrency.unwrap_or(0),
                            rpm: l.rpm.unwrap_or(0),
                        },
                    )
                })
                .collect(),
        }
    }

    /// The limit a lane runs under: its model's, concurrency defaulting to the project's.
    pub fn lane(&self, lane: &str) -> Limit {
        let m = self.models.get(lane).copied().unwrap_or_default();
        Limit {
            concurrency: if m.concurrency > 0 {
                m.concurrency
            } else {
                self.project.concurrency
            },
            rpm: m.rpm,
        }
    }
}

/// AIMD and pause knobs (from `[worker]`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Aimd {
    /// Multiplicative decrease on a 429 (0 < decrease < 1).
    pub decrease: f64,
    /// At most one decrease per this interval.
    pub decrease_interval: Duration,
    /// Pause after a 429 that advised no delay (Dynamic Shared Quota).
    pub default_pause: Duration,
}

impl Default for Aimd {
    fn default() -> Self {
        Aimd {
            decrease: 0.85,
            decrease_interval: Duration::from_secs(1),
            default_pause: Duration::from_secs(1),
        }
    }
}

impl Aimd {
    /// From the `[worker]` settings.
    pub fn from_settings(w: &WorkerConfig) -> Self {
        Aimd {
            decrease: w.aimd_decrease,
            decrease_interval: Duration::from_millis(w.aimd_interval_ms),
            default_pause: Duration::from_millis(w.pause_default_ms),
        }
    }
}

/// What a 429 tells the lane.
#[derive(Debug, Clone, PartialEq)]
pub enum Throttle {
    /// Per-minute quota or shared capacity: slow down and pause for `delay` (or the
    /// default pause).
    Rate {
        /// Google's `RetryInfo.retryDelay` / `Retry-After`.
        delay: Option<Duration>,
    },
    /// A daily quota is spent: no admission until `until_ms` (or an operator unparks).
    Park {
        /// Unix ms.
        until_ms: u64,
        /// Quota id and message, shown by `status`.
        reason: String,
    },
}

/// One lane as `imagegen status --project` shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LaneView {
    /// The model.
    pub model: String,
    /// Configured concurrency (0 = none).
    pub concurrency: u32,
    /// Configured rpm (0 = none).
    pub rpm: u32,
    /// AIMD effective concurrency (the configured one until a 429 lowered it).
    pub effective_concurrency: f64,
    /// Requests in flight (jobs claimed and not settled).
    pub in_flight: u64,
    /// Jobs waiting in the lane's queue (retries waiting out their delay excluded).
    pub queued: u64,
    /// Admission paused until (unix ms) after a 429.
    pub paused_until_ms: Option<u64>,
    /// Parked (daily quota spent) until (unix ms).
    pub parked_until_ms: Option<u64>,
    /// Why it is parked.
    pub parked_reason: Option<String>,
    /// 429s in the last one to two minutes.
    pub recent_429: u64,
    /// Answered calls in the same window.
    pub recent_answered: u64,
}

impl LaneView {
    /// Share of recent calls answered 429.
    pub fn recent_429_rate(&self) -> f64 {
        let all = self.recent_429 + self.recent_answered;
        if all == 0 {
            0.0
        } else {
            self.recent_429 as f64 / all as f64
        }
    }

    /// `quota_exhausted`, `paused`, or `ok` at `now`.
    pub fn state(&self, now: u64) -> &'static str {
        if self.parked_until_ms.is_some_and(|t| t > now) {
            "quota_exhausted"
        } else if self.paused_until_ms.is_some_and(|t| t > now) {
            "paused"
        } else {
            "ok"
        }
    }
}

/// GCRA state of one rate limit: how many requests may go now.
/// Returns (allowed now, interval ms, time the next one may go when none may now).
pub fn gcra(tat: f64, rpm: u32, now: u64) -> (u64, f64, u64) {
    let interval = 60_000.0 / rpm as f64;
    let burst = (rpm / 120).max(1) as f64;
    let now = now as f64;
    let t = tat.max(now);
    let allow = ((now + interval * (burst - 1.0) - t) / interval).floor() + 1.0;
    if allow <= 0.0 {
        (0, interval, (t - interval * (burst - 1.0)) as u64)
    } else {
        (allow as u64, interval, 0)
    }
}

/// The next daily quota reset after `now_ms` at `hh:mm` UTC.
pub fn next_reset(now_ms: u64, reset_utc: &str) -> u64 {
    let (h, m) = reset_utc
        .split_once(':')
        .and_then(|(h, m)| Some((h.parse::<u64>().ok()?, m.parse::<u64>().ok()?)))
        .unwrap_or((8, 0));
    let day = 86_400_000;
    let offset = (h * 3600 + m * 60) * 1000;
    let today = now_ms - now_ms % day + offset;
    if today > now_ms { today } else { today + day }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcra_spaces_requests_and_allows_a_small_burst() {
        // 600 rpm: 100 ms apart, burst 5.
        let (allow, interval, _) = gcra(0.0, 600, 10_000);
        assert_eq!((allow, interval as u64), (5, 100));
        // Five admitted at t=10000: tat = 10500; nothing more until 10100.
        let (allow, _, next) = gcra(10_500.0, 600, 10_000);
        assert_eq!((allow, next), (0, 10_100));
        let (allow, _, _) = gcra(10_500.0, 600, 10_100);
        assert_eq!(allow, 1);
        // 60 rpm: no burst.
        assert_eq!(gcra(0.0, 60, 5_000).0, 1);
    }

    #[test]
    fn lane_limit_falls_back_to_the_project_concurrency() {
        let mut l = ProjectLimits {
            project: Limit {
                concurrency: 8,
                rpm: 600,
            },
            ..Default::default()
        };
        l.models.insert(
            "m".into(),
            Limit {
                concurrency: 0,
                rpm: 60,
            },
        );
        assert_eq!(
            l.lane("m"),
            Limit {
                concurrency: 8,
                rpm: 60
            }
        );
        assert_eq!(
            l.lane("other"),
            Limit {
                concurrency: 8,
                rpm: 0
            }
        );
    }

    #[test]
    fn daily_reset_is_the_next_occurrence() {
        let day = 86_400_000;
        let t = 10 * day + 9 * 3_600_000; // 09:00 UTC
        assert_eq!(next_reset(t, "08:00"), 11 * day + 8 * 3_600_000);
        assert_eq!(
            next_reset(t, "10:30"),
            10 * day + 10 * 3_600_000 + 1_800_000
        );
    }
}
