//! The single-flight fetch: requests without a token, rejections, renewals, polls and forced
//! refreshes all start or join the one fetch under way.
//!
//! A fetch runs in its own task on the runtime of whoever started it. Its waiters each wait on
//! their own runtime's clock until the fetch's deadline, so that no waiter waits past the fetch
//! timeout even when the fetch's runtime is not driven; the first to notice the deadline ends the
//! fetch as timed out, and the next attempt starts afresh on a runtime that is alive. A fetch
//! whose runtime shuts down is abandoned, not failed: its waiters ask again on their own runtime.

use std::sync::Arc;

use http::HeaderValue;
use tokio::sync::watch;
use tokio::time::Instant;

use super::state::{CacheState, Fetch, Install, OnRejection, Outcome, Phase, Reacquired, Reason};
use super::status::Counters;
use super::timing::later;
use super::{Cache, Credential};
use crate::error::TokenUnavailable;
use crate::source::SourceError;
use crate::token::AccessToken;
use crate::trace::event;

pub(crate) type BoxOutcome = crate::source::BoxFuture<'static, Outcome>;
pub(crate) type BoxReacquired = crate::source::BoxFuture<'static, Reacquired>;

/// Whether a waiter whose fetch was abandoned (its runtime shut down) may ask again.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Rejoin {
    Once,
    Never,
}

impl Cache {
    /// Waits until a token is held, starting or joining a fetch.
    ///
    /// While backing off after failures, waits for the next attempt if it is due within the fetch
    /// timeout, and fails at once otherwise: a request never waits much longer than one fetch.
    pub(crate) fn acquire(self: &Arc<Self>) -> BoxOutcome {
        self.acquire_or_wait(true, Rejoin::Once)
    }

    /// [`acquire`](Self::acquire); with `may_wait` false, fails instead of waiting out a backoff
    /// (a request waits out at most one).
    fn acquire_or_wait(self: &Arc<Self>, may_wait: bool, rejoin: Rejoin) -> BoxOutcome {
        let now = Instant::now();
        let mut state = self.lock();
        if let Some(current) = self.usable(&mut state, now) {
            return ready(Outcome::Installed(current.generation));
        }
        self.time_out_overdue(&mut state, now);
        if let Some(err) = state.phase.failure(now) {
            let retry_in = err.retry_in().unwrap_or_default();
            if !may_wait || retry_in > self.config.fetch_timeout {
                return ready(Outcome::Failed(err));
            }
            drop(state);
            let cache = Arc::clone(self);
            return Box::pin(async move {
                tokio::time::sleep(retry_in).await;
                cache.acquire_or_wait(false, rejoin).await
            });
        }
        let (outcome, launch) = self.join_or_start(&mut state, Reason::NoToken, None, rejoin);
        drop(state);
        launch.launch();
        outcome
    }

    /// The token held now, unless it is past its expiry; an expired one is dropped here, since
    /// the maintainer that would have dropped it may not be running.
    pub(super) fn usable(&self, state: &mut CacheState, now: Instant) -> Option<Arc<Credential>> {
        let current = self.current.load_full()?;
        if !current.token.is_expired_at(now) {
            return Some(current);
        }
        self.drop_expired(state, current.generation);
        None
    }

    /// Drops the token of `generation` if it is still the current one: it expired unrenewed.
    pub(super) fn drop_expired(&self, state: &mut CacheState, generation: u64) {
        let current = self.current.load();
        if current.as_ref().is_some_and(|c| c.generation == generation) {
            drop(current);
            self.publish(state, None);
            state.expired = true;
            event!(
                warn,
                generation,
                "the vault access token expired before it was renewed; dropped it"
            );
        }
    }

    /// Vault rejected the token of `generation`: drop it if it is still the current one and get
    /// another, once for everybody whose request it failed.
    pub(crate) fn reject(self: &Arc<Self>, generation: u64) -> BoxReacquired {
        let give_up = || -> BoxReacquired { Box::pin(std::future::ready(Reacquired::GiveUp)) };
        let now = Instant::now();
        let mut state = self.lock();
        self.time_out_overdue(&mut state, now);
        let current = self.current.load_full();
        let (outcome, launch) = match current {
            // A newer token is already in place.
            Some(current) if current.generation != generation => {
                return Box::pin(std::future::ready(Reacquired::Replay));
            }
            Some(current) => match state.on_rejection(&current, now, &self.config.backoff) {
                OnRejection::GiveUp => {
                    // Asked recently and got nothing better: keep the token, do not ask again.
                    event!(
                        debug,
                        generation,
                        "vault rejected the access token again; backing off, not asking the source"
                    );
                    return give_up();
                }
                OnRejection::Fetch => {
                    event!(
                        warn,
                        generation,
                        "vault rejected the access token; fetching a new one"
                    );
                    Counters::bump(&self.counters.reacquisitions);
                    self.publish(&mut state, None);
                    self.join_or_start(&mut state, Reason::Rejected, Some(current), Rejoin::Once)
                }
            },
            // Dropped already by another request: wait for the fetch, if any.
            None if matches!(state.phase, Phase::Fetching(_)) => {
                self.join_or_start(&mut state, Reason::Rejected, None, Rejoin::Once)
            }
            // Dropped, and the fetch for it failed: do what a request without a token does, wait
            // for the next attempt if it is due within the fetch timeout (else give up at once).
            None => {
                drop(state);
                let acquired = self.acquire();
                return Box::pin(async move {
                    match acquired.await {
                        Outcome::Installed(new) if new != generation => Reacquired::Replay,
                        _ => Reacquired::GiveUp,
                    }
                });
            }
        };
        drop(state);
        launch.launch();
        Box::pin(async move {
            match outcome.await {
                Outcome::Installed(new) if new != generation => Reacquired::Replay,
                _ => Reacquired::GiveUp,
            }
        })
    }

    /// Fetches now, even while backing off, and waits for the result (the handle's
    /// `force_refresh`). The current token keeps being served meanwhile.
    pub(crate) fn force_refresh(self: &Arc<Self>) -> BoxOutcome {
        self.refresh(Reason::Forced)
    }

    pub(super) fn refresh(self: &Arc<Self>, reason: Reason) -> BoxOutcome {
        let mut state = self.lock();
        self.time_out_overdue(&mut state, Instant::now());
        let (outcome, launch) = self.join_or_start(&mut state, reason, None, Rejoin::Once);
        drop(state);
        launch.launch();
        outcome
    }

    /// Drops the current token; the next request fetches a new one, without waiting out a
    /// backoff.
    pub(crate) fn invalidate(&self) {
        event!(info, "access token invalidated by the user");
        let mut state = self.lock();
        self.publish(&mut state, None);
        if let Phase::BackingOff(_) = state.phase {
            state.phase = Phase::Idle;
        }
    }

    /// The token a request that waited for one gets, once the fetch it waited for has ended:
    /// `Ok(None)` if the token is already gone again (another request had it rejected, or it
    /// expired), and the request should wait once more.
    pub(crate) fn token_after(
        &self,
        outcome: &Outcome,
    ) -> Result<Option<(u64, HeaderValue)>, TokenUnavailable> {
        match outcome {
            Outcome::Failed(err) => Err(err.clone()),
            Outcome::Installed(_) | Outcome::Unchanged => Ok(self.current()),
        }
    }

    /// Joins the fetch under way, or prepares a new one. The caller launches it once it has let
    /// go of the state lock: a task that cannot be spawned is dropped at once, and its drop
    /// takes the lock to say so.
    fn join_or_start(
        self: &Arc<Self>,
        state: &mut CacheState,
        reason: Reason,
        replacing: Option<Arc<Credential>>,
        rejoin: Rejoin,
    ) -> (BoxOutcome, Launch) {
        let (joined, launch) = match &mut state.phase {
            Phase::Fetching(fetch) => {
                if replacing.is_some() {
                    fetch.replacing = replacing;
                }
                let joined = Joined {
                    receiver: fetch.done.subscribe(),
                    id: fetch.id,
                    deadline: fetch.deadline,
                };
                (joined, Launch(None))
            }
            _ => match self.start_fetch(state, reason, replacing) {
                Ok(started) => started,
                Err(err) => return (ready(Outcome::Failed(err)), Launch(None)),
            },
        };
        (self.wait(joined, rejoin), launch)
    }

    /// Waits, on the caller's runtime, for fetch `id` to end or its deadline to pass.
    fn wait(self: &Arc<Self>, joined: Joined, rejoin: Rejoin) -> BoxOutcome {
        let Joined {
            mut receiver,
            id,
            deadline,
        } = joined;
        let cache = Arc::clone(self);
        Box::pin(async move {
            let waited = tokio::time::timeout_at(deadline, receiver.wait_for(Option::is_some))
                .await
                .map(|ended| ended.map(|outcome| outcome.clone()));
            match waited {
                Ok(Ok(outcome)) => outcome.expect("waited for an outcome"),
                // Abandoned without an answer (its runtime shut down): ask again, here.
                Ok(Err(_)) if rejoin == Rejoin::Once => {
                    cache.acquire_or_wait(true, Rejoin::Never).await
                }
                Ok(Err(_)) => Outcome::Failed(TokenUnavailable::panicked()),
                Err(_) => {
                    let timed_out = TokenUnavailable::timed_out(cache.config.fetch_timeout);
                    match cache.complete(id, Err(timed_out.clone())) {
                        Some(outcome) => outcome,
                        // It ended meanwhile.
                        None => receiver
                            .borrow()
                            .clone()
                            .unwrap_or(Outcome::Failed(timed_out)),
                    }
                }
            }
        })
    }

    /// Ends the fetch under way as timed out if its deadline has passed: nobody waits for a
    /// fetch past its deadline, whether or not its runtime is driven.
    pub(super) fn time_out_overdue(&self, state: &mut CacheState, now: Instant) {
        let overdue = match &state.phase {
            Phase::Fetching(fetch) if fetch.deadline <= now => fetch.id,
            _ => return,
        };
        let timed_out = TokenUnavailable::timed_out(self.config.fetch_timeout);
        self.complete_locked(state, overdue, Err(timed_out), now);
    }

    fn start_fetch(
        self: &Arc<Self>,
        state: &mut CacheState,
        reason: Reason,
        replacing: Option<Arc<Credential>>,
    ) -> Result<(Joined, Launch), TokenUnavailable> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| TokenUnavailable::no_runtime())?;
        self.ensure_maintainer(state, &runtime);
        let now = Instant::now();
        let deadline = later(now, self.config.fetch_timeout);
        let (done, receiver) = watch::channel(None);
        state.last_fetch_id += 1;
        let id = state.last_fetch_id;
        let before = state.take_retry();
        state.phase = Phase::Fetching(Fetch {
            id,
            reason,
            deadline,
            done,
            before,
            replacing,
        });
        state.last_fetch_at = Some(now);
        Counters::bump(&self.counters.fetches);
        let finish = FinishFetch {
            cache: Arc::clone(self),
            id,
            deadline,
            done: false,
        };
        event!(debug, ?reason, "fetching a vault access token");
        #[cfg(feature = "tracing")]
        let fetch = tracing::Instrument::instrument(
            finish.run(),
            tracing::debug_span!(target: "veeva_vault_auth", "vault_auth.fetch", ?reason),
        );
        #[cfg(not(feature = "tracing"))]
        let fetch = finish.run();
        let joined = Joined {
            receiver,
            id,
            deadline,
        };
        Ok((joined, Launch(Some((runtime, Box::pin(fetch))))))
    }

    /// Records the result of fetch `id` and tells its waiters; `None` if that fetch has already
    /// ended (it timed out, and this is its late answer, which is dropped).
    pub(super) fn complete(
        &self,
        id: u64,
        result: Result<AccessToken, TokenUnavailable>,
    ) -> Option<Outcome> {
        let mut state = self.lock();
        self.complete_locked(&mut state, id, result, Instant::now())
    }

    fn complete_locked(
        &self,
        state: &mut CacheState,
        id: u64,
        result: Result<AccessToken, TokenUnavailable>,
        now: Instant,
    ) -> Option<Outcome> {
        let Some(fetch) = state.take_fetch(id) else {
            event!(
                debug,
                "a fetch answered after it was given up on; its answer is dropped"
            );
            return None;
        };
        let result = result.and_then(|token| {
            if token.is_expired_at(now) {
                Err(TokenUnavailable::from_source(SourceError::retryable(
                    "the token source returned a token that has already expired",
                )))
            } else {
                Ok(token)
            }
        });
        if result.is_err() {
            Counters::bump(&self.counters.failures);
        }
        let current = self.current.load_full();
        let settled = state.settle(fetch, result, current.as_deref(), now, &self.config);
        if let Install::Token {
            token,
            generation,
            from_rejection,
        } = settled.install
        {
            // The same token with a new expiry keeps what this cache learnt about it.
            let accepted = current
                .as_ref()
                .is_some_and(|c| c.generation == generation && c.was_accepted());
            state.expired = false;
            let refresh_at = token
                .expires_at()
                .map(|expires_at| self.config.refresh.refresh_at(now, expires_at));
            let credential =
                Credential::new(token, generation, refresh_at, from_rejection, accepted);
            self.publish(state, Some(Arc::new(credential)));
        }
        settled.done.send_replace(Some(settled.outcome.clone()));
        self.wake.notify_one();
        Some(settled.outcome)
    }

    /// Fetch `id` went away without an answer because its runtime shut down: not the source's
    /// failure. Its waiters ask again on their own runtime; the backoff record is as before.
    fn abandon(&self, id: u64) {
        let mut state = self.lock();
        if let Some(fetch) = state.take_fetch(id) {
            event!(
                debug,
                "the runtime of a fetch shut down before it answered; the next request fetches afresh"
            );
            state.phase = match fetch.before {
                Some(retry) => Phase::BackingOff(retry),
                None => Phase::Idle,
            };
            self.wake.notify_one();
        }
    }
}

/// Runs one fetch and records its outcome. Dropped before it finishes, it says why: a source
/// that panicked is a failure; a task dropped by its runtime's shutdown is an abandoned fetch.
struct FinishFetch {
    cache: Arc<Cache>,
    id: u64,
    deadline: Instant,
    done: bool,
}

impl FinishFetch {
    async fn run(mut self) {
        let timeout = self.cache.config.fetch_timeout;
        let result = match tokio::time::timeout_at(self.deadline, self.cache.source.fetch()).await {
            Ok(Ok(token)) => Ok(token),
            Ok(Err(err)) => Err(TokenUnavailable::from_source(err)),
            Err(_) => Err(TokenUnavailable::timed_out(timeout)),
        };
        self.done = true;
        self.cache.complete(self.id, result);
    }
}

impl Drop for FinishFetch {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if std::thread::panicking() {
            self.cache
                .complete(self.id, Err(TokenUnavailable::panicked()));
        } else {
            self.cache.abandon(self.id);
        }
    }
}

/// A waiter's hold on fetch `id`.
struct Joined {
    receiver: watch::Receiver<Option<Outcome>>,
    id: u64,
    deadline: Instant,
}

/// A fetch prepared under the state lock, to be spawned once the lock is released.
#[must_use]
struct Launch(
    Option<(
        tokio::runtime::Handle,
        crate::source::BoxFuture<'static, ()>,
    )>,
);

impl Launch {
    fn launch(self) {
        if let Some((runtime, fetch)) = self.0 {
            runtime.spawn(fetch);
        }
    }
}

fn ready(outcome: Outcome) -> BoxOutcome {
    Box::pin(std::future::ready(outcome))
}
