//! With the `tracing` feature, every path logs what happened, and no log line ever holds a token.
#![cfg(feature = "tracing")]

mod common;

use std::time::Duration;

use common::*;
use veeva_vault_auth::source::SourceError;
use veeva_vault_auth::testing::VaultStandIn;
use veeva_vault_auth::{AccessToken, VaultAuthLayer};

#[tokio::test(start_paused = true)]
async fn every_path_is_logged_and_no_token_ever_is() {
    let (captured, _default) = Captured::start();
    let _clock = hold_clock();

    let vault = VaultStandIn::start().await.unwrap();
    let lifetime = Duration::from_secs(600);
    let tokens: Vec<String> = (0..4).map(|_| vault.issue_token()).collect();
    let issued = tokens.clone();
    // Fetch 1 and 2 succeed; fetch 3 fails; fetch 4 and later give the last token.
    let source = ScriptedSource::new(move |n| match n {
        3 => Err(SourceError::retryable("the issuer is down")),
        _ => Ok(AccessToken::new(issued[(n - 1).min(3)].clone())
            .unwrap()
            .with_expires_in(lifetime)),
    });
    let layer = VaultAuthLayer::builder(&vault.base_url(), source.clone())
        .client_id("acme-test-tracing")
        .build()
        .unwrap();
    let handle = layer.handle();
    let client = authed(&layer);
    let url = vault.api_url("/objects/users/me");

    // First fetch, then a renewal ahead of expiry.
    send(&client, get(&url)).await.unwrap();
    tokio::time::advance(lifetime - Duration::from_secs(30)).await;
    eventually("renewed", || handle.status().generation == Some(2)).await;
    // A revocation: re-acquisition fails once, then a forced refresh and a replay.
    vault.revoke(&tokens[1]);
    let response = send(&client, get(&url)).await.unwrap();
    assert!(text(response).await.contains("INVALID_SESSION_ID"));
    tokio::time::advance(Duration::from_secs(1)).await;
    let response = send(&client, get(&url)).await.unwrap();
    assert_eq!(response.headers()["x-vaultapi-status"], "SUCCESS");
    // A request for another host.
    assert!(send(&client, get("http://127.0.0.1:9/elsewhere"))
        .await
        .is_err());
    handle.invalidate();

    let log = captured.text();
    for expected in [
        "fetching a vault access token",
        "installed a new vault access token",
        "Renewal",
        "vault rejected the access token; fetching a new one",
        "could not fetch a vault access token",
        "the issuer is down",
        "vault_auth.fetch",
        "refused a request for another host",
        "access token invalidated",
    ] {
        assert!(log.contains(expected), "missing {expected:?} in:\n{log}");
    }
    for token in &tokens {
        let secret = token.trim_start_matches("veeva-vault-");
        assert!(!log.contains(secret), "a token leaked into the log:\n{log}");
    }
    assert!(!log.contains("Bearer"), "{log}");
}

#[tokio::test(start_paused = true)]
async fn replays_are_logged() {
    let (captured, _default) = Captured::start();
    let _clock = hold_clock();

    let vault = VaultStandIn::start().await.unwrap();
    let tokens: Vec<String> = (0..2).map(|_| vault.issue_token()).collect();
    let issued = tokens.clone();
    let source = ScriptedSource::new(move |n| Ok(AccessToken::new(issued[n - 1].clone()).unwrap()));
    let layer = VaultAuthLayer::new(&vault.base_url(), source).unwrap();
    let client = authed(&layer);
    let url = vault.api_url("/objects/users/me");
    send(&client, get(&url)).await.unwrap();
    vault.revoke(&tokens[0]);
    let response = send(&client, get(&url)).await.unwrap();
    assert_eq!(response.headers()["x-vaultapi-status"], "SUCCESS");

    let log = captured.text();
    assert!(
        log.contains("replaying the request with the new token"),
        "{log}"
    );
    for token in &tokens {
        assert!(
            !log.contains(token.trim_start_matches("veeva-vault-")),
            "{log}"
        );
    }
}

/// "vault accepted the access token" is logged once per token: at Vault's first acceptance.
#[tokio::test(start_paused = true)]
async fn the_first_acceptance_of_a_token_is_logged_once() {
    let (captured, _default) = Captured::start();
    let vault = VaultStandIn::start().await.unwrap();
    let token = vault.issue_token();
    let layer = VaultAuthLayer::new(&vault.base_url(), ScriptedSource::fixed(&token)).unwrap();
    let client = authed(&layer);
    for _ in 0..3 {
        let response = send(&client, get(&vault.api_url("/objects/users/me")))
            .await
            .unwrap();
        assert!(text(response).await.contains("SUCCESS"));
    }
    let logged = captured.text();
    assert_eq!(
        logged.matches("vault accepted the access token").count(),
        1,
        "{logged}"
    );
}

/// Ending the issuer's session is logged as done only when Vault confirms it; a refusal is
/// logged as such.
#[cfg(feature = "issuer")]
#[tokio::test(start_paused = true)]
async fn ending_the_issuers_session_is_logged_as_vault_answered() {
    use veeva_vault_auth::source::{TokenSource, VaultIssuer};
    for refused in [false, true] {
        let (captured, _default) = Captured::start();
        let vault = VaultStandIn::start().await.unwrap();
        vault.add_user("svc@example.com", "pass word");
        let issuer = VaultIssuer::builder(&vault.base_url())
            .password("svc@example.com", secrecy::SecretString::from("pass word"))
            .build()
            .unwrap();
        issuer.fetch().await.unwrap();
        if refused {
            vault.fail_path_with("/session", "INSUFFICIENT_ACCESS");
        }
        let _ = issuer.shutdown().await;
        let logged = captured.text();
        assert_eq!(
            logged.contains("ended the vault session"),
            !refused,
            "{logged}"
        );
        assert_eq!(
            logged.contains("vault did not end the session"),
            refused,
            "{logged}"
        );
    }
}

/// A renewal that finds the same token with a later expiry keeps what the layer learnt of it
/// (Vault took it: not logged again); a new token is news of its own (logged at its first
/// acceptance).
#[tokio::test(start_paused = true)]
async fn an_acceptance_is_logged_once_per_token_across_renewals() {
    let (captured, _default) = Captured::start();
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    let (first, second) = (vault.issue_token(), vault.issue_token());
    let start = tokio::time::Instant::now();
    let minutes = move |n: u64| Some(start + Duration::from_secs(60 * n));
    let script = [(first.clone(), 10), (first, 20), (second, 60)];
    let source = ScriptedSource::new(move |n| {
        let (value, expires) = &script[(n - 1).min(2)];
        Ok(AccessToken::new(value.clone())
            .unwrap()
            .with_expiry(minutes(*expires)))
    });
    let layer = VaultAuthLayer::new(&vault.base_url(), source.clone()).unwrap();
    let client = authed(&layer);
    let call = || async {
        let response = send(&client, get(&vault.api_url("/objects/users/me")))
            .await
            .unwrap();
        assert!(text(response).await.contains("SUCCESS"));
    };
    call().await;
    // Past the first renewal (before 10 minutes), then past the second (before 20).
    for (at, fetches) in [(590, 2), (1190, 3)] {
        tokio::time::advance(start + Duration::from_secs(at) - tokio::time::Instant::now()).await;
        settle().await;
        assert_eq!(source.fetches(), fetches);
        call().await;
    }
    let logged = captured.text();
    assert_eq!(
        logged.matches("vault accepted the access token").count(),
        2,
        "{logged}"
    );
}

/// A revocation round that Vault confirmed is logged as such; a round it refused is not.
#[cfg(feature = "issuer")]
#[tokio::test(start_paused = true)]
async fn a_confirmed_revocation_round_is_logged_and_a_refused_one_is_not() {
    use veeva_vault_auth::source::{StaticToken, TokenSource, VaultIssuer};
    let (captured, _default) = Captured::start();
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    let issuer = VaultIssuer::builder(&vault.base_url())
        .bootstrap_token(StaticToken::new(vault.issue_token()).unwrap())
        .grace_period(Duration::from_secs(600))
        .build()
        .unwrap();
    let logged = || captured.text().matches("revoked superseded").count();

    // The first token is superseded, and revoked after its grace period.
    issuer.fetch().await.unwrap();
    issuer.fetch().await.unwrap();
    tokio::time::advance(Duration::from_secs(601)).await;
    eventually("the first round", || issuer.stats().revoked == 1).await;
    assert_eq!(logged(), 1, "{}", captured.text());

    // The second is superseded too, but Vault refuses its revocation.
    vault.fail_path_with("/vobjects/api_access_token__sys", "INSUFFICIENT_ACCESS");
    issuer.fetch().await.unwrap();
    tokio::time::advance(Duration::from_secs(601)).await;
    eventually("the refused round", || {
        issuer.stats().revocation_failures == 1
    })
    .await;
    assert_eq!(logged(), 1, "{}", captured.text());
    vault.clear_failures();
    let _ = issuer.shutdown().await;
}
