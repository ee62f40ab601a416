//! When to act: [`RefreshPolicy`] (renewal ahead of expiry), [`Backoff`] (waits after failures)
//! and the cache's fixed settings.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// When to renew a token that carries an expiry.
///
/// The renewal starts `margin` before expiry, where `margin` is a tenth of the token's remaining
/// lifetime when it was installed,
/// kept between [`min_margin`](RefreshPolicy::min_margin) (10 s) and
/// [`max_margin`](RefreshPolicy::max_margin) (5 min) and never more than half the lifetime. A random
/// jitter of up to half the margin is taken off on top, so that many processes holding tokens of
/// the same lifetime do not renew in the same second. For a one-hour token the renewal starts
/// between 52.5 and 55 minutes after it was issued.
///
/// ```
/// use std::time::Duration;
/// use veeva_vault_auth::RefreshPolicy;
///
/// let policy = RefreshPolicy::default().min_margin(Duration::from_secs(30));
/// let (earliest, latest) = policy.window(Duration::from_secs(3600));
/// assert_eq!(latest, Duration::from_secs(3300));
/// assert_eq!(earliest, Duration::from_secs(3150));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefreshPolicy {
    min_margin: Duration,
    max_margin: Duration,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        Self {
            min_margin: Duration::from_secs(10),
            max_margin: Duration::from_secs(300),
        }
    }
}

impl RefreshPolicy {
    /// The smallest margin before expiry (still capped at half the lifetime).
    #[must_use]
    pub fn min_margin(mut self, margin: Duration) -> Self {
        self.min_margin = margin;
        self.max_margin = self.max_margin.max(margin);
        self
    }

    /// The largest margin before expiry.
    #[must_use]
    pub fn max_margin(mut self, margin: Duration) -> Self {
        self.max_margin = margin;
        self.min_margin = self.min_margin.min(margin);
        self
    }

    pub(super) fn margin(&self, lifetime: Duration) -> Duration {
        (lifetime / 10)
            .clamp(self.min_margin, self.max_margin)
            .min(lifetime / 2)
    }

    /// The earliest and latest moment, counted from issue, at which a token with this lifetime is
    /// renewed.
    pub fn window(&self, lifetime: Duration) -> (Duration, Duration) {
        let margin = self.margin(lifetime);
        let latest = lifetime - margin;
        (latest.saturating_sub(margin / 2), latest)
    }

    /// When to renew a token that expires at `expires_at`, seen at `now`.
    pub(super) fn refresh_at(&self, now: Instant, expires_at: Instant) -> Instant {
        let lifetime = expires_at.saturating_duration_since(now);
        let margin = self.margin(lifetime);
        let jitter = random_below(margin / 2);
        (expires_at - margin)
            .checked_sub(jitter)
            .unwrap_or(now)
            .max(now)
    }
}

/// How long to wait before asking a failing source again.
///
/// After the n-th failure in a row the wait is `base · 2ⁿ⁻¹`, at most `max`; an error that says
/// retrying will not help waits `max` at once. The source is never asked more often than that:
/// a request that arrives without a usable token during the wait joins the next attempt if it is
/// due within the fetch timeout, and fails at once with the last error (and the time to the next
/// attempt) if it is not. The layer keeps retrying in the background whether requests come or not.
///
/// ```
/// use std::time::Duration;
/// use veeva_vault_auth::Backoff;
///
/// let backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
/// assert_eq!(backoff.delay(1, true), Duration::from_millis(500));
/// assert_eq!(backoff.delay(3, true), Duration::from_secs(2));
/// assert_eq!(backoff.delay(20, true), Duration::from_secs(30));
/// assert_eq!(backoff.delay(1, false), Duration::from_secs(30));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    max: Duration,
}

impl Default for Backoff {
    /// 1 s, doubling, at most 60 s.
    fn default() -> Self {
        Self::new(Duration::from_secs(1), Duration::from_secs(60))
    }
}

impl Backoff {
    /// Starts at `base` (at least 1 ms), doubles after every failure, never exceeds `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        let base = base.max(Duration::from_millis(1));
        Self {
            base,
            max: max.max(base),
        }
    }

    /// The wait after `failures` failures in a row (at least 1).
    pub fn delay(&self, failures: u32, retryable: bool) -> Duration {
        if !retryable {
            return self.max;
        }
        let doublings = failures.saturating_sub(1).min(31);
        self.base
            .checked_mul(1u32 << doublings)
            .map_or(self.max, |d| d.min(self.max))
    }
}

/// The cache's settings, fixed when the layer is built.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CacheConfig {
    pub(crate) fetch_timeout: Duration,
    pub(crate) refresh: RefreshPolicy,
    pub(crate) backoff: Backoff,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            fetch_timeout: Duration::from_secs(30),
            refresh: RefreshPolicy::default(),
            backoff: Backoff::default(),
        }
    }
}

/// `at + by`, or a moment some thirty years on if that does not fit (a "never" such as
/// `Duration::MAX`).
pub(crate) fn later(at: Instant, by: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(30 * 365 * 24 * 3600);
    at.checked_add(by)
        .or_else(|| at.checked_add(FAR))
        .unwrap_or(at)
}

/// A random duration in `[0, bound)`, from the standard library's per-process random keys.
fn random_below(bound: Duration) -> Duration {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = bound.as_nanos() as u64;
    if nanos == 0 {
        return Duration::ZERO;
    }
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    Duration::from_nanos(hasher.finish() % nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn margin_grows_with_lifetime_within_bounds() {
        let policy = RefreshPolicy::default();
        assert_eq!(
            policy.margin(Duration::from_secs(4)),
            Duration::from_secs(2)
        );
        assert_eq!(
            policy.margin(Duration::from_secs(60)),
            Duration::from_secs(10)
        );
        assert_eq!(
            policy.margin(Duration::from_secs(600)),
            Duration::from_secs(60)
        );
        assert_eq!(
            policy.margin(Duration::from_secs(86_400)),
            Duration::from_secs(300)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn refresh_time_stays_inside_the_window() {
        let policy = RefreshPolicy::default();
        let lifetime = Duration::from_secs(3600);
        let (earliest, latest) = policy.window(lifetime);
        let now = Instant::now();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let at = policy.refresh_at(now, now + lifetime) - now;
            assert!(
                at >= earliest && at <= latest,
                "{at:?} outside {earliest:?}..{latest:?}"
            );
            seen.insert(at);
        }
        assert!(seen.len() > 100, "jitter should spread refreshes");
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let backoff = Backoff::default();
        let delays: Vec<_> = (1..=8).map(|n| backoff.delay(n, true).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(backoff.delay(u32::MAX, true), Duration::from_secs(60));
    }
}
