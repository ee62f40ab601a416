//! Tests that kill mutants of `src/exchange/` that the rest of the suite let live
//! (scripts/mutants.sh; mutants-report.md names each): what the answer's body says about its
//! end, both for an answer handed over as it comes and for one read ahead to judge it, over real
//! HTTP to the Vault stand-in.

mod common;

use common::*;
use http_body::Body;
use http_body_util::BodyExt;
use veeva_vault_auth::testing::VaultStandIn;
use veeva_vault_auth::VaultAuthLayer;

/// Reads `body` frame by frame until it has `length` bytes of data (not polling past them).
async fn read_data<B>(body: &mut B, length: usize) -> Vec<u8>
where
    B: Body + Unpin,
    B::Data: AsRef<[u8]>,
    B::Error: std::fmt::Debug,
{
    let mut data = Vec::new();
    while data.len() < length {
        let frame = body.frame().await.expect("more frames").unwrap();
        if let Ok(bytes) = frame.into_data() {
            data.extend_from_slice(bytes.as_ref());
        }
    }
    data
}

async fn end_stream_before_and_after(path: &str, fail_with: Option<&str>) -> String {
    let vault = VaultStandIn::start().await.unwrap();
    let token = vault.issue_token();
    if let Some(error) = fail_with {
        vault.fail_path_with(path, error);
    }
    let layer = VaultAuthLayer::new(&vault.base_url(), ScriptedSource::fixed(&token)).unwrap();
    let client = authed(&layer);
    let response = send(&client, get(&vault.api_url(path))).await.unwrap();
    let length: usize = response.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(length > 0);
    let mut body = response.into_body();
    assert!(!body.is_end_stream(), "data is still to come");
    let data = read_data(&mut body, length).await;
    assert!(body.is_end_stream(), "all {length} bytes were read");
    assert!(body.frame().await.is_none());
    assert!(body.is_end_stream());
    String::from_utf8(data).unwrap()
}

/// A successful answer, handed over as it comes.
#[tokio::test]
async fn a_direct_answer_says_when_it_has_ended() {
    let text = end_stream_before_and_after("/objects/users/me", None).await;
    assert!(text.contains("SUCCESS"), "{text}");
}

/// A `FAILURE` answer that is not a rejection, read ahead to judge it and then handed over.
#[tokio::test]
async fn an_answer_read_ahead_says_when_it_has_ended() {
    let text = end_stream_before_and_after("/objects/documents", Some("INSUFFICIENT_ACCESS")).await;
    assert!(text.contains("INSUFFICIENT_ACCESS"), "{text}");
}
