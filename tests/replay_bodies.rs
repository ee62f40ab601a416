//! Replay for boxed and streaming bodies, over real HTTP: a hyper-util client whose body type is
//! `BoxBody<Bytes, BoxError>` (what a generic Vault client uses), against the Vault stand-in and
//! against a server that answers before it reads the body.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use common::*;
use http::header::AUTHORIZATION;
use http::{Request, Response};
use http_body::Frame;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::Notify;
use veeva_vault_auth::testing::{Outcome, RecordedRequest, VaultStandIn};
use veeva_vault_auth::{BoxError, VaultAuth, VaultAuthLayer};

type Boxed = BoxBody<Bytes, BoxError>;
type BoxedClient = VaultAuth<Client<HttpConnector, Boxed>>;

fn boxed_client(layer: &VaultAuthLayer) -> BoxedClient {
    let client = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    tower::Layer::layer(layer, client)
}

type Answer = Response<veeva_vault_auth::ResponseBody<hyper::body::Incoming>>;

/// Sends through a clone of `client`, boxed here: the compiler proves the future `Send` for the
/// concrete body type (it cannot inside a generic spawned closure with `Box<dyn Error>` in it).
fn send_boxed(
    client: &BoxedClient,
    request: Request<Boxed>,
) -> Pin<Box<dyn std::future::Future<Output = Result<Answer, BoxError>> + Send>> {
    use tower::ServiceExt;
    Box::pin(client.clone().oneshot(request))
}

fn empty() -> Boxed {
    Empty::new()
        .map_err(|never: Infallible| match never {})
        .boxed()
}

fn full(bytes: impl Into<Bytes>) -> Boxed {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

/// A body of unknown length that hands out `chunks` one by one, then fails if `fail` is set.
struct Stream {
    chunks: Vec<Bytes>,
    fail: bool,
}

impl http_body::Body for Stream {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if !self.chunks.is_empty() {
            return Poll::Ready(Some(Ok(Frame::data(self.chunks.remove(0)))));
        }
        if std::mem::take(&mut self.fail) {
            return Poll::Ready(Some(Err("the stream broke".into())));
        }
        Poll::Ready(None)
    }
}

/// A form body of `total` bytes (`q=` and a VQL-ish text that differs along its length), sent as
/// a stream of `chunks` chunks.
fn streaming(total: usize, chunks: usize) -> (Boxed, Vec<u8>) {
    let mut content = b"q=SELECT+id+FROM+documents+WHERE+name__v=".to_vec();
    let mut i = 0usize;
    while content.len() < total {
        content.push(b'a' + (i * 7 % 26) as u8);
        i += 1;
    }
    let size = total.div_ceil(chunks);
    let body = Stream {
        chunks: content.chunks(size).map(Bytes::copy_from_slice).collect(),
        fail: false,
    };
    (body.boxed(), content)
}

fn bearer_of(request: &RecordedRequest) -> String {
    request.headers[AUTHORIZATION]
        .to_str()
        .unwrap()
        .trim_start_matches("Bearer ")
        .to_owned()
}

struct Setup {
    vault: VaultStandIn,
    source: ScriptedSource,
    layer: VaultAuthLayer,
    client: BoxedClient,
    old: String,
    new: String,
}

/// A vault with two tokens, a layer whose source hands them out in turn, and a boxed client that
/// has made one request with the first.
async fn setup(unauthorized_mode: bool, replay_limit: u64) -> Setup {
    let vault = VaultStandIn::start().await.unwrap();
    vault.set_unauthorized_mode(unauthorized_mode);
    let (old, new) = (vault.issue_token(), vault.issue_token());
    let source = tokens_in_order(vec![old.clone(), new.clone()]);
    let layer = VaultAuthLayer::builder(&vault.base_url(), source.clone())
        .max_replay_body(replay_limit)
        .build()
        .unwrap();
    let client = boxed_client(&layer);
    let me = Request::get(vault.api_url("/objects/users/me"))
        .body(empty())
        .unwrap();
    send(&client, me).await.unwrap();
    vault.clear_requests();
    Setup {
        vault,
        source,
        layer,
        client,
        old,
        new,
    }
}

async fn boxed_wave(unauthorized_mode: bool) {
    let _clock = hold_clock();
    let Setup {
        vault,
        source,
        layer,
        client,
        old,
        new,
    } = setup(unauthorized_mode, 64 * 1024).await;
    let url = vault.api_url("/objects/users/me");
    vault.hold_requests(true);
    let tasks = spawn_many(1000, |i| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let request = if i % 2 == 0 {
                Request::get(url).body(empty()).unwrap()
            } else {
                Request::post(url.replace("/objects/users/me", "/query"))
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(full(format!("q=SELECT+id+FROM+documents+WHERE+n={i}")))
                    .unwrap()
            };
            let response = send_boxed(&client, request).await.unwrap();
            let vault_status = response.headers()["x-vaultapi-status"].clone();
            (vault_status, text(response).await)
        }
    });
    vault.wait_for_held(1000).await;
    assert!(vault.revoke(&old));
    vault.hold_requests(false);
    for task in tasks {
        let (vault_status, body) = task.await.unwrap();
        assert_eq!(vault_status, "SUCCESS", "{body}");
    }
    assert_eq!(source.fetches(), 2, "one fetch at start, one for the wave");
    let seen = vault.requests();
    assert_eq!(seen.len(), 2000);
    let (first, replays) = seen.split_at(1000);
    let rejected = if unauthorized_mode {
        Outcome::Unauthorized
    } else {
        Outcome::InvalidSession
    };
    assert!(first.iter().all(|r| r.outcome == rejected));
    assert!(replays
        .iter()
        .all(|r| r.outcome == Outcome::Accepted && bearer_of(r) == new));
    let sent: std::collections::HashMap<_, _> = first
        .iter()
        .filter(|r| r.method == "POST")
        .map(|r| (r.body.clone(), ()))
        .collect();
    let replayed: Vec<_> = replays.iter().filter(|r| r.method == "POST").collect();
    assert_eq!(replayed.len(), 500);
    for replay in replayed {
        assert!(
            sent.contains_key(&replay.body),
            "a replayed body is byte for byte one that was sent"
        );
    }
    assert_eq!(sent.len(), 500, "each POST body was its own");
    assert_eq!(layer.handle().status().replays, 1000);
}

#[tokio::test(start_paused = true)]
async fn a_revocation_under_1000_boxed_requests_refreshes_once_and_replays_all() {
    boxed_wave(false).await;
}

#[tokio::test(start_paused = true)]
async fn the_same_behind_a_gateway_that_answers_401() {
    boxed_wave(true).await;
}

#[tokio::test(start_paused = true)]
async fn a_streaming_body_within_the_cap_is_replayed_whole() {
    let _clock = hold_clock();
    let s = setup(false, 64 * 1024).await;
    s.vault.revoke(&s.old);
    let (body, content) = streaming(40_000, 40);
    let request = Request::post(s.vault.api_url("/query"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .unwrap();
    let response = send(&s.client, request).await.unwrap();
    let seen = s.vault.requests();
    assert_eq!(response.headers()["x-vaultapi-status"], "SUCCESS");
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].outcome, Outcome::InvalidSession);
    assert_eq!(
        (seen[1].outcome, bearer_of(&seen[1])),
        (Outcome::Accepted, s.new.clone())
    );
    for sent in &seen {
        assert_eq!(sent.body.len(), 40_000);
        assert_eq!(&sent.body[..], &content[..], "every byte, in order");
    }
    assert_eq!(s.layer.handle().status().replays, 1);
}

#[tokio::test(start_paused = true)]
async fn a_streaming_body_past_the_cap_is_sent_once_and_the_next_request_succeeds() {
    let _clock = hold_clock();
    let s = setup(false, 64 * 1024).await;
    s.vault.revoke(&s.old);
    let (body, content) = streaming(100_000, 40);
    let request = Request::post(s.vault.api_url("/query"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .unwrap();
    let response = send(&s.client, request).await.unwrap();
    assert_eq!(
        text(response).await,
        INVALID_SESSION,
        "the caller gets Vault's answer"
    );
    let me = Request::get(s.vault.api_url("/objects/users/me"))
        .body(empty())
        .unwrap();
    let response = send(&s.client, me).await.unwrap();
    assert_eq!(response.headers()["x-vaultapi-status"], "SUCCESS");
    let seen = s.vault.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(&seen[0].body[..], &content[..]);
    assert_eq!(bearer_of(&seen[1]), s.new);
    assert_eq!(s.layer.handle().status().replays, 0);
    assert_eq!(s.source.fetches(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_body_that_fails_midway_is_not_replayed_and_the_caller_gets_the_error() {
    let _clock = hold_clock();
    let s = setup(false, 64 * 1024).await;
    let body = Stream {
        chunks: vec![Bytes::from_static(b"q=SELECT")],
        fail: true,
    };
    let request = Request::post(s.vault.api_url("/query"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.boxed())
        .unwrap();
    assert!(send(&s.client, request).await.is_err());
    assert_eq!(s.layer.handle().status().replays, 0);
    assert_eq!(s.source.fetches(), 1, "a broken body is not a rejection");
}

#[tokio::test(start_paused = true)]
async fn an_empty_boxed_body_is_replayed_as_empty() {
    let _clock = hold_clock();
    let s = setup(false, 0).await;
    s.vault.revoke(&s.old);
    let me = Request::get(s.vault.api_url("/objects/users/me"))
        .body(empty())
        .unwrap();
    let response = send(&s.client, me).await.unwrap();
    assert_eq!(response.headers()["x-vaultapi-status"], "SUCCESS");
    assert_eq!(
        s.layer.handle().status().replays,
        1,
        "replayed with a cap of 0 bytes"
    );
    // The replay goes out as the first send did: an empty body of known length, not a stream.
    let seen = s.vault.requests();
    assert_eq!(seen.len(), 2);
    for name in ["content-length", "transfer-encoding"] {
        assert_eq!(
            seen[1].headers.get(name),
            seen[0].headers.get(name),
            "{name}"
        );
    }
    assert!(seen[1].headers.get("transfer-encoding").is_none());
    assert!(seen[1].body.is_empty());
}

/// A server that answers the first token's requests with Vault's rejection before reading their
/// bodies, and records what every other request brought.
struct EarlyAnswer {
    addr: SocketAddr,
    bodies: Arc<Mutex<Vec<Vec<u8>>>>,
    answered: Arc<Notify>,
}

async fn early_answer(rejected: String) -> EarlyAnswer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let answered = Arc::new(Notify::new());
    let (kept, told) = (Arc::clone(&bodies), Arc::clone(&answered));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (kept, told, rejected) = (Arc::clone(&kept), Arc::clone(&told), rejected.clone());
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                        let (kept, told, rejected) =
                            (Arc::clone(&kept), Arc::clone(&told), rejected.clone());
                        async move {
                            let bearer = request.headers()[AUTHORIZATION]
                                .to_str()
                                .unwrap()
                                .to_owned();
                            let answer = if bearer.ends_with(&rejected) {
                                told.notify_one();
                                Response::builder()
                                    .header("content-type", "application/json;charset=UTF-8")
                                    .header("x-vaultapi-status", "FAILURE")
                                    .body(Full::new(Bytes::from_static(INVALID_SESSION.as_bytes())))
                                    .unwrap()
                            } else {
                                let body = request.into_body().collect().await.unwrap().to_bytes();
                                kept.lock().unwrap().push(body.to_vec());
                                Response::builder()
                                    .header("content-type", "application/json;charset=UTF-8")
                                    .header("x-vaultapi-status", "SUCCESS")
                                    .body(Full::new(Bytes::from_static(
                                        br#"{"responseStatus":"SUCCESS"}"#,
                                    )))
                                    .unwrap()
                            };
                            Ok::<_, Infallible>(answer)
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    EarlyAnswer {
        addr,
        bodies,
        answered,
    }
}

/// A body that hands out its first chunk at once and the rest only after `gate` is notified.
struct Gated {
    first: Option<Bytes>,
    rest: Vec<Bytes>,
    gate: Pin<Box<dyn std::future::Future<Output = ()> + Send + Sync>>,
    open: bool,
}

impl http_body::Body for Gated {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        if !self.open {
            std::task::ready!(self.gate.as_mut().poll(cx));
            self.open = true;
        }
        Poll::Ready((!self.rest.is_empty()).then(|| Ok(Frame::data(self.rest.remove(0)))))
    }
}

async fn answered_before_the_body_was_read(streamed: bool) {
    let _clock = hold_clock();
    let (old, new) = ("veeva-vault-early-old", "veeva-vault-early-new");
    let server = early_answer(old.to_owned()).await;
    let source = tokens_in_order(vec![old.to_owned(), new.to_owned()]);
    let layer = VaultAuthLayer::new(&format!("http://{}", server.addr), source.clone()).unwrap();
    let client = boxed_client(&layer);
    let content: Vec<u8> = (0..30_000).map(|i| (i % 253) as u8).collect();
    let body = if streamed {
        let answered = Arc::clone(&server.answered);
        let rest = content[1000..]
            .chunks(1000)
            .map(Bytes::copy_from_slice)
            .collect();
        Gated {
            first: Some(Bytes::copy_from_slice(&content[..1000])),
            rest,
            gate: Box::pin(async move { answered.notified().await }),
            open: false,
        }
        .boxed()
    } else {
        full(content.clone())
    };
    let request = Request::post(format!("http://{}/api/v26.2/query", server.addr))
        .body(body)
        .unwrap();
    let response = send(&client, request).await.unwrap();
    assert_eq!(response.headers()["x-vaultapi-status"], "SUCCESS");
    let bodies = server.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 1, "one replay reached the server");
    assert_eq!(bodies[0].len(), content.len());
    assert_eq!(bodies[0], content, "the replay carries the whole body");
    assert_eq!(source.fetches(), 2);
}

#[tokio::test(start_paused = true)]
async fn an_answer_before_the_body_was_read_replays_the_whole_in_memory_body() {
    answered_before_the_body_was_read(false).await;
}

#[tokio::test(start_paused = true)]
async fn an_answer_before_the_body_was_read_replays_the_whole_streaming_body() {
    answered_before_the_body_was_read(true).await;
}

/// Requests dropped at each await of the shared flow (waiting for the new token, sending the
/// replay) strand nobody: the fetch finishes, the next requests get the new token, and the
/// recording of a dropped request goes with it.
#[tokio::test(start_paused = true)]
async fn dropping_requests_at_every_await_of_the_flow_never_wedges_the_cache() {
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    let tokens: Vec<String> = (0..3).map(|_| vault.issue_token()).collect();
    let source = tokens_in_order(tokens.clone());
    let layer = VaultAuthLayer::new(&vault.base_url(), source.clone()).unwrap();
    let client = boxed_client(&layer);
    let url = vault.api_url("/query");
    let form = |i: usize| {
        Request::post(url.clone())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(streaming(2_000 + i, 4).0)
            .unwrap()
    };
    send_boxed(&client, form(0)).await.unwrap();

    // Dropped while waiting for the new token after its rejection.
    vault.revoke(&tokens[0]);
    source.close_gate();
    let waiting = tokio::spawn(send_boxed(&client, form(1)));
    eventually("the rejection starts a fetch", || source.fetches() == 2).await;
    waiting.abort();
    assert!(waiting.await.unwrap_err().is_cancelled());
    source.open(1);
    let response = send_boxed(&client, form(2)).await.unwrap();
    assert_eq!(response.headers()["x-vaultapi-status"], "SUCCESS");
    assert_eq!(layer.handle().status().generation, Some(2));

    // Dropped while its replay is at the server.
    vault.revoke(&tokens[1]);
    source.open(1);
    vault.hold_requests(true);
    let replaying = tokio::spawn(send_boxed(&client, form(3)));
    vault.wait_for_held(1).await;
    vault.release();
    vault.wait_for_held(1).await;
    replaying.abort();
    assert!(replaying.await.unwrap_err().is_cancelled());
    vault.hold_requests(false);
    let response = send_boxed(&client, form(4)).await.unwrap();
    assert_eq!(response.headers()["x-vaultapi-status"], "SUCCESS");
    let status = layer.handle().status();
    assert_eq!((status.generation, source.fetches()), (Some(3), 3));
}

/// A server that rejects the first token and records the trailers of every other request.
async fn trailer_server(
    rejected: &'static str,
) -> (SocketAddr, Arc<Mutex<Vec<Option<http::HeaderMap>>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let kept = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let kept = Arc::clone(&kept);
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                        let kept = Arc::clone(&kept);
                        async move {
                            let bearer = request.headers()[AUTHORIZATION]
                                .to_str()
                                .unwrap()
                                .to_owned();
                            let collected = request.into_body().collect().await.unwrap();
                            let status = if bearer.ends_with(rejected) {
                                "FAILURE"
                            } else {
                                kept.lock().unwrap().push(collected.trailers().cloned());
                                "SUCCESS"
                            };
                            let body = if status == "SUCCESS" {
                                r#"{"responseStatus":"SUCCESS"}"#
                            } else {
                                INVALID_SESSION
                            };
                            Ok::<_, Infallible>(
                                Response::builder()
                                    .header("content-type", "application/json")
                                    .header("x-vaultapi-status", status)
                                    .body(Full::new(Bytes::from_static(body.as_bytes())))
                                    .unwrap(),
                            )
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, seen)
}

/// A body of two chunks and trailers.
struct WithTrailers(Vec<Frame<Bytes>>);

impl http_body::Body for WithTrailers {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready((!self.0.is_empty()).then(|| Ok(self.0.remove(0))))
    }
}

#[tokio::test(start_paused = true)]
async fn trailers_are_replayed() {
    let _clock = hold_clock();
    let (old, new) = ("veeva-vault-trailer-old", "veeva-vault-trailer-new");
    let (addr, seen) = trailer_server(old).await;
    let source = tokens_in_order(vec![old.to_owned(), new.to_owned()]);
    let layer = VaultAuthLayer::new(&format!("http://{addr}"), source).unwrap();
    let client = boxed_client(&layer);
    let mut trailers = http::HeaderMap::new();
    trailers.insert("x-checksum", "c0ffee".parse().unwrap());
    let body = WithTrailers(vec![
        Frame::data(Bytes::from_static(b"q=SELECT+id")),
        Frame::data(Bytes::from_static(b"+FROM+documents")),
        Frame::trailers(trailers.clone()),
    ]);
    let request = Request::post(format!("http://{addr}/api/v26.2/query"))
        .header("te", "trailers")
        .header("trailer", "x-checksum")
        .body(body.boxed())
        .unwrap();
    let response = send(&client, request).await.unwrap();
    assert_eq!(response.headers()["x-vaultapi-status"], "SUCCESS");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![Some(trailers)],
        "the replay carried the trailers"
    );
}
