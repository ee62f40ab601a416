//! Rotation before expiry, and re-acquisition with one shared refresh and one safe replay, through
//! real HTTP against the Vault stand-in, with Tokio's clock paused.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::header::AUTHORIZATION;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;
use veeva_vault_auth::source::{BoxFuture, RotatingToken, SourceError, StaticToken, TokenSource};
use veeva_vault_auth::testing::{Outcome, VaultStandIn};
use veeva_vault_auth::{
    AccessToken, RefreshPolicy, TokenUnavailable, UnavailableKind, VaultAuthLayer,
};

fn bearer_of(request: &veeva_vault_auth::testing::RecordedRequest) -> String {
    request.headers[AUTHORIZATION]
        .to_str()
        .unwrap()
        .trim_start_matches("Bearer ")
        .to_owned()
}

async fn revoked_while_in_flight(unauthorized_mode: bool) {
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    vault.set_unauthorized_mode(unauthorized_mode);
    let (old, new) = (vault.issue_token(), vault.issue_token());
    let source = tokens_in_order(vec![old.clone(), new.clone()]);
    let layer = VaultAuthLayer::new(&vault.base_url(), source.clone()).unwrap();
    let client = authed(&layer);
    let url = vault.api_url("/objects/users/me");
    send(&client, get(&url)).await.unwrap();
    vault.clear_requests();

    vault.hold_requests(true);
    let tasks = spawn_many(1000, |i| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let request = if i % 2 == 0 {
                get(&url)
            } else {
                // Half of them carry a body, which is replayed too.
                Request::post(url.replace("/objects/users/me", "/query"))
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(Full::new(Bytes::from(format!(
                        "q=SELECT+id+FROM+documents+WHERE+n={i}"
                    ))))
                    .unwrap()
            };
            let response = send(&client, request).await.unwrap();
            let status = response.status();
            let vault_status = response.headers()["x-vaultapi-status"].clone();
            (status, vault_status, text(response).await)
        }
    });
    vault.wait_for_held(1000).await;
    assert!(vault.revoke(&old));
    vault.hold_requests(false);

    for task in tasks {
        let (status, vault_status, body) = task.await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(vault_status, "SUCCESS", "{body}");
    }
    assert_eq!(
        source.fetches(),
        2,
        "one fetch at start, one for all 1000 rejections"
    );
    let seen = vault.requests();
    assert_eq!(seen.len(), 2000);
    let rejected = if unauthorized_mode {
        Outcome::Unauthorized
    } else {
        Outcome::InvalidSession
    };
    let (first, replays) = seen.split_at(1000);
    assert!(first
        .iter()
        .all(|r| r.outcome == rejected && bearer_of(r) == old));
    assert!(replays
        .iter()
        .all(|r| r.outcome == Outcome::Accepted && bearer_of(r) == new));
    let mut bodies: Vec<_> = replays
        .iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.body.clone())
        .collect();
    bodies.sort();
    bodies.dedup();
    assert_eq!(bodies.len(), 500, "each POST body replayed as it was");
    let status = layer.handle().status();
    assert_eq!((status.reacquisitions, status.replays), (1, 1000));
}

#[tokio::test(start_paused = true)]
async fn a_revocation_under_1000_requests_refreshes_once_and_replays_all() {
    revoked_while_in_flight(false).await;
}

#[tokio::test(start_paused = true)]
async fn the_same_behind_a_gateway_that_answers_401() {
    revoked_while_in_flight(true).await;
}

/// The replay is rebuilt from the copy the layer keeps (bytes in a pooled buffer): it must be the
/// same request in every part but the token.
#[tokio::test(start_paused = true)]
async fn a_replay_is_the_same_request_with_the_new_token() {
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    let (old, new) = (vault.issue_token(), vault.issue_token());
    let source = tokens_in_order(vec![old.clone(), new.clone()]);
    let layer = VaultAuthLayer::new(&vault.base_url(), source.clone()).unwrap();
    let client = authed(&layer);
    assert!(vault.revoke(&old));

    let url = vault.api_url("/query?describe=true&limit=5");
    let mut secret = http::HeaderValue::from_static("session=kept-as-it-was");
    secret.set_sensitive(true);
    let request = Request::post(url.as_str())
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .header("x-custom", "first")
        .header("x-custom", "second")
        .header("cookie", secret)
        .body(Full::new(Bytes::from(
            "q=SELECT+id+FROM+documents".to_owned(),
        )))
        .unwrap();
    let response = send(&client, request).await.unwrap();
    assert_eq!(response.headers()["x-vaultapi-status"], "SUCCESS");

    let seen = vault.requests();
    assert_eq!(seen.len(), 2, "the request, then its replay");
    let (first, replay) = (&seen[0], &seen[1]);
    assert_eq!(first.outcome, Outcome::InvalidSession);
    assert_eq!(replay.outcome, Outcome::Accepted);
    assert_eq!((bearer_of(first), bearer_of(replay)), (old, new));
    assert_eq!(replay.method, first.method);
    assert_eq!(replay.path, first.path);
    assert_eq!(replay.query.as_deref(), Some("describe=true&limit=5"));
    assert_eq!(replay.body, first.body);
    assert_eq!(&replay.body[..], b"q=SELECT+id+FROM+documents");
    let without_token = |headers: &http::HeaderMap| {
        let mut headers = headers.clone();
        headers.remove(AUTHORIZATION);
        headers
    };
    assert_eq!(
        without_token(&replay.headers),
        without_token(&first.headers)
    );
    let custom: Vec<_> = replay.headers.get_all("x-custom").iter().collect();
    assert_eq!(custom, ["first", "second"]);
    assert_eq!(layer.handle().status().replays, 1);
}

#[tokio::test(start_paused = true)]
async fn other_vault_errors_reach_the_caller_byte_for_byte() {
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    let token = vault.issue_token();
    let source = ScriptedSource::fixed(&token);
    let layer = VaultAuthLayer::new(&vault.base_url(), source.clone()).unwrap();
    let url = vault.api_url("/objects/documents");

    for error_type in ["INSUFFICIENT_ACCESS", "API_LIMIT_EXCEEDED", "INACTIVE_USER"] {
        vault.fail_path_with("/objects/documents", error_type);
        let through_layer = send(&authed(&layer), get(&url)).await.unwrap();
        let mut direct_request = get(&url);
        direct_request
            .headers_mut()
            .insert(AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
        let direct = http_client().request(direct_request).await.unwrap();

        assert_eq!(through_layer.status(), direct.status());
        let mut layer_headers = through_layer.headers().clone();
        let mut direct_headers = direct.headers().clone();
        for varying in ["x-vaultapi-executionid", "date"] {
            layer_headers.remove(varying);
            direct_headers.remove(varying);
        }
        assert_eq!(layer_headers, direct_headers);
        let layer_body = through_layer
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes();
        let direct_body = direct.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(layer_body, direct_body);
        assert!(String::from_utf8_lossy(&layer_body).contains(error_type));
    }
    assert_eq!(source.fetches(), 1);
    let status = layer.handle().status();
    assert_eq!((status.reacquisitions, status.replays), (0, 0));
    let sent_by_layer = vault
        .requests()
        .iter()
        .filter(|r| bearer_of(r) == token)
        .count();
    assert_eq!(
        sent_by_layer, 6,
        "three through the layer, three direct: nothing replayed"
    );
}

#[tokio::test(start_paused = true)]
async fn a_streaming_body_is_not_replayed_and_the_next_request_gets_the_new_token() {
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    let (old, new) = (vault.issue_token(), vault.issue_token());
    let source = tokens_in_order(vec![old.clone(), new.clone()]);
    let layer = VaultAuthLayer::new(&vault.base_url(), source.clone()).unwrap();
    let client: Client<HttpConnector, Chunks> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let client = tower::Layer::layer(&layer, client);
    let query = || {
        Request::post(vault.api_url("/query"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Chunks(vec![
                Bytes::from_static(b"q=SELECT+id"),
                Bytes::from_static(b"+FROM+documents"),
            ]))
            .unwrap()
    };
    send(&client, query()).await.unwrap();
    vault.revoke(&old);

    let response = send(&client, query()).await.unwrap();
    assert_eq!(
        text(response).await,
        INVALID_SESSION,
        "the caller gets Vault's answer"
    );
    let response = send(&client, query()).await.unwrap();
    assert_eq!(response.headers()["x-vaultapi-status"], "SUCCESS");

    let seen = vault.requests();
    let outcomes: Vec<_> = seen
        .iter()
        .map(|r| (r.outcome, bearer_of(r) == new))
        .collect();
    assert_eq!(
        outcomes,
        [
            (Outcome::Accepted, false),
            (Outcome::InvalidSession, false),
            (Outcome::Accepted, true)
        ]
    );
    assert!(seen
        .iter()
        .all(|r| &r.body[..] == b"q=SELECT+id+FROM+documents"));
    assert_eq!(source.fetches(), 2);
    assert_eq!(layer.handle().status().replays, 0);
}

#[tokio::test(start_paused = true)]
async fn a_body_over_the_replay_cap_is_not_replayed() {
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    let (old, new) = (vault.issue_token(), vault.issue_token());
    let layer = VaultAuthLayer::builder(&vault.base_url(), tokens_in_order(vec![old.clone(), new]))
        .max_replay_body(8)
        .build()
        .unwrap();
    let client = authed(&layer);
    send(&client, get(&vault.api_url("/objects/users/me")))
        .await
        .unwrap();
    vault.revoke(&old);
    let big = post_form(&vault.api_url("/query"), "q=SELECT+id+FROM+documents");
    assert_eq!(
        text(send(&client, big).await.unwrap()).await,
        INVALID_SESSION
    );
    let small = post_form(&vault.api_url("/query"), "q=x");
    let response = send(&client, small).await.unwrap();
    assert_eq!(response.headers()["x-vaultapi-status"], "SUCCESS");
    assert_eq!(vault.request_count(), 3, "nothing was sent twice");
}

#[tokio::test(start_paused = true)]
async fn a_revoked_static_token_fails_once_per_request_without_hammering_the_source() {
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    let token = vault.issue_token();
    let source = ScriptedSource::fixed(&token);
    let layer = VaultAuthLayer::new(&vault.base_url(), source.clone()).unwrap();
    let client = authed(&layer);
    let url = vault.api_url("/objects/users/me");
    send(&client, get(&url)).await.unwrap();
    vault.revoke(&token);

    for _ in 0..20 {
        let response = send(&client, get(&url)).await.unwrap();
        assert_eq!(text(response).await, INVALID_SESSION);
    }
    assert_eq!(
        vault.request_count(),
        21,
        "each request sent once: no replay of the same token"
    );
    assert_eq!(
        source.fetches(),
        2,
        "asked once after the first rejection, then backing off"
    );

    // After the backoff the source is asked again, once, and still not in a loop.
    tokio::time::advance(Duration::from_secs(2)).await;
    for _ in 0..5 {
        let response = send(&client, get(&url)).await.unwrap();
        assert_eq!(text(response).await, INVALID_SESSION);
    }
    assert_eq!(source.fetches(), 3);
    assert_eq!(vault.request_count(), 26);
    assert_eq!(layer.handle().status().replays, 0);
}

/// A source for the expiry tests: answers from `script(n, now)` and records when it was asked.
fn timed_source(
    script: impl Fn(usize) -> Result<AccessToken, SourceError> + Send + 'static,
) -> (ScriptedSource, Arc<Mutex<Vec<Instant>>>) {
    let times = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&times);
    let source = ScriptedSource::new(move |n| {
        seen.lock().unwrap().push(Instant::now());
        script(n)
    });
    (source, times)
}

#[tokio::test(start_paused = true)]
async fn tokens_are_renewed_before_expiry_off_the_request_path() {
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    let lifetime = Duration::from_secs(3600);
    let issued: Vec<String> = (0..3)
        .map(|_| vault.issue_token_expiring_in(lifetime * 3))
        .collect();
    let tokens = issued.clone();
    let (source, times) = timed_source(move |n| {
        Ok(AccessToken::new(tokens[n - 1].clone())
            .unwrap()
            .with_expires_in(lifetime))
    });
    let layer = VaultAuthLayer::new(&vault.base_url(), source.clone()).unwrap();
    let handle = layer.handle();
    let client = authed(&layer);
    let url = vault.api_url("/objects/users/me");
    let start = Instant::now();
    send(&client, get(&url)).await.unwrap();

    let (earliest, latest) = RefreshPolicy::default().window(lifetime);
    let status = handle.status();
    let planned = status.refresh_at.unwrap() - start;
    assert!(
        planned >= earliest && planned <= latest,
        "{planned:?} outside {earliest:?}..{latest:?}"
    );
    assert_eq!(status.expires_at, Some(start + lifetime));

    // Walk the clock minute by minute, sending a request each minute: none ever waits for a
    // fetch, and the second token is in place before the first expires.
    for minute in 1..=60 {
        tokio::time::advance(Duration::from_secs(60)).await;
        eventually("the maintainer has run", || {
            handle.status().refresh_at.is_some()
        })
        .await;
        let before = vault.request_count();
        send(&client, get(&url)).await.unwrap();
        assert_eq!(
            vault.requests()[before].outcome,
            Outcome::Accepted,
            "minute {minute}"
        );
    }
    let times = times.lock().unwrap().clone();
    assert_eq!(times.len(), 2, "renewed exactly once in the first hour");
    let renewed = times[1] - start;
    assert!(
        renewed >= planned && renewed < planned + Duration::from_secs(60),
        "{renewed:?}"
    );
    assert!(renewed < lifetime);
    assert_eq!(handle.status().generation, Some(2));
    let used: Vec<_> = vault.requests().iter().map(bearer_of).collect();
    let switch = used.iter().position(|t| *t == issued[1]).unwrap();
    assert!(used[..switch].iter().all(|t| *t == issued[0]));
    assert!(used[switch..].iter().all(|t| *t == issued[1]));
}

#[tokio::test(start_paused = true)]
async fn failed_renewals_keep_the_old_token_until_it_expires_then_requests_wait_for_the_new_one() {
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    let lifetime = Duration::from_secs(100);
    let old = vault.issue_token_expiring_in(lifetime);
    let new = vault.issue_token();
    let (old_value, new_value) = (old.clone(), new.clone());
    let recovered = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let recovered_in_source = Arc::clone(&recovered);
    let (source, times) = timed_source(move |n| match n {
        1 => Ok(AccessToken::new(old_value.clone())
            .unwrap()
            .with_expires_in(lifetime)),
        _ if recovered_in_source.load(std::sync::atomic::Ordering::SeqCst) => {
            Ok(AccessToken::new(new_value.clone()).unwrap())
        }
        _ => Err(SourceError::retryable("the issuer is down")),
    });
    let layer = VaultAuthLayer::new(&vault.base_url(), source.clone()).unwrap();
    let handle = layer.handle();
    let client = authed(&layer);
    let url = vault.api_url("/objects/users/me");
    let start = Instant::now();
    send(&client, get(&url)).await.unwrap();

    // Until expiry: renewals fail, requests keep using the old token and never fail.
    while Instant::now() + Duration::from_secs(1) < start + lifetime {
        tokio::time::advance(Duration::from_secs(1)).await;
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        let response = send(&client, get(&url)).await.unwrap();
        assert_eq!(response.headers()["x-vaultapi-status"], "SUCCESS");
    }
    assert!(vault
        .requests()
        .iter()
        .all(|r| bearer_of(r) == old && r.outcome == Outcome::Accepted));
    let attempts = times.lock().unwrap().clone();
    assert!(attempts.len() >= 4, "renewal retried: {}", attempts.len());
    let gaps: Vec<_> = attempts.windows(2).skip(1).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.windows(2).all(|g| g[1] >= g[0]),
        "backoff grows: {gaps:?}"
    );
    let status = handle.status();
    assert!(status.consecutive_failures >= 3);
    assert!(status
        .last_error
        .as_ref()
        .unwrap()
        .to_string()
        .contains("the issuer is down"));

    // Past expiry the old token is gone; a request waits for the next attempt, which succeeds.
    tokio::time::advance(Duration::from_secs(1)).await;
    eventually("the expired token is dropped", || {
        handle.status().generation.is_none()
    })
    .await;
    recovered.store(true, std::sync::atomic::Ordering::SeqCst);
    let waiting = tokio::spawn({
        let (client, url) = (client.clone(), url.clone());
        async move { send(&client, get(&url)).await.map(|r| r.status()) }
    });
    let sent_before = vault.request_count();
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    if !waiting.is_finished() {
        assert_eq!(
            vault.request_count(),
            sent_before,
            "nothing is sent without a valid token"
        );
        tokio::time::advance(
            handle
                .status()
                .retry_at
                .map_or(Duration::ZERO, |at| at - Instant::now()),
        )
        .await;
    }
    assert_eq!(waiting.await.unwrap().unwrap(), 200);
    let last = vault.requests().last().cloned().unwrap();
    assert_eq!(
        (bearer_of(&last), last.outcome),
        (new.clone(), Outcome::Accepted)
    );
    assert!(vault
        .requests()
        .iter()
        .all(|r| r.outcome == Outcome::Accepted));
}

/// A source whose first fetch never answers.
struct HangsOnce(std::sync::atomic::AtomicUsize, String);

impl TokenSource for HangsOnce {
    fn fetch(&self) -> BoxFuture<'_, Result<AccessToken, SourceError>> {
        let n = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Box::pin(async move {
            if n == 0 {
                std::future::pending::<()>().await;
            }
            Ok(AccessToken::new(self.1.clone())?)
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_hanging_source_times_out_and_the_next_fetch_succeeds() {
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    let token = vault.issue_token();
    let layer = VaultAuthLayer::builder(&vault.base_url(), HangsOnce(Default::default(), token))
        .fetch_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let client = authed(&layer);
    let url = vault.api_url("/objects/users/me");
    let tasks = spawn_many(10, |_| {
        let (client, url) = (client.clone(), url.clone());
        async move { send(&client, get(&url)).await.map(|r| r.status()) }
    });
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert!(tasks.iter().all(|t| !t.is_finished()));
    tokio::time::advance(Duration::from_secs(5)).await;
    for task in tasks {
        let err = task.await.unwrap().unwrap_err();
        let err = err.downcast_ref::<TokenUnavailable>().expect("typed error");
        assert_eq!(
            err.kind(),
            UnavailableKind::TimedOut(Duration::from_secs(5))
        );
    }
    assert_eq!(vault.request_count(), 0);
    // The next request waits out the 1 s backoff and gets a token.
    let next = tokio::spawn({
        let (client, url) = (client.clone(), url.clone());
        async move { send(&client, get(&url)).await.map(|r| r.status()) }
    });
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(next.await.unwrap().unwrap(), 200);
    assert_eq!(layer.handle().status().fetches, 2);
}

#[tokio::test(start_paused = true)]
async fn dropping_requests_before_during_and_after_a_shared_fetch_never_wedges_the_cache() {
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    let tokens: Vec<String> = (0..4).map(|_| vault.issue_token()).collect();
    let source = tokens_in_order(tokens.clone());
    source.close_gate();
    let layer = VaultAuthLayer::new(&vault.base_url(), source.clone()).unwrap();
    let handle = layer.handle();
    let client = authed(&layer);
    let url = vault.api_url("/objects/users/me");
    let start_requests = |n: usize| {
        spawn_many(n, |_| {
            let (client, url) = (client.clone(), url.clone());
            async move { send(&client, get(&url)).await.map(|r| r.status()) }
        })
    };

    // 1. Dropped while waiting for the first fetch: the fetch goes on and serves the rest.
    let first = start_requests(20);
    eventually("the first fetch started", || source.fetches() == 1).await;
    for task in &first[..10] {
        task.abort();
    }
    source.open(1);
    for task in first.into_iter().skip(10) {
        assert_eq!(task.await.unwrap().unwrap(), 200);
    }

    // 2. Dropped while waiting for a re-acquisition, before its fetch answers.
    vault.hold_requests(true);
    let second = start_requests(20);
    vault.wait_for_held(20).await;
    vault.revoke(&tokens[0]);
    vault.hold_requests(false);
    eventually("the re-acquisition started", || source.fetches() == 2).await;
    for task in &second {
        task.abort();
    }
    for task in second {
        assert!(task.await.unwrap_err().is_cancelled());
    }
    source.open(1);
    eventually("the new token is in place", || {
        handle.status().generation == Some(2)
    })
    .await;
    assert_eq!(send(&client, get(&url)).await.unwrap().status(), 200);

    // 3. Dropped after the fetch answered, before the replay was sent.
    vault.hold_requests(true);
    let third = start_requests(20);
    vault.wait_for_held(20).await;
    vault.revoke(&tokens[1]);
    vault.hold_requests(false);
    eventually("the re-acquisition started", || source.fetches() == 3).await;
    source.open(1);
    eventually("the new token is in place", || {
        handle.status().generation == Some(3)
    })
    .await;
    for task in &third {
        task.abort();
    }
    for task in third {
        let _ = task.await;
    }

    // 4. Dropped while the request is at the server.
    vault.hold_requests(true);
    let fourth = start_requests(5);
    vault
        .wait_for_held(
            vault
                .requests()
                .iter()
                .filter(|r| r.outcome == Outcome::Pending)
                .count()
                .max(5),
        )
        .await;
    for task in &fourth {
        task.abort();
    }
    vault.hold_requests(false);

    // Everything still works, with one fetch per event and nothing stuck.
    source.open(10);
    for _ in 0..5 {
        let response = send(&client, get(&url)).await.unwrap();
        assert_eq!(response.headers()["x-vaultapi-status"], "SUCCESS");
    }
    assert_eq!(source.fetches(), 3);
    let status = handle.status();
    assert_eq!(status.generation, Some(3));
    assert_eq!(status.consecutive_failures, 0);
}

#[tokio::test(start_paused = true)]
async fn a_rejection_after_a_newer_token_arrived_keeps_the_newer_token() {
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    let (old, newer) = (vault.issue_token(), vault.issue_token());
    let source = tokens_in_order(vec![old.clone(), newer.clone()]);
    let layer = VaultAuthLayer::new(&vault.base_url(), source.clone()).unwrap();
    let handle = layer.handle();
    let client = authed(&layer);
    let url = vault.api_url("/objects/users/me");
    send(&client, get(&url)).await.unwrap();

    // A request is held at the server with the old token while the token is rotated.
    vault.hold_requests(true);
    let held = tokio::spawn({
        let (client, url) = (client.clone(), url.clone());
        async move { text(send(&client, get(&url)).await.unwrap()).await }
    });
    vault.wait_for_held(1).await;
    handle.force_refresh().await.unwrap();
    assert_eq!(handle.status().generation, Some(2));
    vault.revoke(&old);
    vault.hold_requests(false);

    // Its rejection does not drop the newer token: it is replayed with it, with no new fetch.
    assert!(held.await.unwrap().contains("SUCCESS"));
    assert_eq!(source.fetches(), 2);
    let status = handle.status();
    assert_eq!(
        (status.generation, status.reacquisitions, status.replays),
        (Some(2), 0, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn rotating_token_issues_through_vaults_own_api() {
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    let bootstrap = vault.issue_token();
    let issue_url = vault.api_url("/objects/users/me/api_access_token__sys");
    let issuer_client = http_client();
    let source = RotatingToken::new(move || {
        let (client, url, bootstrap) =
            (issuer_client.clone(), issue_url.clone(), bootstrap.clone());
        async move {
            let request = Request::post(url)
                .header(AUTHORIZATION, format!("Bearer {bootstrap}"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Full::new(Bytes::from_static(b"name__v=integration")))
                .unwrap();
            let response = client
                .request(request)
                .await
                .map_err(|e| SourceError::retryable(e.to_string()))?;
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| SourceError::retryable(e.to_string()))?;
            let json: serde_json::Value = serde_json::from_slice(&body.to_bytes())
                .map_err(|e| SourceError::retryable(e.to_string()))?;
            let value = json["data"]["token__sys"]
                .as_str()
                .ok_or_else(|| SourceError::retryable("no token"))?;
            Ok(AccessToken::new(value.to_owned())?.with_expires_in(Duration::from_secs(600)))
        }
    });
    let layer = VaultAuthLayer::new(&vault.base_url(), source).unwrap();
    let client = authed(&layer);
    let response = send(&client, get(&vault.api_url("/objects/users/me")))
        .await
        .unwrap();
    assert_eq!(response.headers()["x-vaultapi-status"], "SUCCESS");
    assert_eq!(vault.active_token_count(), 2);
    tokio::time::advance(Duration::from_secs(600)).await;
    eventually("renewed", || layer.handle().status().generation == Some(2)).await;
    assert_eq!(vault.active_token_count(), 3);
}

#[test]
fn a_static_source_wrapped_in_arc_is_a_source() {
    let shared: Arc<dyn TokenSource> = Arc::new(StaticToken::new("veeva-vault-abc").unwrap());
    assert!(VaultAuthLayer::new("https://myvault.veevavault.com", shared).is_ok());
}
