//! `VaultIssuer` with a password or an OAuth session as its bootstrap, over real HTTP against the
//! stand-in on paused time: defaulting refused, the login limit honoured, the session reused and
//! ended; sandboxes, skewed clocks and fleet files.
#![cfg(feature = "issuer")]

mod common;
mod issuer_common;

use std::time::{Duration, UNIX_EPOCH};

use common::*;
use issuer_common::*;
use secrecy::SecretString;
use veeva_vault_auth::source::{
    IssuerError, IssuerErrorKind, StaticToken, TokenSource, VaultIssuer,
};
use veeva_vault_auth::testing::{UserState, VaultStandIn};
use veeva_vault_auth::{Backoff, BoxError, TokenUnavailable, VaultAuthLayer};

const PREFIX: &str = "login-test";
const SVC: &str = "svc@example.com";
const PASSWORD: &str = "correct horse & battery";

fn password_issuer(vault: &VaultStandIn) -> VaultIssuer {
    VaultIssuer::builder(&vault.base_url())
        .password(SVC, SecretString::from(PASSWORD))
        .name_prefix(PREFIX)
        .lifetime(Duration::from_secs(3600))
        .wall_clock(wall_clock(0))
        .build()
        .unwrap()
}

fn kind(err: &veeva_vault_auth::source::SourceError) -> IssuerErrorKind {
    IssuerError::from_source(err).unwrap().kind()
}

#[tokio::test(start_paused = true)]
async fn authentication_defaulting_is_refused_and_nothing_is_issued() {
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    vault.add_user(SVC, PASSWORD);
    vault.default_logins_elsewhere(SVC, true);
    let issuer = password_issuer(&vault);
    let err = issuer.fetch().await.unwrap_err();
    assert_eq!(kind(&err), IssuerErrorKind::WrongVault);
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("another Vault"), "{err}");
    assert_eq!(count(&vault, is_login), 1);
    assert_eq!(
        count(&vault, is_create),
        0,
        "nothing issued in the wrong Vault"
    );
}

#[tokio::test(start_paused = true)]
async fn the_session_is_reused_across_rotations_and_ended_on_shutdown() {
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    vault.add_user(SVC, PASSWORD);
    let issuer = password_issuer(&vault);
    let layer = VaultAuthLayer::new(&vault.base_url(), issuer.clone()).unwrap();
    let client = authed(&layer);
    let url = vault.api_url("/objects/users/me");
    let response = send(&client, get(&url)).await.unwrap();
    assert_eq!(response.headers()["x-vaultapi-status"], "SUCCESS");
    // Revoke what the layer uses: the next request re-acquires through the issuer.
    let current = vault
        .tokens()
        .into_iter()
        .rfind(|t| t.active && t.user == SVC)
        .unwrap();
    vault.revoke_id(&current.id);
    let response = send(&client, get(&url)).await.unwrap();
    assert_eq!(response.headers()["x-vaultapi-status"], "SUCCESS");
    // More rotations, asked of the issuer directly.
    for _ in 0..4 {
        let token = issuer.fetch().await.unwrap();
        assert!(vault.is_active(token.expose_secret()));
    }
    assert_eq!(issuer.stats().issued, 6);
    assert_eq!(count(&vault, is_login), 1, "one login for every rotation");
    assert_eq!(issuer.stats().logins, 1);
    assert_eq!(vault.live_sessions_of(SVC), 1);
    issuer.shutdown().await.unwrap();
    assert_eq!(count(&vault, is_end_session), 1);
    assert_eq!(vault.live_sessions_of(SVC), 0, "the session is ended");
    assert_eq!(vault.active_tokens_of(SVC), 0);
    let err = issuer.fetch().await.unwrap_err();
    assert_eq!(kind(&err), IssuerErrorKind::ShutDown);
}

/// Sends one request through `client` in a task of its own and waits for it without moving the
/// clock (failing the test, not hanging it, if it ever waited on paused time).
async fn send_and_wait(client: &AuthClient, url: &str) -> Result<String, BoxError> {
    let task = tokio::spawn({
        let (client, url) = (client.clone(), url.to_owned());
        async move {
            let response = send(&client, get(&url)).await?;
            Ok::<_, BoxError>(response.headers()["x-vaultapi-status"].to_str()?.to_owned())
        }
    });
    eventually("the request's answer", || task.is_finished()).await;
    task.await.unwrap()
}

/// The issuer's error behind a request that failed for want of a token, if the issuer failed.
fn issuer_kind_of(err: &BoxError) -> Option<IssuerErrorKind> {
    let unavailable = err.downcast_ref::<TokenUnavailable>().expect("no token");
    unavailable.source_error().map(kind)
}

/// A layer that asks its source again soon after a failure (every 2 to 5 s) and never makes a
/// request wait out a backoff.
fn stormy_layer(vault: &VaultStandIn, issuer: &VaultIssuer) -> VaultAuthLayer {
    VaultAuthLayer::builder(&vault.base_url(), issuer.clone())
        .backoff(Backoff::new(Duration::from_secs(2), Duration::from_secs(5)))
        .fetch_timeout(Duration::from_secs(1))
        .build()
        .unwrap()
}

/// A storm through the layer, over real HTTP: every 5 s every session and every issued token is
/// killed and a request is sent, which Vault rejects, so the layer asks the issuer again. Logins
/// stay at one a minute (the issuer's pacing), and Vault's own limit (`API_LIMIT_EXCEEDED`) is
/// waited out to the next minute.
#[tokio::test(start_paused = true)]
async fn logins_stay_within_the_limit_in_a_storm() {
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    vault.add_user(SVC, PASSWORD);
    let issuer = password_issuer(&vault);
    let layer = stormy_layer(&vault, &issuer);
    let handle = layer.handle();
    let client = authed(&layer);
    let url = vault.api_url("/objects/users/me");
    assert_eq!(send_and_wait(&client, &url).await.unwrap(), "SUCCESS");
    let start = tokio::time::Instant::now();
    let mut logins_at = vec![0];
    let mut seen = count(&vault, is_login);
    assert_eq!(seen, 1);
    let (mut served, mut refused) = (0, 0);
    for _ in 0..(5 * 60 / 5) {
        tokio::time::advance(Duration::from_secs(5)).await;
        vault.end_all_sessions();
        for token in vault
            .tokens()
            .into_iter()
            .filter(|t| t.active && t.user == SVC)
        {
            vault.revoke_id(&token.id);
        }
        match send_and_wait(&client, &url).await {
            Ok(status) if status == "SUCCESS" => served += 1,
            // Rejected, and the issuer had nothing new: Vault's answer is passed on.
            Ok(_) => refused += 1,
            Err(err) => {
                refused += 1;
                if let Some(kind) = issuer_kind_of(&err) {
                    assert_eq!(kind, IssuerErrorKind::LoginLimited, "{err}");
                }
                assert!(err
                    .downcast_ref::<TokenUnavailable>()
                    .unwrap()
                    .is_retryable());
            }
        }
        if let Some(last) = handle.status().last_error {
            let err = last.source_error().expect("the issuer failed");
            assert_eq!(kind(err), IssuerErrorKind::LoginLimited, "{err}");
            assert!(err.is_retryable());
        }
        let now = count(&vault, is_login);
        if now > seen {
            logins_at.push(start.elapsed().as_secs());
            seen = now;
        }
    }
    assert!(logins_at.len() >= 4, "{logins_at:?}");
    for pair in logins_at.windows(2) {
        assert!(
            pair[1] - pair[0] >= 60,
            "two logins within a minute: {logins_at:?}"
        );
    }
    assert_eq!(issuer.stats().logins, seen as u64);
    // Each login served the request that made it; the others were refused, not stormed.
    assert!(
        served >= logins_at.len() - 1,
        "served {served}, {logins_at:?}"
    );
    assert!(refused > served, "refused {refused}, served {served}");
    // The layer asked the issuer at every tick: after each rejection of a served token, and
    // for every request that found none.
    let status = handle.status();
    assert!(status.fetches > 60, "{status:?}");
    assert!(status.reacquisitions >= served as u64, "{status:?}");

    // Vault's own limit: one login a minute allowed, the issuer's pacing off.
    let vault = VaultStandIn::start().await.unwrap();
    vault.add_user(SVC, PASSWORD);
    vault.set_login_limit(1);
    let into_minute = vault.now().duration_since(UNIX_EPOCH).unwrap().as_secs() % 60;
    vault.set_clock_offset(-(into_minute as i64));
    let issuer = VaultIssuer::builder(&vault.base_url())
        .password(SVC, SecretString::from(PASSWORD))
        .name_prefix(PREFIX)
        .min_login_interval(Duration::ZERO)
        .wall_clock(wall_clock(0))
        .build()
        .unwrap();
    let layer = stormy_layer(&vault, &issuer);
    let handle = layer.handle();
    let client = authed(&layer);
    let url = vault.api_url("/objects/users/me");
    assert_eq!(send_and_wait(&client, &url).await.unwrap(), "SUCCESS");
    tokio::time::advance(Duration::from_secs(10)).await;
    vault.end_all_sessions();
    for token in vault.tokens().into_iter().filter(|t| t.active) {
        vault.revoke_id(&token.id);
    }
    let answer = send_and_wait(&client, &url).await;
    assert!(!matches!(answer.as_deref(), Ok("SUCCESS")), "{answer:?}");
    let last = handle.status().last_error.expect("the issuer failed");
    let limited = IssuerError::from_source(last.source_error().unwrap()).unwrap();
    assert_eq!(limited.kind(), IssuerErrorKind::LoginLimited);
    assert_eq!(limited.vault_error_type(), Some("API_LIMIT_EXCEEDED"));
    assert_eq!(limited.retry_after(), Some(Duration::from_secs(50)));
    assert_eq!(count(&vault, is_login), 2);
    // Until the next minute, requests fail and no login is even tried, however often the layer
    // asks.
    // (Steps of 5 s, the layer's longest backoff: a request never has a backoff to wait out.)
    for second in (15..60).step_by(5) {
        tokio::time::advance(Duration::from_secs(5)).await;
        let answer = send_and_wait(&client, &url).await;
        assert!(!matches!(answer.as_deref(), Ok("SUCCESS")), "at {second} s");
    }
    assert_eq!(count(&vault, is_login), 2);
    assert!(handle.status().fetches >= 10, "the layer kept asking");
    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(send_and_wait(&client, &url).await.unwrap(), "SUCCESS");
    assert_eq!(count(&vault, is_login), 3);
}

#[tokio::test(start_paused = true)]
async fn refused_logins_are_final_and_name_vaults_type() {
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    vault.add_user(SVC, "another password");
    let issuer = VaultIssuer::builder(&vault.base_url())
        .password(SVC, SecretString::from(PASSWORD))
        .min_login_interval(Duration::ZERO)
        .build()
        .unwrap();
    let err = issuer.fetch().await.unwrap_err();
    let typed = IssuerError::from_source(&err).unwrap();
    assert_eq!(typed.kind(), IssuerErrorKind::BadCredential);
    assert_eq!(
        typed.vault_error_type(),
        Some("USERNAME_OR_PASSWORD_INCORRECT")
    );
    assert!(!err.is_retryable());
    // No login is tried again for 15 minutes: the same error, without a call.
    vault.set_password(SVC, PASSWORD);
    for _ in 0..10 {
        tokio::time::advance(Duration::from_secs(60)).await;
        let again = issuer.fetch().await.unwrap_err();
        assert_eq!(
            IssuerError::from_source(&again).unwrap().kind(),
            IssuerErrorKind::BadCredential
        );
    }
    assert_eq!(
        count(&vault, is_login),
        1,
        "one refused login, not one a minute"
    );
    tokio::time::advance(Duration::from_secs(5 * 60)).await;
    assert!(issuer.fetch().await.is_ok(), "tried again after the pause");
    assert_eq!(count(&vault, is_login), 2);
    for (state, expected) in [
        (UserState::LockedOut, "USER_LOCKED_OUT"),
        (
            UserState::PasswordChangeRequired,
            "PASSWORD_CHANGE_REQUIRED",
        ),
        (UserState::Inactive, "INACTIVE_USER"),
    ] {
        vault.set_user_state(SVC, state);
        vault.end_all_sessions();
        tokio::time::advance(Duration::from_secs(15 * 60)).await;
        let err = issuer.fetch().await.unwrap_err();
        assert_eq!(
            IssuerError::from_source(&err).unwrap().vault_error_type(),
            Some(expected)
        );
        assert!(!err.to_string().contains(PASSWORD));
    }
}

#[tokio::test(start_paused = true)]
async fn oauth_sessions_issue_tokens() {
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    vault.add_user(SVC, PASSWORD);
    vault.accept_oauth("0oa-profile", "idp-access-token-1", SVC);
    let issuer = VaultIssuer::builder(&vault.base_url())
        .oauth("0oa-profile", Some("idp-client"), || async {
            Ok(SecretString::from("idp-access-token-1"))
        })
        .login_url(&vault.base_url())
        .name_prefix(PREFIX)
        .wall_clock(wall_clock(0))
        .build()
        .unwrap();
    let token = issuer.fetch().await.unwrap();
    assert!(vault.is_active(token.expose_secret()));
    assert_eq!(vault.active_tokens_of(SVC), 1);
    let exchange = vault
        .requests()
        .into_iter()
        .find(|r| r.path == "/auth/oauth/session/0oa-profile")
        .unwrap();
    let form = String::from_utf8(exchange.body.to_vec()).unwrap();
    assert!(form.contains("client_id=idp-client"), "{form}");
    issuer.shutdown().await.unwrap();
    assert_eq!(vault.live_sessions_of(SVC), 0);
}

/// A host whose clock is 7 minutes slow still asks for a one-hour token on Vault's clock.
#[tokio::test(start_paused = true)]
async fn expiry_is_computed_on_vaults_clock() {
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    let bootstrap = vault.issue_token();
    let issuer = VaultIssuer::builder(&vault.base_url())
        .bootstrap_token(StaticToken::new(&bootstrap).unwrap())
        .name_prefix(PREFIX)
        .lifetime(Duration::from_secs(3600))
        .wall_clock(wall_clock(-420))
        .build()
        .unwrap();
    let token = issuer.fetch().await.unwrap();
    let skew = issuer.clock_skew().unwrap();
    assert!((419..=421).contains(&skew), "skew {skew}");
    let info = vault
        .tokens()
        .into_iter()
        .find(|t| t.name.starts_with(PREFIX))
        .unwrap();
    let lifetime = info.expiry.unwrap().duration_since(vault.now()).unwrap();
    assert!(
        lifetime > Duration::from_secs(3590) && lifetime <= Duration::from_secs(3600),
        "{lifetime:?}"
    );
    let expires_in = token.expires_at().unwrap() - tokio::time::Instant::now();
    assert!(expires_in > Duration::from_secs(3590), "{expires_in:?}");
    // The name: prefix, host, pid and Vault's time, within 128 characters.
    assert!(info.name.starts_with(&format!("{PREFIX}:")));
    assert!(info.name.contains(&format!(":{}:", std::process::id())));
    assert!(info.name.len() <= 128);
    let long = VaultIssuer::builder(&vault.base_url())
        .bootstrap_token(StaticToken::new(&bootstrap).unwrap())
        .name_prefix(&"p".repeat(40))
        .build()
        .unwrap();
    assert!(long.token_name_at(vault.now()).len() <= 128);
}

#[tokio::test(start_paused = true)]
async fn sandbox_tokens_are_issued_through_production_and_revoked_in_the_sandbox() {
    let _clock = hold_clock();
    let production = VaultStandIn::start().await.unwrap();
    let sandbox = VaultStandIn::start().await.unwrap();
    production.add_sandbox("uat", &sandbox);
    let bootstrap = production.issue_token();
    let issuer = VaultIssuer::builder(&production.base_url())
        .bootstrap_token(StaticToken::new(&bootstrap).unwrap())
        .sandbox("uat", &sandbox.base_url())
        .name_prefix(PREFIX)
        .grace_period(Duration::from_secs(60))
        .wall_clock(wall_clock(0))
        .build()
        .unwrap();
    let layer = VaultAuthLayer::new(&sandbox.base_url(), issuer.clone()).unwrap();
    let handle = layer.handle();
    let client = authed(&layer);
    let url = sandbox.api_url("/objects/users/me");
    let response = send(&client, get(&url)).await.unwrap();
    assert_eq!(response.headers()["x-vaultapi-status"], "SUCCESS");
    handle.force_refresh().await.unwrap();
    assert_eq!(own_active(&sandbox, PREFIX), 2);
    tokio::time::advance(Duration::from_secs(61)).await;
    eventually("the sandbox revocation", || {
        own_active(&sandbox, PREFIX) == 1
    })
    .await;
    assert_eq!(own_active(&production, PREFIX), 0);
    let response = send(&client, get(&url)).await.unwrap();
    assert_eq!(response.headers()["x-vaultapi-status"], "SUCCESS");
    issuer.shutdown().await.unwrap();
    assert_eq!(own_active(&sandbox, PREFIX), 0);
}

#[tokio::test(start_paused = true)]
async fn the_fleet_file_is_written_atomically_with_mode_0600() {
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    let bootstrap = vault.issue_token();
    let dir = std::env::temp_dir().join(format!("issuer-fleet-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("token");
    let issuer = VaultIssuer::builder(&vault.base_url())
        .bootstrap_token(StaticToken::new(&bootstrap).unwrap())
        .name_prefix(PREFIX)
        .fleet_file(&path)
        .wall_clock(wall_clock(0))
        .build()
        .unwrap();
    for _ in 0..3 {
        let token = issuer.fetch().await.unwrap();
        let written = std::fs::read_to_string(&path).unwrap();
        assert_eq!(written, format!("{}\n", token.expose_secret()));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(left.len(), 1, "no temporary file is left behind");
    issuer.shutdown().await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
