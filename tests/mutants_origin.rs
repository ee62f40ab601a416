//! Tests that kill mutants of `src/vault/origin.rs` that the rest of the suite let live
//! (scripts/mutants.sh): Vault URLs whose host has a `-` or `_`, or is an IPv6 address ending
//! in `::`.

use veeva_vault_auth::source::StaticToken;
use veeva_vault_auth::VaultAuthLayer;

fn layer(url: &str) -> Result<VaultAuthLayer, veeva_vault_auth::ConfigError> {
    VaultAuthLayer::new(url, StaticToken::new("veeva-vault-origin").unwrap())
}

#[test]
fn a_dns_name_may_hold_hyphens_and_underscores() {
    for url in [
        "https://my-vault.veevavault.com",
        "https://my_vault.veevavault.com",
        "https://a-b_c.veevavault.com:8443",
        "my-vault.veevavault.com",
    ] {
        assert!(layer(url).is_ok(), "{url}");
    }
    assert!(layer("https://my vault.veevavault.com").is_err());
    assert!(layer("https://my*vault.veevavault.com").is_err());
}

#[test]
fn an_ipv6_address_ending_in_a_colon_pair_has_no_port_of_its_own() {
    // The port is what follows `]`, never a part of the address.
    assert!(layer("https://[2001:db8::]").is_ok());
    assert!(layer("https://[2001:db8::]:8443").is_ok());
    assert!(layer("https://[2001:db8::]:").is_err(), "an empty port");
}
