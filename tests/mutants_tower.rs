//! Tests that kill mutants of `src/tower/` that the rest of the suite let live
//! (scripts/mutants.sh): what the guard, the layer, its builder, the service and a response
//! future show in `Debug` (never the token), and which answers passing the guard the layer may
//! judge: over real HTTP to the Vault stand-in, the guard beneath the layer as the guide places
//! it.

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

/// The request and answer of [`answering`].
type Plain = http_body_util::Full<bytes::Bytes>;
/// What [`answering`] hands back.
type Answered = std::future::Ready<Result<http::Response<Plain>, std::convert::Infallible>>;

/// A service that answers every request with an empty 200.
fn answering() -> impl tower::Service<
    http::Request<Plain>,
    Response = http::Response<Plain>,
    Error = std::convert::Infallible,
    Future = Answered,
> + Clone {
    tower::service_fn(|_| std::future::ready(Ok(http::Response::new(Default::default()))))
}

#[test]
fn the_service_shows_what_it_wraps_its_vault_and_rule_but_not_the_token() {
    let shown = format!("{:?}", layer().layer(Inner));
    assert_eq!(
        shown,
        "VaultAuth { inner: Inner, vault: \"https://myvault.veevavault.com:443\", rule: VaultRule, .. }"
    );
}

#[test]
fn the_builder_shows_its_vault_settings_and_rule_but_not_the_token() {
    let builder = VaultAuthLayer::builder(
        "https://MyVault.veevavault.com",
        StaticToken::new(TOKEN).unwrap(),
    )
    .fetch_timeout(std::time::Duration::from_secs(7));
    let shown = format!("{builder:?}");
    assert!(
        shown.starts_with(
            "VaultAuthLayerBuilder { url: \"https://MyVault.veevavault.com\", config: "
        ),
        "{shown}"
    );
    assert!(shown.contains("7s"), "the settings: {shown}");
    assert!(shown.ends_with("rule: VaultRule, .. }"), "{shown}");
    assert!(!shown.contains(TOKEN), "{shown}");
}

#[tokio::test]
async fn a_response_future_shows_its_state_and_generation_but_not_the_token() {
    use tower::{Service, ServiceExt};
    let layer = layer();
    layer.handle().force_refresh().await.unwrap();
    let mut service = layer.layer(answering());
    service.ready().await.unwrap();
    let request = http::Request::get("https://myvault.veevavault.com/api/v26.2/objects/users/me")
        .body(Default::default())
        .unwrap();
    let future = service.call(request);
    let shown = format!("{future:?}");
    assert_eq!(
        shown,
        "ResponseFuture { state: \"Sent\", generation: 1, .. }"
    );
    assert!(future.await.is_ok());
}
