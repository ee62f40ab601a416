//! Secrets are wiped before their memory goes back to the allocator.
//!
//! A scanning global allocator looks through every block freed or moved by `realloc` for a marker
//! string, and counts the blocks that still hold it. Each test sends requests through a layer with
//! a marker in the token or in the caller's headers and body, then drops everything, and asserts
//! that no block that held the marker was given back unwiped.
//!
//! What is in scope is this crate's memory: the token, its header value and the per-thread
//! copies, and the copy of a request kept for a replay. The inner service here is in-process and
//! copies nothing; a real HTTP client writes the header into its own buffers, which are its
//! business.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::header::{AUTHORIZATION, COOKIE};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use tower::{Layer, Service, ServiceExt};
use veeva_vault_auth::source::{RotatingToken, SourceError};
use veeva_vault_auth::{AccessToken, VaultAuthLayer};

mod scanning;
use scanning::unwiped_blocks_in;

/// Answers 401 to the first request and 200 after, and checks each carries a token. Copies
/// nothing of the request.
type Answer = std::future::Ready<Result<Response<Full<Bytes>>, Infallible>>;

fn inner() -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = Answer,
> + Clone {
    let calls = std::sync::Arc::new(AtomicUsize::new(0));
    tower::service_fn(move |request: Request<Full<Bytes>>| {
        assert!(request.headers().contains_key(AUTHORIZATION));
        let status = if calls.fetch_add(1, Ordering::SeqCst) == 0 {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::OK
        };
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = status;
        std::future::ready(Ok(response))
    })
}

/// Sends `requests` through a layer on a thread of its own (so that the thread's copies of the
/// header are dropped when it ends), then drops the layer.
fn send_on_a_thread(layer: VaultAuthLayer, requests: Vec<Request<Full<Bytes>>>) {
    on_a_thread(async {
        let service = layer.layer(inner());
        for request in requests {
            let response = service.clone().oneshot(request).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "replayed if rejected");
        }
    });
    drop(layer);
}

/// Runs `work` to its end on a thread of its own with a runtime of its own, so that the thread's
/// copies of the header are dropped when it ends.
fn on_a_thread(work: impl std::future::Future<Output = ()> + Send) {
    std::thread::scope(|scope| {
        scope.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(work);
        });
    });
}

/// A layer whose source hands out `{prefix}{n}` for its n-th fetch, built in a `String` that the
/// token takes over (and wipes).
fn layer(prefix: &'static str) -> VaultAuthLayer {
    let fetches = std::sync::Arc::new(AtomicUsize::new(0));
    let source = RotatingToken::new(move || {
        let n = fetches.fetch_add(1, Ordering::SeqCst) + 1;
        let mut value = String::with_capacity(prefix.len() + 4);
        value.push_str(prefix);
        value.push_str(&n.to_string());
        async move { Ok::<_, SourceError>(AccessToken::new(value)?) }
    });
    VaultAuthLayer::new("https://myvault.veevavault.com", source).unwrap()
}

#[test]
fn the_token_and_its_header_copies_are_wiped() {
    const MARKER_TEXT: &str = "WIPE-MARKER-TOKEN-0123";
    let unwiped = unwiped_blocks_in(MARKER_TEXT, || {
        let layer = layer("veeva-vault-WIPE-MARKER-TOKEN-0123-");
        let requests = (0..5)
            .map(|_| {
                Request::get("https://myvault.veevavault.com/api/v26.2/objects/users/me")
                    .body(Full::new(Bytes::new()))
                    .unwrap()
            })
            .collect();
        send_on_a_thread(layer, requests);
    });
    assert_eq!(unwiped, 0, "blocks freed while still holding the token");
}

#[test]
fn the_replay_copy_of_a_request_is_wiped() {
    const SECRET: &str = "SESSIONCOOKIEWIPEMARKER";
    let unwiped = unwiped_blocks_in(SECRET, || {
        let layer = layer("veeva-vault-some-token-");
        let mut requests = Vec::new();
        for _ in 0..3 {
            let mut builder = Request::post("https://myvault.veevavault.com/api/v26.2/query")
                .header(COOKIE, HeaderValue::from_static(SECRET));
            // Enough headers that a buffer grown as it is written would have moved.
            for i in 0..24 {
                builder = builder.header(format!("x-padding-{i}").as_str(), "some padding value");
            }
            // The secret in a static body too: the copy holds the body's bytes.
            requests.push(
                builder
                    .body(Full::new(Bytes::from_static(SECRET.as_bytes())))
                    .unwrap(),
            );
        }
        send_on_a_thread(layer, requests);
    });
    assert_eq!(
        unwiped, 0,
        "blocks freed while still holding the request's secret"
    );
}

/// A boxed body is recorded as the inner service reads it, and replayed from the recording: the
/// recording, and the frames the replay sends, are wiped when they go.
#[test]
fn the_recording_of_a_boxed_body_is_wiped() {
    use http_body_util::{combinators::BoxBody, BodyExt};
    type Boxed = BoxBody<Bytes, Infallible>;
    const SECRET: &str = "BOXEDBODYWIPEMARKER";
    // The caller's chunks are static (made and leaked before the scan): only the layer's copies
    // of them are heap blocks the scan can see.
    let half: &'static str = Box::leak(SECRET.repeat(40).into_boxed_str());
    let rest: &'static str = Box::leak(SECRET.repeat(80).into_boxed_str());
    let unwiped = unwiped_blocks_in(SECRET, || {
        let layer = layer("veeva-vault-some-token-");
        on_a_thread(async {
            let calls = std::sync::Arc::new(AtomicUsize::new(0));
            let read = std::sync::Arc::new(AtomicUsize::new(0));
            let (calls_in, read_in) = (calls.clone(), read.clone());
            // Reads the body frame by frame (copying nothing), then answers 401 the
            // first time and 200 after.
            let inner = tower::service_fn(move |request: Request<Boxed>| {
                let (calls, read) = (calls_in.clone(), read_in.clone());
                async move {
                    let mut body = request.into_body();
                    while let Some(frame) = body.frame().await {
                        if let Some(data) = frame.unwrap().data_ref() {
                            read.fetch_add(data.len(), Ordering::SeqCst);
                        }
                    }
                    let mut response = Response::new(Full::new(Bytes::new()));
                    if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                        *response.status_mut() = StatusCode::UNAUTHORIZED;
                    }
                    Ok::<_, Infallible>(response)
                }
            });
            let service = layer.layer(inner);
            for _ in 0..3 {
                // Two chunks: the first fits the recording's first buffer (1 KiB), the second
                // makes it grow past twice that with the first already in it.
                let body = Chunks(vec![
                    Bytes::from_static(half.as_bytes()),
                    Bytes::from_static(rest.as_bytes()),
                ])
                .boxed();
                let request = Request::post("https://myvault.veevavault.com/api/v26.2/query")
                    .body(body)
                    .unwrap();
                let response = service.clone().oneshot(request).await.unwrap();
                assert_eq!(response.status(), StatusCode::OK, "replayed");
            }
            assert_eq!(calls.load(Ordering::SeqCst), 4, "one replay");
            assert_eq!(
                read.load(Ordering::SeqCst),
                4 * 120 * SECRET.len(),
                "every attempt read the whole body"
            );
        });
        drop(layer);
    });
    assert_eq!(
        unwiped, 0,
        "blocks freed while still holding the body's bytes"
    );
}

/// A body of unknown length that hands out its chunks one by one, as a stream does.
struct Chunks(Vec<Bytes>);

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        let next = (!self.0.is_empty()).then(|| self.0.remove(0));
        std::task::Poll::Ready(next.map(|chunk| Ok(http_body::Frame::data(chunk))))
    }
}

/// The scanner itself: a block freed with the marker in it is counted.
#[test]
fn the_scanner_sees_an_unwiped_block() {
    const MARKER_TEXT: &str = "PLAINMARKERNOTWIPED";
    let unwiped = unwiped_blocks_in(MARKER_TEXT, || {
        drop(std::hint::black_box(MARKER_TEXT.to_owned()));
    });
    assert_eq!(unwiped, 1);
}
