//! `VaultIssuer` over https (feature `rustls`): the stand-in behind a real TLS listener whose
//! certificate is made at test time, trusted through the builder's root certificate settings or
//! a whole rustls configuration; an untrusted certificate is a typed error; plain http still goes
//! to loopback only. Paused time.
#![cfg(feature = "rustls")]

mod common;
mod issuer_common;

use std::time::Duration;

use common::*;
use issuer_common::tls::{client_config_trusting, TestCa, TlsFront};
use issuer_common::*;
use secrecy::SecretString;
use veeva_vault_auth::source::{
    IssuerError, IssuerErrorKind, StaticToken, TokenSource, VaultIssuer, VaultIssuerBuilder,
};
use veeva_vault_auth::testing::VaultStandIn;
use veeva_vault_auth::{TokenUnavailable, VaultAuthLayer};

const PREFIX: &str = "tls-test";
const PASSWORD: &str = "tls password never shown";

fn builder(url: &str, bootstrap: &str) -> VaultIssuerBuilder {
    VaultIssuer::builder(url)
        .bootstrap_token(StaticToken::new(bootstrap).unwrap())
        .name_prefix(PREFIX)
        .lifetime(Duration::from_secs(3600))
        .grace_period(Duration::from_secs(60))
        .wall_clock(wall_clock(0))
}

/// Issued, rotated (by the layer, as for a rejection) and revoked, every call over TLS: the issuer
/// knows only the https address.
#[tokio::test(start_paused = true)]
async fn tokens_are_issued_rotated_and_revoked_over_https() {
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    let ca = TestCa::new("rotation");
    let front = TlsFront::start(&vault, &ca).await;
    let bootstrap = vault.issue_token();
    let issuer = builder(&front.url(), &bootstrap)
        .tls_root_certificates_pem(ca.pem().as_bytes())
        .build()
        .unwrap();
    // The layer's own requests go to the stand-in's plain port; the issuer's through TLS.
    let layer = VaultAuthLayer::new(&vault.base_url(), issuer.clone()).unwrap();
    let handle = layer.handle();
    let client = authed(&layer);
    let url = vault.api_url("/objects/users/me");
    let response = send(&client, get(&url)).await.unwrap();
    assert_eq!(response.headers()["x-vaultapi-status"], "SUCCESS");
    assert_eq!(own_active(&vault, PREFIX), 1);
    assert!(front.handshakes() >= 1, "the issuer came through TLS");
    assert!(
        issuer.clock_skew().is_some(),
        "Vault's Date was read over TLS"
    );

    for rotation in 1..=3 {
        handle.force_refresh().await.unwrap();
        assert_eq!(own_active(&vault, PREFIX), 2, "rotation {rotation}");
        let response = send(&client, get(&url)).await.unwrap();
        assert_eq!(response.headers()["x-vaultapi-status"], "SUCCESS");
        tokio::time::advance(Duration::from_secs(61)).await;
        eventually("the superseded token's revocation over TLS", || {
            issuer.stats().revoked == rotation
        })
        .await;
        assert_eq!(own_active(&vault, PREFIX), 1);
        assert_eq!(count(&vault, is_revoke), rotation as usize);
    }
    assert_eq!(count(&vault, is_create), 4);
    issuer.shutdown().await.unwrap();
    assert_eq!(
        own_active(&vault, PREFIX),
        0,
        "revoked at shutdown, over TLS"
    );
    assert!(vault.is_active(&bootstrap));
}

/// A DER root and a whole rustls `ClientConfig` work as the PEM text does; a `ClientConfig`
/// trusting only the test CA refuses nothing it should accept.
#[tokio::test(start_paused = true)]
async fn a_der_root_or_a_whole_client_config_is_trusted_too() {
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    let ca = TestCa::new("config");
    let front = TlsFront::start(&vault, &ca).await;
    let bootstrap = vault.issue_token();
    let by_der = builder(&front.url(), &bootstrap)
        .tls_root_certificate_der(&ca.der())
        .build()
        .unwrap();
    let by_config = builder(&front.url(), &bootstrap)
        .tls_client_config(client_config_trusting(&ca))
        .build()
        .unwrap();
    for issuer in [&by_der, &by_config] {
        let token = issuer.fetch().await.unwrap();
        assert!(vault.is_active(token.expose_secret()));
        issuer.shutdown().await.unwrap();
        assert!(!vault.is_active(token.expose_secret()));
    }
    assert!(front.handshakes() >= 2, "both came through TLS");
}

fn tls_error(err: &veeva_vault_auth::source::SourceError) -> IssuerError {
    let typed = IssuerError::from_source(err)
        .expect("the issuer's error")
        .clone();
    assert_eq!(typed.kind(), IssuerErrorKind::Tls, "{typed}");
    assert!(!typed.is_retryable());
    assert!(!err.is_retryable());
    typed
}

/// A server whose certificate no trusted root vouches for (the bundled roots only, or another
/// private CA) is refused before anything is sent: a typed, final error without a secret.
#[tokio::test(start_paused = true)]
async fn an_untrusted_certificate_is_refused_with_a_typed_error() {
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    let ca = TestCa::new("server");
    let front = TlsFront::start(&vault, &ca).await;
    let bootstrap = vault.issue_token();
    vault.add_user("svc@example.com", PASSWORD);
    let other = TestCa::new("someone else's");
    let issuers = [
        builder(&front.url(), &bootstrap).build().unwrap(),
        builder(&front.url(), &bootstrap)
            .tls_root_certificates_pem(other.pem().as_bytes())
            .build()
            .unwrap(),
        VaultIssuer::builder(&front.url())
            .password("svc@example.com", SecretString::from(PASSWORD))
            .build()
            .unwrap(),
    ];
    for issuer in &issuers {
        let err = issuer.fetch().await.unwrap_err();
        let typed = tls_error(&err);
        assert!(
            typed.to_string().contains("certificate"),
            "says why: {typed}"
        );
        for shown in [
            typed.to_string(),
            format!("{typed:?}"),
            err.to_string(),
            format!("{err:?}"),
            format!("{issuer:?}"),
        ] {
            assert!(!shown.contains(&bootstrap), "{shown}");
            assert!(!shown.contains(PASSWORD), "{shown}");
            assert!(!shown.contains("veeva-vault-"), "{shown}");
        }
    }
    assert_eq!(front.handshakes(), 0, "no handshake completed");
    assert!(vault.requests().is_empty(), "nothing reached Vault");

    // Through the layer: the request fails with the typed error, which the status shows.
    let layer = VaultAuthLayer::new(&vault.base_url(), issuers[0].clone()).unwrap();
    let client = authed(&layer);
    let err = send(&client, get(&vault.api_url("/objects/users/me")))
        .await
        .unwrap_err();
    let unavailable = err.downcast_ref::<TokenUnavailable>().expect("no token");
    tls_error(unavailable.source_error().unwrap());
    let status = layer.handle().status();
    tls_error(status.last_error.unwrap().source_error().unwrap());
    assert!(vault.requests().is_empty());
}

/// The TLS settings change nothing about plain http: loopback only; and settings that cannot
/// work are refused when the issuer is built.
#[test]
fn plain_http_is_still_loopback_only_and_bad_tls_settings_are_refused() {
    let ca = TestCa::new("settings");
    let pem = ca.pem();
    for url in [
        "http://myvault.veevavault.com",
        "http://10.1.2.3:8080",
        "http://[2001:db8::1]:80",
    ] {
        let err = builder(url, "veeva-vault-x")
            .tls_root_certificates_pem(pem.as_bytes())
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("loopback"), "{url}: {err}");
        let err = builder("https://myvault.veevavault.com", "veeva-vault-x")
            .login_url(url)
            .tls_client_config(client_config_trusting(&ca))
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("loopback"), "login {url}: {err}");
    }
    assert!(builder("https://myvault.veevavault.com", "veeva-vault-x")
        .tls_root_certificates_pem(pem.as_bytes())
        .build()
        .is_ok());
    let refused = [
        (
            builder("https://myvault.veevavault.com", "veeva-vault-x")
                .tls_root_certificates_pem(b"-----BEGIN NOTHING-----\n-----END NOTHING-----\n"),
            "no CERTIFICATE",
        ),
        (
            builder("https://myvault.veevavault.com", "veeva-vault-x")
                .tls_root_certificate_der(b"not DER"),
            "root certificate 1",
        ),
        (
            builder("https://myvault.veevavault.com", "veeva-vault-x")
                .tls_root_certificates_pem(pem.as_bytes())
                .tls_client_config(client_config_trusting(&ca)),
            "not both",
        ),
        (
            builder("https://myvault.veevavault.com", "veeva-vault-x")
                .tls_root_certificates_pem(pem.as_bytes())
                .http_service(http_client()),
            "http_service",
        ),
    ];
    for (builder, why) in refused {
        let err = builder.build().unwrap_err();
        assert!(err.to_string().contains(why), "{why}: {err}");
    }
}
