//! `VaultIssuer` sending its calls through the user's own tower service, over real HTTP against
//! the stand-in on paused time.
#![cfg(feature = "issuer")]

mod common;
mod issuer_common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;
use issuer_common::*;
use tower::ServiceBuilder;
use veeva_vault_auth::source::{StaticToken, TokenSource, VaultIssuer};
use veeva_vault_auth::testing::VaultStandIn;

#[tokio::test(start_paused = true)]
async fn calls_go_through_the_users_service() {
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    let bootstrap = vault.issue_token();
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = {
        let calls = Arc::clone(&calls);
        ServiceBuilder::new()
            .map_request(move |request: http::Request<_>| {
                calls.fetch_add(1, Ordering::Relaxed);
                request
            })
            .service(http_client())
    };
    let issuer = VaultIssuer::builder(&vault.base_url())
        .bootstrap_token(StaticToken::new(&bootstrap).unwrap())
        .http_service(counted)
        .wall_clock(wall_clock(0))
        .build()
        .unwrap();
    let token = issuer.fetch().await.unwrap();
    assert!(vault.is_active(token.expose_secret()));
    // `GET /api/` for Vault's clock, then the create.
    assert_eq!(calls.load(Ordering::Relaxed), 2);
    issuer.shutdown().await.unwrap();
    assert_eq!(calls.load(Ordering::Relaxed), 3);
    assert!(!vault.is_active(token.expose_secret()));
}

/// The issuer's calls and the layer's requests share one `ConcurrencyLimit` of 1: the first
/// request, waiting for the issuer's token, must not hold the only permit (issue 11, bug 18).
#[tokio::test(start_paused = true)]
async fn a_shared_concurrency_limit_does_not_deadlock_the_first_request() {
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    let bootstrap = vault.issue_token();
    let shared = ServiceBuilder::new()
        .concurrency_limit(1)
        .service(http_client());
    let issuer = VaultIssuer::builder(&vault.base_url())
        .bootstrap_token(StaticToken::new(&bootstrap).unwrap())
        .http_service(shared.clone())
        .wall_clock(wall_clock(0))
        .build()
        .unwrap();
    let layer = veeva_vault_auth::VaultAuthLayer::builder(&vault.base_url(), issuer.clone())
        .fetch_timeout(std::time::Duration::from_secs(5))
        .build()
        .unwrap();
    let client = tower::Layer::layer(&layer, shared);
    let url = vault.api_url("/objects/users/me");
    let task = tokio::spawn(async move { send(&client, get(&url)).await });
    eventually("the first request to finish", || task.is_finished()).await;
    let response = task
        .await
        .unwrap()
        .expect("the first request got the issuer's token");
    assert_eq!(response.headers()["x-vaultapi-status"], "SUCCESS");
}
