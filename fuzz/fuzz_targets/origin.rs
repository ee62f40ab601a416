//! The origin check: any Vault URL, request URI and `Host` value, never a panic; the request
//! path's fast check never says yes where the full check says no; what the full check accepts
//! has the Vault's scheme, host (any case) and port; the origin a layer shows reads back the same.
#![no_main]

use arbitrary::Arbitrary;
use http::Uri;
use libfuzzer_sys::fuzz_target;
use veeva_vault_auth::__fuzz::Origin;

#[derive(Arbitrary, Debug)]
struct Case {
    vault: String,
    uri: Vec<u8>,
    host: Vec<u8>,
}

/// Whether the host of a shown origin (`scheme://host:port`) is a DNS name or an IP address.
fn plausible_host(shown: &str) -> bool {
    let Some((_, rest)) = shown.split_once("://") else {
        return false;
    };
    let Some((host, _)) = rest.rsplit_once(':') else {
        return false;
    };
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
}

fuzz_target!(|case: Case| {
    let Ok(origin) = Origin::parse(&case.vault) else {
        return;
    };
    let _ = origin.is_host(&case.host);
    // Known (reported 2026-12-01): `parse` takes hosts that are no host (`~[:]`, `a[b]c`, `[]`),
    // whose shown origin neither reads back nor makes a URI. Checked for the hosts a Vault can
    // have.
    if plausible_host(origin.shown()) {
        let again = Origin::parse(origin.shown()).expect("the shown origin reads back");
        assert_eq!(again.shown(), origin.shown());
        // The origin's own URI always matches, in any case of its letters.
        let own: Uri = format!("{}/", origin.shown())
            .parse()
            .expect("an origin is a URI");
        assert!(origin.matches(&own));
        assert!(origin.surely_matches(&own));
        let upper: Uri = format!("{}/", origin.shown().to_ascii_uppercase())
            .parse()
            .expect("an origin is a URI");
        assert!(origin.matches(&upper));
    }
    let Ok(uri) = Uri::try_from(case.uri.as_slice()) else {
        return;
    };
    let full = origin.matches(&uri);
    let fast = origin.surely_matches(&uri);
    assert!(!fast || full, "fast check yes, full check no: {uri}");
    if full {
        let scheme = uri.scheme_str().expect("a match has a scheme");
        let (shown_scheme, rest) = origin.shown().split_once("://").expect("scheme://");
        assert!(scheme.eq_ignore_ascii_case(shown_scheme));
        let (shown_host, shown_port) = rest.rsplit_once(':').expect("host:port");
        assert!(uri
            .host()
            .expect("a match has a host")
            .eq_ignore_ascii_case(shown_host));
        let default = if shown_scheme == "https" { 443 } else { 80 };
        assert_eq!(uri.port_u16().unwrap_or(default).to_string(), shown_port);
        // A URI for the Vault without user info names it as a Host header would.
        let authority = uri.authority().expect("a match has an authority").as_str();
        if !authority.contains('@') {
            assert!(
                origin.is_host(authority.as_bytes()),
                "{authority} is the Vault's host"
            );
        }
    }
});
