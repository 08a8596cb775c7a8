//! How long jobs and queue round trips take, as moving averages: the worker sizes how
//! many jobs it claims beyond its free slots from them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Moving averages (µs) of a job's run and of the queue round trips around it, from
/// which the worker sizes how many jobs it claims beyond its free slots.
#[derive(Debug, Default)]
pub struct Pace {
    job_us: AtomicU64,
    claim_us: AtomicU64,
    settle_us: AtomicU64,
}

impl Pace {
    fn record(slot: &AtomicU64, took: Duration) {
        let sample = (took.as_micros() as u64).max(1);
        let old = slot.load(Ordering::Relaxed);
        let new = if old == 0 {
            sample
        } else {
            (old * 7 + sample) / 8
        };
        slot.store(new, Ordering::Relaxed);
    }

    /// A job's handler ran for `took`.
    pub fn job(&self, took: Duration) {
        Self::record(&self.job_us, took);
    }

    /// A job's average run so far (0 before the first).
    pub fn job_micros(&self) -> u64 {
        self.job_us.load(Ordering::Relaxed)
    }

    pub(super) fn claim(&self, took: Duration) {
        Self::record(&self.claim_us, took);
    }

    pub(super) fn settle(&self, took: Duration) {
        Self::record(&self.settle_us, took);
    }

    /// Jobs to hold beyond `concurrency` free slots: the jobs that finish while a
    /// settle and a claim make their round trips, four times over (jobs finish in
    /// bursts: those started together end on the same timer tick), at most
    /// `concurrency`. Zero until a job has been timed, and for jobs that take much
    /// longer than the round trips (every real image call), so leases are not held idle.
    pub fn headroom(&self, concurrency: usize) -> usize {
        let job = self.job_us.load(Ordering::Relaxed);
        if job == 0 {
            return 0;
        }
        let trips = self.claim_us.load(Ordering::Relaxed) + self.settle_us.load(Ordering::Relaxed);
        let want = (concurrency as u64).saturating_mul(4 * trips) / job;
        want.min(concurrency as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headroom_covers_the_round_trips_of_short_jobs_only() {
        let pace = Pace::default();
        assert_eq!(pace.headroom(200), 0, "nothing timed yet: no headroom");
        pace.job(Duration::from_millis(20));
        pace.claim(Duration::from_micros(700));
        pace.settle(Duration::from_micros(1300));
        // 200 slots × 4 × 2 ms / 20 ms
        assert_eq!(pace.headroom(200), 80);
        // Image calls of seconds: none, whatever the slots.
        let slow = Pace::default();
        slow.job(Duration::from_secs(2));
        slow.claim(Duration::from_millis(1));
        slow.settle(Duration::from_millis(1));
        assert_eq!(slow.headroom(64), 0);
        // No-op jobs: capped at the slots.
        let fast = Pace::default();
        fast.job(Duration::from_micros(20));
        fast.claim(Duration::from_millis(1));
        fast.settle(Duration::from_millis(1));
        assert_eq!(fast.headroom(64), 64);
    }

    #[test]
    fn the_averages_follow_a_change_of_pace() {
        let pace = Pace::default();
        pace.claim(Duration::from_millis(1));
        pace.settle(Duration::from_millis(1));
        pace.job(Duration::from_millis(10));
        for _ in 0..40 {
            pace.job(Duration::from_secs(2));
        }
        assert_eq!(pace.headroom(100), 0);
    }
}
