//! No secret the issuer handles (password, session id, bootstrap token, issued token) appears in
//! any error, `Debug` string or TRACE-level log line, over a run that takes every path.
#![cfg(all(feature = "issuer", feature = "tracing"))]

mod common;
mod issuer_common;

use std::time::Duration;

use common::*;
use issuer_common::*;
use secrecy::SecretString;
use veeva_vault_auth::source::{FileToken, StaticToken, TokenSource, VaultIssuer};
use veeva_vault_auth::testing::VaultStandIn;
use veeva_vault_auth::VaultAuthLayer;

const SVC: &str = "svc@example.com";
const PASSWORD: &str = "pw-Secret-42";

#[tokio::test(start_paused = true)]
async fn no_secret_is_ever_logged_shown_or_returned() {
    let (captured, _default) = Captured::start();
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    vault.add_user(SVC, PASSWORD);
    let mut shown: Vec<String> = Vec::new();

    // A password issuer behind the layer: issue, a rejection, a rotation, shutdown.
    let issuer = VaultIssuer::builder(&vault.base_url())
        .password(SVC, SecretString::from(PASSWORD))
        .name_prefix("secrets-test")
        .min_login_interval(Duration::ZERO)
        .wall_clock(wall_clock(0))
        .build()
        .unwrap();
    let layer = VaultAuthLayer::new(&vault.base_url(), issuer.clone()).unwrap();
    let handle = layer.handle();
    let client = authed(&layer);
    let url = vault.api_url("/objects/users/me");
    send(&client, get(&url)).await.unwrap();
    let current = vault.tokens().into_iter().rfind(|t| t.active).unwrap();
    vault.revoke_id(&current.id);
    send(&client, get(&url)).await.unwrap();
    vault.end_all_sessions();
    shown.push(format!("{:?}", issuer.fetch().await));
    shown.push(format!("{:?} {:?}", handle.status(), issuer));
    tokio::time::advance(Duration::from_secs(200)).await;
    settle().await;
    shown.push(format!("{:?}", issuer.shutdown().await));

    // Refusals: wrong password, defaulting, the login limit.
    let refused = |password: &'static str| {
        VaultIssuer::builder(&vault.base_url())
            .password(SVC, SecretString::from(password))
            .min_login_interval(Duration::ZERO)
            .build()
            .unwrap()
    };
    let err = refused("not-the-Password-7").fetch().await.unwrap_err();
    shown.push(format!("{err} {err:?}"));
    vault.default_logins_elsewhere(SVC, true);
    let err = refused(PASSWORD).fetch().await.unwrap_err();
    shown.push(format!("{err} {err:?}"));
    vault.default_logins_elsewhere(SVC, false);
    vault.set_login_limit(0);
    let err = refused(PASSWORD).fetch().await.unwrap_err();
    shown.push(format!("{err} {err:?}"));

    // A bootstrap token from a file, revoked; a cap full of others; a fleet file.
    let dir = std::env::temp_dir().join(format!("issuer-secrets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bootstrap");
    let bootstrap = vault.issue_token();
    std::fs::write(&file, &bootstrap).unwrap();
    let from_file = VaultIssuer::builder(&vault.base_url())
        .bootstrap_token(FileToken::new(&file))
        .fleet_file(dir.join("fleet"))
        .wall_clock(wall_clock(0))
        .build()
        .unwrap();
    let issued = from_file.fetch().await.unwrap();
    shown.push(format!("{issued:?} {from_file:?}"));
    for i in 0..23 {
        vault.issue_token_for("integration@example.com", Some(&format!("other {i}")), None);
    }
    let err = from_file.fetch().await.unwrap_err();
    shown.push(format!("{err} {err:?}"));
    vault.revoke(&bootstrap);
    let err = from_file.fetch().await.unwrap_err();
    shown.push(format!("{err} {err:?}"));
    let static_issuer = VaultIssuer::builder(&vault.base_url())
        .bootstrap_token(StaticToken::new(&bootstrap).unwrap())
        .build()
        .unwrap();
    let err = static_issuer.fetch().await.unwrap_err();
    shown.push(format!("{err} {err:?}"));
    drop((client, layer, from_file, static_issuer));
    settle().await;

    let log = captured.text();
    assert!(log.contains("issued a vault access token"), "{log}");
    assert!(log.contains("opened a vault session"), "{log}");
    assert!(log.contains("ended the vault session"), "{log}");
    let mut secrets = credentials_seen(&vault);
    secrets.push(PASSWORD.to_owned());
    secrets.push(bootstrap.clone());
    secrets.push(issued.expose_secret().to_owned());
    assert!(secrets.len() >= 8, "{} secrets", secrets.len());
    for secret in &secrets {
        let secret = secret.trim_start_matches("veeva-vault-");
        assert!(!log.contains(secret), "a secret in the log:\n{log}");
        for text in &shown {
            assert!(!text.contains(secret), "a secret in {text}");
        }
    }
    assert!(!log.contains("Bearer"), "{log}");
    std::fs::remove_dir_all(&dir).unwrap();
}
