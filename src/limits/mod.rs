//! Cluster-wide per-project and per-model limits (DESIGN "Queue and coordination"):
//! the vocabulary both queues share. The decisions themselves are
//! the queue's rules (`queue/rules.rs`, and its Lua twin, run atomically for the whole fleet).
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

use crate::config::ProjectConfig;

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
    /// What the project may spend per UTC day.
    pub budget: Budget,
    /// What a model may spend per UTC day, for the models that have a budget.
    pub model_budgets: BTreeMap<String, Budget>,
}

/// A project's daily budget as admission applies it (nano-USD; 0 = none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Budget {
    /// Spend allowed per UTC day.
    pub per_day: u64,
    /// What one running job is reckoned to cost until it settles: the dearest of the
    /// project's models at one 1K image (the price table's estimate).
    pub job_estimate: u64,
}

/// What one running job of `model` is reckoned to cost: one 1K image from a short
/// prompt at `tier` (nano-USD; `None` for a model the price table does not know).
fn job_estimate(model: &str, tier: crate::job::spec::Tier) -> Option<u64> {
    let spec = crate::job::JobSpec::generate(model, "a short prompt of some words");
    crate::pricing::table()
        .estimate(&spec, tier)
        .map(crate::pricing::to_nano)
}

impl Budget {
    /// A model's own budget: `usd` a day, each running job reckoned at one 1K image.
    pub fn of_model(model: &str, usd: f64, tier: crate::job::spec::Tier) -> Self {
        Budget {
            per_day: crate::pricing::to_nano(usd),
            job_estimate: job_estimate(model, tier).unwrap_or(0),
        }
    }

    /// From `budget_usd_per_day` and the models the project runs.
    pub fn from_config(p: &ProjectConfig) -> Self {
        let Some(usd) = p.budget_usd_per_day else {
            return Budget::default();
        };
        let job_estimate = p
            .default_model
            .iter()
            .chain(p.models.keys())
            .map(String::as_str)
            .chain([crate::catalog::DEFAULT_MODEL])
            .filter_map(|m| job_estimate(m, p.tier.unwrap_or_default()))
            .max()
            .unwrap_or(0);
        Budget {
            per_day: crate::pricing::to_nano(usd),
            job_estimate,
        }
    }
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
            budget: Budget::from_config(p),
            model_budgets: p
                .models
                .iter()
                .filter_map(|(m, l)| {
                    let usd = l.budget_usd_per_day?;
                    Some((
                        m.clone(),
                        Budget::of_model(m, usd, p.tier.unwrap_or_default()),
                    ))
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
    /// An outage: hold the project (credentials) or the lane (the model) until a probe
    /// gets through, or an operator unparks it.
    Hold {
        /// Why.
        reason: HoldReason,
        /// The provider's message, shown by `status`.
        message: String,
    },
}

/// Why a project or a lane is held: an outage none of its jobs can get past, so they
/// wait queued (using no attempts) while one probe at a time finds when it is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldReason {
    /// Credentials cannot be had or are refused (the token endpoint down or refusing,
    /// a 401 after the one refresh, a 403 on the project): holds the whole project.
    CredentialsError,
    /// Google answers 404 for the model: holds its lane.
    ModelUnavailable,
    /// Google answers 403 for the model: holds its lane.
    PermissionDenied,
    /// The project's daily budget is spent: holds the whole project until the next
    /// UTC day (or a larger budget); nothing is probed.
    BudgetExhausted,
}

impl HoldReason {
    /// The spelling in `status`, metrics and webhooks.
    pub fn as_str(self) -> &'static str {
        match self {
            HoldReason::CredentialsError => "credentials_error",
            HoldReason::ModelUnavailable => "model_unavailable",
            HoldReason::PermissionDenied => "permission_denied",
            HoldReason::BudgetExhausted => "budget_exhausted",
        }
    }

    /// True when the hold is the project's (every lane), not one lane's.
    pub fn project_wide(self) -> bool {
        matches!(
            self,
            HoldReason::CredentialsError | HoldReason::BudgetExhausted
        )
    }
}

/// A hold as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HoldView {
    /// `credentials_error`, `model_unavailable`, `permission_denied`.
    pub reason: String,
    /// The provider's message.
    pub message: String,
    /// Held since (unix ms).
    pub since_ms: u64,
    /// When the next probe may go (unix ms).
    pub next_probe_ms: u64,
    /// Probes sent so far.
    pub probes: u32,
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
    /// Held by an outage (the model gone, no permission).
    pub hold: Option<HoldView>,
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

    /// `held`, `quota_exhausted`, `paused`, or `ok` at `now`.
    pub fn state(&self, now: u64) -> &'static str {
        if self.hold.is_some() {
            "held"
        } else if self.parked_until_ms.is_some_and(|t| t > now) {
            "quota_exhausted"
        } else if self.paused_until_ms.is_some_and(|t| t > now) {
            "paused"
        } else {
            "ok"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_come_from_the_project_and_its_models() {
        let p: ProjectConfig = toml::from_str(
            "backend = \"gemini-api\"\nbudget_usd_per_day = 10.0\n\
             [models.\"gemini-3-pro-image\"]\nbudget_usd_per_day = 2.5\n",
        )
        .unwrap();
        let l = ProjectLimits::from_config(&p);
        assert_eq!(l.budget.per_day, 10_000_000_000);
        // The dearest model the project runs: 3 Pro at one 1K image.
        assert!(
            (134_000_000..135_000_000).contains(&l.budget.job_estimate),
            "{l:?}"
        );
        let pro = l.model_budgets["gemini-3-pro-image"];
        assert_eq!(pro.per_day, 2_500_000_000);
        assert_eq!(pro.job_estimate, l.budget.job_estimate);
        assert!(!l.model_budgets.contains_key("gemini-3.1-flash-image"));
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
}
