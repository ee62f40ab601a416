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
