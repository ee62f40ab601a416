//! The host part of issued tokens' names, from `HOSTNAME`: trimmed, without `:` or characters
//! that are not visible ASCII, and cut so that the whole name fits Vault's 128 characters.
//!
//! A test binary of its own with a single test: it sets `HOSTNAME`, which the issuer reads when
//! it is built, and no other test may run while it does.
#![cfg(feature = "issuer")]

use std::time::{Duration, UNIX_EPOCH};

use veeva_vault_auth::source::{StaticToken, VaultIssuer};

/// An issuer built with `HOSTNAME` set to `host`, or unset.
fn issuer_on(host: Option<&str>) -> VaultIssuer {
    match host {
        Some(host) => std::env::set_var("HOSTNAME", host),
        None => std::env::remove_var("HOSTNAME"),
    }
    VaultIssuer::builder("http://127.0.0.1:9")
        .bootstrap_token(StaticToken::new("veeva-vault-hostname-bootstrap").unwrap())
        .name_prefix("fleet")
        .build()
        .unwrap()
}

#[test]
fn the_host_in_token_names_is_visible_ascii_without_colons_and_fits_the_name() {
    let at = UNIX_EPOCH + Duration::from_secs(1_796_160_600);
    let pid = std::process::id();
    let time = "2026-12-01T21:30:00Z";

    let name = issuer_on(Some("  web:01\u{7}.example.com\u{e9} \n")).token_name_at(at);
    assert_eq!(name, format!("fleet:web01.example.com:{pid}:{time}"));

    // A host name longer than the room left: cut so that the name is exactly 128 characters.
    let name = issuer_on(Some(&"h".repeat(200))).token_name_at(at);
    let room = 128 - "fleet".len() - pid.to_string().len() - time.len() - 3;
    assert_eq!(
        name,
        format!("fleet:{}:{pid}:{time}", "h".repeat(room)),
        "{} characters",
        name.len()
    );
    assert_eq!(name.len(), 128);

    // A `HOSTNAME` with nothing left once cut counts as unset: the name's host is the one the
    // issuer finds without it (`/etc/hostname`, else `host`), never empty.
    let unset = issuer_on(None).token_name_at(at);
    let host = unset.split(':').nth(1).unwrap();
    assert!(!host.is_empty(), "{unset}");
    for empty in [" \t ", "\u{e9}\u{e8}", ":::", "\u{7}"] {
        assert_eq!(
            issuer_on(Some(empty)).token_name_at(at),
            unset,
            "HOSTNAME={empty:?}"
        );
    }
}
