//! Exact request accounting: responses by status, in-flight and peak concurrency per
//! `project/model`, and token-endpoint counters. Tests read it to prove limits held.
//!
//! Counts only; deciding outcomes is the handlers' job.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

/// Snapshot served by `GET /emulator/stats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// `"<project>/<model>"` → status (`"200"`, `"429"`, …, `"reset"`) → count.
    pub requests: BTreeMap<String, BTreeMap<String, u64>>,
    /// Highest number of requests in flight at once per `"<project>/<model>"`.
    pub peak_concurrency: BTreeMap<String, u64>,
    /// Requests in flight now per `"<project>/<model>"`.
    pub in_flight: BTreeMap<String, u64>,
    /// Access tokens issued (token endpoint and metadata server).
    pub tokens_issued: u64,
    /// Requests to the token endpoint and metadata token endpoint, successful or not.
    pub token_requests: u64,
    /// `"<project>/<model>"` → `"<requested>-><served>"` service tier → answered calls
    /// that named a tier (`serviceTier`, or Vertex's request-type header).
    #[serde(default)]
    pub service_tiers: BTreeMap<String, BTreeMap<String, u64>>,
    /// `"<project>/<model>"` → batch lines answered (duplicates included); they are
    /// not in `requests`.
    #[serde(default)]
    pub batch_lines: BTreeMap<String, u64>,
}

/// The live counters.
#[derive(Debug, Default)]
pub struct StatsBook {
    inner: Mutex<Stats>,
}

impl StatsBook {
    fn lock(&self) -> MutexGuard<'_, Stats> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of the counters.
    pub fn snapshot(&self) -> Stats {
        self.lock().clone()
    }

    /// Clears everything except requests currently in flight.
    pub fn reset(&self) {
        let mut s = self.lock();
        let in_flight = std::mem::take(&mut s.in_flight);
        *s = Stats::default();
        for (k, v) in in_flight.into_iter().filter(|(_, v)| *v > 0) {
            s.peak_concurrency.insert(k.clone(), v);
            s.in_flight.insert(k, v);
        }
    }

    /// Counts one call that named a service tier, with the tier it was served at.
    pub fn tier(&self, key: &str, requested: &str, served: &str) {
        let mut s = self.lock();
        *s.service_tiers
            .entry(key.to_string())
            .or_default()
            .entry(format!("{requested}->{served}"))
            .or_default() += 1;
    }

    /// Counts `n` answered batch lines.
    pub fn batch_lines(&self, key: &str, n: u64) {
        *self.lock().batch_lines.entry(key.to_string()).or_default() += n;
    }

    /// Counts one answered request.
    pub fn record(&self, key: &str, status: &str) {
        let mut s = self.lock();
        *s.requests
            .entry(key.to_string())
            .or_default()
            .entry(status.to_string())
            .or_default() += 1;
    }

    /// Counts a token request and whether it issued a token.
    pub fn token_request(&self, issued: bool) {
        let mut s = self.lock();
        s.token_requests += 1;
        if issued {
            s.tokens_issued += 1;
        }
    }

    /// Marks a request in flight until the guard drops.
    pub fn enter(self: &Arc<Self>, key: &str) -> InFlight {
        let mut s = self.lock();
        let now = {
            let n = s.in_flight.entry(key.to_string()).or_default();
            *n += 1;
            *n
        };
        let peak = s.peak_concurrency.entry(key.to_string()).or_default();
        *peak = (*peak).max(now);
        InFlight {
            book: self.clone(),
            key: key.to_string(),
        }
    }
}

/// Decrements the in-flight count when dropped (also when the client goes away).
#[derive(Debug)]
pub struct InFlight {
    book: Arc<StatsBook>,
    key: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut s = self.book.lock();
        if let Some(n) = s.in_flight.get_mut(&self.key) {
            *n = n.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_tracks_the_highest_in_flight_count() {
        let book = Arc::new(StatsBook::default());
        let a = book.enter("p/m");
        let b = book.enter("p/m");
        drop(a);
        let _c = book.enter("p/m");
        drop(b);
        let s = book.snapshot();
        assert_eq!(s.peak_concurrency["p/m"], 2);
        assert_eq!(s.in_flight["p/m"], 1);
        book.record("p/m", "200");
        book.record("p/m", "200");
        assert_eq!(book.snapshot().requests["p/m"]["200"], 2);
    }
}
