//! The request path: the token's header from this thread's own copy, and the note that Vault
//! took a token.
//!
//! Each thread keeps a copy of each layer's header value (up to [`LOCAL_SLOTS`] layers): cloning
//! it bumps a reference count that no other core touches. A copy knows its token's generation, its
//! expiry (a token past it is never attached, whether or not the maintainer ran) and whether
//! this thread already told the cache that Vault took it.

use std::cell::{Cell, RefCell};

use http::HeaderValue;
use tokio::time::Instant;

use super::Cache;
use crate::trace::event;

/// How many layers one thread keeps a header copy for before it forgets the oldest.
pub(super) const LOCAL_SLOTS: usize = 8;

/// Set in a copy's key when its token has an expiry, so that a token without one is matched by
/// the same single comparison as before expiries were checked.
const EXPIRES: u64 = 1 << 63;

struct LocalCopy {
    cache: u64,
    /// The generation, with [`EXPIRES`] set if the token has an expiry.
    key: u64,
    generation: u64,
    header: HeaderValue,
    expires_at: Option<Instant>,
    /// This thread has told the cache that Vault took this generation.
    accepted: bool,
}

impl LocalCopy {
    /// Whether this is a usable copy of cache `cache`'s token of generation `stamp`. For a token
    /// without an expiry that is the two comparisons it always was; one with an expiry is also
    /// checked against the clock.
    #[inline]
    fn serves(&self, cache: u64, stamp: u64) -> bool {
        self.cache == cache && (self.key == stamp || (self.key == stamp | EXPIRES && self.fresh()))
    }

    /// Not past its expiry.
    fn fresh(&self) -> bool {
        self.expires_at.is_none_or(|at| Instant::now() < at)
    }
}

thread_local! {
    /// Each thread's own copy of each layer's header value, the newest first.
    static LOCAL: RefCell<Vec<LocalCopy>> = const { RefCell::new(Vec::new()) };
}

impl Cache {
    /// The current token's generation and header value, or `None` if no usable token is held.
    ///
    /// This is the request path: one atomic load and, in steady state, one clone of this
    /// thread's copy of the header. A copy is made (one allocation) only when the token changed
    /// since this thread last saw it.
    #[inline]
    pub(crate) fn current(&self) -> Option<(u64, HeaderValue)> {
        let stamp = self.stamp.load(std::sync::atomic::Ordering::Acquire);
        if stamp == super::NO_TOKEN {
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
        let stamp = self.stamp.load(std::sync::atomic::Ordering::Acquire);
        if stamp == super::NO_TOKEN {
            return None;
        }
        let hit = LOCAL.try_with(|slots| {
            // `try_`: the insert below drops the request's old value, whose drop could (in
            // theory) send a request through a layer on this thread; that one takes the slow way.
            let Ok(slots) = slots.try_borrow() else {
                return false;
            };
            match slots.first() {
                Some(slot) if slot.serves(self.id, stamp) => {
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
                    if slots[at].serves(self.id, stamp) {
                        // To the front, where `attach` looks first.
                        slots[..=at].rotate_right(1);
                        return Some((stamp, slots[0].header.clone()));
                    }
                }
                self.refresh_local(&mut slots, false)
            })
            // The thread is shutting down and its locals are gone: use the shared value.
            .unwrap_or_else(|_| self.shared_value())
    }

    /// The current token's generation and the shared copy of its header, if it is not past its
    /// expiry.
    fn shared_value(&self) -> Option<(u64, HeaderValue)> {
        let credential = self.current.load_full()?;
        if credential.token.is_expired_at(Instant::now()) {
            return None;
        }
        Some((credential.generation, credential.header.clone()))
    }

    /// Makes this thread's copy of the current token, the newest slot.
    #[cold]
    fn refresh_local(
        &self,
        slots: &mut Vec<LocalCopy>,
        accepted: bool,
    ) -> Option<(u64, HeaderValue)> {
        let credential = self.current.load_full()?;
        if credential.token.is_expired_at(Instant::now()) {
            return None;
        }
        let expires_at = credential.token.expires_at();
        let copy = LocalCopy {
            cache: self.id,
            key: credential.generation | if expires_at.is_some() { EXPIRES } else { 0 },
            generation: credential.generation,
            header: credential.token.bearer_header(),
            expires_at,
            accepted: accepted || credential.was_accepted(),
        };
        let found = (credential.generation, copy.header.clone());
        slots.retain(|s| s.cache != self.id);
        // The newest copy goes first, where `attach` looks; the oldest falls off the end.
        slots.truncate(LOCAL_SLOTS - 1);
        slots.insert(0, copy);
        Some(found)
    }
}

thread_local! {
    /// The cache and generation this thread last told (or found) that Vault took: what
    /// [`note_accepted`] checks first. Plain `Copy` data, so reading it costs a load or two.
    static LAST_ACCEPTED: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

/// Vault answered a request sent with token `generation` of cache `cache_id`, and did not reject
/// it. The exchange calls this on every such answer.
///
/// In steady state this is one look at a thread-local pair: the cache is told (under its lock)
/// the first time a thread sees an answer for a generation, and never for an older one.
#[inline]
pub(crate) fn note_accepted(cache_id: u64, generation: u64) {
    let (cache, seen) = LAST_ACCEPTED.with(Cell::get);
    if cache != cache_id || seen < generation {
        note_accepted_slow(cache_id, generation);
    }
}

#[cold]
#[inline(never)]
fn note_accepted_slow(cache_id: u64, generation: u64) {
    #[cfg(test)]
    tests::count(|ways| ways.slow += 1);
    /// What this thread's slots know about `generation` of the cache.
    enum Known {
        /// Nothing: ask the cache.
        No,
        /// This thread told the cache already.
        Accepted,
        /// A newer token is in use, or the slots cannot be read now: no news worth telling.
        Skip,
    }
    let known = LOCAL
        .try_with(|slots| match slots.try_borrow() {
            Ok(slots) => match slots.iter().find(|slot| slot.cache == cache_id) {
                Some(slot) if slot.generation > generation => Known::Skip,
                Some(slot) if slot.generation == generation && slot.accepted => Known::Accepted,
                _ => Known::No,
            },
            Err(_) => Known::Skip,
        })
        .unwrap_or(Known::Skip);
    match known {
        Known::No => {}
        Known::Accepted => {
            LAST_ACCEPTED.with(|last| last.set((cache_id, generation)));
            return;
        }
        Known::Skip => return,
    }
    #[cfg(test)]
    tests::count(|ways| ways.asked += 1);
    let Some(cache) = Cache::find(cache_id) else {
        return;
    };
    let Some(current) = cache.current.load_full() else {
        return;
    };
    if current.generation != generation {
        // An answer for a token no longer held: no news about the current one.
        return;
    }
    LAST_ACCEPTED.with(|last| last.set((cache_id, generation)));
    if current.mark_accepted() {
        event!(trace, generation, "vault accepted the access token");
    }
    // This thread's copy remembers it, so that its next answers take the fast way.
    let _ = LOCAL.try_with(|slots| {
        let Ok(mut slots) = slots.try_borrow_mut() else {
            return;
        };
        match slots.iter_mut().find(|slot| slot.cache == cache_id) {
            Some(slot) if slot.generation == generation => slot.accepted = true,
            _ => {
                cache.refresh_local(&mut slots, true);
            }
        }
    });
}

#[cfg(test)]
#[path = "local_tests.rs"]
mod tests;
