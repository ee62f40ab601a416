//! The stand-in's side of issuance, driven over real HTTP: what it records and how it redacts it.

mod common;

use common::*;
use veeva_vault_auth::testing::VaultStandIn;

/// A token value built at run time, holding every kind of visible ASCII Vault may put in one.
fn odd_token() -> String {
    let secret: String = ["abc", ".DEF", "-ghi", "_JKL", "~mno", "!$'()*+,;=:@/?#[]"].concat();
    format!("veeva-vault-{secret}")
}

/// Percent-encodes every byte but letters and digits, as a strict form encoder may.
fn percent_encoded(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Issue 11, bug 8: the whole token is masked whatever visible ASCII it holds, and a
/// percent-encoded token is masked too, in the path, query, headers and body.
#[tokio::test]
async fn recorded_requests_never_show_any_part_of_a_token() {
    let vault = VaultStandIn::start().await.unwrap();
    let token = odd_token();
    let encoded = percent_encoded(&token);
    let body: &'static str = Box::leak(format!("a={encoded}&b={token}").into_boxed_str());
    let url = vault.api_url(&format!("/objects/documents/{encoded}?echo={encoded}"));
    let mut request = post_form(&url, body);
    request
        .headers_mut()
        .insert("x-echo", token.parse().unwrap());
    request
        .headers_mut()
        .insert("x-echo-encoded", encoded.parse().unwrap());
    send_plain(request).await;

    let recorded = vault.requests();
    assert_eq!(recorded.len(), 1);
    let debug = format!("{:?}", recorded[0]);
    // Every piece of the secret part, literal or encoded, is gone.
    for piece in [
        ".DEF", "-ghi", "_JKL", "~mno", "%2EDEF", "DEF", "ghi", "JKL", "mno",
    ] {
        assert!(!debug.contains(piece), "{piece} in {debug}");
    }
    assert!(debug.contains("[REDACTED]"));
}

async fn send_plain(request: http::Request<http_body_util::Full<bytes::Bytes>>) {
    let response = http_client().request(request).await.unwrap();
    let _ = text(response).await;
}
