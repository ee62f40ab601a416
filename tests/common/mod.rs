//! Helpers shared by the integration tests: a real hyper-util client, the layer around it, and
//! control over Tokio's paused clock.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Semaphore;
use veeva_vault_auth::source::{BoxFuture, SourceError, TokenSource};
use veeva_vault_auth::{AccessToken, BoxError, VaultAuth, VaultAuthLayer};

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Vault's answer to a bad token, byte for byte.
pub const INVALID_SESSION: &str = r#"{"responseStatus":"FAILURE","errors":[{"type":"INVALID_SESSION_ID","message":"Invalid or expired session ID."}]}"#;
pub type AuthClient = VaultAuth<HttpClient>;

/// A plain hyper-util client over TCP.
pub fn http_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

/// The layer around a real client.
pub fn authed(layer: &VaultAuthLayer) -> AuthClient {
    tower::Layer::layer(layer, http_client())
}

pub fn get(url: &str) -> Request<Full<Bytes>> {
    Request::get(url).body(Full::new(Bytes::new())).unwrap()
}

pub fn post_form(url: &str, body: &'static str) -> Request<Full<Bytes>> {
    Request::post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

/// Sends one request through `service`, honouring `poll_ready`.
pub async fn send<S, B>(service: &S, request: Request<B>) -> Result<S::Response, BoxError>
where
    S: tower::Service<Request<B>, Error = BoxError> + Clone,
{
    use tower::ServiceExt;
    service.clone().oneshot(request).await
}

/// The body of a response, as text.
pub async fn text<B>(response: Response<B>) -> String
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// Keeps Tokio's paused clock from jumping ahead on its own while the runtime waits for real
/// sockets or threads: time moves only when a test calls `tokio::time::advance`.
///
/// A running blocking task stops auto-advance on the current-thread runtime; this holds one
/// until dropped.
pub struct ClockHold(Option<std::sync::mpsc::Sender<()>>);

pub fn hold_clock() -> ClockHold {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    tokio::task::spawn_blocking(move || {
        let _ = rx.recv();
    });
    ClockHold(Some(tx))
}

impl Drop for ClockHold {
    fn drop(&mut self) {
        self.0.take();
    }
}

/// Lets other tasks and threads run until `done` holds. Fails the test after 10 s of real time
/// (a bound for a broken test, never a pause it relies on).
pub async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::task::yield_now().await;
        std::thread::yield_now();
    }
}

/// A source that counts its fetches and hands out tokens from a script. Each fetch can be held
/// at a gate until the test opens it.
#[derive(Clone)]
pub struct ScriptedSource {
    inner: Arc<Script>,
}

/// Gives the answer to fetch number `n`.
type Answers = Box<dyn FnMut(usize) -> Result<AccessToken, SourceError> + Send>;

struct Script {
    fetches: AtomicUsize,
    gate: Semaphore,
    gated: std::sync::atomic::AtomicBool,
    next: std::sync::Mutex<Answers>,
}

impl ScriptedSource {
    /// `next(n)` gives the answer to fetch number `n` (counted from 1).
    pub fn new(
        next: impl FnMut(usize) -> Result<AccessToken, SourceError> + Send + 'static,
    ) -> Self {
        Self {
            inner: Arc::new(Script {
                fetches: AtomicUsize::new(0),
                gate: Semaphore::new(0),
                gated: std::sync::atomic::AtomicBool::new(false),
                next: std::sync::Mutex::new(Box::new(next)),
            }),
        }
    }

    /// Always the same token.
    pub fn fixed(token: &str) -> Self {
        let token = token.to_owned();
        Self::new(move |_| Ok(AccessToken::new(token.clone()).unwrap()))
    }

    /// Fetches wait at the gate from now on, until `open` lets them through.
    pub fn close_gate(&self) {
        self.inner.gated.store(true, Ordering::SeqCst);
    }

    /// Lets `n` waiting (or future) fetches through.
    pub fn open(&self, n: usize) {
        self.inner.gate.add_permits(n);
    }

    pub fn fetches(&self) -> usize {
        self.inner.fetches.load(Ordering::SeqCst)
    }
}

impl TokenSource for ScriptedSource {
    fn fetch(&self) -> BoxFuture<'_, Result<AccessToken, SourceError>> {
        let n = self.inner.fetches.fetch_add(1, Ordering::SeqCst) + 1;
        Box::pin(async move {
            if self.inner.gated.load(Ordering::SeqCst) {
                self.inner.gate.acquire().await.unwrap().forget();
            }
            let mut next = self.inner.next.lock().unwrap();
            (next)(n)
        })
    }
}

/// Spawns `n` copies of `make()` and returns their handles.
pub fn spawn_many<F, T>(
    n: usize,
    mut make: impl FnMut(usize) -> F,
) -> Vec<tokio::task::JoinHandle<T>>
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    (0..n).map(|i| tokio::spawn(make(i))).collect()
}

/// A source that hands out `tokens` in order, one per fetch.
pub fn tokens_in_order(tokens: Vec<String>) -> ScriptedSource {
    ScriptedSource::new(move |n| Ok(AccessToken::new(tokens[n - 1].clone()).unwrap()))
}

/// A request body of unknown length that arrives in chunks, like a stream: never replayable.
pub struct Chunks(pub Vec<Bytes>);

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let next = (!self.0.is_empty()).then(|| Ok(http_body::Frame::data(self.0.remove(0))));
        std::task::Poll::Ready(next)
    }
}

/// Everything `tracing` writes while the returned guard lives, on this thread (the tests run on
/// Tokio's current-thread runtime, so the traced futures are polled here), at TRACE level with
/// span events.
#[derive(Clone, Default)]
pub struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl Captured {
    pub fn start() -> (Captured, tracing::subscriber::DefaultGuard) {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::FULL)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        (captured, tracing::subscriber::set_default(subscriber))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Moves the paused clock to exactly `at`.
pub async fn advance_to(at: tokio::time::Instant) {
    tokio::time::advance(at - tokio::time::Instant::now()).await;
}

/// A fresh, empty directory for this test process, named `name`.
pub fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("vva-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Lets spawned tasks and real sockets make progress without moving paused time.
///
/// Its last step is a zero sleep, which fires at the next millisecond of the clock: on a clock
/// moved to an instant between two milliseconds (see [`advance_to`]) and held there, it waits for
/// good. Wait for a condition with [`eventually`] there instead.
pub async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::ZERO).await;
}
