//! Regressions found in review: each test pins one way the cache went wrong under an unusual
//! source, clock or runtime. Most go through real HTTP against the stand-in; the ones about
//! runtimes that shut down use an in-memory service, since the stand-in dies with its runtime.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Request, Response};
use http_body_util::Full;
use tokio::time::Instant;
use tower::{Service, ServiceExt};
use veeva_vault_auth::source::{
    BoxFuture, EnvToken, SourceError, SourceErrorKind, StaticToken, TokenSource,
};
use veeva_vault_auth::testing::{Outcome, VaultStandIn};
use veeva_vault_auth::{
    AccessToken, Backoff, BoxError, TokenUnavailable, UnavailableKind, VaultAuthLayer,
};

/// Steps the paused clock forward a second at a time, letting the maintainer run in between.
async fn walk(seconds: u64) {
    for _ in 0..seconds {
        tokio::time::advance(Duration::from_secs(1)).await;
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_renewal_that_finds_the_same_token_backs_off_instead_of_spinning() {
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    let value = vault.issue_token();
    let expires = Instant::now() + Duration::from_secs(60);
    // Every fetch answers the same value with the same expiry, as a cached or static source does.
    let source = ScriptedSource::new(move |_| {
        Ok(AccessToken::new(value.clone())
            .unwrap()
            .with_expiry(Some(expires)))
    });
    let layer = VaultAuthLayer::new(&vault.base_url(), source.clone()).unwrap();
    send(&authed(&layer), get(&vault.api_url("/objects/users/me")))
        .await
        .unwrap();
    walk(59).await;
    // Renewal is due at 45-50 s; after that the retries are 1, 2, 4, 8 s apart.
    assert!(
        (2..=6).contains(&source.fetches()),
        "{} fetches",
        source.fetches()
    );
}

/// Tokens that expire after a minute, from a source that asks to be polled "never".
struct NeverPolled(AtomicUsize);

impl TokenSource for NeverPolled {
    fn fetch(&self) -> BoxFuture<'_, Result<AccessToken, SourceError>> {
        let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
        Box::pin(async move {
            Ok(AccessToken::new(format!("veeva-vault-never-polled-{n}"))?
                .with_expires_in(Duration::from_secs(60)))
        })
    }

    fn poll_interval(&self) -> Option<Duration> {
        Some(Duration::MAX)
    }
}

#[tokio::test(start_paused = true)]
async fn a_poll_interval_of_duration_max_means_never_and_renewal_still_runs() {
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    let layer = VaultAuthLayer::new(&vault.base_url(), NeverPolled(AtomicUsize::new(0))).unwrap();
    let client = authed(&layer);
    let url = vault.api_url("/objects/users/me");
    send(&client, get(&url)).await.unwrap();
    walk(120).await;
    let status = layer.handle().status();
    assert!(status.generation >= Some(2), "renewed: {status:?}");
    let token = AccessToken::new("veeva-vault-x")
        .unwrap()
        .with_expires_in(Duration::MAX);
    assert_eq!(
        token.expires_at(),
        None,
        "a lifetime too long to represent is no expiry"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_first_fetch_is_retried_in_the_background() {
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    let token = vault.issue_token();
    let source = ScriptedSource::new(move |n| match n {
        1 => Err(SourceError::retryable("the secrets service answered 503")),
        _ => Ok(AccessToken::new(token.clone()).unwrap()),
    });
    let layer = VaultAuthLayer::new(&vault.base_url(), source.clone()).unwrap();
    let err = send(&authed(&layer), get(&vault.api_url("/objects/users/me")))
        .await
        .unwrap_err();
    assert!(err.is::<TokenUnavailable>());
    walk(2).await;
    assert_eq!(source.fetches(), 2, "retried without any request");
    assert_eq!(layer.handle().status().generation, Some(1));
}

#[tokio::test(start_paused = true)]
async fn a_late_rejection_never_replays_the_token_the_source_handed_back() {
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    let token = vault.issue_token();
    let source = ScriptedSource::fixed(&token);
    let layer = VaultAuthLayer::new(&vault.base_url(), source.clone()).unwrap();
    let client = authed(&layer);
    let url = vault.api_url("/objects/users/me");
    send(&client, get(&url)).await.unwrap();

    // B is held at the server; then the token is revoked and A is rejected at once, which makes
    // the layer ask the source, which hands back the same token. Only then is B answered.
    vault.hold_requests(true);
    let b = tokio::spawn({
        let (client, url) = (client.clone(), url.clone());
        async move { text(send(&client, get(&url)).await.unwrap()).await }
    });
    vault.wait_for_held(1).await;
    vault.stop_holding();
    vault.revoke(&token);
    let a = text(send(&client, get(&url)).await.unwrap()).await;
    assert_eq!(a, INVALID_SESSION);
    assert_eq!(source.fetches(), 2);
    vault.release();
    assert_eq!(b.await.unwrap(), INVALID_SESSION);
    assert_eq!(layer.handle().status().replays, 0);
    assert_eq!(vault.request_count(), 3, "nothing sent twice");
    assert_eq!(source.fetches(), 2);
}

#[tokio::test(start_paused = true)]
async fn fresh_tokens_that_vault_rejects_at_once_are_not_fetched_again_and_again() {
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    // Tokens Vault has never heard of (issued for another Vault, say).
    let source =
        ScriptedSource::new(
            |n| Ok(AccessToken::new(format!("veeva-vault-elsewhere-{n}")).unwrap()),
        );
    let layer = VaultAuthLayer::new(&vault.base_url(), source.clone()).unwrap();
    let client = authed(&layer);
    for _ in 0..10 {
        let response = send(&client, get(&vault.api_url("/objects/users/me")))
            .await
            .unwrap();
        assert_eq!(text(response).await, INVALID_SESSION);
    }
    assert!(
        source.fetches() <= 4,
        "{} fetches for 10 requests",
        source.fetches()
    );
    assert!(vault
        .requests()
        .iter()
        .all(|r| r.outcome == Outcome::InvalidSession));
}

#[tokio::test(start_paused = true)]
async fn a_waiter_whose_token_was_rejected_meanwhile_waits_again_instead_of_failing() {
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    let (first, second) = (vault.issue_token(), vault.issue_token());
    let tokens = [first.clone(), second.clone()];
    let source = ScriptedSource::new(move |n| Ok(AccessToken::new(tokens[n - 1].clone()).unwrap()));
    source.close_gate();
    let layer = VaultAuthLayer::new(&vault.base_url(), source.clone()).unwrap();
    let mut client = authed(&layer);
    let url = vault.api_url("/objects/users/me");

    // Two requests wait for the first token; the first one is sent and rejected (the token was
    // revoked) before the second is polled again.
    vault.revoke(&first);
    client.ready().await.unwrap();
    let one = tokio::spawn(client.call(get(&url)));
    client.ready().await.unwrap();
    let two = client.call(get(&url));
    eventually("the first fetch started", || source.fetches() == 1).await;
    source.open(1);
    eventually("the rejection started a second fetch", || {
        source.fetches() == 2
    })
    .await;
    source.open(1);
    let two = two.await.expect("waits again rather than failing");
    assert_eq!(two.headers()["x-vaultapi-status"], "SUCCESS");
    assert_eq!(
        one.await.unwrap().unwrap().headers()["x-vaultapi-status"],
        "SUCCESS"
    );
    assert_eq!(source.fetches(), 2);
}

#[tokio::test]
async fn an_uncapped_backoff_keeps_the_real_error() {
    std::env::remove_var("VVA_REGRESSION_UNSET");
    let vault = VaultStandIn::start().await.unwrap();
    let layer = VaultAuthLayer::builder(
        &vault.base_url(),
        EnvToken::from_var("VVA_REGRESSION_UNSET"),
    )
    .backoff(Backoff::new(Duration::ZERO, Duration::MAX))
    .build()
    .unwrap();
    let err = send(&authed(&layer), get(&vault.api_url("/objects/users/me")))
        .await
        .unwrap_err();
    let err = err.downcast_ref::<TokenUnavailable>().unwrap();
    assert_eq!(err.kind(), UnavailableKind::Source);
    assert_eq!(
        err.source_error().unwrap().kind(),
        SourceErrorKind::NotFound
    );
}

/// An in-memory Vault that accepts everything: for the tests whose runtimes come and go.
fn accepting() -> tower::util::BoxCloneService<Request<Full<Bytes>>, Response<Full<Bytes>>, BoxError>
{
    tower::util::BoxCloneService::new(tower::service_fn(|_req: Request<Full<Bytes>>| async {
        let response = Response::builder()
            .header("content-type", "application/json")
            .header("x-vaultapi-status", "SUCCESS")
            .body(Full::new(Bytes::from_static(
                br#"{"responseStatus":"SUCCESS"}"#,
            )))
            .unwrap();
        Ok::<_, BoxError>(response)
    }))
}

const VAULT: &str = "https://myvault.veevavault.com";

fn vault_request() -> Request<Full<Bytes>> {
    Request::get(format!("{VAULT}/api/v26.2/objects/users/me"))
        .body(Full::new(Bytes::new()))
        .unwrap()
}

#[test]
fn a_layer_that_outlives_its_first_runtime_fetches_again_on_the_next() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let source = ScriptedSource::new(move |n| {
        counted.fetch_add(1, Ordering::SeqCst);
        Ok(AccessToken::new(format!("veeva-vault-runtime-{n}"))
            .unwrap()
            .with_expires_in(Duration::from_secs(1)))
    });
    let layer = VaultAuthLayer::new(VAULT, source).unwrap();
    let service = tower::Layer::layer(&layer, accepting());
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    runtime()
        .block_on(service.clone().oneshot(vault_request()))
        .unwrap();
    // The runtime that ran the renewal task is gone: nobody would drop the token when it expires,
    // so the layer has let it go already, and the next runtime fetches afresh.
    assert_eq!(layer.handle().status().generation, None);
    runtime()
        .block_on(service.clone().oneshot(vault_request()))
        .unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[test]
fn a_request_on_a_runtime_that_shut_down_returns_instead_of_deadlocking() {
    let layer = VaultAuthLayer::new(VAULT, StaticToken::new("veeva-vault-x").unwrap()).unwrap();
    let mut service = tower::Layer::layer(&layer, accepting());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let handle = runtime.handle().clone();
    drop(runtime);
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _entered = handle.enter();
        drop(service.call(vault_request()));
        let _ = done.send(());
    });
    // A bound for a broken build only: the call returns at once.
    assert!(
        finished.recv_timeout(Duration::from_secs(10)).is_ok(),
        "call deadlocked"
    );
}
