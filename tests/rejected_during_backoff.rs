//! Found by the soak (examples/soak.rs) on 2026-12-01, and fixed the same day.
//!
//! A request rejected while the layer's fetches are in backoff (the last fetch failed) gets
//! Vault's rejection at once, although the next attempt is due well within the fetch timeout and
//! succeeds: it is not replayed. A request that finds no token in the same state waits for that
//! attempt (guide, "A source that fails"); a rejected one could too.

mod common;

use std::time::Duration;

use common::*;
use veeva_vault_auth::source::SourceError;
use veeva_vault_auth::testing::{Outcome, VaultStandIn};
use veeva_vault_auth::{AccessToken, Backoff, VaultAuthLayer};

#[tokio::test(start_paused = true)]
async fn a_request_rejected_during_a_short_backoff_is_replayed_after_it() {
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    let (first, second) = (vault.issue_token(), vault.issue_token());
    let source = ScriptedSource::new(move |n| match n {
        1 => Ok(AccessToken::new(first.clone()).unwrap()),
        2 => Err(SourceError::retryable("the source is down for a moment")),
        _ => Ok(AccessToken::new(second.clone()).unwrap()),
    });
    let layer = VaultAuthLayer::builder(&vault.base_url(), source.clone())
        .backoff(Backoff::new(Duration::from_secs(1), Duration::from_secs(1)))
        .fetch_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let client = authed(&layer);
    let documents = vault.api_url("/objects/documents");
    let warm = send(&client, get(&documents)).await.unwrap();
    assert_eq!(vault.requests()[0].outcome, Outcome::Accepted);
    drop(warm);

    // The late request carries the first token and is held at the server.
    vault.hold_requests(true);
    let late = tokio::spawn({
        let (client, documents) = (client.clone(), documents.clone());
        async move { text(send(&client, get(&documents)).await.unwrap()).await }
    });
    vault.wait_for_held(1).await;
    vault.stop_holding();
    // The first token is revoked; an early request is rejected, and the fetch it starts fails.
    assert!(vault.revoke(
        &vault.requests()[0].headers["authorization"]
            .to_str()
            .unwrap()[7..]
    ));
    let early = send(&client, get(&documents)).await;
    assert_eq!(source.fetches(), 2, "the early rejection's fetch failed");
    drop(early);
    // Now the late request is answered: rejected, during the 1 s backoff.
    vault.release();
    // The backoff runs on Tokio's clock: move it on until the late request is answered.
    for _ in 0..30 {
        if late.is_finished() {
            break;
        }
        for _ in 0..20 {
            tokio::task::yield_now().await;
            std::thread::yield_now();
        }
        tokio::time::advance(Duration::from_millis(100)).await;
    }
    eventually("the late request to be answered", || late.is_finished()).await;
    let answer = late.await.unwrap();
    assert!(
        !answer.contains("INVALID_SESSION_ID"),
        "the late request was not replayed after the backoff (fetches: {})",
        source.fetches()
    );
    assert_eq!(source.fetches(), 3);
}
