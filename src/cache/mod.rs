//! The credential cache: the current token in an `ArcSwap`, one fetch at a time, and a
//! maintainer task that refreshes ahead of expiry, polls changing sources and retries failures.
//!
//! The request path reads one atomic stamp and clones a header value from a thread-local copy;
//! everything else here runs off that path, under a `std` mutex that is never held across an
//! `.await`.

use std::cell::RefCell;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use http::HeaderValue;
use tokio::sync::{watch, Notify};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::error::TokenUnavailable;
use crate::source::{SourceError, TokenSource};
use crate::token::AccessToken;
use crate::trace::event;

/// The stamp's value when no token is held.
const NO_TOKEN: u64 = 0;

/// How many layers one thread keeps a header copy for before it forgets the oldest.
const LOCAL_SLOTS: usize = 8;

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

    fn margin(&self, lifetime: Duration) -> Duration {
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
    fn refresh_at(&self, now: Instant, expires_at: Instant) -> Instant {
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

/// One token as held by the cache.
pub(crate) struct Credential {
    pub(crate) generation: u64,
    pub(crate) token: AccessToken,
    header: HeaderValue,
    refresh_at: Option<Instant>,
    /// Fetched because Vault rejected the token before it.
    from_rejection: bool,
}

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

#[derive(Default)]
struct State {
    inflight: Option<watch::Receiver<Option<Outcome>>>,
    failures: u32,
    retry_at: Option<Instant>,
    last_error: Option<TokenUnavailable>,
    last_fetch_at: Option<Instant>,
    rejected: Option<Arc<Credential>>,
    /// A token expired before it could be renewed: fetch without waiting for a request.
    expired: bool,
    /// Renewals in a row that found the token already held, and when to try the next one.
    stale_renewals: u32,
    renewal_retry_at: Option<Instant>,
    /// Tokens in a row that Vault rejected although they were fetched to replace a rejected one,
    /// and before when no further one is asked for.
    rejection_streak: u32,
    rejection_retry_at: Option<Instant>,
    next_generation: u64,
    maintainer: Option<AbortHandle>,
}

#[derive(Default)]
struct Stats {
    fetches: AtomicU64,
    failures: AtomicU64,
    reacquisitions: AtomicU64,
    replays: AtomicU64,
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
}

pub(crate) struct Cache {
    id: u64,
    stamp: AtomicU64,
    current: ArcSwapOption<Credential>,
    source: Arc<dyn TokenSource>,
    config: CacheConfig,
    state: Mutex<State>,
    stats: Stats,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("generation", &self.stamp.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Drop for Cache {
    fn drop(&mut self) {
        if let Some(task) = self.lock().maintainer.take() {
            task.abort();
        }
        registry()
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&self.id);
    }
}

fn registry() -> &'static Mutex<HashMap<u64, Weak<Cache>>> {
    static REGISTRY: OnceLock<Mutex<HashMap<u64, Weak<Cache>>>> = OnceLock::new();
    REGISTRY.get_or_init(Mutex::default)
}

struct LocalCopy {
    cache: u64,
    generation: u64,
    header: HeaderValue,
}

thread_local! {
    /// Each thread's own copy of each layer's header value: cloning it bumps a reference count
    /// that no other core touches.
    static LOCAL: RefCell<Vec<LocalCopy>> = const { RefCell::new(Vec::new()) };
}

impl Cache {
    pub(crate) fn new(source: Arc<dyn TokenSource>, config: CacheConfig) -> Arc<Self> {
        static IDS: AtomicU64 = AtomicU64::new(1);
        let cache = Arc::new(Self {
            id: IDS.fetch_add(1, Ordering::Relaxed),
            stamp: AtomicU64::new(NO_TOKEN),
            current: ArcSwapOption::empty(),
            source,
            config,
            state: Mutex::new(State::default()),
            stats: Stats::default(),
            wake: Arc::new(Notify::new()),
        });
        registry()
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(cache.id, Arc::downgrade(&cache));
        cache
    }

    /// This cache's process-wide id.
    #[inline]
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The live cache with this id. Response futures find their cache here when a token is
    /// rejected, so that the request path need not clone an `Arc` for every request.
    pub(crate) fn find(id: u64) -> Option<Arc<Cache>> {
        registry()
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&id)
            .and_then(Weak::upgrade)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent even if a holder panicked: every update is a plain store.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The current token's generation and header value, or `None` if no usable token is held.
    ///
    /// This is the request path: one atomic load and, in steady state, one clone of this
    /// thread's copy of the header. A copy is made (one allocation) only when the token changed
    /// since this thread last saw it.
    #[inline]
    pub(crate) fn current(&self) -> Option<(u64, HeaderValue)> {
        let stamp = self.stamp.load(Ordering::Acquire);
        if stamp == NO_TOKEN {
            return None;
        }
        self.current_at(stamp)
    }

    /// Puts the current token's header into `headers` as `Authorization`, and returns its
    /// generation; `None` (and `headers` untouched) if no usable token is held.
    ///
    /// The request path's form of [`current`](Self::current): in steady state this thread's copy
    /// is cloned straight into the map, one check of the stamp and of the thread's first slot.
    #[inline]
    pub(crate) fn attach(&self, headers: &mut http::HeaderMap) -> Option<u64> {
        let stamp = self.stamp.load(Ordering::Acquire);
        if stamp == NO_TOKEN {
            return None;
        }
        let hit = LOCAL.try_with(|slots| {
            // `try_`: the insert below drops the request's old value, whose drop could (in
            // theory) send a request through a layer on this thread; that one takes the slow way.
            let Ok(slots) = slots.try_borrow() else {
                return false;
            };
            match slots.first() {
                Some(slot) if slot.cache == self.id && slot.generation == stamp => {
                    headers.insert(http::header::AUTHORIZATION, slot.header.clone());
                    true
                }
                _ => false,
            }
        });
        if hit == Ok(true) {
            return Some(stamp);
        }
        let (generation, header) = self.current_at(stamp)?;
        headers.insert(http::header::AUTHORIZATION, header);
        Some(generation)
    }

    /// [`current`](Self::current) after the stamp was read.
    #[inline(never)]
    fn current_at(&self, stamp: u64) -> Option<(u64, HeaderValue)> {
        LOCAL
            .try_with(|slots| {
                let Ok(mut slots) = slots.try_borrow_mut() else {
                    // In use further up this thread's stack: use the shared value.
                    return self.shared_value();
                };
                if let Some(at) = slots.iter().position(|s| s.cache == self.id) {
                    if slots[at].generation == stamp {
                        // To the front, where `attach` looks first.
                        slots[..=at].rotate_right(1);
                        return Some((stamp, slots[0].header.clone()));
                    }
                }
                self.refresh_local(&mut slots)
            })
            // The thread is shutting down and its locals are gone: use the shared value.
            .unwrap_or_else(|_| self.shared_value())
    }

    /// The current token's generation and the shared copy of its header.
    fn shared_value(&self) -> Option<(u64, HeaderValue)> {
        let credential = self.current.load_full()?;
        Some((credential.generation, credential.header.clone()))
    }

    #[cold]
    fn refresh_local(&self, slots: &mut Vec<LocalCopy>) -> Option<(u64, HeaderValue)> {
        let credential = self.current.load_full()?;
        let copy = LocalCopy {
            cache: self.id,
            generation: credential.generation,
            header: credential.token.bearer_header(),
        };
        let found = (credential.generation, copy.header.clone());
        slots.retain(|s| s.cache != self.id);
        // The newest copy goes first, where `attach` looks; the oldest falls off the end.
        slots.truncate(LOCAL_SLOTS - 1);
        slots.insert(0, copy);
        Some(found)
    }

    /// Waits until a token is held, starting or joining a fetch.
    ///
    /// While backing off after failures, waits for the next attempt if it is due within the fetch
    /// timeout, and fails at once otherwise: a request never waits much longer than one fetch.
    pub(crate) fn acquire(self: &Arc<Self>) -> BoxOutcome {
        self.acquire_or_wait(true)
    }

    /// [`acquire`](Self::acquire); with `may_wait` false, fails instead of waiting out a backoff
    /// (a request waits out at most one).
    fn acquire_or_wait(self: &Arc<Self>, may_wait: bool) -> BoxOutcome {
        let mut state = self.lock();
        if let Some(current) = self.current.load_full() {
            return ready(Outcome::Installed(current.generation));
        }
        if !self.in_flight(&mut state) {
            if let Some(err) = self.backing_off(&state) {
                let retry_in = err.retry_in().unwrap_or_default();
                if !may_wait || retry_in > self.config.fetch_timeout {
                    return ready(Outcome::Failed(err));
                }
                drop(state);
                let cache = Arc::clone(self);
                return Box::pin(async move {
                    tokio::time::sleep(retry_in).await;
                    cache.acquire_or_wait(false).await
                });
            }
        }
        let (outcome, launch) = self.join_or_start(&mut state, Reason::NoToken);
        drop(state);
        launch.launch();
        outcome
    }

    /// Vault rejected the token of `generation`: drop it if it is still the current one and get
    /// another, once for everybody whose request it failed.
    pub(crate) fn reject(self: &Arc<Self>, generation: u64) -> BoxReacquired {
        let give_up = || -> BoxReacquired { Box::pin(std::future::ready(Reacquired::GiveUp)) };
        let mut state = self.lock();
        let current = self.current.load_full();
        let (outcome, launch) = match current {
            // A newer token is already in place.
            Some(current) if current.generation != generation => {
                return Box::pin(std::future::ready(Reacquired::Replay));
            }
            Some(current) => {
                let in_flight = self.in_flight(&mut state);
                if !in_flight && self.backing_off(&state).is_some() {
                    // Asked recently and got nothing better: keep the token, do not ask again.
                    event!(
                        debug,
                        generation,
                        "vault rejected the access token again; backing off, not asking the source"
                    );
                    return give_up();
                }
                if !in_flight && current.from_rejection && self.rejected_in_a_row(&mut state) {
                    // The replacement was rejected too: the source hands out tokens Vault does
                    // not take. Keep what there is and ask again only after a backoff.
                    event!(
                        warn,
                        generation,
                        rejected_in_a_row = state.rejection_streak,
                        "vault rejected a freshly fetched access token; backing off"
                    );
                    return give_up();
                }
                if !current.from_rejection {
                    state.rejection_streak = 0;
                    state.rejection_retry_at = None;
                }
                event!(
                    warn,
                    generation,
                    "vault rejected the access token; fetching a new one"
                );
                self.stats.reacquisitions.fetch_add(1, Ordering::Relaxed);
                self.current.store(None);
                self.stamp.store(NO_TOKEN, Ordering::Release);
                state.rejected = Some(current);
                self.join_or_start(&mut state, Reason::Rejected)
            }
            // Dropped already by another request: wait for the fetch, if any.
            None if self.in_flight(&mut state) => self.join_or_start(&mut state, Reason::Rejected),
            None => return give_up(),
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

    fn refresh(self: &Arc<Self>, reason: Reason) -> BoxOutcome {
        let mut state = self.lock();
        let (outcome, launch) = self.join_or_start(&mut state, reason);
        drop(state);
        launch.launch();
        outcome
    }

    /// Drops the current token; the next request fetches a new one.
    pub(crate) fn invalidate(&self) {
        event!(info, "access token invalidated by the user");
        let mut state = self.lock();
        self.current.store(None);
        self.stamp.store(NO_TOKEN, Ordering::Release);
        state.retry_at = None;
    }

    /// Records that a token fetched to replace a rejected one was rejected in turn; says whether
    /// to hold off asking the source again.
    fn rejected_in_a_row(&self, state: &mut State) -> bool {
        let now = Instant::now();
        if state.rejection_retry_at.is_some_and(|at| now < at) {
            return true;
        }
        state.rejection_streak = state.rejection_streak.saturating_add(1);
        let delay = self.config.backoff.delay(state.rejection_streak, true);
        state.rejection_retry_at = Some(later(now, delay));
        false
    }

    /// Whether a fetch is under way. A fetch whose task ended without a word (dropped before it
    /// could publish) does not count.
    fn in_flight(&self, state: &mut State) -> bool {
        if let Some(receiver) = &state.inflight {
            if receiver.has_changed().is_ok() && receiver.borrow().is_none() {
                return true;
            }
            state.inflight = None;
        }
        false
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

    pub(crate) fn count_replay(&self) {
        self.stats.replays.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn status(&self) -> AuthStatus {
        let state = self.lock();
        let current = self.current.load_full();
        AuthStatus {
            generation: current.as_ref().map(|c| c.generation),
            expires_at: current.as_ref().and_then(|c| c.token.expires_at()),
            refresh_at: current.as_ref().and_then(|c| c.refresh_at),
            last_error: state.last_error.clone(),
            consecutive_failures: state.failures,
            retry_at: state.retry_at.filter(|at| *at > Instant::now()),
            fetches: self.stats.fetches.load(Ordering::Relaxed),
            fetch_failures: self.stats.failures.load(Ordering::Relaxed),
            reacquisitions: self.stats.reacquisitions.load(Ordering::Relaxed),
            replays: self.stats.replays.load(Ordering::Relaxed),
        }
    }

    /// The error to fail with instead of fetching, while backing off.
    fn backing_off(&self, state: &State) -> Option<TokenUnavailable> {
        let retry_at = state.retry_at?;
        let now = Instant::now();
        if retry_at <= now {
            return None;
        }
        let last = state.last_error.clone()?;
        Some(last.backing_off(retry_at - now))
    }

    /// Joins the fetch under way, or prepares a new one. The caller launches it once it has let
    /// go of the state lock: a task that cannot be spawned is dropped at once, and its drop
    /// takes the lock to publish the failure.
    fn join_or_start(self: &Arc<Self>, state: &mut State, reason: Reason) -> (BoxOutcome, Launch) {
        let (mut receiver, launch) = if self.in_flight(state) {
            let receiver = state.inflight.clone().expect("in flight");
            (receiver, Launch(None))
        } else {
            match self.start_fetch(state, reason) {
                Ok(started) => started,
                Err(err) => return (ready(Outcome::Failed(err)), Launch(None)),
            }
        };
        let outcome = Box::pin(async move {
            match receiver.wait_for(Option::is_some).await {
                Ok(outcome) => outcome.clone().expect("waited for an outcome"),
                Err(_) => Outcome::Failed(TokenUnavailable::panicked()),
            }
        });
        (outcome, launch)
    }

    fn start_fetch(
        self: &Arc<Self>,
        state: &mut State,
        reason: Reason,
    ) -> Result<(watch::Receiver<Option<Outcome>>, Launch), TokenUnavailable> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| TokenUnavailable::no_runtime())?;
        self.ensure_maintainer(state, &runtime);
        let (sender, receiver) = watch::channel(None);
        state.inflight = Some(receiver.clone());
        state.last_fetch_at = Some(Instant::now());
        self.stats.fetches.fetch_add(1, Ordering::Relaxed);
        let finish = FinishFetch {
            cache: Arc::clone(self),
            sender,
            done: false,
            reason,
        };
        event!(debug, ?reason, "fetching a vault access token");
        #[cfg(feature = "tracing")]
        let fetch = tracing::Instrument::instrument(
            finish.run(),
            tracing::debug_span!(target: "veeva_vault_auth", "vault_auth.fetch", ?reason),
        );
        #[cfg(not(feature = "tracing"))]
        let fetch = finish.run();
        Ok((receiver, Launch(Some((runtime, Box::pin(fetch))))))
    }

    /// Records a fetch's result and says how it ended.
    fn complete(
        self: &Arc<Self>,
        result: Result<AccessToken, TokenUnavailable>,
        reason: Reason,
    ) -> Outcome {
        let mut state = self.lock();
        state.inflight = None;
        let now = Instant::now();
        let result = result.and_then(|token| {
            if token.is_expired_at(now) {
                Err(TokenUnavailable::from_source(SourceError::retryable(
                    "the token source returned a token that has already expired",
                )))
            } else {
                Ok(token)
            }
        });
        let token = match result {
            Ok(token) => token,
            Err(err) => {
                state.failures = state.failures.saturating_add(1);
                let delay = self
                    .config
                    .backoff
                    .delay(state.failures, err.is_retryable());
                state.retry_at = Some(later(now, delay));
                event!(
                    warn,
                    ?reason,
                    error = %err,
                    consecutive_failures = state.failures,
                    retry_in_ms = delay.as_millis() as u64,
                    still_serving = current_generation(&self.current),
                    "could not fetch a vault access token"
                );
                state.last_error = Some(err.clone());
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                self.wake.notify_one();
                return Outcome::Failed(err);
            }
        };

        let rejected = state.rejected.take();
        let current = self.current.load_full();
        let same_as = |held: &Option<Arc<Credential>>| {
            held.as_ref().is_some_and(|c| {
                c.token.same_value(&token) && c.token.expires_at() == token.expires_at()
            })
        };

        let outcome = if same_as(&current) {
            // A poll or renewal found what is already in place. After a rejection that is no
            // news (keep backing off); for a renewal, try again later rather than at once.
            let current = current.expect("checked above");
            event!(
                trace,
                ?reason,
                "the token source returned the token already in use"
            );
            let rejected_before = state
                .last_error
                .as_ref()
                .is_some_and(|e| e.kind() == crate::UnavailableKind::Rejected);
            if !rejected_before {
                state.failures = 0;
                state.retry_at = None;
                state.last_error = None;
            }
            if current.refresh_at.is_some_and(|at| at <= now) {
                state.stale_renewals = state.stale_renewals.saturating_add(1);
                let delay = self.config.backoff.delay(state.stale_renewals, true);
                state.renewal_retry_at = Some(later(now, delay));
            }
            Outcome::Installed(current.generation)
        } else if let Some(rejected) = rejected.filter(|c| c.token.same_value(&token)) {
            // The source has nothing newer than the token Vault refused. Serve it again (it is all
            // there is), under the generation it was rejected with, so that rejections still on
            // their way give up instead of replaying it; and back off before asking again.
            state.failures = state.failures.saturating_add(1);
            let delay = self.config.backoff.delay(state.failures, true);
            state.retry_at = Some(later(now, delay));
            state.last_error = Some(TokenUnavailable::rejected());
            event!(
                warn,
                retry_in_ms = delay.as_millis() as u64,
                "the token source returned the token vault just rejected; backing off"
            );
            self.install_as(
                &mut state,
                token,
                now,
                rejected.generation,
                rejected.from_rejection,
            );
            Outcome::Unchanged
        } else {
            state.failures = 0;
            state.retry_at = None;
            state.last_error = None;
            state.next_generation += 1;
            let generation = state.next_generation;
            event!(
                info,
                ?reason,
                generation,
                expires_in_secs = ?token.expires_at().map(|at| (at - now).as_secs()),
                "installed a new vault access token"
            );
            self.install_as(
                &mut state,
                token,
                now,
                generation,
                reason == Reason::Rejected,
            );
            Outcome::Installed(generation)
        };
        self.wake.notify_one();
        outcome
    }

    fn install_as(
        &self,
        state: &mut State,
        token: AccessToken,
        now: Instant,
        generation: u64,
        from_rejection: bool,
    ) {
        state.expired = false;
        state.stale_renewals = 0;
        state.renewal_retry_at = None;
        let refresh_at = token
            .expires_at()
            .map(|expires_at| self.config.refresh.refresh_at(now, expires_at));
        let header = token.bearer_header();
        self.current.store(Some(Arc::new(Credential {
            generation,
            token,
            header,
            refresh_at,
            from_rejection,
        })));
        self.stamp.store(generation, Ordering::Release);
    }

    /// Starts the maintainer on `runtime` unless it runs already. One that ended (its runtime
    /// shut down) is replaced.
    fn ensure_maintainer(self: &Arc<Self>, state: &mut State, runtime: &tokio::runtime::Handle) {
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

    /// What the maintainer should do now, or when to look again.
    fn plan(&self, now: Instant) -> Plan {
        let state = self.lock();
        let current = self.current.load_full();
        let expires_at = current.as_ref().and_then(|c| c.token.expires_at());
        if expires_at.is_some_and(|at| at <= now) {
            return Plan::Expire(current.expect("has an expiry").generation);
        }
        let poll_at = self
            .source
            .poll_interval()
            .and_then(|every| state.last_fetch_at.map(|at| later(at, every)));
        let refresh_at = current
            .as_ref()
            .and_then(|c| c.refresh_at)
            .map(|at| state.renewal_retry_at.map_or(at, |retry| at.max(retry)));
        let recover_at = match (&current, state.failures > 0, state.expired) {
            (None, true, _) => state.retry_at,
            (None, false, true) => Some(now),
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
        .min_by_key(|(at, _)| *at);
        let due = match (due, state.retry_at) {
            (Some((due, reason)), Some(retry_at)) if state.failures > 0 => {
                Some((due.max(retry_at), reason))
            }
            (due, _) => due,
        };
        if state.inflight.is_some() {
            return Plan::Sleep(expires_at);
        }
        match due {
            Some((due, reason)) if due <= now => Plan::Fetch(reason),
            due => Plan::Sleep(
                [due.map(|(at, _)| at), expires_at]
                    .into_iter()
                    .flatten()
                    .min(),
            ),
        }
    }

    fn expire(&self, generation: u64) {
        let mut state = self.lock();
        let current = self.current.load();
        if current.as_ref().is_some_and(|c| c.generation == generation) {
            drop(current);
            self.current.store(None);
            self.stamp.store(NO_TOKEN, Ordering::Release);
            state.expired = true;
            event!(
                warn,
                generation,
                "the vault access token expired before it was renewed; dropped it"
            );
        }
    }
}

enum Plan {
    Expire(u64),
    Fetch(Reason),
    Sleep(Option<Instant>),
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
                    cache.expire(generation);
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
            cache.current.store(None);
            cache.stamp.store(NO_TOKEN, Ordering::Release);
        }
    }
}

/// Runs one fetch and publishes its outcome. If the fetch is dropped before it finishes (its
/// task aborted, or the source panicked), the drop publishes an error so nobody waits forever.
struct FinishFetch {
    cache: Arc<Cache>,
    sender: watch::Sender<Option<Outcome>>,
    done: bool,
    reason: Reason,
}

impl FinishFetch {
    async fn run(mut self) {
        let timeout = self.cache.config.fetch_timeout;
        let result = match tokio::time::timeout(timeout, self.cache.source.fetch()).await {
            Ok(Ok(token)) => Ok(token),
            Ok(Err(err)) => Err(TokenUnavailable::from_source(err)),
            Err(_) => Err(TokenUnavailable::timed_out(timeout)),
        };
        let outcome = self.cache.complete(result, self.reason);
        self.done = true;
        self.sender.send_replace(Some(outcome));
    }
}

impl Drop for FinishFetch {
    fn drop(&mut self) {
        if !self.done {
            let outcome = self
                .cache
                .complete(Err(TokenUnavailable::panicked()), self.reason);
            self.sender.send_replace(Some(outcome));
        }
    }
}

pub(crate) type BoxOutcome = crate::source::BoxFuture<'static, Outcome>;
pub(crate) type BoxReacquired = crate::source::BoxFuture<'static, Reacquired>;

/// `at + by`, or a moment some thirty years on if that does not fit (a "never" such as
/// `Duration::MAX`).
pub(crate) fn later(at: Instant, by: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(30 * 365 * 24 * 3600);
    at.checked_add(by)
        .or_else(|| at.checked_add(FAR))
        .unwrap_or(at)
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

/// The generation of the token held now, if any (for logs).
#[cfg_attr(not(feature = "tracing"), allow(dead_code))]
fn current_generation(current: &ArcSwapOption<Credential>) -> Option<u64> {
    current.load().as_ref().map(|c| c.generation)
}

fn ready(outcome: Outcome) -> BoxOutcome {
    Box::pin(std::future::ready(outcome))
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

#[cfg(test)]
mod local_copy_tests {
    use super::*;
    use crate::source::RotatingToken;
    use crate::AccessToken;

    /// A cache whose source hands out `veeva-vault-layer{index}-{n}` for its n-th fetch.
    fn cache(index: usize) -> Arc<Cache> {
        let fetches = Arc::new(AtomicU64::new(0));
        let source = RotatingToken::new(move || {
            let n = fetches.fetch_add(1, Ordering::Relaxed) + 1;
            async move { AccessToken::new(format!("veeva-vault-layer{index}-{n}")).map_err(Into::into) }
        });
        Cache::new(Arc::new(source), CacheConfig::default())
    }

    fn attached(cache: &Cache) -> Option<(u64, String)> {
        let mut headers = http::HeaderMap::new();
        let generation = cache.attach(&mut headers)?;
        let value = headers[http::header::AUTHORIZATION]
            .to_str()
            .unwrap()
            .to_owned();
        Some((generation, value))
    }

    fn slots_held() -> usize {
        LOCAL.with(|slots| slots.borrow().len())
    }

    #[tokio::test]
    async fn one_thread_serves_many_layers_each_its_own_token() {
        let caches: Vec<_> = (0..LOCAL_SLOTS + 3).map(cache).collect();
        for cache in &caches {
            assert_eq!(attached(cache), None, "no token before the first fetch");
            assert!(matches!(cache.force_refresh().await, Outcome::Installed(_)));
        }
        // Interleaved, more layers than slots: every request gets its own layer's token.
        for round in 0..3 {
            for (index, cache) in caches.iter().enumerate().rev() {
                let (_, value) = attached(cache).expect("a token");
                assert_eq!(
                    value,
                    format!("Bearer veeva-vault-layer{index}-1"),
                    "round {round}"
                );
                assert!(slots_held() <= LOCAL_SLOTS);
            }
        }
        // One layer rotates: its next request carries the new token, the others keep theirs.
        assert!(matches!(
            caches[2].force_refresh().await,
            Outcome::Installed(_)
        ));
        for (index, cache) in caches.iter().enumerate() {
            let n = if index == 2 { 2 } else { 1 };
            let (generation, value) = attached(cache).expect("a token");
            assert_eq!(value, format!("Bearer veeva-vault-layer{index}-{n}"));
            assert_eq!(Some(generation), current_generation(&cache.current));
        }
        // Invalidated: nothing attached, the map untouched.
        caches[0].invalidate();
        let mut headers = http::HeaderMap::new();
        assert_eq!(caches[0].attach(&mut headers), None);
        assert!(headers.is_empty());
    }
}
