//! Tests that kill mutants of `src/tower/guard.rs` and `src/tower/layer.rs` that the rest of
//! the suite let live (scripts/mutants.sh): what the guard and the layer show in `Debug` (never
//! the token), and which answers passing the guard the layer may judge: over real HTTP to the
//! Vault stand-in, the guard beneath the layer as the guide places it.

mod common;

use common::{get, http_client, send, text, tokens_in_order};
use tower::{Layer, ServiceBuilder};
use veeva_vault_auth::source::StaticToken;
use veeva_vault_auth::testing::VaultStandIn;
use veeva_vault_auth::VaultAuthLayer;

const TOKEN: &str = "veeva-vault-debugShowsNoToken";

#[derive(Debug)]
struct Inner;

fn layer() -> VaultAuthLayer {
    VaultAuthLayer::new(
        "https://MyVault.veevavault.com",
        StaticToken::new(TOKEN).unwrap(),
    )
    .unwrap()
}

#[test]
fn the_guard_says_what_it_is_and_what_it_wraps_but_not_the_token() {
    let guard_layer = layer().token_guard();
    let shown = format!("{guard_layer:?}");
    assert_eq!(shown, "TokenGuardLayer { .. }");
    let guard = guard_layer.layer(Inner);
    let shown = format!("{guard:?}");
    assert_eq!(shown, "TokenGuard { inner: Inner, .. }");
}

#[test]
fn the_layer_shows_its_vault_and_rule_but_not_the_token() {
    let shown = format!("{:?}", layer());
    assert!(shown.starts_with("VaultAuthLayer {"), "{shown}");
    assert!(
        shown.contains("https://myvault.veevavault.com:443"),
        "{shown}"
    );
    assert!(shown.contains("VaultRule"), "{shown}");
    assert!(!shown.contains(TOKEN), "{shown}");
    let service = layer().layer(Inner);
    let shown = format!("{service:?}");
    assert!(!shown.contains(TOKEN), "{shown}");
}

#[tokio::test]
async fn a_rejection_of_the_token_through_the_guard_is_judged_and_replayed() {
    let vault = VaultStandIn::start().await.unwrap();
    let (first, second) = (vault.issue_token(), vault.issue_token());
    vault.revoke(&first);
    let layer =
        VaultAuthLayer::new(&vault.base_url(), tokens_in_order(vec![first, second])).unwrap();
    let client = ServiceBuilder::new()
        .layer(layer.clone())
        .layer(layer.token_guard())
        .service(http_client());
    let response = send(&client, get(&vault.api_url("/objects/users/me")))
        .await
        .unwrap();
    assert!(text(response)
        .await
        .contains(r#""responseStatus":"SUCCESS""#));
    assert_eq!(layer.handle().status().reacquisitions, 1);
}

#[tokio::test]
async fn an_answer_to_a_vault_request_that_lost_the_token_condemns_nothing() {
    // As a redirect follower between the layer and the guard does on a hop that left the Vault
    // and came back: the request reaches the Vault without the token.
    let vault = VaultStandIn::start().await.unwrap();
    let token = vault.issue_token();
    let layer = VaultAuthLayer::new(
        &vault.base_url(),
        tokens_in_order(vec![token.clone(), token]),
    )
    .unwrap();
    let client = ServiceBuilder::new()
        .layer(layer.clone())
        .map_request(|mut request: http::Request<_>| {
            request.headers_mut().remove(http::header::AUTHORIZATION);
            request
        })
        .layer(layer.token_guard())
        .service(http_client());
    let response = send(&client, get(&vault.api_url("/objects/users/me")))
        .await
        .unwrap();
    assert!(
        text(response).await.contains("INVALID_SESSION_ID"),
        "the Vault's answer, passed on"
    );
    assert_eq!(
        layer.handle().status().reacquisitions,
        0,
        "the token was not condemned"
    );
    assert_eq!(vault.request_count(), 1, "and nothing was replayed");
}
