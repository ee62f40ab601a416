//! Hostile answer shapes through the tower door (hyper-util's client beneath the layer, tower-http's
//! decompression above it where a test says so), over real HTTP on loopback: repeated
//! `X-VaultAPI-Status` headers, XML rejections, gzip/brotli/deflate-coded rejections, bodies that
//! stall or trickle. Time is Tokio's paused clock, moved by the tests.

mod common;
mod inspection;

use std::time::Duration;

use bytes::Bytes;
use common::{
    eventually, get, hold_clock, http_client, send, text, tokens_in_order, INVALID_SESSION,
};
use http::{Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use inspection::*;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_http::decompression::DecompressionLayer;
use veeva_vault_auth::{BoxError, VaultAuthLayer};

/// The default time bound on holding a head for its body to be judged.
const WAIT: Duration = Duration::from_secs(5);

fn layer_for(server: &Hostile) -> VaultAuthLayer {
    VaultAuthLayer::new(&server.url, tokens_in_order((1..=3).map(token).collect())).unwrap()
}

/// The layer over hyper-util's client, raising `seen` when a response head reaches the layer.
fn seeing(
    layer: &VaultAuthLayer,
    seen: Seen,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<
        impl Body<Data = Bytes, Error: std::fmt::Debug> + std::fmt::Debug + Send + 'static,
    >,
    Error = BoxError,
    Future: Send,
> + Clone
       + Send
       + 'static {
    ServiceBuilder::new()
        .layer(layer.clone())
        .map_response(move |response| {
            seen.raise();
            response
        })
        .service(http_client())
}

/// Moves the paused clock by `total` in steps of `step`, letting the loopback traffic through
/// after each.
async fn advance_by(total: Duration, step: Duration) {
    let mut moved = Duration::ZERO;
    while moved < total {
        tokio::time::advance(step).await;
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        moved += step;
    }
}

/// Reads `body` to its end while moving the clock (for bodies that trickle).
async fn drain<B>(body: B) -> Bytes
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: std::fmt::Debug,
{
    let reading = tokio::spawn(async move { body.collect().await.unwrap().to_bytes() });
    for _ in 0..10_000 {
        if reading.is_finished() {
            break;
        }
        advance_by(Duration::from_millis(20), Duration::from_millis(20)).await;
    }
    reading.await.unwrap()
}

#[tokio::test]
async fn a_repeated_status_header_never_hides_a_rejection() {
    for statuses in [
        ["SUCCESS", "FAILURE"],
        ["SUCCESS", "SUCCESS"],
        ["FAILURE", "SUCCESS"],
    ] {
        let mut rejection = Answer::new(&[JSON], INVALID_SESSION);
        for status in statuses {
            rejection
                .headers
                .push(("x-vaultapi-status", status.to_owned()));
        }
        let server = Hostile::start(vec![rejection, Answer::new(&[JSON, SUCCESS], OK_JSON)]).await;
        let layer = layer_for(&server);
        let response = send(&common::authed(&layer), get(&server.api_url()))
            .await
            .unwrap();
        assert_eq!(text(response).await, OK_JSON, "{statuses:?}");
        assert_eq!(
            server.authorizations(),
            [bearer(1), bearer(2)],
            "{statuses:?}"
        );
        assert_eq!(layer.handle().status().reacquisitions, 1, "{statuses:?}");
    }
}

#[tokio::test]
async fn an_xml_rejection_is_recognised_and_the_request_replayed() {
    for head in [
        &[XML, FAILURE][..],
        // Before API v23.2: no status header.
        &[("content-type", "text/xml")],
    ] {
        let server = Hostile::start(vec![
            Answer::new(head, XML_REJECTION),
            Answer::new(&[XML, SUCCESS], XML_OK),
        ])
        .await;
        let layer = layer_for(&server);
        let response = send(&common::authed(&layer), get(&server.api_url()))
            .await
            .unwrap();
        assert_eq!(text(response).await, XML_OK);
        assert_eq!(server.authorizations(), [bearer(1), bearer(2)]);
        assert_eq!(layer.handle().status().reacquisitions, 1);
    }
}

#[tokio::test]
async fn an_xml_failure_of_another_kind_is_passed_on_byte_for_byte() {
    let body = XML_REJECTION.replace("INVALID_SESSION_ID", "INSUFFICIENT_ACCESS");
    let pieces = body
        .as_bytes()
        .chunks(40)
        .map(|piece| Step::Data(Bytes::copy_from_slice(piece)))
        .collect();
    let server = Hostile::start(vec![Answer::new(&[XML, FAILURE], "").steps(pieces)]).await;
    let layer = layer_for(&server);
    let response = send(&common::authed(&layer), get(&server.api_url()))
        .await
        .unwrap();
    assert!(format!("{:?}", response.body()).contains("read_ahead_frames"));
    assert_eq!(text(response).await, body);
    assert_eq!(server.authorizations(), [bearer(1)]);
    assert_eq!(layer.handle().status().reacquisitions, 0);
}

#[tokio::test]
async fn coded_rejections_are_recognised_beneath_tower_https_decompression() {
    for coding in ["gzip", "br", "deflate"] {
        let coded = ("content-encoding", coding);
        let server = Hostile::start(vec![
            Answer::new(
                &[JSON, FAILURE, coded],
                encode(coding, INVALID_SESSION.as_bytes()),
            ),
            Answer::new(&[JSON, SUCCESS, coded], encode(coding, OK_JSON.as_bytes())),
        ])
        .await;
        let layer = layer_for(&server);
        let client = ServiceBuilder::new()
            .layer(DecompressionLayer::new())
            .layer(layer.clone())
            .service(http_client());
        let response = client.oneshot(get(&server.api_url())).await.unwrap();
        let received = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&received[..], OK_JSON.as_bytes(), "{coding}");
        assert_eq!(server.authorizations(), [bearer(1), bearer(2)], "{coding}");
        assert_eq!(layer.handle().status().reacquisitions, 1, "{coding}");
        let asked = &server.received()[0]["accept-encoding"];
        assert!(asked.to_str().unwrap().contains(coding), "{coding}");
    }
}

#[tokio::test]
async fn coded_answers_that_are_not_rejections_are_passed_on_as_sent() {
    let other = INVALID_SESSION.replace("INVALID_SESSION_ID", "INSUFFICIENT_ACCESS");
    // A rejection padded to 8 MiB: about 8 KiB coded, more than the bound decoded.
    let mut bomb = INVALID_SESSION.trim_end_matches('}').to_owned();
    bomb.push_str(r#","pad":""#);
    bomb.push_str(&" ".repeat(8 << 20));
    bomb.push_str("\"}");
    for (coding, body) in [("gzip", other.clone()), ("br", other), ("gzip", bomb)] {
        let coded = encode(coding, body.as_bytes());
        assert!(coded.len() < 32 * 1024);
        let server = Hostile::start(vec![Answer::new(
            &[JSON, FAILURE, ("content-encoding", coding)],
            coded.clone(),
        )])
        .await;
        let layer = layer_for(&server);
        let response = send(&common::authed(&layer), get(&server.api_url()))
            .await
            .unwrap();
        assert!(format!("{:?}", response.body()).contains("read_ahead_frames"));
        let received = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(received, coded);
        assert_eq!(server.authorizations(), [bearer(1)]);
        assert_eq!(layer.handle().status().reacquisitions, 0);
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
    let client = seeing(&layer, seen.clone());
    let url = server.api_url();
    let task = tokio::spawn(async move { send(&client, get(&url)).await });
    eventually("the head reaches the layer", || seen.is_raised()).await;

    advance_by(
        WAIT - Duration::from_millis(100),
        Duration::from_millis(100),
    )
    .await;
    assert!(!task.is_finished(), "handed over before the wait was up");
    tokio::time::advance(Duration::from_millis(200)).await;
    eventually("the response is handed over", || task.is_finished()).await;

    let response = task.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(&first[..], b"{");
    assert_eq!(layer.handle().status().reacquisitions, 0);
}

#[tokio::test(start_paused = true)]
async fn the_wait_is_configurable() {
    let _clock = hold_clock();
    let wait = Duration::from_millis(300);
    let answer = Answer::new(&[JSON, FAILURE, ("content-length", "500")], "")
        .steps(vec![Step::Data(Bytes::from_static(b"{")), Step::Stall]);
    let server = Hostile::start(vec![answer]).await;
    let layer = VaultAuthLayer::builder(&server.url, tokens_in_order((1..=3).map(token).collect()))
        .max_inspect_wait(wait)
        .build()
        .unwrap();
    let seen = Seen::default();
    let client = seeing(&layer, seen.clone());
    let url = server.api_url();
    let task = tokio::spawn(async move { send(&client, get(&url)).await });
    eventually("the head reaches the layer", || seen.is_raised()).await;
    advance_by(
        wait - Duration::from_millis(100),
        Duration::from_millis(100),
    )
    .await;
    assert!(!task.is_finished(), "handed over before the wait was up");
    tokio::time::advance(Duration::from_millis(200)).await;
    eventually("the response is handed over", || task.is_finished()).await;
    assert_eq!(task.await.unwrap().unwrap().status(), 200);
    assert_eq!(layer.handle().status().reacquisitions, 0);
}

#[tokio::test(start_paused = true)]
async fn a_trickling_body_is_handed_over_after_the_wait_and_arrives_whole() {
    let _clock = hold_clock();
    // Vault's answer with its members in another order: no verdict from the first bytes.
    let rest = format!(r#"[{}],"responseStatus":"SUCCESS"}}"#, "1,".repeat(150));
    let answer = Answer::new(&[JSON], "").steps(trickle(
        br#"{"data":"#,
        rest.as_bytes(),
        Duration::from_millis(20),
    ));
    let sent = answer.body();
    let server = Hostile::start(vec![answer]).await;
    let layer = layer_for(&server);
    let seen = Seen::default();
    let client = seeing(&layer, seen.clone());
    let url = server.api_url();
    let task = tokio::spawn(async move { send(&client, get(&url)).await });
    eventually("the head reaches the layer", || seen.is_raised()).await;

    advance_by(WAIT - Duration::from_millis(100), Duration::from_millis(20)).await;
    assert!(!task.is_finished(), "handed over before the wait was up");
    advance_by(Duration::from_millis(200), Duration::from_millis(20)).await;
    eventually("the response is handed over", || task.is_finished()).await;

    let response = task.await.unwrap().unwrap();
    assert_eq!(drain(response.into_body()).await, sent);
    assert_eq!(layer.handle().status().reacquisitions, 0);
}

#[tokio::test(start_paused = true)]
async fn a_success_is_handed_over_from_its_first_bytes() {
    let _clock = hold_clock();
    let rest = format!("{}0]}}", "1,".repeat(500));
    let answer = Answer::new(&[JSON], "").steps(trickle(
        br#"{"responseStatus":"SUCCESS","data":["#,
        rest.as_bytes(),
        Duration::from_millis(20),
    ));
    let sent = answer.body();
    let server = Hostile::start(vec![answer]).await;
    let layer = layer_for(&server);
    let client = common::authed(&layer);
    let url = server.api_url();
    // The clock does not move: only the first bytes are ever sent before the hand-over.
    let task = tokio::spawn(async move { send(&client, get(&url)).await });
    eventually("the response is handed over", || task.is_finished()).await;
    let response = task.await.unwrap().unwrap();
    assert_eq!(drain(response.into_body()).await, sent);
    assert_eq!(layer.handle().status().reacquisitions, 0);
}

#[tokio::test(start_paused = true)]
async fn a_rejection_trickling_in_within_the_wait_is_recognised() {
    let _clock = hold_clock();
    // One byte every 20 ms: about 2.2 s for the whole rejection.
    let rejection = Answer::new(&[JSON, FAILURE], "").steps(trickle(
        b"",
        INVALID_SESSION.as_bytes(),
        Duration::from_millis(20),
    ));
    let server = Hostile::start(vec![rejection, Answer::new(&[JSON, SUCCESS], OK_JSON)]).await;
    let layer = layer_for(&server);
    let client = common::authed(&layer);
    let url = server.api_url();
    let task = tokio::spawn(async move { send(&client, get(&url)).await });
    for _ in 0..200 {
        if task.is_finished() {
            break;
        }
        advance_by(Duration::from_millis(20), Duration::from_millis(20)).await;
    }
    let response = task.await.unwrap().unwrap();
    assert_eq!(text(response).await, OK_JSON);
    assert_eq!(server.authorizations(), [bearer(1), bearer(2)]);
    assert_eq!(layer.handle().status().reacquisitions, 1);
}
