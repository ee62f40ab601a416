//! Heap allocations per request on the success path, counted exactly.
//!
//! A counting global allocator counts allocations (`alloc`, `alloc_zeroed`, `realloc`) made on the
//! current thread while a window is open; the test harness's other threads are not counted. Each
//! window is one request through a warmed-up stack: `poll_ready`, `call`, one poll of the future
//! (the inner service answers at once) and the drop of the response. The request is built before
//! the window opens. The baseline is tower-http's `SetRequestHeader::overriding` with a static
//! `HeaderValue`, around the same inner service, for the same request.
//!
//! What is asserted: `VaultAuth` adds no allocation to any of these requests, with the default
//! configuration (detection and replay on) and with `.no_replay()`: a request with no headers, a
//! static URI and an empty body; a typical one (parsed URI, two headers set from strings, a
//! `Full<Bytes>` body made from a `String`); the same with static parts; one with a `String`
//! body; and one whose response is Vault's success (JSON, `X-VaultAPI-Status: SUCCESS`), which the
//! failure rule reads.
//!
//! The copy kept for a replay is where allocations would come from: cloning the `HeaderMap`
//! allocates its two tables, and the first clone of a `Bytes` made from a `Vec` or `String` (a
//! header value parsed from a string, a body from a `String`) allocates its shared form. The layer
//! writes the copy into a per-thread pooled buffer instead (`src/replay.rs`), which these tests
//! hold to zero.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::convert::Infallible;
use std::future::{ready, Future, Ready};
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Request, Response, Uri};
use http_body_util::{Empty, Full};
use tower::{Service, ServiceExt};
use tower_http::set_header::SetRequestHeader;
use veeva_vault_auth::source::StaticToken;
use veeva_vault_auth::VaultAuthLayer;

const VAULT: &str = "https://myvault.veevavault.com";
const URL: &str = "https://myvault.veevavault.com/api/v26.2/objects/users/me";
const TOKEN: &str = "veeva-vault-not-a-real-token-0000-1111-2222-3333-4444-5555-6666-7777";
const BEARER: &str = "Bearer veeva-vault-not-a-real-token-0000-1111-2222-3333-4444-5555-6666-7777";
const FORM: &str = "q=SELECT id FROM documents";

/// Requests measured per stack and request kind; every one must allocate the same.
const ROUNDS: usize = 50;

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

fn note_allocation() {
    // `try_with`: allocations made while a thread's locals are torn down are not ours to count.
    let counting = COUNTING.try_with(Cell::get).unwrap_or(false);
    if counting {
        let _ = COUNT.try_with(|count| count.set(count.get() + 1));
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counters are plain
// thread-local cells with constant initialisers, so touching them never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        System.realloc(ptr, layout, new_size)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns how many allocations it made on this thread.
fn allocations_in(f: impl FnOnce()) -> u64 {
    COUNT.with(|count| count.set(0));
    COUNTING.with(|counting| counting.set(true));
    f();
    COUNTING.with(|counting| counting.set(false));
    COUNT.with(Cell::get)
}

struct Noop;

impl Wake for Noop {
    fn wake(self: Arc<Self>) {}
}

type Answer = Ready<Result<Response<Empty<Bytes>>, Infallible>>;

/// The inner service: answers at once with an empty 200.
fn inner<B>(
) -> impl Service<Request<B>, Response = Response<Empty<Bytes>>, Error = Infallible, Future = Answer>
       + Clone {
    tower::service_fn(|_request: Request<B>| ready(Ok(Response::new(Empty::new()))))
}

/// The inner service answering like Vault on success: JSON, `X-VaultAPI-Status: SUCCESS`.
fn inner_success<B>(
) -> impl Service<Request<B>, Response = Response<Empty<Bytes>>, Error = Infallible, Future = Answer>
       + Clone {
    tower::service_fn(|_request: Request<B>| {
        let mut response = Response::new(Empty::new());
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
            .headers_mut()
            .insert("x-vaultapi-status", HeaderValue::from_static("SUCCESS"));
        ready(Ok(response))
    })
}

fn minimal() -> Request<Empty<Bytes>> {
    let mut request = Request::new(Empty::new());
    *request.uri_mut() = Uri::from_static(URL);
    request
}

fn typical() -> Request<Full<Bytes>> {
    Request::post(URL)
        .header(ACCEPT, "application/json")
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(FORM.to_owned())))
        .unwrap()
}

fn typical_static() -> Request<Full<Bytes>> {
    let mut request = Request::new(Full::new(Bytes::from_static(FORM.as_bytes())));
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = Uri::from_static(URL);
    let headers = request.headers_mut();
    headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    request
}

/// [`typical_static`] with a parsed URI: isolates the URI's share of the replay copy.
fn parsed_uri_only() -> Request<Full<Bytes>> {
    let mut request = typical_static();
    *request.uri_mut() = URL.parse().unwrap();
    request
}

/// [`typical`] with a static body: isolates the body's share of the replay copy.
fn parsed_headers_static_body() -> Request<Full<Bytes>> {
    let mut request = typical();
    *request.body_mut() = Full::new(Bytes::from_static(FORM.as_bytes()));
    request
}

fn string_body() -> Request<String> {
    let mut request = Request::new(String::from(FORM));
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = URL.parse().unwrap();
    request
}

/// Allocations per request through `service`, after warming it up (the first request fetches the
/// token and fills this thread's copy of the header). Fails unless every measured request
/// allocated the same.
fn per_request<S, B>(mut service: S, make: fn() -> Request<B>) -> u64
where
    S: Service<Request<B>> + Clone,
    S::Error: std::fmt::Debug,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime
        .block_on(service.clone().oneshot(make()))
        .expect("the warm-up request succeeds");

    let waker = Waker::from(Arc::new(Noop));
    let mut cx = Context::from_waker(&waker);
    let mut one = |request: Request<B>| {
        assert!(matches!(service.poll_ready(&mut cx), Poll::Ready(Ok(()))));
        match pin!(service.call(request)).poll(&mut cx) {
            Poll::Ready(Ok(response)) => drop(response),
            Poll::Ready(Err(err)) => panic!("the request failed: {err:?}"),
            Poll::Pending => panic!("the stack should answer at once"),
        }
    };
    for _ in 0..3 {
        one(make());
    }
    let counts: Vec<u64> = (0..ROUNDS)
        .map(|_| {
            let request = make();
            allocations_in(|| one(request))
        })
        .collect();
    assert!(
        counts.iter().all(|&n| n == counts[0]),
        "not steady: {counts:?}"
    );
    counts[0]
}

fn baseline<B: 'static>(make: fn() -> Request<B>) -> u64 {
    per_request(
        SetRequestHeader::overriding(inner(), AUTHORIZATION, HeaderValue::from_static(BEARER)),
        make,
    )
}

fn vault<B>(make: fn() -> Request<B>, replay: bool) -> u64
where
    B: http_body::Body + Send + 'static,
{
    let builder = VaultAuthLayer::builder(VAULT, StaticToken::new(TOKEN).unwrap());
    let layer = if replay { builder } else { builder.no_replay() }
        .build()
        .unwrap();
    per_request(tower::Layer::layer(&layer, inner()), make)
}

#[test]
fn the_counter_counts_this_thread_only() {
    assert_eq!(
        allocations_in(|| drop(std::hint::black_box(Box::new(1u64)))),
        1
    );
    assert_eq!(
        allocations_in(|| drop(std::hint::black_box(vec![1u8; 3]))),
        1
    );
    assert_eq!(allocations_in(|| {}), 0);
    // Another thread allocates while the window is open (between the two barrier waits, which do
    // not allocate): not counted.
    let barrier = std::sync::Barrier::new(2);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            barrier.wait();
            drop(std::hint::black_box(vec![0u8; 1 << 16]));
            barrier.wait();
        });
        let counted = allocations_in(|| {
            barrier.wait();
            barrier.wait();
        });
        assert_eq!(counted, 0);
    });
}

/// A request kind: its name, the baseline's allocations, and `VaultAuth`'s (with replay or not).
type Kind = (&'static str, fn() -> u64, fn(bool) -> u64);

/// The request kinds measured.
const KINDS: [Kind; 6] = [
    (
        "minimal",
        || baseline(minimal),
        |replay| vault(minimal, replay),
    ),
    (
        "typical",
        || baseline(typical),
        |replay| vault(typical, replay),
    ),
    (
        "typical, static parts",
        || baseline(typical_static),
        |replay| vault(typical_static, replay),
    ),
    (
        "parsed URI, static headers and body",
        || baseline(parsed_uri_only),
        |replay| vault(parsed_uri_only, replay),
    ),
    (
        "headers parsed from strings, static body",
        || baseline(parsed_headers_static_body),
        |replay| vault(parsed_headers_static_body, replay),
    ),
    (
        "string body",
        || baseline(string_body),
        |replay| vault(string_body, replay),
    ),
];

#[test]
fn no_replay_adds_no_allocation_to_any_request() {
    for (name, base, ours) in KINDS {
        assert_eq!(
            ours(false),
            base(),
            "{name}: VaultAuth (no replay) vs SetRequestHeader"
        );
    }
}

#[test]
fn default_config_adds_no_allocation_to_any_request() {
    for (name, base, ours) in KINDS {
        assert_eq!(ours(true), base(), "{name}: VaultAuth vs SetRequestHeader");
    }
}

#[test]
fn the_baseline_allocates_what_the_request_needs() {
    // The counter sees the work the stacks share: the header map's tables for the one header
    // inserted into an empty map, and nothing for a map that has room.
    assert_eq!(
        baseline(minimal),
        2,
        "index table and entry vector, for the first header"
    );
    assert_eq!(
        baseline(typical),
        0,
        "the map already has room for a third header"
    );
}

#[test]
fn judging_a_vault_success_response_allocates_nothing() {
    let layer = VaultAuthLayer::new(VAULT, StaticToken::new(TOKEN).unwrap()).unwrap();
    let ours = per_request(tower::Layer::layer(&layer, inner_success()), minimal);
    let base = per_request(
        SetRequestHeader::overriding(
            inner_success(),
            AUTHORIZATION,
            HeaderValue::from_static(BEARER),
        ),
        minimal,
    );
    assert_eq!(ours, base);
}

type FullAnswer = Ready<Result<Response<Full<Bytes>>, Infallible>>;

/// The inner service answering as Vault before API v23.2 does: JSON without
/// `X-VaultAPI-Status`, its body in one frame, which the layer reads before it hands the answer
/// over.
fn inner_unlabelled<B>() -> impl Service<
    Request<B>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = FullAnswer,
> + Clone {
    tower::service_fn(|_request: Request<B>| {
        let body = Full::new(Bytes::from_static(
            br#"{"responseStatus":"SUCCESS","data":[]}"#,
        ));
        let mut response = Response::new(body);
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        ready(Ok(response))
    })
}

/// An answer without a status header is read ahead and judged; a body in one frame is judged
/// where it lies, never copied. The layer adds four allocations, none of them a copy: the
/// future that judges the answer, the body pinned while it is read, the list of frames read
/// ahead, and the part of the answer's body that hands them out again.
#[test]
fn judging_a_one_frame_answer_without_a_status_header_copies_nothing() {
    let layer = VaultAuthLayer::new(VAULT, StaticToken::new(TOKEN).unwrap()).unwrap();
    let ours = per_request(tower::Layer::layer(&layer, inner_unlabelled()), minimal);
    let base = per_request(
        SetRequestHeader::overriding(
            inner_unlabelled(),
            AUTHORIZATION,
            HeaderValue::from_static(BEARER),
        ),
        minimal,
    );
    assert_eq!(ours - base, 4, "ours {ours}, the baseline {base}");
}

type Boxed = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// A typical request whose body is boxed (what a generic client sends), with in-memory content.
fn boxed_form() -> Request<Boxed> {
    use http_body_util::BodyExt;
    typical().map(BodyExt::boxed)
}

/// The same with an empty boxed body.
fn boxed_empty() -> Request<Boxed> {
    use http_body_util::BodyExt;
    minimal().map(BodyExt::boxed)
}

/// A boxed body is recorded as it is sent: the layer allocates the recording's shared state, its
/// buffer (the body's length when it says so, else 1 KiB, at most the replay cap) and the box
/// around the recorder. The buffer grows (by doubling, within the cap) only for a body longer
/// than it said; this inner service reads no body, so nothing grows here.
#[test]
fn a_boxed_body_costs_three_allocations_for_its_recording_and_nothing_without_replay() {
    assert_eq!(vault(boxed_form, true), baseline(boxed_form) + 3);
    assert_eq!(vault(boxed_form, false), baseline(boxed_form));
}

#[test]
fn an_empty_boxed_body_is_kept_as_empty_and_costs_nothing() {
    assert_eq!(vault(boxed_empty, true), baseline(boxed_empty));
}

/// A token with an expiry is checked against the clock on every request, and its thread's copy
/// still serves it without an allocation.
#[test]
fn a_token_with_an_expiry_adds_no_allocation() {
    for replay in [true, false] {
        let source = veeva_vault_auth::source::RotatingToken::new(|| async {
            Ok(veeva_vault_auth::AccessToken::new(TOKEN)
                .unwrap()
                .with_expires_in(std::time::Duration::from_secs(3600)))
        });
        let builder = VaultAuthLayer::builder(VAULT, source);
        let layer = if replay { builder } else { builder.no_replay() }
            .build()
            .unwrap();
        let ours = per_request(tower::Layer::layer(&layer, inner()), typical);
        assert_eq!(ours, baseline(typical), "replay {replay}");
    }
}

/// Two layers used in turn on one thread: each finds its own copy of its token, without an
/// allocation, though the other's was used last.
#[test]
fn two_layers_in_turn_add_no_allocation() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let layers: Vec<VaultAuthLayer> = ["veeva-vault-firstLayer", "veeva-vault-secondLayer"]
        .into_iter()
        .map(|token| VaultAuthLayer::new(VAULT, StaticToken::new(token).unwrap()).unwrap())
        .collect();
    let mut services: Vec<_> = layers
        .iter()
        .map(|layer| tower::Layer::layer(layer, inner()))
        .collect();
    for service in &services {
        runtime
            .block_on(service.clone().oneshot(typical()))
            .expect("the warm-up request succeeds");
    }
    let waker = Waker::from(Arc::new(Noop));
    let mut cx = Context::from_waker(&waker);
    let mut counts = Vec::new();
    for round in 0..ROUNDS * 2 {
        let service = &mut services[round % 2];
        let request = typical();
        counts.push(allocations_in(|| {
            assert!(matches!(service.poll_ready(&mut cx), Poll::Ready(Ok(()))));
            match pin!(service.call(request)).poll(&mut cx) {
                Poll::Ready(Ok(response)) => drop(response),
                _ => panic!("the stack should answer at once"),
            }
        }));
    }
    let base = baseline(typical);
    assert!(counts.iter().all(|&n| n == base), "{counts:?} vs {base}");
}
