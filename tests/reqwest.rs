//! The reqwest-middleware front door, with a real reqwest client against the Vault stand-in.
#![cfg(feature = "reqwest")]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::header::AUTHORIZATION;
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use veeva_vault_auth::testing::{Outcome, VaultStandIn};
use veeva_vault_auth::{NotForVault, TokenUnavailable, VaultAuthLayer};

fn reqwest_client(layer: &VaultAuthLayer) -> ClientWithMiddleware {
    ClientBuilder::new(reqwest::Client::new())
        .with(layer.middleware())
        .build()
}

fn bearer(vault: &VaultStandIn, index: usize) -> String {
    vault.requests()[index].headers[AUTHORIZATION]
        .to_str()
        .unwrap()
        .to_owned()
}

/// A Vault with two tokens, a layer (replay cap `cap`) whose source hands them out in turn, and
/// a reqwest client that made one request with the first, which Vault has since revoked.
struct Revoked {
    vault: VaultStandIn,
    layer: VaultAuthLayer,
    client: ClientWithMiddleware,
    /// The second token, the one a replay carries.
    new: String,
}

async fn revoked_after_one_request(cap: u64) -> Revoked {
    let vault = VaultStandIn::start().await.unwrap();
    let (old, new) = (vault.issue_token(), vault.issue_token());
    let layer = VaultAuthLayer::builder(
        &vault.base_url(),
        tokens_in_order(vec![old.clone(), new.clone()]),
    )
    .max_replay_body(cap)
    .build()
    .unwrap();
    let client = reqwest_client(&layer);
    client
        .get(vault.api_url("/objects/users/me"))
        .send()
        .await
        .unwrap();
    vault.revoke(&old);
    Revoked {
        vault,
        layer,
        client,
        new,
    }
}

#[tokio::test]
async fn attaches_the_token_and_keeps_it_at_home() {
    let vault = VaultStandIn::start().await.unwrap();
    let other = VaultStandIn::start().await.unwrap();
    let token = vault.issue_token();
    let layer = VaultAuthLayer::builder(&vault.base_url(), ScriptedSource::fixed(&token))
        .client_id("acme-tests-reqwest")
        .build()
        .unwrap();
    let client = reqwest_client(&layer);

    let response = client
        .get(vault.api_url("/objects/users/me"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-vaultapi-status"], "SUCCESS");
    assert_eq!(bearer(&vault, 0), format!("Bearer {token}"));
    assert_eq!(
        vault.requests()[0].headers["x-vaultapi-clientid"],
        "acme-tests-reqwest"
    );

    let err = client
        .get(other.api_url("/objects/users/me"))
        .send()
        .await
        .unwrap_err();
    let reqwest_middleware::Error::Middleware(err) = err else {
        panic!("expected the middleware's own error, got {err}");
    };
    assert!(err.downcast_ref::<NotForVault>().is_some(), "{err}");
    assert!(!format!("{err:?}").contains(token.trim_start_matches("veeva-vault-")));
    assert_eq!(other.request_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_rejected_request_is_replayed_once_with_the_new_token() {
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    let (old, new) = (vault.issue_token(), vault.issue_token());
    let source = tokens_in_order(vec![old.clone(), new.clone()]);
    let layer = VaultAuthLayer::new(&vault.base_url(), source.clone()).unwrap();
    let client = reqwest_client(&layer);
    client
        .get(vault.api_url("/objects/users/me"))
        .send()
        .await
        .unwrap();
    vault.revoke(&old);

    let response = client
        .post(vault.api_url("/query"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("q=SELECT+id+FROM+documents")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-vaultapi-status"], "SUCCESS");
    let seen = vault.requests();
    assert_eq!(seen.len(), 3);
    assert_eq!(
        (seen[1].outcome, seen[2].outcome),
        (Outcome::InvalidSession, Outcome::Accepted)
    );
    assert_eq!(bearer(&vault, 2), format!("Bearer {new}"));
    assert_eq!(seen[2].body, seen[1].body);
    assert_eq!(source.fetches(), 2);
    assert_eq!(layer.handle().status().replays, 1);
}

#[tokio::test(start_paused = true)]
async fn concurrent_rejections_share_one_fetch() {
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    let (old, new) = (vault.issue_token(), vault.issue_token());
    let source = tokens_in_order(vec![old.clone(), new]);
    let layer = VaultAuthLayer::new(&vault.base_url(), source.clone()).unwrap();
    let client = reqwest_client(&layer);
    let url = vault.api_url("/objects/users/me");
    client.get(&url).send().await.unwrap();

    vault.hold_requests(true);
    let tasks = spawn_many(200, |_| {
        let (client, url) = (client.clone(), url.clone());
        async move { client.get(&url).send().await.unwrap().headers()["x-vaultapi-status"].clone() }
    });
    vault.wait_for_held(200).await;
    vault.revoke(&old);
    vault.hold_requests(false);
    for task in tasks {
        assert_eq!(task.await.unwrap(), "SUCCESS");
    }
    assert_eq!(source.fetches(), 2);
    assert_eq!(layer.handle().status().replays, 200);
}

#[tokio::test(start_paused = true)]
async fn a_streaming_body_within_the_cap_is_recorded_and_replayed_whole() {
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    let (old, new) = (vault.issue_token(), vault.issue_token());
    let source = tokens_in_order(vec![old.clone(), new.clone()]);
    let layer = VaultAuthLayer::new(&vault.base_url(), source.clone()).unwrap();
    let client = reqwest_client(&layer);
    client
        .get(vault.api_url("/objects/users/me"))
        .send()
        .await
        .unwrap();
    vault.revoke(&old);

    let streaming = reqwest::Body::wrap(Chunks(vec![
        Bytes::from_static(b"q=SELECT+id"),
        Bytes::from_static(b"+FROM+documents"),
    ]));
    let response = client
        .post(vault.api_url("/query"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(streaming)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-vaultapi-status"], "SUCCESS");
    let requests = vault.requests();
    assert_eq!(requests.len(), 3);
    for sent in &requests[1..] {
        assert_eq!(&sent.body[..], b"q=SELECT+id+FROM+documents");
    }
    assert_eq!(bearer(&vault, 2), format!("Bearer {new}"));
    assert_eq!(layer.handle().status().replays, 1);
    assert_eq!(source.fetches(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_streaming_body_past_the_cap_is_not_replayed_and_the_next_request_gets_the_new_token() {
    let _clock = hold_clock();
    let Revoked {
        vault,
        layer,
        client,
        new,
    } = revoked_after_one_request(16).await;

    let streaming = reqwest::Body::wrap(Chunks(vec![
        Bytes::from_static(b"q=SELECT+id"),
        Bytes::from_static(b"+FROM+documents"),
    ]));
    let response = client
        .post(vault.api_url("/query"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(streaming)
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), INVALID_SESSION);
    let response = client
        .get(vault.api_url("/objects/users/me"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-vaultapi-status"], "SUCCESS");
    assert_eq!(bearer(&vault, 2), format!("Bearer {new}"));
    assert_eq!(vault.request_count(), 3);
    assert_eq!(layer.handle().status().replays, 0);
}

#[tokio::test]
async fn other_vault_errors_reach_the_caller_unchanged_with_their_url() {
    let vault = VaultStandIn::start().await.unwrap();
    let token = vault.issue_token();
    let source = ScriptedSource::fixed(&token);
    let layer = VaultAuthLayer::new(&vault.base_url(), source.clone()).unwrap();
    let client = reqwest_client(&layer);
    vault.fail_path_with("/objects/documents", "INSUFFICIENT_ACCESS");
    let url = vault.api_url("/objects/documents");

    let through = client.get(&url).send().await.unwrap();
    let direct = reqwest::Client::new()
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(through.url().as_str(), url);
    assert_eq!(through.status(), direct.status());
    assert_eq!(
        through.headers()["content-type"],
        direct.headers()["content-type"]
    );
    assert_eq!(through.text().await.unwrap(), direct.text().await.unwrap());
    assert_eq!(source.fetches(), 1);
    assert_eq!(vault.request_count(), 2);
}

#[tokio::test]
async fn a_tower_client_and_a_reqwest_client_share_one_token() {
    let vault = VaultStandIn::start().await.unwrap();
    let token = vault.issue_token();
    let source = ScriptedSource::fixed(&token);
    let layer = VaultAuthLayer::new(&vault.base_url(), source.clone()).unwrap();
    let url = vault.api_url("/objects/users/me");
    reqwest_client(&layer).get(&url).send().await.unwrap();
    send(&authed(&layer), get(&url)).await.unwrap();
    assert_eq!(source.fetches(), 1);
    assert_eq!(bearer(&vault, 0), bearer(&vault, 1));
}

#[tokio::test(start_paused = true)]
async fn an_unavailable_token_is_a_typed_error() {
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    let source = ScriptedSource::new(|_| {
        Err(veeva_vault_auth::source::SourceError::permanent(
            "no issuer",
        ))
    });
    let layer = VaultAuthLayer::builder(&vault.base_url(), source)
        .fetch_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let err = reqwest_client(&layer)
        .get(vault.api_url("/objects/users/me"))
        .send()
        .await
        .unwrap_err();
    let reqwest_middleware::Error::Middleware(err) = err else {
        panic!("expected the middleware's own error");
    };
    let err = err.downcast_ref::<TokenUnavailable>().expect("typed");
    assert!(err.to_string().contains("no issuer"));
    assert_eq!(vault.request_count(), 0);
}

/// The revocation wave through the reqwest door with streaming bodies within the cap: one fetch
/// for the wave, every request replayed from its recording, byte for byte.
#[tokio::test(start_paused = true)]
async fn a_revocation_under_200_streaming_requests_refreshes_once_and_replays_each_whole() {
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    let (old, new) = (vault.issue_token(), vault.issue_token());
    let source = tokens_in_order(vec![old.clone(), new.clone()]);
    let layer = VaultAuthLayer::new(&vault.base_url(), source.clone()).unwrap();
    let client = reqwest_client(&layer);
    client
        .get(vault.api_url("/objects/users/me"))
        .send()
        .await
        .unwrap();
    vault.clear_requests();
    let url = vault.api_url("/query");
    vault.hold_requests(true);
    let tasks = spawn_many(200, |i| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let body = reqwest::Body::wrap(Chunks(vec![
                Bytes::from_static(b"q=SELECT+id+FROM+documents"),
                Bytes::from(format!("+WHERE+n={i}")),
            ]));
            let response = client
                .post(&url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .unwrap();
            response.headers()["x-vaultapi-status"].clone()
        }
    });
    vault.wait_for_held(200).await;
    vault.revoke(&old);
    vault.hold_requests(false);
    for task in tasks {
        assert_eq!(task.await.unwrap(), "SUCCESS");
    }
    assert_eq!(source.fetches(), 2, "one fetch at start, one for the wave");
    let seen = vault.requests();
    assert_eq!(seen.len(), 400);
    let (first, replays) = seen.split_at(200);
    let mut sent: Vec<_> = first.iter().map(|r| r.body.clone()).collect();
    let mut again: Vec<_> = replays.iter().map(|r| r.body.clone()).collect();
    sent.sort();
    again.sort();
    assert_eq!(sent, again, "each body replayed as it was sent");
    sent.dedup();
    assert_eq!(sent.len(), 200);
    assert!(replays.iter().all(|r| r.outcome == Outcome::Accepted));
    assert_eq!(layer.handle().status().replays, 200);
}

/// The replay cap is inclusive: a body of exactly `max_replay_body` bytes, in memory or
/// streaming with a known length, is replayed after a rejection; one a byte longer is not.
#[tokio::test(start_paused = true)]
async fn a_body_of_exactly_the_replay_cap_is_replayed_and_a_byte_more_is_not() {
    for (streaming, len) in [(false, 16), (false, 17), (true, 16), (true, 17)] {
        let _clock = hold_clock();
        let Revoked {
            vault,
            layer,
            client,
            ..
        } = revoked_after_one_request(16).await;
        let text = format!("q={}", "x".repeat(len - 2));
        let body = if streaming {
            reqwest::Body::wrap(http_body_util::Full::new(Bytes::from(text)))
        } else {
            reqwest::Body::from(text)
        };
        client
            .post(vault.api_url("/query"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        let replays = layer.handle().status().replays;
        assert_eq!(
            replays,
            u64::from(len == 16),
            "streaming {streaming}, {len} bytes"
        );
    }
}

#[test]
fn the_middleware_shows_its_rule_but_not_the_token() {
    let token = "veeva-vault-middlewareDebugToken";
    let layer = VaultAuthLayer::new(
        "https://myvault.veevavault.com",
        veeva_vault_auth::source::StaticToken::new(token).unwrap(),
    )
    .unwrap();
    let shown = format!("{:?}", layer.middleware());
    assert_eq!(shown, "VaultAuthMiddleware { rule: VaultRule, .. }");
}
