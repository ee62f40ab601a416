//! The maintainer: one background task per cache that renews tokens before they expire, drops
//! them when they do, polls sources that can change and retries failed fetches.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::state::{CacheState, Holdoff, Phase, Reason};
use super::timing::later;
use super::Cache;

/// The shortest poll interval the cache honours: a source asking for less (`Some(Duration::ZERO)`
/// say) is polled this often.
pub(crate) const MIN_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// What the maintainer should do now, or when to look again.
enum Plan {
    Expire(u64),
    TimeOut,
    Fetch(Reason),
    Sleep(Option<Instant>),
}

impl Cache {
    /// Starts the maintainer on `runtime` unless it runs already. One that ended (its runtime
    /// shut down) is replaced.
    pub(super) fn ensure_maintainer(
        self: &Arc<Self>,
        state: &mut CacheState,
        runtime: &tokio::runtime::Handle,
    ) {
        if state
            .maintainer
            .as_ref()
            .is_some_and(|task| !task.is_finished())
        {
            return;
        }
        let task = runtime.spawn(maintain(Arc::downgrade(self), Arc::clone(&self.wake)));
        state.maintainer = Some(task.abort_handle());
    }

    fn plan(&self, now: Instant) -> Plan {
        let state = self.lock();
        let current = self.current.load_full();
        let expires_at = current.as_ref().and_then(|c| c.token.expires_at());
        if let (Some(current), Some(at)) = (&current, expires_at) {
            if at <= now {
                return Plan::Expire(current.generation);
            }
        }
        if let Phase::Fetching(fetch) = &state.phase {
            if fetch.deadline <= now {
                return Plan::TimeOut;
            }
            return Plan::Sleep(earliest([expires_at, Some(fetch.deadline)]));
        }
        let retry = state.phase.retry();
        let failed = retry.filter(|r| matches!(r.cause, Holdoff::Failed(_)));
        let poll_at = self
            .source
            .poll_interval()
            .map(|every| every.max(MIN_POLL_INTERVAL))
            .and_then(|every| state.last_fetch_at.map(|at| later(at, every)));
        let refresh_at = current
            .as_ref()
            .and_then(|c| c.refresh_at)
            .map(|at| match retry {
                Some(r) if matches!(r.cause, Holdoff::StaleRenewal) => at.max(r.until),
                _ => at,
            });
        let recover_at = match (&current, failed) {
            (None, Some(failed)) => Some(failed.until),
            (None, None) if state.expired => Some(now),
            _ => None,
        };
        let reason = |at: Option<Instant>, reason: Reason| at.map(|at| (at, reason));
        let due = [
            reason(refresh_at, Reason::Renewal),
            reason(poll_at, Reason::Poll),
            reason(recover_at, Reason::Recovery),
        ]
        .into_iter()
        .flatten()
        .min_by_key(|(at, _)| *at)
        // After a failure, nothing is asked before the backoff ends.
        .map(|(at, reason)| (failed.map_or(at, |f| at.max(f.until)), reason));
        match due {
            Some((due, reason)) if due <= now => Plan::Fetch(reason),
            due => Plan::Sleep(earliest([due.map(|(at, _)| at), expires_at])),
        }
    }
}

fn earliest<const N: usize>(moments: [Option<Instant>; N]) -> Option<Instant> {
    moments.into_iter().flatten().min()
}

/// Renews tokens before they expire, drops them when they do, polls sources that can change and
/// retries failed fetches, for as long as the cache lives.
async fn maintain(cache: Weak<Cache>, wake: Arc<Notify>) {
    let _orphaned = Orphaned(cache.clone());
    loop {
        let notified = wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let plan = match cache.upgrade() {
            Some(cache) => cache.plan(Instant::now()),
            None => return,
        };
        match plan {
            Plan::Expire(generation) => {
                if let Some(cache) = cache.upgrade() {
                    let mut state = cache.lock();
                    cache.drop_expired(&mut state, generation);
                }
            }
            Plan::TimeOut => {
                if let Some(cache) = cache.upgrade() {
                    let mut state = cache.lock();
                    cache.time_out_overdue(&mut state, Instant::now());
                }
            }
            Plan::Fetch(reason) => {
                let Some(strong) = cache.upgrade() else {
                    return;
                };
                let outcome = strong.refresh(reason);
                drop(strong);
                outcome.await;
            }
            Plan::Sleep(Some(at)) => {
                // Woken by the deadline or by a change, whichever comes first.
                let _ = tokio::time::timeout_at(at, notified).await;
            }
            Plan::Sleep(None) => notified.await,
        }
    }
}

/// Dropped with the maintainer. If the cache outlives it (the runtime it ran on shut down), no
/// task watches the token's expiry or polls the source any more: drop the token, so that the next
/// request fetches one on a runtime that is alive, which starts a new maintainer there.
struct Orphaned(Weak<Cache>);

impl Drop for Orphaned {
    fn drop(&mut self) {
        if let Some(cache) = self.0.upgrade() {
            let mut state = cache.lock();
            state.maintainer = None;
            cache.publish(&mut state, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::state::Retry;
    use super::super::Credential;
    use super::*;
    use crate::source::StaticToken;
    use crate::token::AccessToken;

    /// When the maintainer next looks, with a token due for renewal at `renew` held during a
    /// backoff for `cause` that lasts until `until`.
    fn next_look(cause: Holdoff, renew: Duration, until: Duration) -> Option<Duration> {
        let source = Arc::new(StaticToken::new("veeva-vault-a").unwrap());
        let cache = Cache::new(source, Default::default());
        let now = Instant::now();
        let token = AccessToken::new("veeva-vault-a")
            .unwrap()
            .with_expiry(Some(now + Duration::from_secs(3600)));
        let held = Credential::new(token, 1, Some(now + renew), true, false);
        let mut state = cache.lock();
        cache.publish(&mut state, Some(Arc::new(held)));
        state.phase = Phase::BackingOff(Retry {
            cause,
            in_a_row: 1,
            until: now + until,
        });
        drop(state);
        match cache.plan(now) {
            Plan::Sleep(at) => at.map(|at| at - now),
            _ => panic!("the maintainer acts at once"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn only_a_stale_renewal_puts_the_next_renewal_off() {
        let (renew, until) = (Duration::from_secs(5), Duration::from_secs(20));
        assert_eq!(
            next_look(Holdoff::StaleRenewal, renew, until),
            Some(until),
            "a renewal that found the same token is tried again after its backoff"
        );
        assert_eq!(
            next_look(Holdoff::RejectedAgain, renew, until),
            Some(renew),
            "a streak of rejected replacements does not put off the renewal"
        );
    }
}
