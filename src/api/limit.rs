//! The per-token request rate limit (GCRA, as the queue's rpm): a token over
//! `api.requests_per_second` (with a burst of `api.burst`) gets 429 and `Retry-After`,
//! so one client cannot flood the queue. Kept per API process: behind a load balancer
//! of N processes a token gets at most N times the rate. Only known tokens have an
//! entry, so the table is as big as the configuration.

use std::collections::HashMap;
use std::sync::Mutex;

/// Per-token GCRA state.
#[derive(Debug, Default)]
pub struct RateLimiter {
    /// Milliseconds between requests at the sustained rate (0: no limit).
    interval_ms: f64,
    /// How far ahead of now a token's theoretical arrival time may run.
    tolerance_ms: f64,
    tats: Mutex<HashMap<[u8; 32], f64>>,
}

impl RateLimiter {
    /// `per_second` sustained (0: unlimited), bursts of `burst` requests.
    pub fn new(per_second: f64, burst: u32) -> Self {
        let interval_ms = if per_second > 0.0 {
            1000.0 / per_second
        } else {
            0.0
        };
        RateLimiter {
            interval_ms,
            tolerance_ms: interval_ms * f64::from(burst.max(1) - 1),
            tats: Mutex::default(),
        }
    }

    /// Admits one request of `token` at `now_ms`, or says how many seconds to wait.
    pub fn check(&self, token: [u8; 32], now_ms: f64) -> Result<(), u64> {
        if self.interval_ms == 0.0 {
            return Ok(());
        }
        let mut tats = self.tats.lock().expect("rate limiter");
        let tat = tats.get(&token).copied().unwrap_or(now_ms).max(now_ms);
        let ahead = tat - now_ms;
        if ahead > self.tolerance_ms {
            return Err(((ahead - self.tolerance_ms) / 1000.0).ceil().max(1.0) as u64);
        }
        tats.insert(token, tat + self.interval_ms);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_rate_holds() {
        let l = RateLimiter::new(10.0, 5);
        let t = [1u8; 32];
        for _ in 0..5 {
            assert!(l.check(t, 0.0).is_ok());
        }
        assert_eq!(l.check(t, 0.0), Err(1));
        assert!(
            l.check([2u8; 32], 0.0).is_ok(),
            "another token has its own budget"
        );
        assert!(l.check(t, 100.0).is_ok(), "one more every 100 ms");
        assert!(l.check(t, 100.0).is_err());
        assert!(RateLimiter::new(0.0, 1).check(t, 0.0).is_ok());
    }
}
