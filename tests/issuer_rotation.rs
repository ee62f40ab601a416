//! `VaultIssuer` as the layer's source, over real HTTP against the stand-in on paused time: a
//! week of rotation, a revocation wave, shutdown.
#![cfg(feature = "issuer")]

mod common;
mod issuer_common;

use std::time::Duration;

use common::*;
use issuer_common::*;
use veeva_vault_auth::source::{StaticToken, TokenSource, VaultIssuer};
use veeva_vault_auth::testing::VaultStandIn;
use veeva_vault_auth::VaultAuthLayer;

const PREFIX: &str = "rotation-test";

fn issuer(vault: &VaultStandIn, bootstrap: &str, lifetime: Duration) -> VaultIssuer {
    VaultIssuer::builder(&vault.base_url())
        .bootstrap_token(StaticToken::new(bootstrap).unwrap())
        .name_prefix(PREFIX)
        .lifetime(lifetime)
        .grace_period(Duration::from_secs(120))
        .wall_clock(wall_clock(0))
        .build()
        .unwrap()
}

/// A week with a one-hour lifetime and a request every minute: no request fails, the issuer
/// never holds more than two active tokens, every superseded token is revoked after its grace
/// period, and the layer asks the issuer once per rotation.
#[tokio::test(start_paused = true)]
async fn a_week_of_hourly_rotation() {
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    let bootstrap = vault.issue_token();
    let issuer = issuer(&vault, &bootstrap, Duration::from_secs(3600));
    let layer = VaultAuthLayer::new(&vault.base_url(), issuer.clone()).unwrap();
    let handle = layer.handle();
    let client = authed(&layer);
    let url = vault.api_url("/objects/users/me");

    let minutes = 7 * 24 * 60;
    let mut most_held = 0;
    let mut superseded_seen_alive = 0;
    let mut last_generation = None;
    for minute in 0..minutes {
        let response = send(&client, get(&url)).await.unwrap();
        assert_eq!(
            response.headers()["x-vaultapi-status"],
            "SUCCESS",
            "minute {minute}"
        );
        let held = own_active(&vault, PREFIX);
        most_held = most_held.max(held);
        let generation = handle.status().generation;
        if generation != last_generation && last_generation.is_some() && held == 2 {
            // Just rotated: the old token still works during its grace period.
            superseded_seen_alive += 1;
        }
        last_generation = generation;
        tokio::time::advance(Duration::from_secs(60)).await;
        settle().await;
    }

    // Let a revocation still on its way be answered.
    eventually("the last revocation's answer", || {
        let stats = issuer.stats();
        let not_revoked = vault
            .tokens()
            .iter()
            .filter(|t| t.name.starts_with(&format!("{PREFIX}:")) && !t.revoked)
            .count() as u64;
        stats.revoked + not_revoked == stats.issued
    })
    .await;
    let stats = issuer.stats();
    let status = handle.status();
    assert!(most_held <= 2, "held {most_held} of its own tokens at once");
    // Renewal falls 52.5 to 55 minutes into each hour-long token.
    let (fewest, most) = (minutes / 55, minutes / 52 + 1);
    assert!(
        (fewest as u64..=most as u64).contains(&stats.issued),
        "{stats:?}"
    );
    assert_eq!(
        status.fetches, stats.issued,
        "one fetch per rotation, one issue per fetch"
    );
    assert_eq!(count(&vault, is_create) as u64, stats.issued);
    assert_eq!(status.fetch_failures, 0);
    assert!(superseded_seen_alive as u64 >= stats.issued - 2);
    // Every superseded token but one still in its grace period was revoked, none merely expired.
    let own: Vec<_> = vault
        .tokens()
        .into_iter()
        .filter(|t| t.name.starts_with(&format!("{PREFIX}:")))
        .collect();
    assert_eq!(own.len() as u64, stats.issued);
    let not_revoked = own.iter().filter(|t| !t.revoked).count();
    assert!(
        not_revoked <= 2,
        "{not_revoked} superseded tokens were never revoked"
    );
    assert_eq!(stats.revoked + not_revoked as u64, stats.issued);
    assert_eq!(stats.revocation_failures, 0);
    assert!(
        vault.is_active(&bootstrap),
        "the bootstrap token is never touched"
    );

    issuer.shutdown().await.unwrap();
    assert_eq!(
        own_active(&vault, PREFIX),
        0,
        "shutdown revokes what it holds"
    );
}

/// 1,000 requests rejected at once: one issue call, then (after the grace period) one
/// revocation call for the rejected token.
#[tokio::test(start_paused = true)]
async fn a_revocation_wave_costs_one_issue_and_one_revocation() {
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    let bootstrap = vault.issue_token();
    let issuer = issuer(&vault, &bootstrap, Duration::from_secs(3600));
    let layer = VaultAuthLayer::new(&vault.base_url(), issuer.clone()).unwrap();
    let client = authed(&layer);
    let url = vault.api_url("/objects/users/me");
    send(&client, get(&url)).await.unwrap();
    let first = vault
        .tokens()
        .into_iter()
        .find(|t| t.active && t.name.starts_with(PREFIX))
        .unwrap();
    vault.clear_requests();

    vault.hold_requests(true);
    let tasks = spawn_many(1000, |_| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let response = send(&client, get(&url)).await.unwrap();
            response.headers()["x-vaultapi-status"].clone()
        }
    });
    vault.wait_for_held(1000).await;
    // Revoke the issued token behind the layer's back, as an admin would.
    let current = vault
        .tokens()
        .into_iter()
        .find(|t| t.id == first.id)
        .unwrap();
    assert!(current.active);
    assert!(vault.revoke_id(&first.id));
    vault.clear_requests();
    vault.hold_requests(false);
    for task in tasks {
        assert_eq!(task.await.unwrap(), "SUCCESS");
    }
    assert_eq!(
        count(&vault, is_create),
        1,
        "one issue call for the whole wave"
    );
    assert_eq!(
        count(&vault, is_revoke),
        0,
        "nothing revoked within the grace period"
    );
    tokio::time::advance(Duration::from_secs(121)).await;
    eventually("the superseded token's revocation", || {
        count(&vault, is_revoke) == 1
    })
    .await;
    eventually("the revocation's answer", || issuer.stats().revoked == 1).await;
    assert_eq!(count(&vault, is_revoke), 1);
    assert_eq!(own_active(&vault, PREFIX), 1);
    let stats = issuer.stats();
    assert_eq!(
        (stats.issued, stats.revoked, stats.pending_revocations),
        (2, 1, 0)
    );
}

/// Dropping the last handle inside a runtime revokes what the issuer holds, in the background.
#[tokio::test(start_paused = true)]
async fn dropping_the_issuer_revokes_its_tokens() {
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    let bootstrap = vault.issue_token();
    let issuer = issuer(&vault, &bootstrap, Duration::from_secs(3600));
    let layer = VaultAuthLayer::new(&vault.base_url(), issuer.clone()).unwrap();
    let client = authed(&layer);
    send(&client, get(&vault.api_url("/objects/users/me")))
        .await
        .unwrap();
    assert_eq!(own_active(&vault, PREFIX), 1);
    drop((client, layer, issuer));
    eventually("the background revocation", || {
        own_active(&vault, PREFIX) == 0
    })
    .await;
    assert!(vault.is_active(&bootstrap));
}

/// A revocation Vault refuses is retried (30 s, then doubling), never forgotten, until it works.
#[tokio::test(start_paused = true)]
async fn failed_revocations_are_retried_until_they_work() {
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    let bootstrap = vault.issue_token();
    let issuer = issuer(&vault, &bootstrap, Duration::from_secs(3600));
    let first = issuer.fetch().await.unwrap();
    vault.fail_path_with("/vobjects/api_access_token__sys", "INSUFFICIENT_ACCESS");
    let second = issuer.fetch().await.unwrap();
    // Due after the 120 s grace period, then 30 s, 60 s, 120 s later.
    let mut expected = 0;
    for (wait, attempts) in [(121, 1), (30, 2), (60, 3), (120, 4)] {
        tokio::time::advance(Duration::from_secs(wait)).await;
        expected = attempts;
        eventually("a failed revocation attempt", || {
            count(&vault, is_revoke) == expected
                && issuer.stats().revocation_failures == expected as u64
        })
        .await;
        assert!(vault.is_active(first.expose_secret()));
    }
    let stats = issuer.stats();
    assert_eq!(
        (stats.revocation_failures, stats.pending_revocations),
        (expected as u64, 1)
    );
    vault.clear_failures();
    tokio::time::advance(Duration::from_secs(240)).await;
    eventually("the retried revocation", || issuer.stats().revoked == 1).await;
    assert!(!vault.is_active(first.expose_secret()));
    let stats = issuer.stats();
    assert_eq!((stats.revoked, stats.pending_revocations), (1, 0));
    assert!(vault.is_active(second.expose_secret()));
    issuer.shutdown().await.unwrap();
    assert!(!vault.is_active(second.expose_secret()));
}
