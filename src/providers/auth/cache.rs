//! The access-token cache: reuse a token until 5 minutes before it expires (never more
//! than an hour), fetch at most once at a time (single flight), drop on `invalidate`.
//! It knows nothing about HTTP; the fetch is a closure.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use secrecy::SecretString;
use tokio::time::Instant;

use super::AuthError;

/// Refresh this long before the issuer's expiry, so a token never expires mid-request.
const EARLY_REFRESH: Duration = Duration::from_secs(5 * 60);
/// Never trust a token longer than Google's standard lifetime, whatever `expires_in` says.
const MAX_LIFETIME: Duration = Duration::from_secs(60 * 60);

#[derive(Clone)]
struct Cached {
    token: SecretString,
    fresh_until: Instant,
}

/// One credential's cached token. The slot is a std mutex (never held across `.await`) so
/// `invalidate` can be synchronous; the tokio mutex serialises fetches.
#[derive(Default)]
pub(crate) struct TokenCache {
    slot: Mutex<Option<Cached>>,
    refresh: tokio::sync::Mutex<()>,
}

impl TokenCache {
    /// The cached token if it is still fresh at `now`.
    fn fresh(&self, now: Instant) -> Option<SecretString> {
        let slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        slot.as_ref()
            .filter(|c| now < c.fresh_until)
            .map(|c| c.token.clone())
    }

    /// Returns the cached token, or runs `fetch` (one caller at a time; the others wait and
    /// then reuse its result) and caches what it returns.
    pub(crate) async fn get_or_fetch<F, Fut>(
        &self,
        fetch: F,
    ) -> Result<(SecretString, bool), AuthError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(SecretString, Duration), AuthError>>,
    {
        if let Some(token) = self.fresh(Instant::now()) {
            return Ok((token, false));
        }
        let _single_flight = self.refresh.lock().await;
        // Whoever held the lock before us may have just refreshed.
        if let Some(token) = self.fresh(Instant::now()) {
            return Ok((token, false));
        }
        let started = Instant::now();
        let (token, expires_in) = fetch().await?;
        let fresh_until = fresh_until(started, expires_in);
        *self.slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(Cached {
            token: token.clone(),
            fresh_until,
        });
        Ok((token, true))
    }

    /// Forgets the cached token so the next `get_or_fetch` fetches.
    pub(crate) fn invalidate(&self) {
        self.slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }
}

/// When a token fetched at `fetched_at` with lifetime `expires_in` stops being reused:
/// `EARLY_REFRESH` before expiry (half the lifetime for tokens shorter than 10 minutes, so
/// short-lived tokens are still reused a little), and never past `MAX_LIFETIME`.
pub(crate) fn fresh_until(fetched_at: Instant, expires_in: Duration) -> Instant {
    let lifetime = expires_in.min(MAX_LIFETIME);
    let margin = EARLY_REFRESH.min(lifetime / 2);
    fetched_at + (lifetime - margin)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use secrecy::ExposeSecret;

    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn fresh_until_applies_margin_and_cap() {
        let t0 = Instant::now();
        assert_eq!(fresh_until(t0, 60 * MIN), t0 + 55 * MIN);
        assert_eq!(
            fresh_until(t0, 24 * 60 * MIN),
            t0 + 55 * MIN,
            "capped at one hour"
        );
        assert_eq!(fresh_until(t0, 10 * MIN), t0 + 5 * MIN);
        assert_eq!(
            fresh_until(t0, 4 * MIN),
            t0 + 2 * MIN,
            "short tokens: half lifetime"
        );
        assert_eq!(fresh_until(t0, Duration::ZERO), t0);
    }

    fn counting_fetch(
        counter: &Arc<AtomicUsize>,
    ) -> impl Future<Output = Result<(SecretString, Duration), AuthError>> + use<> {
        let counter = counter.clone();
        async move {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::task::yield_now().await;
            Ok((SecretString::from(format!("token-{n}")), 60 * MIN))
        }
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_fetch() {
        let cache = Arc::new(TokenCache::default());
        let fetches = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let (cache, fetches) = (cache.clone(), fetches.clone());
                tokio::spawn(async move {
                    let (t, _) = cache
                        .get_or_fetch(|| counting_fetch(&fetches))
                        .await
                        .unwrap();
                    t.expose_secret().to_owned()
                })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap(), "token-1");
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn invalidate_forces_one_new_fetch() {
        let cache = TokenCache::default();
        let fetches = Arc::new(AtomicUsize::new(0));
        let (_, fetched) = cache
            .get_or_fetch(|| counting_fetch(&fetches))
            .await
            .unwrap();
        assert!(fetched);
        let (_, fetched) = cache
            .get_or_fetch(|| counting_fetch(&fetches))
            .await
            .unwrap();
        assert!(!fetched);
        cache.invalidate();
        let (t, fetched) = cache
            .get_or_fetch(|| counting_fetch(&fetches))
            .await
            .unwrap();
        assert!(fetched);
        assert_eq!(t.expose_secret(), "token-2");
    }

    #[tokio::test]
    async fn failed_fetch_caches_nothing() {
        let cache = TokenCache::default();
        let err = cache
            .get_or_fetch(|| async { Err(AuthError::EmptySetting) })
            .await
            .unwrap_err();
        assert!(matches!(err, AuthError::EmptySetting));
        let fetches = Arc::new(AtomicUsize::new(0));
        cache
            .get_or_fetch(|| counting_fetch(&fetches))
            .await
            .unwrap();
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
    }
}
