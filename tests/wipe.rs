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

use std::alloc::{GlobalAlloc, Layout, System};
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use bytes::Bytes;
use http::header::{AUTHORIZATION, COOKIE};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use tower::{Layer, Service, ServiceExt};
use veeva_vault_auth::source::{RotatingToken, SourceError};
use veeva_vault_auth::{AccessToken, VaultAuthLayer};

/// The markers the tests look for.
const MARKERS: [&str; 4] = [
    "WIPE-MARKER-TOKEN-0123",
    "SESSIONCOOKIEWIPEMARKER",
    "PLAINMARKERNOTWIPED",
    "BOXEDBODYWIPEMARKER",
];
/// Which of [`MARKERS`] the allocator looks for, plus one; 0 while nothing is scanned. An atomic,
/// not a lock: every thread's frees read it, and a lock could be missed.
static ACTIVE: AtomicUsize = AtomicUsize::new(0);
/// Blocks given back to the allocator while still holding the marker.
static UNWIPED: AtomicUsize = AtomicUsize::new(0);
/// Only one test scans at a time: they share the allocator.
static SERIAL: Mutex<()> = Mutex::new(());

struct Scanning;

fn holds_marker(block: &[u8]) -> bool {
    let Some(marker) = ACTIVE
        .load(Ordering::SeqCst)
        .checked_sub(1)
        .and_then(|index| MARKERS.get(index))
    else {
        return false;
    };
    block.len() >= marker.len() && block.windows(marker.len()).any(|w| w == marker.as_bytes())
}

// SAFETY: every call is forwarded unchanged to the system allocator. The scan only reads the
// block being freed (or about to be moved by `realloc`), which is still allocated and initialised
// as far as its owner wrote it; it is read as plain bytes and nothing is kept.
unsafe impl GlobalAlloc for Scanning {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` is a live block of `layout.size()` bytes until the call below.
        let block = unsafe { std::slice::from_raw_parts(ptr, layout.size()) };
        if holds_marker(block) {
            UNWIPED.fetch_add(1, Ordering::SeqCst);
        }
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as in `dealloc`; the block may move, leaving the old one behind unwiped.
        let block = unsafe { std::slice::from_raw_parts(ptr, layout.size()) };
        let held = holds_marker(block);
        let moved = unsafe { System.realloc(ptr, layout, new_size) };
        if held && moved != ptr {
            UNWIPED.fetch_add(1, Ordering::SeqCst);
        }
        moved
    }
}

#[global_allocator]
static ALLOCATOR: Scanning = Scanning;

/// Runs `f` with the allocator looking for `marker` (one of [`MARKERS`]); returns how many blocks
/// went back unwiped.
fn unwiped_blocks_in(marker: &str, f: impl FnOnce()) -> usize {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let index = MARKERS
        .iter()
        .position(|m| *m == marker)
        .expect("a known marker");
    let before = UNWIPED.load(Ordering::SeqCst);
    ACTIVE.store(index + 1, Ordering::SeqCst);
    f();
    ACTIVE.store(0, Ordering::SeqCst);
    UNWIPED.load(Ordering::SeqCst) - before
}

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
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let service = layer.layer(inner());
                for request in requests {
                    let response = service.clone().oneshot(request).await.unwrap();
                    assert_eq!(response.status(), StatusCode::OK, "replayed if rejected");
                }
            });
        });
    });
    drop(layer);
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
    let long: &'static str = Box::leak(SECRET.repeat(80).into_boxed_str());
    let unwiped = unwiped_blocks_in(SECRET, || {
        let layer = layer("veeva-vault-some-token-");
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async {
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
                        // Two chunks, so that the recording grows past its first buffer.
                        let body = Chunks(vec![
                            Bytes::from_static(long.as_bytes()),
                            Bytes::from_static(SECRET.as_bytes()),
                        ])
                        .boxed();
                        let request =
                            Request::post("https://myvault.veevavault.com/api/v26.2/query")
                                .body(body)
                                .unwrap();
                        let response = service.clone().oneshot(request).await.unwrap();
                        assert_eq!(response.status(), StatusCode::OK, "replayed");
                    }
                    assert_eq!(calls.load(Ordering::SeqCst), 4, "one replay");
                    assert_eq!(
                        read.load(Ordering::SeqCst),
                        4 * 81 * SECRET.len(),
                        "every attempt read the whole body"
                    );
                });
            });
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
