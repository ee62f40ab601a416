//! Tests that kill mutants of `src/tower/guard.rs` and `src/tower/layer.rs` that the rest of
//! the suite let live (scripts/mutants.sh): what the guard and the layer show in `Debug`, and
//! that it is never the token.

use tower::Layer;
use veeva_vault_auth::source::StaticToken;
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
