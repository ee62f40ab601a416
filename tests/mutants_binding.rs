//! Tests that kill mutants of `src/vault/binding.rs` that the rest of the suite let live
//! (scripts/mutants.sh): the inspection bounds as a request sent with a cached token carries
//! them (the first request of a layer waits for its token and goes another way). Over real HTTP
//! on loopback (tests/inspection's hostile Vault), on Tokio's paused clock.

mod common;
mod inspection;

use std::time::Duration;

use bytes::Bytes;
use common::{authed, eventually, get, hold_clock, send, text, tokens_in_order, INVALID_SESSION};
use inspection::*;
use tower::ServiceBuilder;
use veeva_vault_auth::VaultAuthLayer;

#[tokio::test(start_paused = true)]
async fn a_request_sent_with_a_cached_token_is_held_for_the_configured_wait() {
    let _clock = hold_clock();
    let wait = Duration::from_millis(300);
    let stalled = Answer::new(&[JSON, FAILURE, ("content-length", "500")], "")
        .steps(vec![Step::Data(Bytes::from_static(b"{")), Step::Stall]);
    let server = Hostile::start(vec![Answer::new(&[JSON, SUCCESS], OK_JSON), stalled]).await;
    let layer = VaultAuthLayer::builder(&server.url, tokens_in_order(vec![token(1), token(2)]))
        .max_inspect_wait(wait)
        .build()
        .unwrap();
    let client = authed(&layer);
    let url = server.api_url();
    // The first request fetches the token; the second finds it cached.
    assert_eq!(text(send(&client, get(&url)).await.unwrap()).await, OK_JSON);
    let seen = Seen::default();
    let watched = {
        let seen = seen.clone();
        ServiceBuilder::new()
            .layer(layer.clone())
            .map_response(move |response| {
                seen.raise();
                response
            })
            .service(common::http_client())
    };
    let task = tokio::spawn(async move { send(&watched, get(&url)).await });
    eventually("the head reaches the layer", || seen.is_raised()).await;
    for _ in 0..2 {
        tokio::time::advance(Duration::from_millis(100)).await;
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }
    assert!(!task.is_finished(), "handed over before the wait was up");
    tokio::time::advance(Duration::from_millis(200)).await;
    eventually("the response is handed over", || task.is_finished()).await;
    assert_eq!(task.await.unwrap().unwrap().status(), 200);
    assert_eq!(server.authorizations(), [bearer(1), bearer(1)]);
}

#[tokio::test(start_paused = true)]
async fn a_rejection_of_a_cached_token_is_read_within_the_inspection_limit() {
    let _clock = hold_clock();
    let server = Hostile::start(vec![
        Answer::new(&[JSON, SUCCESS], OK_JSON),
        Answer::new(&[JSON, FAILURE], INVALID_SESSION),
        Answer::new(&[JSON, SUCCESS], OK_JSON),
    ])
    .await;
    let layer =
        VaultAuthLayer::new(&server.url, tokens_in_order(vec![token(1), token(2)])).unwrap();
    let client = authed(&layer);
    let url = server.api_url();
    assert_eq!(text(send(&client, get(&url)).await.unwrap()).await, OK_JSON);
    // Rejected with the cached token, read, recognised, replayed with the next one.
    assert_eq!(text(send(&client, get(&url)).await.unwrap()).await, OK_JSON);
    assert_eq!(server.authorizations(), [bearer(1), bearer(1), bearer(2)]);
    assert_eq!(layer.handle().status().reacquisitions, 1);
}
