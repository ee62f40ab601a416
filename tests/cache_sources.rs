//! The cache against sources that rotate, fail a poll, hand back the same value with a moving
//! expiry or ask to be polled constantly: regressions of issue 11 (bugs 2, 13, 15, 16), through
//! real HTTP against the Vault stand-in, with Tokio's clock paused.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::*;
use http::header::AUTHORIZATION;
use veeva_vault_auth::source::{
    BoxFuture, EnvToken, FileToken, RotatingToken, SourceError, TokenSource,
};
use veeva_vault_auth::testing::{RecordedRequest, VaultStandIn};
use veeva_vault_auth::{AccessToken, VaultAuthLayer};

fn bearer_of(request: &RecordedRequest) -> String {
    request.headers[AUTHORIZATION]
        .to_str()
        .unwrap()
        .trim_start_matches("Bearer ")
        .to_owned()
}

/// Steps the paused clock forward a second at a time, letting the maintainer run in between.
async fn walk(seconds: u64) {
    for _ in 0..seconds {
        tokio::time::advance(Duration::from_secs(1)).await;
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }
}

fn status_of(response: &http::Response<impl http_body::Body>) -> String {
    response.headers()["x-vaultapi-status"]
        .to_str()
        .unwrap()
        .to_owned()
}

/// Bug 2: with a source without expiries issuing fresh tokens, a replacement that Vault took and
/// that is revoked in turn must be replaced at once, however often that happens.
#[tokio::test(start_paused = true)]
async fn replacements_vault_took_are_replaced_however_often_they_are_revoked() {
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    let issuer = vault.clone();
    let source = RotatingToken::new(move || {
        let value = issuer.issue_token();
        async move { Ok::<_, SourceError>(AccessToken::new(value)?) }
    });
    let layer = VaultAuthLayer::new(&vault.base_url(), source).unwrap();
    let client = authed(&layer);
    let url = vault.api_url("/objects/users/me");
    assert_eq!(
        status_of(&send(&client, get(&url)).await.unwrap()),
        "SUCCESS"
    );

    // Six revocations at the same moment, then four five seconds apart.
    for round in 1..=10 {
        if round > 6 {
            walk(5).await;
        }
        let held = bearer_of(vault.requests().last().unwrap());
        assert!(vault.revoke(&held));
        let response = send(&client, get(&url)).await.unwrap();
        assert_eq!(status_of(&response), "SUCCESS", "revocation {round}");
        let last = vault.requests();
        assert_ne!(bearer_of(last.last().unwrap()), held, "revocation {round}");
    }
    let status = layer.handle().status();
    assert_eq!(status.reacquisitions, 10);
    assert_eq!(status.replays, 10);
    assert_eq!(status.generation, Some(11));
}

/// Bug 15: a poll that failed (the variable unset for a moment) must not stop a rejection from
/// re-reading the variable.
#[tokio::test(start_paused = true)]
async fn after_a_failed_poll_a_rejection_still_rereads_the_variable() {
    let _clock = hold_clock();
    const VAR: &str = "VVA_CACHE_SOURCES_AFTER_FAILED_POLL";
    let vault = VaultStandIn::start().await.unwrap();
    let first = vault.issue_token();
    std::env::set_var(VAR, &first);
    let layer = VaultAuthLayer::new(&vault.base_url(), EnvToken::from_var(VAR)).unwrap();
    let client = authed(&layer);
    let url = vault.api_url("/objects/users/me");
    assert_eq!(
        status_of(&send(&client, get(&url)).await.unwrap()),
        "SUCCESS"
    );

    std::env::remove_var(VAR);
    walk(6).await;
    let status = layer.handle().status();
    assert!(status.last_error.is_some(), "the poll failed: {status:?}");
    assert_eq!(status.generation, Some(1), "and the token was kept");

    let second = vault.issue_token();
    std::env::set_var(VAR, &second);
    vault.revoke(&first);
    let response = send(&client, get(&url)).await.unwrap();
    std::env::remove_var(VAR);
    assert_eq!(
        status_of(&response),
        "SUCCESS",
        "replayed with the new value"
    );
    assert_eq!(bearer_of(vault.requests().last().unwrap()), second);
    assert_eq!(layer.handle().status().replays, 1);
}

/// Bug 15, with a token file that is deleted and re-created.
#[tokio::test(start_paused = true)]
async fn after_a_failed_poll_a_rejection_still_rereads_the_file() {
    let _clock = hold_clock();
    let dir = std::env::temp_dir().join(format!("vva-cache-sources-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("token");
    let vault = VaultStandIn::start().await.unwrap();
    let first = vault.issue_token();
    std::fs::write(&path, format!("{first}\n")).unwrap();
    let layer = VaultAuthLayer::new(&vault.base_url(), FileToken::new(&path)).unwrap();
    let client = authed(&layer);
    let url = vault.api_url("/objects/users/me");
    assert_eq!(
        status_of(&send(&client, get(&url)).await.unwrap()),
        "SUCCESS"
    );

    std::fs::remove_file(&path).unwrap();
    walk(5).await;
    eventually("the poll failed", || {
        layer.handle().status().last_error.is_some()
    })
    .await;
    // Within the backoff that failure started (1 s), the file is back with a new token and
    // Vault revokes the old one.
    let second = vault.issue_token();
    std::fs::write(&path, format!("{second}\n")).unwrap();
    vault.revoke(&first);
    let response = send(&client, get(&url)).await.unwrap();
    assert_eq!(
        status_of(&response),
        "SUCCESS",
        "replayed with the new file"
    );
    assert_eq!(bearer_of(vault.requests().last().unwrap()), second);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Hands out one value with a wall-clock expiry an hour away, converted anew at every fetch;
/// asks to be polled every second.
struct WallClockExpiry {
    value: String,
    expires: SystemTime,
    fetches: AtomicUsize,
}

impl TokenSource for WallClockExpiry {
    fn fetch(&self) -> BoxFuture<'_, Result<AccessToken, SourceError>> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        let token = AccessToken::new(self.value.clone()).map(|t| t.with_expires_at(self.expires));
        Box::pin(async move { Ok(token?) })
    }

    fn poll_interval(&self) -> Option<Duration> {
        Some(Duration::from_secs(1))
    }
}

/// Bug 16: an unchanged token with a wall-clock expiry is the same token at every poll: it keeps
/// its generation, and a rejection that arrives after such a poll is not replayed with the very
/// token just rejected.
#[tokio::test(start_paused = true)]
async fn an_unchanged_token_with_a_wall_clock_expiry_keeps_its_generation() {
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    let source = Arc::new(WallClockExpiry {
        value: vault.issue_token(),
        expires: SystemTime::now() + Duration::from_secs(3600),
        fetches: AtomicUsize::new(0),
    });
    let layer = VaultAuthLayer::new(&vault.base_url(), Arc::clone(&source)).unwrap();
    let client = authed(&layer);
    let url = vault.api_url("/objects/users/me");
    assert_eq!(
        status_of(&send(&client, get(&url)).await.unwrap()),
        "SUCCESS"
    );
    walk(5).await;
    assert!(source.fetches.load(Ordering::SeqCst) >= 5, "polled");
    assert_eq!(layer.handle().status().generation, Some(1));

    // A request held at the server across a poll, then rejected: the source has nothing newer,
    // so nothing is sent again.
    vault.hold_requests(true);
    let held = tokio::spawn({
        let (client, url) = (client.clone(), url.clone());
        async move { text(send(&client, get(&url)).await.unwrap()).await }
    });
    vault.wait_for_held(1).await;
    vault.stop_holding();
    let polled = source.fetches.load(Ordering::SeqCst);
    walk(1).await;
    eventually("polled again", || {
        source.fetches.load(Ordering::SeqCst) > polled
    })
    .await;
    assert_eq!(layer.handle().status().generation, Some(1));
    vault.revoke_all();
    let sent_before = vault.request_count();
    vault.release();
    assert_eq!(held.await.unwrap(), INVALID_SESSION);
    assert_eq!(layer.handle().status().replays, 0);
    assert_eq!(vault.request_count(), sent_before, "nothing sent twice");
}

/// Asks to be polled every zero seconds.
struct PollsConstantly(AtomicUsize, String);

impl TokenSource for PollsConstantly {
    fn fetch(&self) -> BoxFuture<'_, Result<AccessToken, SourceError>> {
        self.0.fetch_add(1, Ordering::SeqCst);
        let token = AccessToken::new(self.1.clone());
        Box::pin(async move { Ok(token?) })
    }

    fn poll_interval(&self) -> Option<Duration> {
        Some(Duration::ZERO)
    }
}

/// Bug 13: a poll interval of zero is clamped to the cache's floor (1 s), not a tight loop.
#[tokio::test(start_paused = true)]
async fn a_zero_poll_interval_is_polled_once_a_second() {
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    let source = Arc::new(PollsConstantly(AtomicUsize::new(0), vault.issue_token()));
    let layer = VaultAuthLayer::new(&vault.base_url(), Arc::clone(&source)).unwrap();
    let client = authed(&layer);
    let url = vault.api_url("/objects/users/me");
    assert_eq!(
        status_of(&send(&client, get(&url)).await.unwrap()),
        "SUCCESS"
    );
    walk(5).await;
    let fetches = source.0.load(Ordering::SeqCst);
    assert!((5..=7).contains(&fetches), "{fetches} fetches in 5 s");
}

/// Bug 2 through the reqwest door: the same rotation, revoked six times over.
#[cfg(feature = "reqwest")]
#[tokio::test]
async fn through_reqwest_replacements_vault_took_are_replaced_however_often_they_are_revoked() {
    let vault = VaultStandIn::start().await.unwrap();
    let issuer = vault.clone();
    let source = RotatingToken::new(move || {
        let value = issuer.issue_token();
        async move { Ok::<_, SourceError>(AccessToken::new(value)?) }
    });
    let layer = VaultAuthLayer::new(&vault.base_url(), source).unwrap();
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(layer.middleware())
        .build();
    let url = vault.api_url("/objects/users/me");
    let status = |response: &reqwest::Response| response.headers()["x-vaultapi-status"].clone();
    assert_eq!(status(&client.get(&url).send().await.unwrap()), "SUCCESS");
    for round in 1..=6 {
        let held = bearer_of(vault.requests().last().unwrap());
        assert!(vault.revoke(&held));
        let response = client.get(&url).send().await.unwrap();
        assert_eq!(status(&response), "SUCCESS", "revocation {round}");
    }
    assert_eq!(layer.handle().status().replays, 6);
}
