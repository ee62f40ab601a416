//! The credential cache: the current token in an `ArcSwap`, one fetch at a time, and a
//! maintainer task that refreshes ahead of expiry, polls changing sources and retries failures.
//!
//! | file | holds |
//! |---|---|
//! | `mod.rs` | [`Cache`] itself, the credential it holds, and the one place that publishes it |
//! | `local.rs` | the request path: attaching the token from this thread's copy, noting that Vault took it |
//! | `fetch.rs` | the single-flight fetch: acquiring, rejecting, forcing, and how a fetch ends |
//! | `state.rs` | the state machine behind the mutex: idle, fetching, backing off, with one backoff record |
//! | `maintain.rs` | the background task: renewal, expiry, polling, retries |
//! | `timing.rs` | [`RefreshPolicy`], [`Backoff`] and the settings |
//! | `status.rs` | [`AuthStatus`] and the counters behind it |
//!
//! The request path reads one atomic stamp and clones a header value from a thread-local copy;
//! everything else here runs off that path, under a `std` mutex that is never held across an
//! `.await`.
//!
//! Two tricks stay because they pay (callgrind, `scripts/hot_path_instructions.sh`,
//! `vault_auth_no_replay`, 2026-12-01):
//! - the stamp, a copy of the current generation in an `AtomicU64` beside the `ArcSwap`: reading
//!   the generation from the `ArcSwap` instead costs 64 more instructions per request (1,139
//!   against 1,075). [`Cache::publish`] is its one writer.
//! - the registry of caches by id: a response future carries the id and finds its cache only when
//!   it needs it (a rejection, a replay). Holding an `Arc<Cache>` in the future instead costs 15
//!   more instructions per request (1,090 against 1,075), and a write to one shared reference
//!   count on every request, from every core.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use arc_swap::ArcSwapOption;
use http::HeaderValue;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::source::TokenSource;
use crate::token::AccessToken;

mod fetch;
mod local;
mod maintain;
mod state;
mod status;
mod timing;

pub(crate) use local::note_accepted;
pub(crate) use state::{Outcome, Reacquired};
pub use status::AuthStatus;
#[cfg(feature = "issuer")]
pub(crate) use timing::later;
pub(crate) use timing::CacheConfig;
pub use timing::{Backoff, RefreshPolicy};

use state::CacheState;
use status::Counters;

/// The stamp's value when no token is held.
const NO_TOKEN: u64 = 0;

/// One token as held by the cache.
pub(crate) struct Credential {
    pub(crate) generation: u64,
    pub(crate) token: AccessToken,
    header: HeaderValue,
    refresh_at: Option<Instant>,
    /// Fetched because Vault rejected the token before it.
    from_rejection: bool,
    /// Vault answered at least one request sent with it without rejecting it.
    accepted: AtomicBool,
}

impl Credential {
    fn new(
        token: AccessToken,
        generation: u64,
        refresh_at: Option<Instant>,
        from_rejection: bool,
        accepted: bool,
    ) -> Self {
        Self {
            generation,
            header: token.bearer_header(),
            token,
            refresh_at,
            from_rejection,
            accepted: AtomicBool::new(accepted),
        }
    }

    fn was_accepted(&self) -> bool {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Records that Vault took it; says whether that is news.
    fn mark_accepted(&self) -> bool {
        !self.accepted.swap(true, Ordering::Relaxed)
    }
}

/// One layer's token cache, shared by every clone of the layer, its services and handles.
pub(crate) struct Cache {
    id: u64,
    /// The generation of `current`, or [`NO_TOKEN`]: what the request path reads first. Written
    /// only by [`publish`](Cache::publish), right after `current`.
    stamp: AtomicU64,
    current: ArcSwapOption<Credential>,
    source: Arc<dyn TokenSource>,
    config: CacheConfig,
    state: Mutex<CacheState>,
    counters: Counters,
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

/// Every live cache by id. Response futures and [`note_accepted`] find their cache here, so that
/// the request path carries a `u64` instead of cloning (and later dropping) an `Arc`, a shared
/// write on every request.
fn registry() -> &'static Mutex<HashMap<u64, Weak<Cache>>> {
    static REGISTRY: OnceLock<Mutex<HashMap<u64, Weak<Cache>>>> = OnceLock::new();
    REGISTRY.get_or_init(Mutex::default)
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
            state: Mutex::new(CacheState::default()),
            counters: Counters::default(),
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

    fn lock(&self) -> MutexGuard<'_, CacheState> {
        // The state stays consistent even if a holder panicked: every update is a plain store.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Puts `credential` (or nothing) in place: the one writer of `current` and `stamp`, called
    /// with the state locked so that writers never interleave.
    fn publish(&self, _locked: &mut CacheState, credential: Option<Arc<Credential>>) {
        let stamp = credential.as_ref().map_or(NO_TOKEN, |c| c.generation);
        self.current.store(credential);
        self.stamp.store(stamp, Ordering::Release);
    }

    /// The generation of the token held now, if any.
    #[cfg(test)]
    fn current_generation(&self) -> Option<u64> {
        self.current.load().as_ref().map(|c| c.generation)
    }
}
