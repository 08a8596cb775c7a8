//! The queue's decisions, written once: pure functions (no I/O, no clock: `now` is an
//! argument) that [`super::MemoryQueue`] calls and that `redis/rules.lua` implements
//! line for line for the Redis scripts. `tests/it/queue_rules.rs` feeds the same table
//! of cases to both (the Lua through real Redis) and asserts identical answers.
//!
//! What is decided here: admission (project and lane concurrency, GCRA rates, the AIMD
//! effective limit, pauses and parking), the AIMD steps and the 429 window, what
//! happens to a delivery at claim, at recovery and at a deferral (run, fail past
//! `max_wait`, dead-letter after `max_deliveries`, with the messages users read),
//! settle fencing, where a webhook event goes, when a batch is complete, and what a job
//! waiting for its dependencies does when one ends.
//! Counter bookkeeping and storage layout are the backends' business.

use crate::limits::Limit;

/// How soon a worker polls again when a concurrency limit is full (a slot frees when
/// any worker settles).
pub const SLOT_POLL_MS: u64 = 25;

/// The longest wait between two probes of a held scope (the wait doubles from
/// `worker.hold_probe` up to this).
pub const HOLD_PROBE_MAX_MS: u64 = 300_000;

/// What a GCRA rate limit lets through at `now`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gcra {
    /// Requests that may go now.
    pub allow: u64,
    /// Milliseconds between two requests at the rate.
    pub interval: f64,
    /// When none may go now: when the next one may (unix ms).
    pub next_ms: Option<u64>,
}

/// GCRA with a burst of half a second's worth (at least 1): `tat` is the theoretical
/// arrival time the limit keeps.
pub fn gcra(tat: f64, rpm: u32, now: u64) -> Gcra {
    let interval = 60_000.0 / rpm as f64;
    let burst = (rpm / 120).max(1) as f64;
    let now = now as f64;
    let t = tat.max(now);
    let allow = ((now + interval * (burst - 1.0) - t) / interval).floor() + 1.0;
    if allow <= 0.0 {
        Gcra {
            allow: 0,
            interval,
            next_ms: Some((t - interval * (burst - 1.0)) as u64),
        }
    } else {
        Gcra {
            allow: allow as u64,
            interval,
            next_ms: None,
        }
    }
}

/// The limit's `tat` after `n` requests went at `now`.
pub fn gcra_spend(tat: f64, now: u64, n: u64, interval: f64) -> f64 {
    tat.max(now as f64) + n as f64 * interval
}

/// How many jobs may start, and when a scope held back may next admit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Allowance {
    /// Jobs that may start now.
    pub allow: u64,
    /// Set when the scope held jobs back for a limit that frees by itself (a slot, a
    /// rate token, a pause): poll again then (unix ms). Parking sets none.
    pub wake_ms: Option<u64>,
}

/// The earlier of two wake-ups.
pub fn earliest(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The project's share of a claim of `want` jobs: its concurrency against the jobs it
/// has running, then its rate (`tat` is its GCRA state).
pub fn project_allowance(want: u64, limit: Limit, running: u64, tat: f64, now: u64) -> Allowance {
    let mut out = Allowance {
        allow: want,
        wake_ms: None,
    };
    if limit.concurrency > 0 {
        out.allow = out
            .allow
            .min((limit.concurrency as u64).saturating_sub(running));
        if out.allow == 0 {
            out.wake_ms = Some(now + SLOT_POLL_MS);
        }
    }
    if limit.rpm > 0 && out.allow > 0 {
        let g = gcra(tat, limit.rpm, now);
        out.allow = out.allow.min(g.allow);
        out.wake_ms = earliest(out.wake_ms, g.next_ms);
    }
    out
}

/// A lane's admission state.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LaneState {
    /// Jobs in flight.
    pub run: u64,
    /// AIMD effective concurrency; `None` until a 429 lowered it (the configured one).
    pub eff: Option<f64>,
    /// GCRA state of the lane's rate.
    pub tat: f64,
    /// Admission paused until (unix ms; 0 none).
    pub pause_ms: u64,
    /// Parked until (unix ms; 0 none).
    pub park_ms: u64,
    /// Held (an outage: the model gone, no permission): when the next probe may go
    /// (unix ms; 0: not held).
    pub hold_ms: u64,
}

/// A lane's share of the `free` slots the project left: parked or paused lanes admit
/// nothing; otherwise the AIMD-effective concurrency (at least 1, never above the
/// configured) against what runs, then the lane's rate.
pub fn lane_allowance(free: u64, limit: Limit, lane: &LaneState, now: u64) -> Allowance {
    if let Some(held) = held_allowance(free, lane.run, lane.hold_ms, now) {
        return held;
    }
    if lane.park_ms > now {
        return Allowance::default();
    }
    if lane.pause_ms > now {
        return Allowance {
            allow: 0,
            wake_ms: Some(lane.pause_ms),
        };
    }
    let mut out = Allowance {
        allow: free,
        wake_ms: None,
    };
    if limit.concurrency > 0 {
        let cap = limit.concurrency as f64;
        let eff = lane.eff.unwrap_or(cap).min(cap).floor().max(1.0) as u64;
        out.allow = out.allow.min(eff.saturating_sub(lane.run));
        if out.allow == 0 {
            out.wake_ms = Some(now + SLOT_POLL_MS);
        }
    }
    if limit.rpm > 0 && out.allow > 0 {
        let g = gcra(lane.tat, limit.rpm, now);
        out.allow = out.allow.min(g.allow);
        out.wake_ms = earliest(out.wake_ms, g.next_ms);
    }
    out
}

/// How many of `want` jobs a daily budget (nano-USD, 0 = none) lets start when the day
/// has `spent` so far and `running` jobs are out: each running job holds `est` (its
/// estimated cost) until it settles, so a fleet overshoots by at most what already runs.
/// 0 means the budget is spent: the project is held (`budget_exhausted`) until the next
/// day or a larger budget.
pub fn budget_allowance(want: u64, budget: u64, spent: u64, running: u64, est: u64) -> u64 {
    if budget == 0 {
        return want;
    }
    let committed = spent.saturating_add(running.saturating_mul(est));
    if committed >= budget {
        return 0;
    }
    if est == 0 {
        return want;
    }
    want.min((budget - committed).div_ceil(est))
}

/// The start of the next UTC day after `now` (unix ms): when a day's spend resets.
pub fn next_day_ms(now: u64) -> u64 {
    (now / 86_400_000 + 1) * 86_400_000
}

/// A held scope (a project whose credentials fail, a lane whose model is gone) admits
/// one probe at a time, once its probe time has come and nothing of it runs; `None`
/// when it is not held (`probe_ms` 0). Held work waits queued, using no attempts.
pub fn held_allowance(want: u64, running: u64, probe_ms: u64, now: u64) -> Option<Allowance> {
    if probe_ms == 0 {
        return None;
    }
    let allow = if now >= probe_ms && running == 0 {
        want.min(1)
    } else {
        0
    };
    Some(Allowance {
        allow,
        wake_ms: (probe_ms > now).then_some(probe_ms),
    })
}

/// The wait before a held scope's next probe, after `probes` probes: `base_ms`
/// doubling each time, at most `max_ms`.
pub fn probe_delay(probes: u32, base_ms: u64, max_ms: u64) -> u64 {
    base_ms.saturating_mul(1u64 << probes.min(20)).min(max_ms)
}

/// Why a delivery ends the job instead of running it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The job's error, as users read it.
    pub reason: String,
    /// Also recorded in the dead-letter list.
    pub dead_letter: bool,
}

/// A job being claimed, on its `deliveries`-th delivery (this one included), enqueued
/// at `enqueued_ms`: runs, or fails (too many deliveries; waited past `max_wait_ms`,
/// 0 = no deadline).
pub fn at_claim(
    deliveries: u32,
    max_deliveries: u32,
    enqueued_ms: u64,
    now: u64,
    max_wait_ms: u64,
) -> Option<Failure> {
    if deliveries > max_deliveries {
        Some(Failure {
            reason: format!(
                "dead-lettered: delivered {} times without finishing",
                deliveries - 1
            ),
            dead_letter: true,
        })
    } else if max_wait_ms > 0 && now.saturating_sub(enqueued_ms) > max_wait_ms {
        Some(Failure {
            reason: format!(
                "waited {} s without running (max_wait {} s)",
                now.saturating_sub(enqueued_ms) / 1000,
                max_wait_ms / 1000
            ),
            dead_letter: false,
        })
    } else {
        None
    }
}

/// A job whose lease expired after `deliveries` deliveries: taken over by the
/// recovering worker, or dead-lettered once it has used them all.
pub fn at_recover(deliveries: u32, max_deliveries: u32) -> Option<Failure> {
    (deliveries >= max_deliveries).then(|| Failure {
        reason: format!(
            "dead-lettered: delivered {deliveries} times without finishing (its worker died or lost its lease each time)"
        ),
        dead_letter: true,
    })
}

/// A retry asked for at `now`: a deferral (`counted == false`: a 429, a spent quota)
/// past the job's `max_wait` ends it; the answer is its error. Counted retries are
/// bounded by the attempt budget instead.
pub fn at_deferral(
    counted: bool,
    enqueued_ms: u64,
    now: u64,
    max_wait_ms: u64,
    error: &str,
) -> Option<String> {
    let waited = now.saturating_sub(enqueued_ms);
    (!counted && max_wait_ms > 0 && waited > max_wait_ms).then(|| {
        format!(
            "waited {} s for capacity (max_wait {} s); last error: {error}",
            waited / 1000,
            max_wait_ms / 1000
        )
    })
}

/// A settle applies only to the delivery the job is running under: a job recovered
/// and handed to another worker refuses its old worker's settle.
pub fn fenced(record_token: Option<&str>, running: bool, lease_token: &str) -> bool {
    running && record_token == Some(lease_token)
}

/// Additive increase after `answered` provider answers: `+answered/eff`, never above
/// the configured `cap`. `None`: no change (no limit, or not lowered).
pub fn aimd_increase(eff: Option<f64>, cap: u32, answered: u64) -> Option<f64> {
    let cap = cap as f64;
    let eff = eff?;
    (cap > 0.0 && eff > 0.0 && eff < cap).then(|| (eff + answered as f64 / eff).min(cap))
}

/// The AIMD knobs a 429 is handled with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Aimd {
    /// Multiplicative decrease (0 < decrease < 1).
    pub decrease: f64,
    /// At most one decrease per this many ms.
    pub interval_ms: u64,
    /// Pause when the 429 advised no delay, ms.
    pub default_pause_ms: u64,
}

impl Default for Aimd {
    fn default() -> Self {
        Aimd {
            decrease: 0.85,
            interval_ms: 1000,
            default_pause_ms: 1000,
        }
    }
}

/// What a rate 429 does to a lane.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The lowered effective concurrency, when it was lowered now.
    pub eff: Option<f64>,
    /// Admission paused until (unix ms).
    pub pause_ms: u64,
}

/// Multiplicative decrease (at most once per interval since `dec_ms`: one overshoot
/// brings several 429s) from the effective concurrency (the configured `cap`, or what
/// runs when there is none), and a pause for the advised `delay_ms` (0: the default).
pub fn on_rate_429(
    lane: &LaneState,
    dec_ms: u64,
    cap: u32,
    delay_ms: u64,
    now: u64,
    aimd: Aimd,
) -> Backoff {
    let cap = if cap > 0 {
        cap as f64
    } else {
        lane.run.max(1) as f64
    };
    let eff = (now.saturating_sub(dec_ms) >= aimd.interval_ms)
        .then(|| (lane.eff.unwrap_or(cap).min(cap) * aimd.decrease).max(1.0));
    let until = now
        + if delay_ms > 0 {
            delay_ms
        } else {
            aimd.default_pause_ms
        };
    Backoff {
        eff,
        pause_ms: lane.pause_ms.max(until),
    }
}

/// A lane's 429 counts over one to two minutes: this minute and the one before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Window {
    /// Start of this minute (unix ms).
    pub start_ms: u64,
    /// 429s this minute.
    pub throttled: u64,
    /// Answers this minute.
    pub answered: u64,
    /// 429s the minute before.
    pub prev_throttled: u64,
    /// Answers the minute before.
    pub prev_answered: u64,
}

/// The window at `now`: a minute after its start it rolls (the minute before is kept
/// only if it ended less than a minute ago).
pub fn roll_window(w: Window, now: u64) -> Window {
    let age = now.saturating_sub(w.start_ms);
    if age < 60_000 {
        w
    } else if age < 120_000 {
        Window {
            start_ms: now,
            throttled: 0,
            answered: 0,
            prev_throttled: w.throttled,
            prev_answered: w.answered,
        }
    } else {
        Window {
            start_ms: now,
            ..Window::default()
        }
    }
}

/// Where an event goes: the subject's own webhook URL, else the project's default;
/// none without either.
pub fn hook_target<'a>(own: Option<&'a str>, default: Option<&'a str>) -> Option<&'a str> {
    own.filter(|u| !u.is_empty())
        .or(default)
        .filter(|u| !u.is_empty())
}

/// A batch completes once: when it is sealed (`total` known) and every job is
/// terminal, and it has not completed before.
pub fn batch_complete(total: Option<u64>, done: u64, completed: bool) -> bool {
    !completed && total.is_some_and(|t| done >= t)
}

/// What a job waiting for its dependencies does when one of them ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterDependency {
    /// Others are still pending: keep waiting.
    Wait,
    /// That was the last one and they all succeeded: the job goes to its lane.
    Release,
    /// It did not succeed: the job cannot run and is cancelled with this reason, which
    /// names the dependency ("frame 3 was blocked: …").
    Cancel(String),
}

/// A dependency called `name` ended `status` (with `error`) while `left` dependencies
/// (this one included) were pending; `any`: the waiting job runs whatever became of it
/// (a story's assembly).
pub fn after_dependency(
    left: u64,
    status: &str,
    name: &str,
    error: &str,
    any: bool,
) -> AfterDependency {
    if status != "succeeded" && !any {
        let why = if error.is_empty() {
            String::new()
        } else {
            format!(": {error}")
        };
        return AfterDependency::Cancel(format!("{name} was {status}{why}"));
    }
    if left <= 1 {
        AfterDependency::Release
    } else {
        AfterDependency::Wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcra_spaces_requests_and_allows_a_small_burst() {
        // 600 rpm: 100 ms apart, burst 5.
        let g = gcra(0.0, 600, 10_000);
        assert_eq!((g.allow, g.interval as u64), (5, 100));
        // Five admitted at t=10000: tat = 10500; nothing more until 10100.
        let g = gcra(10_500.0, 600, 10_000);
        assert_eq!((g.allow, g.next_ms), (0, Some(10_100)));
        assert_eq!(gcra(10_500.0, 600, 10_100).allow, 1);
        // 60 rpm: no burst.
        assert_eq!(gcra(0.0, 60, 5_000).allow, 1);
    }
}
