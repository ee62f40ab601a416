//! Pieces shared by the benches: the immediately-ready inner services, the requests, the anchors'
//! `RwLock<String>` + `format!` pattern as a tower service, the stacks under comparison, a manual
//! poller (no runtime on the measured path), the thread harness for the throughput groups, and the
//! interleaved rounds' order and statistics; [`loopback`], a Vault-like server on
//! `127.0.0.1`; [`results`], the files the benches write for scripts.
//!
//! Every variant goes through the same helpers, so the measurement overhead is identical across
//! them; only the middleware differs.
#![allow(dead_code, unreachable_pub)]

pub mod loopback;
pub mod results;

use std::convert::Infallible;
use std::future::{ready, Future, Ready};
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, RwLock};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Request, Response, Uri};
use http_body_util::{Empty, Full};
use tower::{Service, ServiceExt};
use tower_http::auth::AddAuthorization;
use tower_http::set_header::SetRequestHeader;
use veeva_vault_auth::source::{RotatingToken, SourceError, StaticToken, TokenSource};
use veeva_vault_auth::{AccessToken, AuthHandle, VaultAuth, VaultAuthLayer};

/// The Vault every stack talks to (nothing is sent anywhere: the inner service answers).
pub const VAULT: &str = "https://myvault.veevavault.com";
/// The URL of every request.
pub const URL: &str = "https://myvault.veevavault.com/api/v26.2/objects/users/me";
/// A made-up token of a realistic length.
pub const TOKEN: &str = "veeva-vault-not-a-real-token-0000-1111-2222-3333-4444-5555-6666-7777";
/// `Bearer {TOKEN}`, for the static-header baseline.
pub const BEARER: &str =
    "Bearer veeva-vault-not-a-real-token-0000-1111-2222-3333-4444-5555-6666-7777";
/// The small request body of the `full_body` variants.
pub const FORM: &str = "q=SELECT id, name__v FROM documents WHERE status__v = 'Approved'";

/// The answer of the inner services.
pub type Answer<B> = Ready<Result<Response<B>, Infallible>>;

/// Criterion's settings for every bench of this crate: no plots, a short warm-up, `measure` of
/// measurement per benchmark (the whole suite stays at about three minutes on two cores).
pub fn criterion(measure: std::time::Duration) -> criterion::Criterion {
    criterion::Criterion::default()
        .without_plots()
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(measure)
}

/// The floor: answers every request at once with an empty 200 and no headers.
pub fn inner<B>() -> impl Service<
    Request<B>,
    Response = Response<Empty<Bytes>>,
    Error = Infallible,
    Future = Answer<Empty<Bytes>>,
> + Clone
       + Send
       + Sync
       + 'static {
    tower::service_fn(|_req: Request<B>| ready(Ok(Response::new(Empty::new()))))
}

/// Answers at once the way Vault answers a successful call: `X-VaultAPI-Status: SUCCESS` and a
/// JSON content type (the headers a failure rule looks at).
pub fn inner_success<B>() -> impl Service<
    Request<B>,
    Response = Response<Empty<Bytes>>,
    Error = Infallible,
    Future = Answer<Empty<Bytes>>,
> + Clone
       + Send
       + Sync
       + 'static {
    tower::service_fn(|_req: Request<B>| {
        let mut response = Response::new(Empty::new());
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/json;charset=UTF-8"),
        );
        headers.insert("x-vaultapi-status", HeaderValue::from_static("SUCCESS"));
        ready(Ok(response))
    })
}

/// A GET with no headers, a static URI and an empty body.
pub fn get_empty() -> Request<Empty<Bytes>> {
    let mut request = Request::new(Empty::new());
    *request.uri_mut() = Uri::from_static(URL);
    request
}

/// A POST with a small form body held in a `Bytes` made from a `String`, as a client builds it.
pub fn post_full() -> Request<Full<Bytes>> {
    let mut request = Request::new(Full::new(Bytes::from(FORM.to_owned())));
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = Uri::from_static(URL);
    request
}

/// A boxed body, as a generic client sends: `BoxBody<Bytes, BoxError>`.
pub type Boxed = http_body_util::combinators::BoxBody<Bytes, veeva_vault_auth::BoxError>;

/// The POST of [`post_full`] with its body boxed: the layer records it as it is sent.
pub fn post_boxed() -> Request<Boxed> {
    use http_body_util::BodyExt;
    post_full().map(|body| body.map_err(|never| match never {}).boxed())
}

/// A GET whose boxed body is empty (its size hint says so): the layer keeps it as empty.
pub fn get_boxed_empty() -> Request<Boxed> {
    use http_body_util::BodyExt;
    get_empty().map(|body| body.map_err(|never| match never {}).boxed())
}

/// A typical request: parsed URI, two headers set from strings, a small `Full<Bytes>` body.
pub fn typical() -> Request<Full<Bytes>> {
    Request::post(URL)
        .header(ACCEPT, "application/json")
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(FORM.to_owned())))
        .expect("a valid request")
}

/// The anchors' pattern: read the token under an `RwLock<String>`, `format!` the header and
/// validate it with `HeaderValue::from_str`, on every request.
#[derive(Clone, Debug)]
pub struct RwLockAuth<S> {
    inner: S,
    token: Arc<RwLock<String>>,
}

impl<S> RwLockAuth<S> {
    /// Wraps `inner`, attaching the token held in `token`.
    pub fn new(inner: S, token: Arc<RwLock<String>>) -> Self {
        Self { inner, token }
    }
}

impl<S, B> Service<Request<B>> for RwLockAuth<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let value = {
            let token = self.token.read().expect("not poisoned");
            HeaderValue::from_str(&format!("Bearer {}", *token)).expect("a valid header")
        };
        req.headers_mut().insert(AUTHORIZATION, value);
        self.inner.call(req)
    }
}

/// tower-http's `SetRequestHeader::overriding` with a `HeaderValue::from_static`.
pub fn set_request_header<S>(inner: S) -> SetRequestHeader<S, HeaderValue> {
    SetRequestHeader::overriding(inner, AUTHORIZATION, HeaderValue::from_static(BEARER))
}

/// tower-http's `SetRequestHeader::overriding` with a value made at run time
/// (`HeaderValue::from_str`), as a token read from configuration is: every clone of it shares one
/// reference count, like `AddAuthorization`'s, but the value is not marked sensitive.
pub fn set_request_header_runtime<S>(inner: S) -> SetRequestHeader<S, HeaderValue> {
    let value = HeaderValue::from_str(&format!("Bearer {TOKEN}")).expect("a valid header");
    SetRequestHeader::overriding(inner, AUTHORIZATION, value)
}

/// tower-http's `AddAuthorization::bearer`.
pub fn add_authorization<S>(inner: S) -> AddAuthorization<S> {
    AddAuthorization::bearer(inner, TOKEN)
}

/// The anchors' pattern around `inner`, and the lock, for a writer to rotate.
pub fn rwlock_format<S>(inner: S) -> (RwLockAuth<S>, Arc<RwLock<String>>) {
    let token = Arc::new(RwLock::new(TOKEN.to_owned()));
    (RwLockAuth::new(inner, Arc::clone(&token)), token)
}

/// A `VaultAuth` layer for [`VAULT`] with a static token, default configuration.
pub fn vault_layer() -> VaultAuthLayer {
    VaultAuthLayer::new(VAULT, StaticToken::new(TOKEN).expect("a valid token")).expect("valid")
}

/// Like [`vault_layer`], with `.no_replay()`.
pub fn vault_layer_no_replay() -> VaultAuthLayer {
    VaultAuthLayer::builder(VAULT, StaticToken::new(TOKEN).expect("a valid token"))
        .no_replay()
        .build()
        .expect("valid")
}

/// A source whose every fetch hands out a new token, and how many it handed out.
pub fn rotating_source() -> (impl TokenSource, Arc<AtomicU64>) {
    let issued = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&issued);
    let source = RotatingToken::new(move || {
        let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
        async move { Ok::<_, SourceError>(AccessToken::new(format!("veeva-vault-rotated-{n:016}"))?) }
    });
    (source, issued)
}

/// A new current-thread Tokio runtime.
pub fn new_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// The process's runtime for the layers' first fetches. It lives as long as the process: a layer
/// drops its token when the runtime its maintainer task runs on shuts down.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(new_runtime)
}

/// Sends one request through `service` on `runtime`, so that a `VaultAuth` fetches its token
/// before anything is measured.
pub fn warm_up<S, B>(runtime: &tokio::runtime::Runtime, service: &S, request: Request<B>)
where
    S: Service<Request<B>> + Clone,
    S::Error: std::fmt::Debug,
{
    runtime
        .block_on(service.clone().oneshot(request))
        .expect("the warm-up request succeeds");
}

/// Polls `future` once; the inner services are immediately ready, so it must be done.
#[inline]
fn finish<F, T, E>(future: F, cx: &mut Context<'_>) -> T
where
    F: Future<Output = Result<T, E>>,
    E: std::fmt::Debug,
{
    match pin!(future).poll(cx) {
        Poll::Ready(Ok(response)) => response,
        Poll::Ready(Err(err)) => panic!("the request failed: {err:?}"),
        Poll::Pending => panic!("the stack should answer at once"),
    }
}

/// One request through `service`: `poll_ready`, `call`, poll the future to its answer.
#[inline]
pub fn call_once<S, R>(service: &mut S, request: R, cx: &mut Context<'_>) -> S::Response
where
    S: Service<R>,
    S::Error: std::fmt::Debug,
{
    match service.poll_ready(cx) {
        Poll::Ready(Ok(())) => {}
        Poll::Ready(Err(err)) => panic!("not ready: {err:?}"),
        Poll::Pending => panic!("the stack should be ready at once"),
    }
    finish(service.call(request), cx)
}

/// One request through a fresh clone of `service`: `service.clone().oneshot(request)`.
#[inline]
pub fn oneshot_once<S, R>(service: &S, request: R, cx: &mut Context<'_>) -> S::Response
where
    S: Service<R> + Clone,
    S::Error: std::fmt::Debug,
{
    finish(service.clone().oneshot(request), cx)
}

struct Noop;

impl Wake for Noop {
    fn wake(self: Arc<Self>) {}
}

/// A waker that does nothing: nothing measured ever waits.
pub fn noop_waker() -> Waker {
    Waker::from(Arc::new(Noop))
}

/// How a thread of a throughput bench uses the stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// One clone per thread, reused for every request (`poll_ready` + `call`).
    Shared,
    /// A fresh clone per request: `svc.clone().oneshot(req)`.
    ClonePerRequest,
}

impl Mode {
    /// The group-name suffix.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Shared => "shared_clone",
            Mode::ClonePerRequest => "clone_per_request",
        }
    }
}

/// Sends `total` requests through `service` from `threads` threads (each with its own clone),
/// and returns the wall time from the first thread's start to the last thread's end.
///
/// Threads are spawned and lined up on a barrier before the clock starts. Each request is a
/// [`get_empty`] built in the loop (a struct move and two static `Bytes` copies, identical for
/// every stack).
pub fn run_threads<S>(service: &S, threads: usize, total: u64, mode: Mode) -> Duration
where
    S: Service<Request<Empty<Bytes>>> + Clone + Send,
    S::Error: std::fmt::Debug,
{
    let barrier = Barrier::new(threads);
    let per_thread = total / threads as u64;
    let extra = total % threads as u64;
    let spans: Vec<(Instant, Instant)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|index| {
                let mut service = service.clone();
                let barrier = &barrier;
                let count = per_thread + u64::from((index as u64) < extra);
                scope.spawn(move || {
                    let waker = noop_waker();
                    let mut cx = Context::from_waker(&waker);
                    let uri = Uri::from_static(URL);
                    barrier.wait();
                    let start = Instant::now();
                    for _ in 0..count {
                        let mut request = Request::new(Empty::new());
                        *request.uri_mut() = uri.clone();
                        let response = match mode {
                            Mode::Shared => call_once(&mut service, request, &mut cx),
                            Mode::ClonePerRequest => oneshot_once(&service, request, &mut cx),
                        };
                        std::hint::black_box(response);
                    }
                    (start, Instant::now())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().expect("a bench thread panicked"))
            .collect()
    });
    let start = spans
        .iter()
        .map(|s| s.0)
        .min()
        .expect("at least one thread");
    let end = spans
        .iter()
        .map(|s| s.1)
        .max()
        .expect("at least one thread");
    end - start
}

/// A thread that makes the token change every `every` until dropped.
pub struct Rotator {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl Rotator {
    /// Forces a refresh of `handle`'s layer (whose source hands out a new token on every fetch)
    /// every `every`, on its own thread and Tokio runtime; at least once.
    pub fn vault(handle: AuthHandle, every: Duration) -> Self {
        Self::spawn(move |stop| {
            // The fetches it forces run here; the maintainer stays on `runtime()`.
            new_runtime().block_on(async move {
                let mut ticks = tokio::time::interval(every);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut rotations = 0;
                loop {
                    ticks.tick().await;
                    handle.force_refresh().await.expect("the source answers");
                    rotations += 1;
                    if stop.load(Ordering::Relaxed) {
                        return rotations;
                    }
                }
            })
        })
    }

    /// Replaces the string under `lock` every `every`; at least once.
    pub fn rwlock(lock: Arc<RwLock<String>>, every: Duration) -> Self {
        Self::spawn(move |stop| {
            let mut rotations = 0u64;
            loop {
                rotations += 1;
                *lock.write().expect("not poisoned") =
                    format!("veeva-vault-rotated-{rotations:016}");
                if stop.load(Ordering::Relaxed) {
                    return rotations;
                }
                std::thread::sleep(every);
            }
        })
    }

    fn spawn(run: impl FnOnce(Arc<std::sync::atomic::AtomicBool>) -> u64 + Send + 'static) -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        Self {
            stop,
            thread: Some(std::thread::spawn(move || run(flag))),
        }
    }

    /// Stops the thread and returns how many rotations it made.
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .map_or(0, |thread| thread.join().expect("the rotator panicked"))
    }
}

impl Drop for Rotator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The layer a `VaultAuth` bench uses, wrapped around `inner`.
pub fn vault<S>(layer: &VaultAuthLayer, inner: S) -> VaultAuth<S> {
    tower::Layer::layer(layer, inner)
}

/// The order of `stacks` stacks in round `round` of an interleaved measurement: rotated, so that
/// no stack always runs first.
pub fn rotated(round: usize, stacks: usize) -> impl Iterator<Item = usize> {
    (0..stacks).map(move |step| (round + step) % stacks)
}

/// The median and the 25th and 75th percentiles of `values`.
pub fn quartiles(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.25), at(0.75))
}
