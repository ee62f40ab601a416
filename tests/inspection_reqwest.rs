//! Hostile answer shapes through the reqwest door (`auth.middleware()` in a reqwest-middleware
//! chain), over real HTTP on loopback: repeated `X-VaultAPI-Status` headers, XML rejections,
//! coded rejections, bodies that stall, and a success known from its first bytes. reqwest is built
//! without its decompression features here, so the caller gets coded bodies as sent. Time is
//! Tokio's paused clock, moved by the tests.
#![cfg(feature = "reqwest")]

mod common;
mod inspection;

use std::time::Duration;

use bytes::Bytes;
use common::{eventually, hold_clock, tokens_in_order, INVALID_SESSION};
use http::Extensions;
use inspection::*;
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware, Middleware, Next};
use veeva_vault_auth::VaultAuthLayer;

/// The default time bound on holding a head for its body to be judged.
const WAIT: Duration = Duration::from_secs(5);

fn layer_for(server: &Hostile) -> VaultAuthLayer {
    VaultAuthLayer::new(&server.url, tokens_in_order((1..=3).map(token).collect())).unwrap()
}

/// Raises its flag when a response head comes back from beneath it.
struct SeeHead(Seen);

#[async_trait::async_trait]
impl Middleware for SeeHead {
    async fn handle(
        &self,
        request: reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let response = next.run(request, extensions).await;
        self.0.raise();
        response
    }
}

fn client(layer: &VaultAuthLayer, seen: Seen) -> ClientWithMiddleware {
    ClientBuilder::new(reqwest::Client::new())
        .with(layer.middleware())
        .with(SeeHead(seen))
        .build()
}

fn client_for(layer: &VaultAuthLayer) -> ClientWithMiddleware {
    client(layer, Seen::default())
}

async fn body_of(response: reqwest::Response) -> Bytes {
    response.bytes().await.unwrap()
}

#[tokio::test]
async fn a_repeated_status_header_never_hides_a_rejection() {
    for statuses in [["SUCCESS", "FAILURE"], ["SUCCESS", "SUCCESS"]] {
        let mut rejection = Answer::new(&[JSON], INVALID_SESSION);
        for status in statuses {
            rejection
                .headers
                .push(("x-vaultapi-status", status.to_owned()));
        }
        let server = Hostile::start(vec![rejection, Answer::new(&[JSON, SUCCESS], OK_JSON)]).await;
        let layer = layer_for(&server);
        let response = client(&layer, Seen::default())
            .get(server.api_url())
            .send()
            .await
            .unwrap();
        assert_eq!(body_of(response).await, OK_JSON.as_bytes(), "{statuses:?}");
        assert_eq!(server.authorizations(), [bearer(1), bearer(2)]);
        assert_eq!(layer.handle().status().reacquisitions, 1);
    }
}

#[tokio::test]
async fn xml_rejections_are_recognised_and_other_failures_passed_on() {
    let server = Hostile::start(vec![
        Answer::new(&[XML, FAILURE], XML_REJECTION),
        Answer::new(&[XML, SUCCESS], XML_OK),
    ])
    .await;
    let layer = layer_for(&server);
    let client = client(&layer, Seen::default());
    let response = client.get(server.api_url()).send().await.unwrap();
    assert_eq!(body_of(response).await, XML_OK.as_bytes());
    assert_eq!(server.authorizations(), [bearer(1), bearer(2)]);
    assert_eq!(layer.handle().status().reacquisitions, 1);

    let other = XML_REJECTION.replace("INVALID_SESSION_ID", "INSUFFICIENT_ACCESS");
    let server = Hostile::start(vec![Answer::new(&[XML, FAILURE], other.clone())]).await;
    let layer = layer_for(&server);
    let response = client_for(&layer)
        .get(server.api_url())
        .send()
        .await
        .unwrap();
    assert_eq!(body_of(response).await, other.as_bytes());
    assert_eq!(layer.handle().status().reacquisitions, 0);
}

#[tokio::test]
async fn coded_rejections_are_recognised_and_coded_answers_passed_on_as_sent() {
    for coding in ["gzip", "br", "deflate"] {
        let coded = ("content-encoding", coding);
        let ok = encode(coding, OK_JSON.as_bytes());
        let server = Hostile::start(vec![
            Answer::new(
                &[JSON, FAILURE, coded],
                encode(coding, INVALID_SESSION.as_bytes()),
            ),
            Answer::new(&[JSON, coded], ok.clone()),
        ])
        .await;
        let layer = layer_for(&server);
        let response = client_for(&layer)
            .get(server.api_url())
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["content-encoding"], coding);
        assert_eq!(body_of(response).await, ok, "{coding}");
        assert_eq!(server.authorizations(), [bearer(1), bearer(2)], "{coding}");
        assert_eq!(layer.handle().status().reacquisitions, 1, "{coding}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_stalled_failure_is_handed_over_after_the_wait() {
    let _clock = hold_clock();
    let answer = Answer::new(&[JSON, FAILURE, ("content-length", "500")], "")
        .steps(vec![Step::Data(Bytes::from_static(b"{")), Step::Stall]);
    let server = Hostile::start(vec![answer]).await;
    let layer = layer_for(&server);
    let seen = Seen::default();
    let client = client(&layer, seen.clone());
    let url = server.api_url();
    let task = tokio::spawn(async move { client.get(url).send().await });
    eventually("the head reaches the layer", || seen.is_raised()).await;

    tokio::time::advance(WAIT - Duration::from_millis(100)).await;
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    assert!(!task.is_finished(), "handed over before the wait was up");
    tokio::time::advance(Duration::from_millis(200)).await;
    eventually("the response is handed over", || task.is_finished()).await;

    let mut response = task.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    let first = response.chunk().await.unwrap().unwrap();
    assert_eq!(&first[..], b"{");
    assert_eq!(layer.handle().status().reacquisitions, 0);
}

#[tokio::test(start_paused = true)]
async fn a_success_is_handed_over_from_its_first_bytes() {
    let _clock = hold_clock();
    let answer = Answer::new(&[JSON], "").steps(vec![
        Step::Data(Bytes::from_static(
            br#"{"responseStatus":"SUCCESS","data":["#,
        )),
        Step::Wait(Duration::from_secs(60)),
        Step::Data(Bytes::from_static(b"1]}")),
    ]);
    let sent = answer.body();
    let server = Hostile::start(vec![answer]).await;
    let layer = layer_for(&server);
    let client = client_for(&layer);
    let url = server.api_url();
    // The clock does not move: the rest of the body is a minute away.
    let task = tokio::spawn(async move { client.get(url).send().await });
    eventually("the response is handed over", || task.is_finished()).await;
    let response = task.await.unwrap().unwrap();
    let reading = tokio::spawn(body_of(response));
    tokio::time::advance(Duration::from_secs(61)).await;
    eventually("the body arrives", || reading.is_finished()).await;
    assert_eq!(reading.await.unwrap(), sent);
    assert_eq!(layer.handle().status().reacquisitions, 0);
}
