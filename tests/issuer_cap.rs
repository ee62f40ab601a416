//! `VaultIssuer` and the 25-token cap, and credentials that go bad, over real HTTP against the
//! stand-in on paused time.
#![cfg(feature = "issuer")]

mod common;
mod issuer_common;

use std::time::Duration;

use common::*;
use issuer_common::*;
use veeva_vault_auth::source::{
    FileToken, IssuerError, IssuerErrorKind, StaticToken, TokenSource, VaultIssuer,
};
use veeva_vault_auth::testing::VaultStandIn;
use veeva_vault_auth::{Backoff, TokenUnavailable, VaultAuthLayer};

const PREFIX: &str = "cap-test";
const USER: &str = "integration@example.com";

fn builder(vault: &VaultStandIn) -> veeva_vault_auth::source::VaultIssuerBuilder {
    VaultIssuer::builder(&vault.base_url())
        .name_prefix(PREFIX)
        .lifetime(Duration::from_secs(3600))
        .wall_clock(wall_clock(0))
}

fn issuer_error(err: &veeva_vault_auth::source::SourceError) -> IssuerError {
    IssuerError::from_source(err)
        .expect("the issuer's own error")
        .clone()
}

/// 24 tokens named like the issuer's (from earlier runs), expiring one hour apart from two
/// hours on: with the bootstrap, the user's cap is full. The oldest first.
fn fill_cap_with_stale(vault: &VaultStandIn) -> Vec<String> {
    (0..24)
        .map(|i| {
            let name = format!("{PREFIX}:old-host:7:2026-01-01T00:{i:02}:00Z");
            vault
                .issue_token_for(USER, Some(&name), Some(Duration::from_secs(3600 * (i + 2))))
                .unwrap()
        })
        .collect()
}

/// 24 stale tokens of the issuer's own (from earlier runs) and the bootstrap fill the cap: each
/// issue revokes the oldest of its own and succeeds; nobody else's token is touched.
#[tokio::test(start_paused = true)]
async fn a_cap_full_of_its_own_stale_tokens_is_cleared_oldest_first() {
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    let bootstrap = vault.issue_token();
    let stale = fill_cap_with_stale(&vault);
    assert_eq!(vault.active_token_count(), 25);
    let issuer = builder(&vault)
        .bootstrap_token(StaticToken::new(&bootstrap).unwrap())
        .build()
        .unwrap();

    let first = issuer.fetch().await.expect("room was made");
    assert!(vault.is_active(first.expose_secret()));
    assert!(!vault.is_active(&stale[0]), "the oldest went first");
    assert!(stale[1..].iter().all(|t| vault.is_active(t)));
    let second = issuer.fetch().await.expect("room was made again");
    assert!(vault.is_active(second.expose_secret()));
    assert!(
        vault.is_active(first.expose_secret()),
        "the current one is never revoked to make room"
    );
    assert!(!vault.is_active(&stale[1]), "then the next oldest");
    assert!(stale[2..].iter().all(|t| vault.is_active(t)));
    assert!(vault.is_active(&bootstrap));
    assert_eq!(vault.active_token_count(), 25);
    let stats = issuer.stats();
    assert_eq!((stats.issued, stats.cap_revocations), (2, 2));
    issuer.shutdown().await.unwrap();
}

/// The bootstrap and 24 tokens of other programs fill the cap: a typed error saying so, in the
/// layer's status, one attempt per backoff, and no token touched.
#[tokio::test(start_paused = true)]
async fn a_cap_full_of_other_tokens_is_a_typed_error_retried_at_the_backoff() {
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    let bootstrap = vault.issue_token();
    let others: Vec<String> = (0..24)
        .map(|i| {
            vault
                .issue_token_for(USER, Some(&format!("other-app {i}")), None)
                .unwrap()
        })
        .collect();
    let issuer = builder(&vault)
        .bootstrap_token(StaticToken::new(&bootstrap).unwrap())
        .build()
        .unwrap();
    let backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(8));
    let layer = VaultAuthLayer::builder(&vault.base_url(), issuer.clone())
        .backoff(backoff)
        .build()
        .unwrap();
    let handle = layer.handle();
    let client = authed(&layer);

    let err = send(&client, get(&vault.api_url("/objects/users/me")))
        .await
        .unwrap_err();
    let err = err.downcast_ref::<TokenUnavailable>().expect("no token");
    let issuer_err = issuer_error(err.source_error().unwrap());
    assert_eq!(issuer_err.kind(), IssuerErrorKind::CapFullOfOthers);
    assert!(
        issuer_err.to_string().contains("25 active tokens"),
        "{issuer_err}"
    );
    assert!(issuer_err.is_retryable());
    let status = handle.status();
    let in_status = status.last_error.as_ref().unwrap().source_error().unwrap();
    assert_eq!(
        issuer_error(in_status).kind(),
        IssuerErrorKind::CapFullOfOthers
    );

    // Attempts follow the backoff: at 0, 1, 3, 7, 15, 23 and 31 seconds.
    let mut expected_at = vec![0u64];
    let mut failures = 1;
    while *expected_at.last().unwrap() + backoff.delay(failures, true).as_secs() <= 35 {
        let next = *expected_at.last().unwrap() + backoff.delay(failures, true).as_secs();
        expected_at.push(next);
        failures += 1;
    }
    for second in 1..=35 {
        tokio::time::advance(Duration::from_secs(1)).await;
        settle().await;
        eventually("the attempt due by now", || {
            let due = expected_at.iter().filter(|at| **at <= second).count();
            count(&vault, is_create) == due
        })
        .await;
    }
    assert_eq!(count(&vault, is_create), expected_at.len());
    assert_eq!(
        count(&vault, is_revoke),
        0,
        "no token of anyone else is touched"
    );
    assert!(others.iter().all(|t| vault.is_active(t)));
    assert!(vault.is_active(&bootstrap));
}

/// The bootstrap token is revoked mid-run: the current token keeps serving until it expires, the
/// typed error is in `status()`, attempts follow the (longest) backoff, and a new bootstrap token
/// in the file is picked up without a restart.
#[tokio::test(start_paused = true)]
async fn a_revoked_bootstrap_is_final_until_a_new_one_appears() {
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    let dir = std::env::temp_dir().join(format!("issuer-cap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bootstrap");
    let bootstrap = vault.issue_token();
    std::fs::write(&file, format!("{bootstrap}\n")).unwrap();
    let issuer = builder(&vault)
        .bootstrap_token(FileToken::new(&file))
        .build()
        .unwrap();
    let backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
    let layer = VaultAuthLayer::builder(&vault.base_url(), issuer.clone())
        .backoff(backoff)
        .build()
        .unwrap();
    let handle = layer.handle();
    let client = authed(&layer);
    let url = vault.api_url("/objects/users/me");
    let ok = |response: http::Response<_>| response.headers()["x-vaultapi-status"] == "SUCCESS";
    assert!(ok(send(&client, get(&url)).await.unwrap()));
    assert!(vault.revoke(&bootstrap));
    vault.clear_requests();

    // Past the renewal point and up to the expiry, every request still succeeds.
    let mut minute = 0;
    while minute < 59 {
        tokio::time::advance(Duration::from_secs(60)).await;
        settle_layer(&handle).await;
        minute += 1;
        assert!(
            ok(send(&client, get(&url)).await.unwrap()),
            "minute {minute}"
        );
    }
    let status = handle.status();
    let err = status.last_error.expect("the renewal failed");
    let err = issuer_error(err.source_error().unwrap());
    assert_eq!(err.kind(), IssuerErrorKind::BadCredential);
    assert_eq!(err.vault_error_type(), Some("INVALID_SESSION_ID"));
    assert!(!err.is_retryable());
    assert!(!err.to_string().contains(&bootstrap["veeva-vault-".len()..]));
    // Renewal starts 52.5 to 55 minutes in; a non-retryable failure waits the longest backoff.
    let attempts = count(&vault, is_create);
    assert!(
        (4..=8).contains(&attempts),
        "{attempts} attempts in ~6 minutes"
    );

    // After the expiry, nothing is served.
    tokio::time::advance(Duration::from_secs(61)).await;
    settle_layer(&handle).await;
    assert!(send(&client, get(&url)).await.is_err());

    // A new bootstrap token appears in the file: the next attempt (within the longest backoff)
    // issues again.
    let replacement = vault.issue_token();
    let temp = dir.join("bootstrap.new");
    std::fs::write(&temp, format!("{replacement}\n")).unwrap();
    std::fs::rename(&temp, &file).unwrap();
    tokio::time::advance(Duration::from_secs(61)).await;
    settle_layer(&handle).await;
    eventually("the recovery", || handle.status().generation.is_some()).await;
    assert!(ok(send(&client, get(&url)).await.unwrap()));
    assert!(handle.status().last_error.is_none());
    issuer.shutdown().await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A create Vault refuses for another reason is a typed, final error carrying Vault's type and
/// message; an expiry the security profile refuses too.
#[tokio::test(start_paused = true)]
async fn other_refusals_carry_vaults_type_and_message() {
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    let bootstrap = vault.issue_token();
    let issuer = builder(&vault)
        .bootstrap_token(StaticToken::new(&bootstrap).unwrap())
        .build()
        .unwrap();
    vault.fail_path_with("/users/me/api_access_token__sys", "INSUFFICIENT_ACCESS");
    let err = issuer.fetch().await.unwrap_err();
    let issuer_err = issuer_error(&err);
    assert_eq!(issuer_err.kind(), IssuerErrorKind::CreateRefused);
    assert_eq!(issuer_err.vault_error_type(), Some("INSUFFICIENT_ACCESS"));
    assert!(
        issuer_err.to_string().contains("sufficient privileges"),
        "{issuer_err}"
    );
    assert!(!err.is_retryable());
    vault.clear_failures();

    vault.set_max_token_lifetime(Some(Duration::from_secs(1800)));
    let err = issuer.fetch().await.unwrap_err();
    assert_eq!(issuer_error(&err).vault_error_type(), Some("INVALID_DATA"));
    vault.set_max_token_lifetime(None);
    assert!(issuer.fetch().await.is_ok());
    issuer.shutdown().await.unwrap();
}

/// The cap is full and Vault refuses to delete the oldest of the issuer's own tokens: no room
/// was made, so the create is not tried again and nothing is counted as revoked; the error is
/// Vault's refusal to create.
#[tokio::test(start_paused = true)]
async fn a_cap_revocation_vault_refuses_makes_no_room() {
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    let bootstrap = vault.issue_token();
    let stale = fill_cap_with_stale(&vault);
    assert!(vault.refuse_revocation_of(&stale[0]));
    let issuer = builder(&vault)
        .bootstrap_token(StaticToken::new(&bootstrap).unwrap())
        .build()
        .unwrap();
    let err = issuer.fetch().await.expect_err("no room was made");
    assert_eq!(
        issuer_error(&err).kind(),
        IssuerErrorKind::CreateRefused,
        "{err}"
    );
    assert!(vault.is_active(&stale[0]), "Vault kept the refused one");
    assert!(stale[1..].iter().all(|t| vault.is_active(t)));
    assert_eq!(count(&vault, is_revoke), 1, "one revocation call");
    assert_eq!(
        count(&vault, is_create),
        1,
        "the create was not tried again"
    );
    assert_eq!(issuer.stats().cap_revocations, 0);
    let _ = issuer.shutdown().await;
}
