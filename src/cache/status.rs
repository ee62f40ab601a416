//! [`AuthStatus`], the cache as health checks and metrics see it, and the counters behind it.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::time::Instant;

use super::state::Holdoff;
use super::Cache;
use crate::error::TokenUnavailable;

/// Counters kept for [`AuthStatus`]; written off the request path only.
#[derive(Default)]
pub(super) struct Counters {
    pub(super) fetches: AtomicU64,
    pub(super) failures: AtomicU64,
    pub(super) reacquisitions: AtomicU64,
    pub(super) replays: AtomicU64,
}

impl Counters {
    pub(super) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A point-in-time view of a layer's credential, for health checks and metrics.
///
/// It never holds the token's value.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct AuthStatus {
    /// The generation of the current token (1 for the first one fetched), if one is held.
    pub generation: Option<u64>,
    /// When the current token expires, if it is held and its expiry is known.
    pub expires_at: Option<Instant>,
    /// When the current token will be renewed in the background, if planned.
    pub refresh_at: Option<Instant>,
    /// The error of the last fetch, if it failed.
    pub last_error: Option<TokenUnavailable>,
    /// Failed fetches since the last success.
    pub consecutive_failures: u32,
    /// Before this moment a request without a token fails at once instead of fetching.
    pub retry_at: Option<Instant>,
    /// Fetches started, successful or not.
    pub fetches: u64,
    /// Fetches that failed.
    pub fetch_failures: u64,
    /// Times Vault rejected the current token and a new one was asked for.
    pub reacquisitions: u64,
    /// Requests sent a second time with a new token.
    pub replays: u64,
    /// Whether a fetch from the source is under way now.
    pub fetching: bool,
}

impl Cache {
    pub(crate) fn count_replay(&self) {
        Counters::bump(&self.counters.replays);
    }

    pub(crate) fn status(&self) -> AuthStatus {
        let state = self.lock();
        let current = self.current.load_full();
        let failed = state.phase.retry().and_then(|retry| match &retry.cause {
            Holdoff::Failed(err) => Some((err, retry)),
            _ => None,
        });
        let now = Instant::now();
        AuthStatus {
            generation: current.as_ref().map(|c| c.generation),
            expires_at: current.as_ref().and_then(|c| c.token.expires_at()),
            refresh_at: current.as_ref().and_then(|c| c.refresh_at),
            last_error: failed.map(|(err, _)| err.clone()),
            consecutive_failures: failed.map_or(0, |(_, retry)| retry.in_a_row),
            retry_at: failed.map(|(_, retry)| retry.until).filter(|at| *at > now),
            fetches: self.counters.fetches.load(Ordering::Relaxed),
            fetch_failures: self.counters.failures.load(Ordering::Relaxed),
            reacquisitions: self.counters.reacquisitions.load(Ordering::Relaxed),
            replays: self.counters.replays.load(Ordering::Relaxed),
            fetching: matches!(state.phase, super::state::Phase::Fetching(_)),
        }
    }
}
