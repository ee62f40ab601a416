//! Unit tests of the state machine: each transition of [`CacheState`](super::CacheState), no runtime
//! driving a fetch.

use super::*;
use std::time::Duration;

fn credential(value: &str, generation: u64, from_rejection: bool) -> Credential {
    Credential::new(
        AccessToken::new(value).unwrap(),
        generation,
        None,
        from_rejection,
        false,
    )
}

fn fetch(state: &mut CacheState, reason: Reason, replacing: Option<Arc<Credential>>) -> Fetch {
    state.last_fetch_id += 1;
    Fetch {
        id: state.last_fetch_id,
        reason,
        deadline: Instant::now() + Duration::from_secs(30),
        done: watch::channel(None).0,
        before: state.take_retry(),
        replacing,
    }
}

fn token(value: &str) -> AccessToken {
    AccessToken::new(value).unwrap()
}

fn config() -> CacheConfig {
    CacheConfig::default()
}

#[tokio::test(start_paused = true)]
async fn failures_count_on_in_one_record_and_a_success_clears_it() {
    let mut state = CacheState::default();
    let now = Instant::now();
    for n in 1..=3u32 {
        let f = fetch(&mut state, Reason::NoToken, None);
        let err = TokenUnavailable::timed_out(Duration::from_secs(1));
        let settled = state.settle(f, Err(err), None, now, &config());
        assert!(matches!(settled.outcome, Outcome::Failed(_)));
        let retry = state.phase.retry().expect("backing off");
        assert_eq!(retry.in_a_row, n);
        assert_eq!(retry.until - now, Duration::from_secs(1 << (n - 1)));
        assert!(state.phase.failure(now).is_some());
    }
    let f = fetch(&mut state, Reason::Recovery, None);
    let settled = state.settle(f, Ok(token("veeva-vault-a")), None, now, &config());
    assert!(matches!(settled.outcome, Outcome::Installed(1)));
    assert!(matches!(state.phase, Phase::Idle));
}

#[tokio::test(start_paused = true)]
async fn the_same_value_keeps_its_generation_whatever_its_expiry() {
    let mut state = CacheState {
        last_generation: 1,
        ..CacheState::default()
    };
    let now = Instant::now();
    let held = Credential::new(
        token("veeva-vault-a").with_expiry(Some(now + Duration::from_secs(3600))),
        1,
        None,
        false,
        false,
    );
    // A few nanoseconds off: the same token, nothing to install.
    let f = fetch(&mut state, Reason::Poll, None);
    let nudged = token("veeva-vault-a").with_expiry(Some(
        now + Duration::from_secs(3600) + Duration::from_nanos(3),
    ));
    let settled = state.settle(f, Ok(nudged), Some(&held), now, &config());
    assert!(matches!(settled.outcome, Outcome::Installed(1)));
    assert!(matches!(settled.install, Install::Keep));
    // Extended by an hour: the same generation with the new expiry.
    let f = fetch(&mut state, Reason::Poll, None);
    let extended = token("veeva-vault-a").with_expiry(Some(now + Duration::from_secs(7200)));
    let settled = state.settle(f, Ok(extended), Some(&held), now, &config());
    assert!(matches!(
        settled.install,
        Install::Token { generation: 1, .. }
    ));
    assert_eq!(state.last_generation, 1);
    // Shortened by an hour: a new generation, so that no thread's copy keeps the later expiry.
    let f = fetch(&mut state, Reason::Poll, None);
    let shortened = token("veeva-vault-a").with_expiry(Some(now + Duration::from_secs(60)));
    let settled = state.settle(f, Ok(shortened), Some(&held), now, &config());
    assert!(matches!(settled.outcome, Outcome::Installed(2)));
    assert!(matches!(
        settled.install,
        Install::Token { generation: 2, .. }
    ));
}

#[tokio::test(start_paused = true)]
async fn the_rejected_token_handed_back_holds_off_further_rejections() {
    let mut state = CacheState {
        last_generation: 1,
        ..CacheState::default()
    };
    let now = Instant::now();
    let held = Arc::new(credential("veeva-vault-a", 1, false));
    assert_eq!(
        state.on_rejection(&held, now, &Backoff::default()),
        OnRejection::Fetch
    );
    let f = fetch(&mut state, Reason::Rejected, Some(Arc::clone(&held)));
    let settled = state.settle(f, Ok(token("veeva-vault-a")), None, now, &config());
    assert!(matches!(settled.outcome, Outcome::Unchanged));
    assert!(matches!(
        settled.install,
        Install::Token { generation: 1, .. }
    ));
    assert_eq!(
        state.on_rejection(&held, now, &Backoff::default()),
        OnRejection::GiveUp
    );
    let later = now + Duration::from_secs(1);
    assert_eq!(
        state.on_rejection(&held, later, &Backoff::default()),
        OnRejection::Fetch
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_poll_does_not_hold_off_a_rejection() {
    let mut state = CacheState::default();
    let now = Instant::now();
    let f = fetch(&mut state, Reason::Poll, None);
    let err = TokenUnavailable::from_source(crate::source::SourceError::permanent("unset"));
    let held = credential("veeva-vault-a", 1, false);
    state.settle(f, Err(err), Some(&held), now, &config());
    assert!(state.phase.failure(now).is_some());
    assert_eq!(
        state.on_rejection(&held, now, &Backoff::default()),
        OnRejection::Fetch
    );
}

#[tokio::test(start_paused = true)]
async fn replacements_vault_never_took_back_off_and_one_it_took_ends_the_streak() {
    let mut state = CacheState::default();
    let now = Instant::now();
    let backoff = Backoff::default();
    // The first replacement is rejected: fetch again, and start the streak.
    let first = credential("veeva-vault-b", 2, true);
    assert_eq!(
        state.on_rejection(&first, now, &backoff),
        OnRejection::Fetch
    );
    let f = fetch(&mut state, Reason::Rejected, None);
    state.settle(f, Ok(token("veeva-vault-c")), None, now, &config());
    // Its replacement is rejected at once too: give up until the backoff ends.
    let second = credential("veeva-vault-c", 3, true);
    assert_eq!(
        state.on_rejection(&second, now, &backoff),
        OnRejection::GiveUp
    );
    // Once Vault took it, its rejection is news: fetch at once, the streak is over.
    second.mark_accepted();
    assert_eq!(
        state.on_rejection(&second, now, &backoff),
        OnRejection::Fetch
    );
    assert!(matches!(state.phase, Phase::Idle));
}

#[tokio::test(start_paused = true)]
async fn a_renewal_that_finds_the_same_token_backs_off_doubling() {
    let mut state = CacheState::default();
    let now = Instant::now();
    let mut held = credential("veeva-vault-a", 1, false);
    held.refresh_at = Some(now);
    for n in 1..=3 {
        let f = fetch(&mut state, Reason::Renewal, None);
        state.settle(f, Ok(token("veeva-vault-a")), Some(&held), now, &config());
        match &state.phase {
            Phase::BackingOff(Retry {
                cause: Holdoff::StaleRenewal,
                in_a_row,
                ..
            }) => assert_eq!(*in_a_row, n),
            _ => panic!("not backing off after a stale renewal"),
        }
        assert!(
            state.phase.failure(now).is_none(),
            "requests are not held off"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn an_expiry_shortened_by_less_than_a_second_is_the_same_token() {
    let mut state = CacheState {
        last_generation: 1,
        ..CacheState::default()
    };
    let now = Instant::now();
    let hour = now + Duration::from_secs(3600);
    let held = Credential::new(
        token("veeva-vault-a").with_expiry(Some(hour)),
        1,
        None,
        false,
        false,
    );
    let f = fetch(&mut state, Reason::Poll, None);
    let nudged = token("veeva-vault-a").with_expiry(Some(hour - Duration::from_millis(500)));
    let settled = state.settle(f, Ok(nudged), Some(&held), now, &config());
    assert!(matches!(settled.outcome, Outcome::Installed(1)));
    assert!(matches!(settled.install, Install::Keep));
    assert_eq!(state.last_generation, 1);
}

#[tokio::test(start_paused = true)]
async fn a_backoff_counts_on_only_for_the_same_kind_of_cause() {
    let now = Instant::now();
    let backoff = Backoff::default();
    let failed = || Holdoff::Failed(TokenUnavailable::timed_out(Duration::from_secs(1)));
    let first = Retry::after(None, failed(), now, &backoff);
    let second = Retry::after(Some(&first), failed(), now, &backoff);
    assert_eq!((first.in_a_row, second.in_a_row), (1, 2));
    let other = Retry::after(Some(&second), Holdoff::StaleRenewal, now, &backoff);
    assert_eq!(other.in_a_row, 1, "a new kind of cause starts a new count");
    let again = Retry::after(Some(&other), Holdoff::StaleRenewal, now, &backoff);
    assert_eq!(again.in_a_row, 2);
}

#[tokio::test(start_paused = true)]
async fn only_the_fetch_under_way_is_taken_and_a_rejection_leaves_it_in_place() {
    let mut state = CacheState::default();
    let now = Instant::now();
    let f = fetch(&mut state, Reason::NoToken, None);
    let id = f.id;
    state.phase = Phase::Fetching(f);
    assert!(state.take_fetch(id + 1).is_none());
    assert!(matches!(state.phase, Phase::Fetching(_)));
    // A replacement Vault never took, rejected while a fetch is under way: that fetch serves.
    let rejected = credential("veeva-vault-r", 1, true);
    assert_eq!(
        state.on_rejection(&rejected, now, &Backoff::default()),
        OnRejection::Fetch
    );
    assert!(matches!(state.phase, Phase::Fetching(_)));
    assert!(state.take_fetch(id).is_some());
    assert!(matches!(state.phase, Phase::Idle));
}

/// The record left by a rejection whose token the source handed back.
fn after_a_handed_back_rejection(state: &mut CacheState, held: &Arc<Credential>, now: Instant) {
    state.on_rejection(held, now, &Backoff::default());
    let f = fetch(state, Reason::Rejected, Some(Arc::clone(held)));
    state.settle(f, Ok(token("veeva-vault-a")), None, now, &config());
    assert!(state
        .phase
        .retry()
        .is_some_and(|r| r.cause.is_rejected_token()));
}

#[tokio::test(start_paused = true)]
async fn a_poll_that_finds_the_token_vault_rejected_keeps_the_backoff() {
    let mut state = CacheState {
        last_generation: 1,
        ..CacheState::default()
    };
    let now = Instant::now();
    let held = Arc::new(credential("veeva-vault-a", 1, false));
    after_a_handed_back_rejection(&mut state, &held, now);
    let until = state.phase.retry().map(|r| r.until);
    // A poll (not a renewal: nothing is due) finds the same token: no news, keep holding off.
    let f = fetch(&mut state, Reason::Poll, None);
    let settled = state.settle(f, Ok(token("veeva-vault-a")), Some(&held), now, &config());
    assert!(matches!(settled.outcome, Outcome::Installed(1)));
    match &state.phase {
        Phase::BackingOff(retry) => {
            assert!(retry.cause.is_rejected_token());
            assert_eq!(Some(retry.until), until, "the same record, not a new one");
        }
        _ => panic!("the backoff after a handed-back rejection was dropped"),
    }
    assert_eq!(
        state.on_rejection(&held, now, &Backoff::default()),
        OnRejection::GiveUp
    );
}

#[tokio::test(start_paused = true)]
async fn a_poll_that_finds_the_same_token_before_its_renewal_is_no_backoff() {
    let mut state = CacheState {
        last_generation: 1,
        ..CacheState::default()
    };
    let now = Instant::now();
    // No renewal time at all, and one still ahead: either way a poll with no news is idle.
    let mut ahead = credential("veeva-vault-a", 1, false);
    ahead.refresh_at = Some(now + Duration::from_secs(60));
    for held in [credential("veeva-vault-a", 1, false), ahead] {
        let f = fetch(&mut state, Reason::Poll, None);
        let settled = state.settle(f, Ok(token("veeva-vault-a")), Some(&held), now, &config());
        assert!(matches!(settled.install, Install::Keep));
        assert!(
            matches!(state.phase, Phase::Idle),
            "a poll before the renewal is due started a backoff"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_poll_during_a_streak_of_rejected_replacements_keeps_the_streak() {
    let mut state = CacheState {
        last_generation: 2,
        ..CacheState::default()
    };
    let now = Instant::now();
    let replacement = Arc::new(credential("veeva-vault-b", 2, true));
    assert_eq!(
        state.on_rejection(&replacement, now, &Backoff::default()),
        OnRejection::Fetch
    );
    assert!(matches!(
        state.phase,
        Phase::BackingOff(Retry {
            cause: Holdoff::RejectedAgain,
            ..
        })
    ));
    // The fetch for that rejection (or a poll) hands back the token in place: no news.
    let f = fetch(&mut state, Reason::Poll, None);
    state.settle(
        f,
        Ok(token("veeva-vault-b")),
        Some(&replacement),
        now,
        &config(),
    );
    assert!(
        matches!(
            state.phase,
            Phase::BackingOff(Retry {
                cause: Holdoff::RejectedAgain,
                in_a_row: 1,
                ..
            })
        ),
        "the streak of rejected replacements was forgotten"
    );
    // So its next rejection within the backoff gives up instead of fetching again.
    assert_eq!(
        state.on_rejection(&replacement, now, &Backoff::default()),
        OnRejection::GiveUp
    );
}
