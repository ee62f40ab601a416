//! The cache's state machine: whether a fetch is under way, and why the source is not being asked.
//!
//! ```text
//!            fetch starts                     new token, or the one held
//!   Idle ─────────────────► Fetching ──────────────────────────────────► Idle
//!    ▲                       │  │  source failed, timed out, panicked; the token Vault just
//!    │ backoff over,         │  │  rejected handed back; a renewal that found the same token
//!    │ or a token Vault took │  └──────────────────────────────────────► BackingOff(record)
//!    │                       │ its runtime shut down
//!    └── BackingOff ◄────────┘ (the record it started with, untouched)
//! ```
//!
//! There is one backoff record ([`Retry`]), whatever the reason for holding off: a fetch started
//! while backing off carries it, and counts on from it if it ends the same way.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::time::Instant;

use super::timing::{later, Backoff, CacheConfig};
use super::Credential;
use crate::error::TokenUnavailable;
use crate::token::AccessToken;
use crate::trace::event;
use crate::UnavailableKind;

/// Expiries of one token value that differ by less than this are the same expiry: a wall-clock
/// expiry converted to the monotonic clock at every poll moves by a few nanoseconds each time.
pub(super) const SAME_EXPIRY: std::time::Duration = std::time::Duration::from_secs(1);

/// Why a fetch was started; shown in logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reason {
    /// A request found no token.
    NoToken,
    /// Vault rejected the current token.
    Rejected,
    /// The token nears its expiry.
    Renewal,
    /// The source's poll interval elapsed.
    Poll,
    /// Retrying after a failure, or after a token expired unrenewed.
    Recovery,
    /// The user asked for it.
    Forced,
}

/// How a fetch ended, as every waiter sees it.
#[derive(Clone, Debug)]
pub(crate) enum Outcome {
    /// A token is in place with this generation.
    Installed(u64),
    /// The source handed back the token that Vault had just rejected.
    Unchanged,
    /// No token could be had.
    Failed(TokenUnavailable),
}

/// What a request whose token Vault rejected should do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Reacquired {
    /// A different token is in place: send again.
    Replay,
    /// Nothing better is to be had now: hand the rejection to the caller.
    GiveUp,
}

/// Why the cache holds off asking the source.
#[derive(Clone, Debug)]
pub(super) enum Holdoff {
    /// The last fetch failed (an error, a timeout, a panic), or handed back the very token Vault
    /// had just rejected (an error of kind [`Rejected`](UnavailableKind::Rejected)). A request
    /// without a token fails with this error until the record runs out.
    Failed(TokenUnavailable),
    /// Tokens fetched to replace a rejected one were rejected in turn before Vault ever accepted
    /// them: the source hands out tokens this Vault does not take.
    RejectedAgain,
    /// Renewals found the token already held.
    StaleRenewal,
}

impl Holdoff {
    fn same_kind(&self, other: &Holdoff) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }

    /// The source handed back the token Vault rejected.
    fn is_rejected_token(&self) -> bool {
        matches!(self, Holdoff::Failed(err) if err.kind() == UnavailableKind::Rejected)
    }
}

/// The one backoff record: why the source is not asked, how many times in a row, until when.
#[derive(Clone, Debug)]
pub(super) struct Retry {
    pub(super) cause: Holdoff,
    /// Attempts in a row that ended this way (at least 1).
    pub(super) in_a_row: u32,
    /// Before this moment the source is not asked again for this cause.
    pub(super) until: Instant,
}

impl Retry {
    /// The record after one more attempt ended with `cause` at `now`: it counts on from `before`
    /// when that had the same kind of cause.
    pub(super) fn after(
        before: Option<&Retry>,
        cause: Holdoff,
        now: Instant,
        backoff: &Backoff,
    ) -> Self {
        let in_a_row = match before {
            Some(before) if before.cause.same_kind(&cause) => before.in_a_row.saturating_add(1),
            _ => 1,
        };
        let retryable = match &cause {
            Holdoff::Failed(err) => err.is_retryable(),
            _ => true,
        };
        Self {
            until: later(now, backoff.delay(in_a_row, retryable)),
            cause,
            in_a_row,
        }
    }

    pub(super) fn pending(&self, now: Instant) -> bool {
        now < self.until
    }
}

/// The one fetch under way.
pub(super) struct Fetch {
    /// Tells a late answer of a fetch given up on from the answer of the current one.
    pub(super) id: u64,
    pub(super) reason: Reason,
    /// After this moment nobody waits for it any more, whichever runtime drives it.
    pub(super) deadline: Instant,
    /// Where its waiters learn how it ended. Dropped without a word if the fetch is abandoned.
    pub(super) done: watch::Sender<Option<Outcome>>,
    /// The backoff record held when it started.
    pub(super) before: Option<Retry>,
    /// The token Vault rejected, which this fetch is to replace.
    pub(super) replacing: Option<Arc<Credential>>,
}

/// What the fetching side of the cache is doing.
pub(super) enum Phase {
    /// Nothing under way, nothing held off.
    Idle,
    /// One fetch under way; everybody who needs a token waits for it.
    Fetching(Fetch),
    /// Holding off asking the source, for the record's reason.
    BackingOff(Retry),
}

impl Phase {
    /// The backoff record in force, or carried by the fetch under way.
    pub(super) fn retry(&self) -> Option<&Retry> {
        match self {
            Phase::Idle => None,
            Phase::Fetching(fetch) => fetch.before.as_ref(),
            Phase::BackingOff(retry) => Some(retry),
        }
    }

    /// While backing off after a failure: the error a request without a token fails with, and
    /// the time to the next attempt. `None` during a fetch (join it) and otherwise.
    pub(super) fn failure(&self, now: Instant) -> Option<TokenUnavailable> {
        match self {
            Phase::BackingOff(Retry {
                cause: Holdoff::Failed(err),
                until,
                ..
            }) if now < *until => Some(err.backing_off(*until - now)),
            _ => None,
        }
    }
}

/// What to do about a rejection of the current token.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum OnRejection {
    /// Drop the token and fetch (or join the fetch under way).
    Fetch,
    /// Keep the token and do not ask the source: it was asked recently and had nothing better.
    GiveUp,
}

/// What to put in place once a fetch has ended.
pub(super) enum Install {
    /// The credential held stays as it is.
    Keep,
    /// This token, under this generation.
    Token {
        token: AccessToken,
        generation: u64,
        from_rejection: bool,
    },
}

/// A fetch's end: what its waiters see, and what to put in place.
pub(super) struct Settled {
    pub(super) outcome: Outcome,
    pub(super) install: Install,
    pub(super) done: watch::Sender<Option<Outcome>>,
}

/// The cache's state, behind its mutex.
pub(super) struct CacheState {
    pub(super) phase: Phase,
    pub(super) last_fetch_at: Option<Instant>,
    /// A token expired before it could be renewed: fetch without waiting for a request.
    pub(super) expired: bool,
    pub(super) last_generation: u64,
    pub(super) last_fetch_id: u64,
    pub(super) maintainer: Option<tokio::task::AbortHandle>,
}

impl Default for CacheState {
    fn default() -> Self {
        Self {
            phase: Phase::Idle,
            last_fetch_at: None,
            expired: false,
            last_generation: 0,
            last_fetch_id: 0,
            maintainer: None,
        }
    }
}

impl CacheState {
    /// The record a new fetch starts with: the phase's, taken out of it.
    pub(super) fn take_retry(&mut self) -> Option<Retry> {
        match std::mem::replace(&mut self.phase, Phase::Idle) {
            Phase::Idle => None,
            Phase::BackingOff(retry) => Some(retry),
            Phase::Fetching(fetch) => {
                // Not reached: a fetch is started only when none is under way.
                let before = fetch.before.clone();
                self.phase = Phase::Fetching(fetch);
                before
            }
        }
    }

    /// The fetch under way if it is `id`, taken out of the phase.
    pub(super) fn take_fetch(&mut self, id: u64) -> Option<Fetch> {
        match &self.phase {
            Phase::Fetching(fetch) if fetch.id == id => {}
            _ => return None,
        }
        match std::mem::replace(&mut self.phase, Phase::Idle) {
            Phase::Fetching(fetch) => Some(fetch),
            _ => None,
        }
    }

    /// Vault rejected `rejected`, the token held now.
    pub(super) fn on_rejection(
        &mut self,
        rejected: &Credential,
        now: Instant,
        backoff: &Backoff,
    ) -> OnRejection {
        let streak = match &self.phase {
            // The fetch under way serves the rejection.
            Phase::Fetching(_) => return OnRejection::Fetch,
            // Asked after the last rejection, and the source gave that very token back.
            Phase::BackingOff(retry) if retry.cause.is_rejected_token() && retry.pending(now) => {
                return OnRejection::GiveUp
            }
            Phase::BackingOff(
                retry @ Retry {
                    cause: Holdoff::RejectedAgain,
                    ..
                },
            ) => Some(retry),
            _ => None,
        };
        if rejected.from_rejection && !rejected.was_accepted() {
            // A replacement Vault never took is rejected too.
            if streak.is_some_and(|retry| retry.pending(now)) {
                return OnRejection::GiveUp;
            }
            self.phase =
                Phase::BackingOff(Retry::after(streak, Holdoff::RejectedAgain, now, backoff));
        } else if streak.is_some() {
            // A token Vault took, or one not fetched for a rejection: the streak is over.
            self.phase = Phase::Idle;
        }
        OnRejection::Fetch
    }

    /// Ends `fetch` with `result`, given the credential held now: the next phase, what every
    /// waiter sees and what to put in place.
    pub(super) fn settle(
        &mut self,
        fetch: Fetch,
        result: Result<AccessToken, TokenUnavailable>,
        current: Option<&Credential>,
        now: Instant,
        config: &CacheConfig,
    ) -> Settled {
        let Fetch {
            reason,
            done,
            before,
            replacing,
            ..
        } = fetch;
        let backoff = &config.backoff;
        let settled = |outcome, install| Settled {
            outcome,
            install,
            done,
        };
        let token = match result {
            Ok(token) => token,
            Err(err) => {
                let retry =
                    Retry::after(before.as_ref(), Holdoff::Failed(err.clone()), now, backoff);
                event!(
                    warn,
                    ?reason,
                    error = %err,
                    consecutive_failures = retry.in_a_row,
                    retry_in_ms = (retry.until - now).as_millis() as u64,
                    still_serving = current.map(|c| c.generation),
                    "could not fetch a vault access token"
                );
                self.phase = Phase::BackingOff(retry);
                return settled(Outcome::Failed(err), Install::Keep);
            }
        };

        // The token in place, unless its expiry moved earlier (or appeared): threads' copies
        // check the expiry they were made with, so such a token takes a new generation.
        let same_token = |held: &&Credential| {
            let shortened = match (held.token.expires_at(), token.expires_at()) {
                (Some(held), Some(new)) => held > new && held - new >= SAME_EXPIRY,
                (None, new) => new.is_some(),
                (Some(_), None) => false,
            };
            held.token.same_value(&token) && !shortened
        };
        if let Some(current) = current.filter(same_token) {
            // The token in place: a poll or renewal found no news. It keeps its generation,
            // whatever its expiry says.
            let moved = match (current.token.expires_at(), token.expires_at()) {
                (Some(a), Some(b)) => a.max(b) - a.min(b) >= SAME_EXPIRY,
                (a, b) => a.is_some() != b.is_some(),
            };
            let before_rejected = before.as_ref().is_some_and(|r| r.cause.is_rejected_token());
            self.phase = match before {
                // After a rejection that is no news: keep backing off.
                Some(retry) if before_rejected => Phase::BackingOff(retry),
                // A renewal that found the same token: try again later rather than at once.
                before if !moved && current.refresh_at.is_some_and(|at| at <= now) => {
                    Phase::BackingOff(Retry::after(
                        before.as_ref(),
                        Holdoff::StaleRenewal,
                        now,
                        backoff,
                    ))
                }
                Some(
                    retry @ Retry {
                        cause: Holdoff::RejectedAgain,
                        ..
                    },
                ) => Phase::BackingOff(retry),
                _ => Phase::Idle,
            };
            let install = if moved {
                event!(
                    info,
                    ?reason,
                    generation = current.generation,
                    "the token source gave the token in use a new expiry"
                );
                Install::Token {
                    token,
                    generation: current.generation,
                    from_rejection: current.from_rejection,
                }
            } else {
                event!(
                    trace,
                    ?reason,
                    "the token source returned the token already in use"
                );
                Install::Keep
            };
            return settled(Outcome::Installed(current.generation), install);
        }

        if let Some(rejected) = replacing.filter(|c| c.token.same_value(&token)) {
            // The source has nothing newer than the token Vault refused. Serve it again (it is all
            // there is), under the generation it was rejected with, so that rejections still on
            // their way give up instead of replaying it; and back off before asking again.
            let retry = Retry::after(
                before.as_ref(),
                Holdoff::Failed(TokenUnavailable::rejected()),
                now,
                backoff,
            );
            event!(
                warn,
                retry_in_ms = (retry.until - now).as_millis() as u64,
                "the token source returned the token vault just rejected; backing off"
            );
            self.phase = Phase::BackingOff(retry);
            let install = Install::Token {
                token,
                generation: rejected.generation,
                from_rejection: rejected.from_rejection,
            };
            return settled(Outcome::Unchanged, install);
        }

        self.last_generation += 1;
        let generation = self.last_generation;
        event!(
            info,
            ?reason,
            generation,
            expires_in_secs = ?token.expires_at().map(|at| (at - now).as_secs()),
            "installed a new vault access token"
        );
        self.phase = match before {
            // Vault has not yet taken any of the replacements: the streak goes on.
            Some(
                retry @ Retry {
                    cause: Holdoff::RejectedAgain,
                    ..
                },
            ) => Phase::BackingOff(retry),
            _ => Phase::Idle,
        };
        let install = Install::Token {
            token,
            generation,
            from_rejection: reason == Reason::Rejected,
        };
        settled(Outcome::Installed(generation), install)
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
