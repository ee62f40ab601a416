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
use veeva_vault_auth::{AccessToken, BoxError, ResponseBody, VaultAuth, VaultAuthLayer};

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;
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
pub async fn text<B>(response: Response<ResponseBody<B>>) -> String
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
