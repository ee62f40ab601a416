//! Unit tests of the request path's thread-local copies and of noting that Vault took a token.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::*;
use crate::cache::{CacheConfig, Credential, Outcome};
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
        assert_eq!(Some(generation), cache.current_generation());
    }
    // Invalidated: nothing attached, the map untouched.
    caches[0].invalidate();
    let mut headers = http::HeaderMap::new();
    assert_eq!(caches[0].attach(&mut headers), None);
    assert!(headers.is_empty());
}

#[tokio::test]
async fn vault_taking_a_token_is_told_to_the_cache_once_per_thread_and_generation() {
    let cache = cache(0);
    assert!(matches!(cache.force_refresh().await, Outcome::Installed(1)));
    let credential = cache.current.load_full().unwrap();
    attached(&cache).unwrap();
    assert!(!credential.was_accepted());
    // An answer for another generation says nothing about this one.
    note_accepted(cache.id(), 7);
    assert!(!credential.was_accepted());
    note_accepted(cache.id(), 1);
    assert!(credential.was_accepted());
    LOCAL.with(|slots| assert!(slots.borrow()[0].accepted, "the slot remembers"));
    // A thread that never sent with it learns it too, and keeps a copy for next time.
    let (id, other) = (cache.id(), Arc::clone(&cache));
    std::thread::spawn(move || {
        note_accepted(id, 1);
        LOCAL.with(|slots| {
            let slots = slots.borrow();
            assert_eq!(slots.len(), 1);
            assert!(slots[0].accepted && slots[0].generation == 1);
        });
        drop(other);
    })
    .join()
    .unwrap();
}

/// Which ways [`note_accepted`] took on this thread: into its slow way, and on to the cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Ways {
    pub(super) slow: usize,
    pub(super) asked: usize,
}

thread_local! {
    static WAYS: Cell<Ways> = const { Cell::new(Ways { slow: 0, asked: 0 }) };
}

pub(super) fn count(add: impl FnOnce(&mut Ways)) {
    WAYS.with(|ways| {
        let mut now = ways.get();
        add(&mut now);
        ways.set(now);
    });
}

/// The ways one call of [`note_accepted`] took.
fn ways_of(generation: (u64, u64)) -> Ways {
    WAYS.with(|ways| ways.set(Ways::default()));
    note_accepted(generation.0, generation.1);
    WAYS.with(Cell::get)
}

const FAST: Ways = Ways { slow: 0, asked: 0 };
const SLOTS_KNEW: Ways = Ways { slow: 1, asked: 0 };
const ASKED: Ways = Ways { slow: 1, asked: 1 };

/// This thread's copy for `cache`: its generation, whether it was told, where its value lives.
fn slot_of(cache: &Cache) -> Option<(u64, bool, usize)> {
    LOCAL.with(|slots| {
        let slots = slots.borrow();
        let mine: Vec<_> = slots.iter().filter(|s| s.cache == cache.id()).collect();
        assert!(mine.len() <= 1, "two copies for one cache");
        mine.first().map(|s| {
            (
                s.generation,
                s.accepted,
                s.header.as_bytes().as_ptr() as usize,
            )
        })
    })
}

/// Each answer takes the cheapest way that still tells the cache what it does not know: the
/// thread's last pair, then its slots, then the cache.
#[tokio::test]
async fn an_acceptance_is_told_the_cheapest_way_that_is_still_right() {
    let (one, two) = (cache(0), cache(1));
    for cache in [&one, &two] {
        assert!(matches!(cache.force_refresh().await, Outcome::Installed(1)));
        attached(cache).unwrap();
    }
    let copy = slot_of(&one).unwrap();
    // The first answer: the cache is told, and the thread's copy remembers (the same copy).
    assert_eq!(ways_of((one.id(), 1)), ASKED);
    assert!(one.current.load_full().unwrap().was_accepted());
    assert_eq!(slot_of(&one), Some((1, true, copy.2)));
    // Again: the thread's last pair says it.
    assert_eq!(ways_of((one.id(), 1)), FAST);
    // Another layer's answer, though the last pair is of a later generation: that layer is told.
    assert_eq!(ways_of((two.id(), 1)), ASKED);
    assert!(two.current.load_full().unwrap().was_accepted());
    // Back to the first layer: its slot knows, the cache is not asked.
    assert_eq!(ways_of((one.id(), 1)), SLOTS_KNEW);

    // The first layer rotates and its slot takes the new token: a late answer for the old one
    // is no news, and the slot (newer) says so.
    assert!(matches!(one.force_refresh().await, Outcome::Installed(2)));
    attached(&one).unwrap();
    assert_eq!(ways_of((two.id(), 1)), SLOTS_KNEW);
    assert_eq!(ways_of((one.id(), 1)), SLOTS_KNEW);
    assert!(!one.current.load_full().unwrap().was_accepted());
    assert_eq!(ways_of((one.id(), 2)), ASKED);
    assert!(one.current.load_full().unwrap().was_accepted());
    assert_eq!(ways_of((one.id(), 2)), FAST);

    // It rotates again, and this thread answers for the new token before sending with it: its
    // copy is brought up to date, told.
    assert!(matches!(one.force_refresh().await, Outcome::Installed(3)));
    assert_eq!(ways_of((one.id(), 3)), ASKED);
    assert_eq!(slot_of(&one).map(|s| (s.0, s.1)), Some((3, true)));
    // Each layer keeps its one copy.
    assert!(slot_of(&two).is_some());
}

/// A copy made of a token another thread saw Vault take is made as told.
#[tokio::test]
async fn a_copy_of_a_token_vault_took_elsewhere_is_made_told() {
    let cache = cache(0);
    assert!(matches!(cache.force_refresh().await, Outcome::Installed(1)));
    assert!(cache.current.load_full().unwrap().mark_accepted());
    attached(&cache).unwrap();
    assert_eq!(slot_of(&cache).map(|s| (s.0, s.1)), Some((1, true)));
}

/// A rotation replaces the layer's own copy and keeps the other layers'.
#[tokio::test]
async fn a_new_copy_replaces_only_its_own_layers() {
    let (one, two) = (cache(0), cache(1));
    for cache in [&one, &two] {
        assert!(matches!(cache.force_refresh().await, Outcome::Installed(1)));
        attached(cache).unwrap();
    }
    assert!(matches!(one.force_refresh().await, Outcome::Installed(2)));
    attached(&one).unwrap();
    assert_eq!(slot_of(&one).map(|s| s.0), Some(2));
    assert_eq!(
        slot_of(&two).map(|s| s.0),
        Some(1),
        "the other layer's copy is kept"
    );
    LOCAL.with(|slots| assert_eq!(slots.borrow().len(), 2));
}

/// A cache holding `token` as generation 1, with no maintainer (nothing drops it when it
/// expires).
fn holding(token: AccessToken) -> Arc<Cache> {
    let cache = cache(0);
    let mut state = cache.lock();
    cache.publish(
        &mut state,
        Some(Arc::new(Credential::new(token, 1, None, false, false))),
    );
    drop(state);
    cache
}

/// A thread's copy is not attached from the instant its token expires, even when nothing took
/// the token out of the cache.
#[tokio::test(start_paused = true)]
async fn a_copy_is_not_attached_from_the_instant_its_token_expires() {
    let lifetime = std::time::Duration::from_secs(10);
    let token = AccessToken::new("veeva-vault-expiring").unwrap();
    let cache = holding(token.with_expiry(Some(Instant::now() + lifetime)));
    assert_eq!(attached(&cache).map(|a| a.0), Some(1));
    tokio::time::advance(lifetime - std::time::Duration::from_nanos(1)).await;
    assert_eq!(
        attached(&cache).map(|a| a.0),
        Some(1),
        "a nanosecond before"
    );
    tokio::time::advance(std::time::Duration::from_nanos(1)).await;
    assert_eq!(attached(&cache), None, "at the instant it expires");
}

/// While this thread's copies are in use further up its stack, the shared value is used.
#[tokio::test]
async fn a_request_made_while_the_copies_are_in_use_gets_the_shared_value() {
    let cache = holding(AccessToken::new("veeva-vault-shared").unwrap());
    LOCAL.with(|slots| {
        let _in_use = slots.borrow_mut();
        assert_eq!(
            attached(&cache),
            Some((1, "Bearer veeva-vault-shared".to_owned()))
        );
    });
}
