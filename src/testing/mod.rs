//! A Veeva Vault stand-in for tests and examples.
//!
//! [`VaultStandIn`] is a small HTTP/1 server on `127.0.0.1` (random port) that authenticates
//! requests the way Veeva Vault does:
//!
//! * the credential is `Authorization: Bearer <token>` (a raw token without `Bearer ` is accepted
//!   too);
//! * a missing, unknown, revoked or expired credential is answered with **HTTP 200**,
//!   `X-VaultAPI-Status: FAILURE` and the body
//!   `{"responseStatus":"FAILURE","errors":[{"type":"INVALID_SESSION_ID","message":"Invalid or expired session ID."}]}`
//!   (or HTTP 401 with the same body, see [`VaultStandIn::set_unauthorized_mode`]);
//! * every answer carries `Content-Type: application/json;charset=UTF-8`, `X-VaultAPI-Status`
//!   and `X-VaultAPI-ExecutionId` (and echoes `X-VaultAPI-ReferenceId` when the request has one),
//!   except redirects (see below).
//!
//! Endpoints, under `/api/{version}` for any version string such as `v26.2`:
//!
//! | method and path | behaviour |
//! |---|---|
//! | `POST /objects/users/me/api_access_token__sys` | creates a token (`name__v` required, `expiry_date__v` optional, form or JSON body); at most 25 active tokens |
//! | `DELETE /vobjects/api_access_token__sys` | deactivates tokens by record id (JSON `[{"id":"…"}]` or CSV with an `id` column, at most 500); `POST …?_method=DELETE` too |
//! | `GET /vobjects/api_access_token__sys/{id}` | token metadata, never the token value |
//! | `GET /objects/users/me` | the stand-in's only user |
//! | `POST /query` | VQL (`q` in a form body); always an empty result |
//! | `GET /objects/documents` | a small fixed list of documents |
//! | `POST /keep-alive` | SUCCESS |
//! | `GET /api/` (no version, no credential needed) | map of API versions to URLs |
//!
//! Any other method and path is answered with HTTP 404 and a `MALFORMED_URL` FAILURE body.
//!
//! [`VaultStandIn::redirect`] makes paths answer with a redirection instead (`3xx` and a
//! `Location` header, whatever the credential), to test what a client stack does with the
//! credential when it follows a redirect, to the same Vault or to another origin.
//!
//! Token expiry is measured with [`tokio::time::Instant`], and serving requests sets no timers
//! (hyper's header-read timeout is off), so tests can run with paused time (`#[tokio::test(start_paused = true)]`) and expire tokens
//! with `tokio::time::advance` (Tokio's `test-util` feature).
//!
//! The stand-in keeps everything in memory and never panics on malformed input: bodies that are
//! not UTF-8, not JSON or larger than 1 MiB are answered with a FAILURE body.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{
    HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE,
};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;

/// The API version used by [`VaultStandIn::api_url`]. The server accepts any version string.
pub const API_VERSION: &str = "v26.2";

/// The most active tokens one user may hold, as in Vault.
pub const MAX_ACTIVE_TOKENS: usize = 25;

/// The largest request body the stand-in reads (1 MiB); larger bodies get a FAILURE answer.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// How much of an oversized body is still read (and discarded) so the client sees the answer.
const MAX_DRAINED_BYTES: usize = 16 * MAX_BODY_BYTES;

/// Most token ids one revoke request may name, as in Vault.
const MAX_REVOKE_IDS: usize = 500;

const USER_ID: u64 = 61_234;
const USER_NAME: &str = "integration@example.com";
const TOKEN_PREFIX: &str = "veeva-vault-";
const TOKEN_RANDOM_CHARS: usize = 32;
const FIRST_RECORD_ID: u64 = 2_001;
const SUPPORTED_VERSIONS: [&str; 5] = ["v25.1", "v25.2", "v25.3", "v26.1", API_VERSION];

const INVALID_SESSION_ID: &str = "INVALID_SESSION_ID";
const INVALID_SESSION_MESSAGE: &str = "Invalid or expired session ID.";

const JSON_CONTENT_TYPE: HeaderValue = HeaderValue::from_static("application/json;charset=UTF-8");
const STATUS_HEADER: HeaderName = HeaderName::from_static("x-vaultapi-status");
const EXECUTION_ID_HEADER: HeaderName = HeaderName::from_static("x-vaultapi-executionid");
const REFERENCE_ID_HEADER: HeaderName = HeaderName::from_static("x-vaultapi-referenceid");
const USER_ID_HEADER: HeaderName = HeaderName::from_static("x-vaultapi-userid");

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

/// A running Vault stand-in: an HTTP/1 server on `127.0.0.1` that authenticates like Veeva Vault.
///
/// The handle is cheap to clone; every clone controls the same server. The server task is
/// aborted when the last handle is dropped, or at once by [`VaultStandIn::shutdown`].
///
/// The stand-in has one user (`integration@example.com`). Tokens are made with
/// [`issue_token`](VaultStandIn::issue_token) (as if created in Vault's UI) or through the
/// `POST /objects/users/me/api_access_token__sys` endpoint.
///
/// `Debug` shows only the address, never a token.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use veeva_vault_auth::testing::{Outcome, VaultStandIn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let vault = VaultStandIn::start().await?;
/// assert_eq!(
///     vault.api_url("/objects/documents"),
///     format!("{}/api/v26.2/objects/documents", vault.base_url()),
/// );
///
/// // A token, as if an administrator created it in Vault's UI.
/// let token = vault.issue_token();
/// assert!(token.starts_with("veeva-vault-"));
/// assert!(vault.is_active(&token));
///
/// // Send requests to `vault.api_url(..)` with `Authorization: Bearer {token}`;
/// // afterwards, inspect what the stand-in received.
/// assert_eq!(vault.request_count(), 0);
///
/// // Revoking makes every later request with this token fail with INVALID_SESSION_ID.
/// assert!(vault.revoke(&token));
/// assert!(!vault.is_active(&token));
///
/// // Tokens can expire (measured with `tokio::time::Instant`, so paused time works).
/// let short = vault.issue_token_expiring_in(Duration::from_secs(60));
/// assert_eq!(vault.active_token_count(), 1);
/// # let _ = (short, Outcome::Accepted);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct VaultStandIn {
    inner: Arc<Inner>,
}

/// One request the stand-in received, with the way it was answered.
///
/// The `Debug` output never shows credentials: the values of `Authorization`,
/// `Proxy-Authorization` and `Cookie` headers print as `[REDACTED]`, and anything looking like a
/// Vault token (`veeva-vault-…`) in the path, query, other headers or body is masked too.
#[derive(Clone)]
pub struct RecordedRequest {
    /// The request method as sent (a `POST …?_method=DELETE` is recorded as `POST`).
    pub method: Method,
    /// The URI path, e.g. `/api/v26.2/objects/documents`.
    pub path: String,
    /// The URI query string without the `?`, if there was one.
    pub query: Option<String>,
    /// All request headers, including `Authorization`.
    pub headers: HeaderMap,
    /// The request body (only its first 1 MiB if it was larger).
    pub body: Bytes,
    /// How the stand-in answered, or [`Outcome::Pending`] while the request is held or in progress.
    pub outcome: Outcome,
}

/// How the stand-in answered a [`RecordedRequest`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Authenticated and answered with `responseStatus` `SUCCESS` (or an unauthenticated
    /// `GET /api/`).
    Accepted,
    /// Answered HTTP 200 with a FAILURE body of type `INVALID_SESSION_ID`: the credential was
    /// missing, unknown, revoked or expired.
    InvalidSession,
    /// Answered HTTP 401 (bad credential while [`VaultStandIn::set_unauthorized_mode`] is on).
    Unauthorized,
    /// Authenticated but answered with another FAILURE: an error injected with
    /// [`VaultStandIn::fail_path_with`], or a rejected input (missing `name__v`, malformed
    /// expiry date, the 25-token cap, unreadable or oversized body, …).
    Failed,
    /// Answered HTTP 404 (`MALFORMED_URL`): no such endpoint.
    NotFound,
    /// Answered with a redirection set by [`VaultStandIn::redirect`].
    Redirected,
    /// Recorded but not answered yet (held by [`VaultStandIn::hold_requests`], or in progress).
    Pending,
}

impl VaultStandIn {
    /// Binds `127.0.0.1:0` and starts serving on the current Tokio runtime (with `tokio::spawn`).
    ///
    /// # Errors
    ///
    /// Returns the error if the listening socket cannot be bound.
    pub async fn start() -> std::io::Result<VaultStandIn> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(addr));
        let server = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        Ok(VaultStandIn {
            inner: Arc::new(Inner {
                addr,
                shared,
                server: server.abort_handle(),
            }),
        })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// The server's base URL, `http://127.0.0.1:PORT` (no trailing slash).
    pub fn base_url(&self) -> String {
        self.inner.shared.base_url.clone()
    }

    /// The URL of an API endpoint: base URL + `/api/v26.2` + `path`.
    ///
    /// `path` should start with `/` (one is inserted if it does not), e.g.
    /// `vault.api_url("/objects/documents")`.
    pub fn api_url(&self, path: &str) -> String {
        let separator = if path.starts_with('/') { "" } else { "/" };
        format!(
            "{}/api/{API_VERSION}{separator}{path}",
            self.inner.shared.base_url
        )
    }

    /// Creates a new active, never-expiring token for the stand-in's user, as if it had been
    /// created in Vault's UI, and returns its value (`veeva-vault-` + 32 letters and digits).
    ///
    /// Unlike the HTTP endpoint this is not limited by the 25-token cap, so tests can set up any
    /// state; the tokens do count towards the cap seen by the endpoint.
    pub fn issue_token(&self) -> String {
        self.inner.shared.issue(None)
    }

    /// Like [`issue_token`](Self::issue_token), but the token expires at
    /// `tokio::time::Instant::now() + lifetime` (from that instant on it is rejected).
    pub fn issue_token_expiring_in(&self, lifetime: Duration) -> String {
        self.inner.shared.issue(Some(lifetime))
    }

    /// Deactivates a token. Returns `true` if it was active (known, not revoked, not expired).
    pub fn revoke(&self, token: &str) -> bool {
        self.inner.shared.lock().revoke_value(token)
    }

    /// Deactivates every token.
    pub fn revoke_all(&self) {
        for token in &mut self.inner.shared.lock().tokens {
            token.revoked = true;
        }
    }

    /// Whether `token` would be accepted now: known, not revoked and not expired.
    pub fn is_active(&self, token: &str) -> bool {
        let now = Instant::now();
        self.inner
            .shared
            .lock()
            .tokens
            .iter()
            .any(|record| record.value == token && record.is_active(now))
    }

    /// How many active tokens the stand-in's user holds now.
    pub fn active_token_count(&self) -> usize {
        self.inner.shared.lock().active_count(Instant::now())
    }

    /// When on, a bad or missing credential is answered with HTTP 401 (as a gateway or proxy in
    /// front of Vault might), carrying the same `INVALID_SESSION_ID` JSON body,
    /// `X-VaultAPI-Status: FAILURE` and `WWW-Authenticate: Bearer`. When off (the default), it
    /// is answered like Vault: HTTP 200 and no `WWW-Authenticate`.
    pub fn set_unauthorized_mode(&self, on: bool) {
        self.inner.shared.lock().unauthorized_mode = on;
    }

    /// Makes every authenticated request to an existing endpoint whose path ends with
    /// `path_suffix` answer HTTP 200 with a FAILURE body whose `errors[0].type` is `error_type`
    /// (e.g. `"INSUFFICIENT_ACCESS"`). Setting the same suffix again replaces its error type;
    /// when several suffixes match, the first one set wins. Undo with
    /// [`clear_failures`](Self::clear_failures).
    ///
    /// Bad credentials are still answered with `INVALID_SESSION_ID`, and unknown paths with 404.
    pub fn fail_path_with(&self, path_suffix: &str, error_type: &str) {
        let mut state = self.inner.shared.lock();
        let error_type = error_type.to_owned();
        match state
            .failures
            .iter_mut()
            .find(|(suffix, _)| suffix == path_suffix)
        {
            Some((_, existing)) => *existing = error_type,
            None => state.failures.push((path_suffix.to_owned(), error_type)),
        }
    }

    /// Removes every failure set with [`fail_path_with`](Self::fail_path_with).
    pub fn clear_failures(&self) {
        self.inner.shared.lock().failures.clear();
    }

    /// Makes every request whose path ends with `path_suffix` answer with `status` and
    /// `Location: location`, whatever its method and credential, and whether or not the path is
    /// an endpoint (so a made-up path such as `/moved` works too). The request is recorded like
    /// any other, with [`Outcome::Redirected`]; a held request is redirected when it is released.
    ///
    /// `location` is sent as it is: an absolute URL (such as another stand-in's
    /// [`api_url`](Self::api_url)) or a reference resolved against the request's URL (such as
    /// `/api/v26.2/objects/documents`). The answer has an empty body, `X-VaultAPI-ExecutionId`
    /// and no `Content-Type` or `X-VaultAPI-Status`.
    ///
    /// Setting the same suffix again replaces its redirection; when several suffixes match, the
    /// first one set wins. Redirections come before injected failures
    /// ([`fail_path_with`](Self::fail_path_with)). Undo with
    /// [`clear_redirects`](Self::clear_redirects).
    ///
    /// ```
    /// use http::StatusCode;
    /// use veeva_vault_auth::testing::VaultStandIn;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let vault = VaultStandIn::start().await?;
    /// let elsewhere = VaultStandIn::start().await?;
    /// // Same Vault, another path:
    /// vault.redirect("/objects/moved", StatusCode::FOUND, "/api/v26.2/objects/documents");
    /// // Another origin:
    /// vault.redirect(
    ///     "/objects/documents",
    ///     StatusCode::TEMPORARY_REDIRECT,
    ///     &elsewhere.api_url("/objects/documents"),
    /// );
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// If `status` is not a redirection (`3xx`) or `location` is not a valid header value.
    pub fn redirect(&self, path_suffix: &str, status: StatusCode, location: &str) {
        assert!(
            status.is_redirection(),
            "VaultStandIn::redirect needs a 3xx status, not {status}"
        );
        let location = HeaderValue::from_str(location).unwrap_or_else(|_| {
            panic!("VaultStandIn::redirect: {location:?} is not a header value")
        });
        let mut state = self.inner.shared.lock();
        let redirect = Redirect { status, location };
        match state
            .redirects
            .iter_mut()
            .find(|(suffix, _)| suffix == path_suffix)
        {
            Some((_, existing)) => *existing = redirect,
            None => state.redirects.push((path_suffix.to_owned(), redirect)),
        }
    }

    /// Removes every redirection set with [`redirect`](Self::redirect).
    pub fn clear_redirects(&self) {
        self.inner.shared.lock().redirects.clear();
    }

    /// When on, each incoming request is recorded and then held (not answered) until
    /// [`release`](Self::release) or `hold_requests(false)`. Turning it off releases every held
    /// request. Credentials are checked when the hold ends, so a token revoked during the hold is
    /// rejected.
    pub fn hold_requests(&self, on: bool) {
        self.inner.shared.hold.send_modify(|hold| {
            hold.holding = on;
            if !on {
                hold.release_all();
            }
        });
    }

    /// Stops holding new requests, but keeps the ones held now until [`release`](Self::release):
    /// lets a test answer later requests while earlier ones wait.
    pub fn stop_holding(&self) {
        self.inner
            .shared
            .hold
            .send_modify(|hold| hold.holding = false);
    }

    /// Resolves once at least `n` requests are being held (immediately if they already are).
    ///
    /// Released requests no longer count. If fewer than `n` requests ever arrive while
    /// [`hold_requests`](Self::hold_requests) is on, this never resolves; wrap it in a timeout if
    /// that can happen.
    pub async fn wait_for_held(&self, n: usize) {
        let mut hold = self.inner.shared.hold.subscribe();
        // The sender lives in `Shared`, which `self` keeps alive, so this cannot fail.
        let _ = hold.wait_for(|hold| hold.held >= n).await;
    }

    /// Answers every request held now. Requests arriving later are held again while
    /// [`hold_requests`](Self::hold_requests) is on.
    pub fn release(&self) {
        self.inner.shared.hold.send_modify(HoldState::release_all);
    }

    /// Every request received so far (since the last [`clear_requests`](Self::clear_requests)),
    /// in arrival order, including held ones.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        let state = self.inner.shared.lock();
        state
            .requests
            .iter()
            .map(|(_, request)| request.clone())
            .collect()
    }

    /// How many requests were received (since the last [`clear_requests`](Self::clear_requests)).
    pub fn request_count(&self) -> usize {
        self.inner.shared.lock().requests.len()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.inner.shared.lock().requests.clear();
    }

    /// Stops the server now: the listener is closed and open connections, including held
    /// requests, are dropped. Recorded requests and tokens stay readable. Dropping the last
    /// handle does the same.
    pub fn shutdown(&self) {
        self.inner.server.abort();
    }
}

impl fmt::Debug for VaultStandIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultStandIn")
            .field("addr", &self.inner.addr)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for RecordedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordedRequest")
            .field("method", &self.method)
            .field("path", &redact_tokens(&self.path))
            .field("query", &self.query.as_deref().map(redact_tokens))
            .field("headers", &RedactedHeaders(&self.headers))
            .field("body", &redact_tokens(&String::from_utf8_lossy(&self.body)))
            .field("outcome", &self.outcome)
            .finish()
    }
}

// ---------------------------------------------------------------------------------------------
// Server plumbing
// ---------------------------------------------------------------------------------------------

/// What the handles share; aborts the server when the last handle goes.
struct Inner {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: AbortHandle,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// State shared by the handles and the server tasks.
struct Shared {
    base_url: String,
    state: Mutex<State>,
    hold: watch::Sender<HoldState>,
    entropy: Entropy,
}

/// Accepts connections until aborted. Connection tasks live in a `JoinSet` owned by this task,
/// so aborting it also aborts every connection (and every held request).
async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(stream, Arc::clone(&shared)));
                }
                // E.g. too many open files: back off briefly instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    let service = service_fn(move |request| {
        let shared = Arc::clone(&shared);
        async move { Ok::<_, Infallible>(shared.handle(request).await) }
    });
    // No timer is configured (so paused test time cannot fire one); hence no header timeout.
    let _ = http1::Builder::new()
        .header_read_timeout(None)
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

impl Shared {
    fn new(addr: SocketAddr) -> Shared {
        Shared {
            base_url: format!("http://{addr}"),
            state: Mutex::new(State::default()),
            hold: watch::Sender::new(HoldState::default()),
            entropy: Entropy::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn issue(&self, lifetime: Option<Duration>) -> String {
        let mut state = self.lock();
        let name = format!("stand-in token {}", state.tokens.len() + 1);
        let expiry = lifetime.map(Expiry::after);
        state.add_token(&self.entropy, name, expiry).1
    }

    /// Records the request, holds it if asked to, then answers it.
    async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let (parts, body) = request.into_parts();
        let body = read_body(body).await;
        let seq = self.lock().record(&parts, body.bytes.clone());
        self.wait_while_held().await;
        let reply = self.answer(&parts, &body);
        self.lock().set_outcome(seq, reply.outcome);
        self.respond(reply, &parts.headers)
    }

    async fn wait_while_held(&self) {
        let mut generation = None;
        self.hold.send_if_modified(|hold| {
            if hold.holding {
                hold.held += 1;
                generation = Some(hold.generation);
            }
            hold.holding
        });
        let Some(generation) = generation else { return };
        // Un-counts the request if its connection goes away while it is held.
        let _held = HeldGuard {
            hold: &self.hold,
            generation,
        };
        let mut hold = self.hold.subscribe();
        let _ = hold.wait_for(|hold| hold.generation != generation).await;
    }

    fn answer(&self, parts: &http::request::Parts, body: &ReceivedBody) -> Reply {
        if let Some(redirect) = self.lock().redirect_for(parts.uri.path()) {
            return Reply::redirect(redirect);
        }
        let route = Route::resolve(&parts.method, parts.uri.path(), parts.uri.query());
        match route {
            Route::NotFound => return Reply::not_found(),
            Route::Versions => return self.versions(),
            _ => {}
        }
        let mut state = self.lock();
        if !state.authenticate(&parts.headers) {
            return Reply::invalid_session(state.unauthorized_mode);
        }
        if let Some(error_type) = state.injected_failure(parts.uri.path()) {
            return Reply::failure(&error_type, injected_message(&error_type));
        }
        if let Some(problem) = body.problem {
            return Reply::failure("INVALID_DATA", problem.message());
        }
        let content_type = parts.headers.get(CONTENT_TYPE);
        let body = &body.bytes;
        match route {
            Route::CreateToken => state.create_token(&self.entropy, content_type, body),
            Route::RevokeTokens => state.revoke_tokens(content_type, body),
            Route::TokenMetadata(id) => state.token_metadata(&id),
            Route::Me => me(),
            Route::Query => query(content_type, body),
            Route::Documents => documents(),
            Route::KeepAlive => Reply::success(Vec::new()),
            Route::Versions | Route::NotFound => Reply::not_found(),
        }
    }

    fn versions(&self) -> Reply {
        let urls = SUPPORTED_VERSIONS.iter().map(|version| {
            (
                *version,
                Json::string(&format!("{}/api/{version}", self.base_url)),
            )
        });
        let mut reply = Reply::success(vec![("values", Json::object(urls))]);
        reply.authenticated = false;
        reply
    }

    fn respond(&self, reply: Reply, request_headers: &HeaderMap) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(Bytes::from(reply.body.0)));
        *response.status_mut() = reply.status;
        let headers = response.headers_mut();
        if let Some(location) = reply.location {
            headers.insert(LOCATION, location);
        } else {
            headers.insert(CONTENT_TYPE, JSON_CONTENT_TYPE);
            let status = if reply.success { "SUCCESS" } else { "FAILURE" };
            headers.insert(STATUS_HEADER, HeaderValue::from_static(status));
        }
        if let Ok(id) = HeaderValue::try_from(self.entropy.execution_id()) {
            headers.insert(EXECUTION_ID_HEADER, id);
        }
        if let Some(reference) = request_headers.get(&REFERENCE_ID_HEADER) {
            headers.insert(REFERENCE_ID_HEADER, reference.clone());
        }
        if reply.authenticated {
            headers.insert(USER_ID_HEADER, HeaderValue::from(USER_ID));
        }
        if reply.status == StatusCode::UNAUTHORIZED {
            headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// Whether requests are held, and how many are held in the current generation. Releasing starts
/// a new generation, which wakes every request waiting on the old one.
#[derive(Clone, Copy, Debug, Default)]
struct HoldState {
    holding: bool,
    generation: u64,
    held: usize,
}

impl HoldState {
    fn release_all(&mut self) {
        self.generation += 1;
        self.held = 0;
    }
}

struct HeldGuard<'a> {
    hold: &'a watch::Sender<HoldState>,
    generation: u64,
}

impl Drop for HeldGuard<'_> {
    fn drop(&mut self) {
        self.hold.send_if_modified(|hold| {
            let still_held = hold.generation == self.generation;
            if still_held {
                hold.held = hold.held.saturating_sub(1);
            }
            still_held
        });
    }
}

/// A request body read up to [`MAX_BODY_BYTES`].
struct ReceivedBody {
    bytes: Bytes,
    problem: Option<BodyProblem>,
}

#[derive(Clone, Copy, Debug)]
enum BodyProblem {
    TooLarge,
    Unreadable,
}

impl BodyProblem {
    fn message(self) -> &'static str {
        match self {
            BodyProblem::TooLarge => "The request body is larger than 1 MiB.",
            BodyProblem::Unreadable => "The request body could not be read.",
        }
    }
}

/// Reads a body, keeping at most [`MAX_BODY_BYTES`]; the rest of an oversized body is read and
/// discarded (up to a limit) so that the client gets to see the answer.
async fn read_body<B>(mut body: B) -> ReceivedBody
where
    B: http_body::Body<Data = Bytes> + Unpin,
{
    let mut kept = Vec::new();
    let mut seen = 0usize;
    let mut problem = None;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            problem = Some(BodyProblem::Unreadable);
            break;
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen = seen.saturating_add(data.len());
        let room = MAX_BODY_BYTES.saturating_sub(kept.len());
        kept.extend_from_slice(&data[..data.len().min(room)]);
        if seen > MAX_BODY_BYTES {
            problem = Some(BodyProblem::TooLarge);
        }
        if seen > MAX_DRAINED_BYTES {
            break;
        }
    }
    ReceivedBody {
        bytes: Bytes::from(kept),
        problem,
    }
}

// ---------------------------------------------------------------------------------------------
// Routing
// ---------------------------------------------------------------------------------------------

#[derive(Debug, PartialEq, Eq)]
enum Route {
    Versions,
    CreateToken,
    RevokeTokens,
    TokenMetadata(String),
    Me,
    Query,
    Documents,
    KeepAlive,
    NotFound,
}

impl Route {
    fn resolve(method: &Method, path: &str, query: Option<&str>) -> Route {
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        match (method.as_str(), segments.as_slice()) {
            ("GET", ["api"]) => Route::Versions,
            (_, ["api", version, rest @ ..]) if is_version(version) => {
                Route::api(effective_method(method, query), rest)
            }
            _ => Route::NotFound,
        }
    }

    /// Routes the part of the path after `/api/{version}`.
    fn api(method: &str, rest: &[&str]) -> Route {
        match (method, rest) {
            ("POST", ["objects", "users", "me", "api_access_token__sys"]) => Route::CreateToken,
            ("DELETE", ["vobjects", "api_access_token__sys"]) => Route::RevokeTokens,
            ("GET", ["vobjects", "api_access_token__sys", id]) => {
                Route::TokenMetadata((*id).to_owned())
            }
            ("GET", ["objects", "users", "me"]) => Route::Me,
            ("POST", ["query"]) => Route::Query,
            ("GET", ["objects", "documents"]) => Route::Documents,
            ("POST", ["keep-alive"]) => Route::KeepAlive,
            _ => Route::NotFound,
        }
    }
}

/// `v` followed by one or two dot-separated numbers, e.g. `v26.2`.
fn is_version(segment: &str) -> bool {
    let Some(numbers) = segment.strip_prefix('v') else {
        return false;
    };
    let parts: Vec<&str> = numbers.split('.').collect();
    parts.len() <= 2
        && parts
            .iter()
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
}

/// `POST …?_method=DELETE` stands for a `DELETE`, for clients that cannot send a DELETE body.
fn effective_method<'a>(method: &'a Method, query: Option<&str>) -> &'a str {
    let overridden = *method == Method::POST
        && form_pairs(query.unwrap_or(""))
            .iter()
            .any(|(key, value)| key == "_method" && value.eq_ignore_ascii_case("DELETE"));
    if overridden {
        "DELETE"
    } else {
        method.as_str()
    }
}

// ---------------------------------------------------------------------------------------------
// Tokens, requests and failures
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct State {
    tokens: Vec<TokenRecord>,
    next_record_id: u64,
    unauthorized_mode: bool,
    /// `(path suffix, error type)`, in the order they were set.
    failures: Vec<(String, String)>,
    /// `(path suffix, redirection)`, in the order they were set.
    redirects: Vec<(String, Redirect)>,
    /// `(sequence number, request)`, in arrival order.
    requests: Vec<(u64, RecordedRequest)>,
    next_request_seq: u64,
}

/// A redirection set with [`VaultStandIn::redirect`].
#[derive(Clone, Debug)]
struct Redirect {
    status: StatusCode,
    location: HeaderValue,
}

struct TokenRecord {
    id: String,
    name: String,
    value: String,
    revoked: bool,
    expiry: Option<Expiry>,
    last_used: Option<SystemTime>,
}

/// When a token expires: the deadline that counts (test time) and, for metadata, the wall clock.
#[derive(Clone, Copy, Debug)]
struct Expiry {
    /// `None` when the deadline is too far away to represent.
    deadline: Option<Instant>,
    wall: Option<SystemTime>,
}

impl Expiry {
    fn after(lifetime: Duration) -> Expiry {
        Expiry {
            deadline: Instant::now().checked_add(lifetime),
            wall: SystemTime::now().checked_add(lifetime),
        }
    }

    /// An expiry at a wall-clock time, which must be in the future.
    fn at(wall: SystemTime) -> Option<Expiry> {
        let lifetime = wall.duration_since(SystemTime::now()).ok()?;
        Some(Expiry {
            deadline: Instant::now().checked_add(lifetime),
            wall: Some(wall),
        })
    }
}

impl TokenRecord {
    fn is_active(&self, now: Instant) -> bool {
        let expired = self
            .expiry
            .and_then(|expiry| expiry.deadline)
            .is_some_and(|deadline| now >= deadline);
        !self.revoked && !expired
    }

    fn metadata(&self, now: Instant) -> Json {
        let status = if self.is_active(now) {
            "active__v"
        } else {
            "inactive__v"
        };
        let expiry = self.expiry.and_then(|expiry| expiry.wall);
        Json::object([
            ("id", Json::string(&self.id)),
            ("name__v", Json::string(&self.name)),
            ("user__sys", Json::string(&USER_ID.to_string())),
            ("status__v", Json::string(status)),
            ("expiry_date__sys", Json::optional_date(expiry)),
            ("last_used_date__sys", Json::optional_date(self.last_used)),
        ])
    }
}

impl State {
    /// Adds an active token and returns its record id and value.
    fn add_token(
        &mut self,
        entropy: &Entropy,
        name: String,
        expiry: Option<Expiry>,
    ) -> (String, String) {
        let value = loop {
            let candidate = entropy.token_value();
            if self.tokens.iter().all(|token| token.value != candidate) {
                break candidate;
            }
        };
        let id = format!("V8T{:012}", FIRST_RECORD_ID + self.next_record_id);
        self.next_record_id += 1;
        self.tokens.push(TokenRecord {
            id: id.clone(),
            name,
            value: value.clone(),
            revoked: false,
            expiry,
            last_used: None,
        });
        (id, value)
    }

    fn active_count(&self, now: Instant) -> usize {
        self.tokens.iter().filter(|t| t.is_active(now)).count()
    }

    fn revoke_value(&mut self, value: &str) -> bool {
        let now = Instant::now();
        let Some(token) = self.tokens.iter_mut().find(|t| t.value == value) else {
            return false;
        };
        let was_active = token.is_active(now);
        token.revoked = true;
        was_active
    }

    /// Checks the request's credential; a good one is marked as used.
    fn authenticate(&mut self, headers: &HeaderMap) -> bool {
        let Some(credential) = credential(headers) else {
            return false;
        };
        let now = Instant::now();
        let token = self.tokens.iter_mut().find(|t| t.value == credential);
        match token {
            Some(token) if token.is_active(now) => {
                token.last_used = Some(SystemTime::now());
                true
            }
            _ => false,
        }
    }

    fn redirect_for(&self, path: &str) -> Option<Redirect> {
        self.redirects
            .iter()
            .find(|(suffix, _)| path.ends_with(suffix.as_str()))
            .map(|(_, redirect)| redirect.clone())
    }

    fn injected_failure(&self, path: &str) -> Option<String> {
        self.failures
            .iter()
            .find(|(suffix, _)| path.ends_with(suffix.as_str()))
            .map(|(_, error_type)| error_type.clone())
    }

    fn record(&mut self, parts: &http::request::Parts, body: Bytes) -> u64 {
        let seq = self.next_request_seq;
        self.next_request_seq += 1;
        let request = RecordedRequest {
            method: parts.method.clone(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().map(str::to_owned),
            headers: parts.headers.clone(),
            body,
            outcome: Outcome::Pending,
        };
        self.requests.push((seq, request));
        seq
    }

    fn set_outcome(&mut self, seq: u64, outcome: Outcome) {
        if let Ok(index) = self.requests.binary_search_by_key(&seq, |(s, _)| *s) {
            self.requests[index].1.outcome = outcome;
        }
    }

    /// `POST /objects/users/me/api_access_token__sys`
    fn create_token(
        &mut self,
        entropy: &Entropy,
        content_type: Option<&HeaderValue>,
        body: &[u8],
    ) -> Reply {
        let fields = match parse_fields(content_type, body) {
            Ok(fields) => fields,
            Err(reply) => return reply,
        };
        let Some(name) = fields.get("name__v").filter(|name| !name.trim().is_empty()) else {
            return Reply::failure(
                "PARAMETER_REQUIRED",
                "Missing required parameter [name__v].",
            );
        };
        let expiry = match fields.get("expiry_date__v").map(|date| parse_expiry(date)) {
            None => None,
            Some(Ok(expiry)) => Some(expiry),
            Some(Err(reply)) => return reply,
        };
        if self.active_count(Instant::now()) >= MAX_ACTIVE_TOKENS {
            return Reply::failure(
                "OPERATION_NOT_ALLOWED",
                "A user may have at most 25 active API access tokens; delete one first.",
            );
        }
        let (id, value) = self.add_token(entropy, name.clone(), expiry);
        Reply::success(vec![(
            "data",
            Json::object([
                ("id", Json::string(&id)),
                ("token__sys", Json::string(&value)),
            ]),
        )])
    }

    /// `DELETE /vobjects/api_access_token__sys`
    fn revoke_tokens(&mut self, content_type: Option<&HeaderValue>, body: &[u8]) -> Reply {
        let ids = match revoke_ids(content_type, body) {
            Ok(ids) => ids,
            Err(reply) => return reply,
        };
        let results = ids.iter().map(|id| self.revoke_id(id));
        Reply::success(vec![("data", Json::array(results))])
    }

    fn revoke_id(&mut self, id: &str) -> Json {
        match self.tokens.iter_mut().find(|token| token.id == id) {
            Some(token) => {
                token.revoked = true;
                Json::object([
                    ("responseStatus", Json::string("SUCCESS")),
                    ("id", Json::string(id)),
                ])
            }
            None => Json::object([
                ("responseStatus", Json::string("FAILURE")),
                ("id", Json::string(id)),
                (
                    "errors",
                    Json::errors("INVALID_DATA", "No token with this record id."),
                ),
            ]),
        }
    }

    /// `GET /vobjects/api_access_token__sys/{id}`
    fn token_metadata(&self, id: &str) -> Reply {
        match self.tokens.iter().find(|token| token.id == id) {
            Some(token) => Reply::success(vec![("data", token.metadata(Instant::now()))]),
            None => Reply::failure("INVALID_DATA", "No token with this record id."),
        }
    }
}

/// The credential in `Authorization`: `Bearer <token>` or a raw token.
fn credential(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let bearer = value
        .get(..7)
        .filter(|scheme| scheme.eq_ignore_ascii_case("bearer "));
    match bearer {
        Some(_) => value.get(7..).map(str::trim),
        None => Some(value),
    }
}

fn parse_expiry(date: &str) -> Result<Expiry, Reply> {
    let seconds = parse_utc(date).ok_or_else(|| {
        Reply::failure(
            "INVALID_DATA",
            "Invalid value for [expiry_date__v]: expected YYYY-MM-DDTHH:MM:SSZ (UTC).",
        )
    })?;
    u64::try_from(seconds)
        .ok()
        .and_then(|seconds| UNIX_EPOCH.checked_add(Duration::from_secs(seconds)))
        .and_then(Expiry::at)
        .ok_or_else(|| {
            Reply::failure(
                "INVALID_DATA",
                "Invalid value for [expiry_date__v]: the date must be in the future.",
            )
        })
}

fn injected_message(error_type: &str) -> &'static str {
    match error_type {
        "INSUFFICIENT_ACCESS" => "User does not have sufficient privileges to perform the action.",
        "API_LIMIT_EXCEEDED" => "API limit exceeded.",
        "INACTIVE_USER" => "User is inactive or not found.",
        _ => "Failure injected by the Vault stand-in.",
    }
}

// ---------------------------------------------------------------------------------------------
// Fixed endpoints
// ---------------------------------------------------------------------------------------------

/// `GET /objects/users/me`
fn me() -> Reply {
    let user = Json::object([
        ("id", Json::number(USER_ID)),
        ("user_name__v", Json::string(USER_NAME)),
        ("user_first_name__v", Json::string("Integration")),
        ("user_last_name__v", Json::string("User")),
        ("user_email__v", Json::string(USER_NAME)),
        ("active__v", Json::bool(true)),
    ]);
    let users = Json::array([Json::object([("user", user)])]);
    Reply::success(vec![("users", users)])
}

/// `POST /query`
fn query(content_type: Option<&HeaderValue>, body: &[u8]) -> Reply {
    let fields = match parse_fields(content_type, body) {
        Ok(fields) => fields,
        Err(reply) => return reply,
    };
    if fields.get("q").is_none_or(|q| q.trim().is_empty()) {
        return Reply::failure("PARAMETER_REQUIRED", "Missing required parameter [q].");
    }
    let details = Json::object([("size", Json::number(0)), ("total", Json::number(0))]);
    Reply::success(vec![
        ("responseDetails", details),
        ("data", Json::array([])),
    ])
}

/// `GET /objects/documents`
fn documents() -> Reply {
    let document = |id: u64, name: &str| {
        Json::object([(
            "document",
            Json::object([
                ("id", Json::number(id)),
                ("name__v", Json::string(name)),
                ("type__v", Json::string("Reference Document")),
                ("status__v", Json::string("Approved")),
                ("major_version_number__v", Json::number(1)),
                ("minor_version_number__v", Json::number(0)),
            ]),
        )])
    };
    Reply::success(vec![
        ("size", Json::number(2)),
        ("start", Json::number(0)),
        ("limit", Json::number(200)),
        (
            "documents",
            Json::array([
                document(101, "Stand-in Protocol"),
                document(102, "Stand-in Label"),
            ]),
        ),
    ])
}

// ---------------------------------------------------------------------------------------------
// Replies and JSON rendering
// ---------------------------------------------------------------------------------------------

/// An answer before it becomes an HTTP response.
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    success: bool,
    authenticated: bool,
    outcome: Outcome,
    body: Json,
    /// Set for redirections only: then the answer has no JSON headers and an empty body.
    location: Option<HeaderValue>,
}

impl Reply {
    fn success(members: Vec<(&str, Json)>) -> Reply {
        Reply {
            status: StatusCode::OK,
            success: true,
            authenticated: true,
            outcome: Outcome::Accepted,
            body: Json::response("SUCCESS", members),
            location: None,
        }
    }

    /// HTTP 200 with a FAILURE body, for an authenticated request.
    fn failure(error_type: &str, message: &str) -> Reply {
        Reply {
            status: StatusCode::OK,
            success: false,
            authenticated: true,
            outcome: Outcome::Failed,
            body: Json::failure(error_type, message),
            location: None,
        }
    }

    fn invalid_session(unauthorized_mode: bool) -> Reply {
        let (status, outcome) = if unauthorized_mode {
            (StatusCode::UNAUTHORIZED, Outcome::Unauthorized)
        } else {
            (StatusCode::OK, Outcome::InvalidSession)
        };
        Reply {
            status,
            success: false,
            authenticated: false,
            outcome,
            body: Json::failure(INVALID_SESSION_ID, INVALID_SESSION_MESSAGE),
            location: None,
        }
    }

    fn redirect(redirect: Redirect) -> Reply {
        Reply {
            status: redirect.status,
            success: true,
            authenticated: false,
            outcome: Outcome::Redirected,
            body: Json(String::new()),
            location: Some(redirect.location),
        }
    }

    fn not_found() -> Reply {
        Reply {
            status: StatusCode::NOT_FOUND,
            success: false,
            authenticated: false,
            outcome: Outcome::NotFound,
            body: Json::failure("MALFORMED_URL", "The requested resource does not exist."),
            location: None,
        }
    }
}

/// Rendered JSON text.
///
/// Responses are rendered by hand so that members keep Vault's order (`responseStatus` first,
/// `type` before `message`), making the `INVALID_SESSION_ID` body identical to Vault's byte for
/// byte; `serde_json::Value` would sort object keys.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Json(String);

impl Json {
    fn string(text: &str) -> Json {
        Json(serde_json::Value::from(text).to_string())
    }

    fn number(n: u64) -> Json {
        Json(n.to_string())
    }

    fn bool(b: bool) -> Json {
        Json(b.to_string())
    }

    fn optional_date(time: Option<SystemTime>) -> Json {
        match time {
            Some(time) => Json::string(&format_utc(time)),
            None => Json("null".to_owned()),
        }
    }

    fn object<'a>(members: impl IntoIterator<Item = (&'a str, Json)>) -> Json {
        let members: Vec<String> = members
            .into_iter()
            .map(|(key, value)| format!("{}:{}", Json::string(key).0, value.0))
            .collect();
        Json(format!("{{{}}}", members.join(",")))
    }

    fn array(items: impl IntoIterator<Item = Json>) -> Json {
        let items: Vec<String> = items.into_iter().map(|item| item.0).collect();
        Json(format!("[{}]", items.join(",")))
    }

    fn errors(error_type: &str, message: &str) -> Json {
        Json::array([Json::object([
            ("type", Json::string(error_type)),
            ("message", Json::string(message)),
        ])])
    }

    /// A top-level response: `responseStatus` first, then `members`.
    fn response(status: &str, members: Vec<(&str, Json)>) -> Json {
        let status = ("responseStatus", Json::string(status));
        Json::object(std::iter::once(status).chain(members))
    }

    fn failure(error_type: &str, message: &str) -> Json {
        Json::response(
            "FAILURE",
            vec![("errors", Json::errors(error_type, message))],
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Request body parsing
// ---------------------------------------------------------------------------------------------

fn content_type_has(content_type: Option<&HeaderValue>, needle: &str) -> bool {
    content_type
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.to_ascii_lowercase().contains(needle))
}

fn utf8(body: &[u8]) -> Result<&str, Reply> {
    std::str::from_utf8(body)
        .map_err(|_| Reply::failure("INVALID_DATA", "The request body is not valid UTF-8."))
}

/// Named fields of a JSON object body or a form-urlencoded body. JSON is assumed when the
/// content type says so, or when there is none and the body starts with `{`.
fn parse_fields(
    content_type: Option<&HeaderValue>,
    body: &[u8],
) -> Result<HashMap<String, String>, Reply> {
    let text = utf8(body)?;
    let json = content_type_has(content_type, "json")
        || (content_type.is_none() && text.trim_start().starts_with('{'));
    if !json {
        return Ok(form_pairs(text).into_iter().collect());
    }
    let invalid = || Reply::failure("INVALID_DATA", "The request body is not a JSON object.");
    let serde_json::Value::Object(object) = serde_json::from_str(text).map_err(|_| invalid())?
    else {
        return Err(invalid());
    };
    let fields = object.into_iter().filter_map(|(key, value)| match value {
        serde_json::Value::Null => None,
        serde_json::Value::String(text) => Some((key, text)),
        other => Some((key, other.to_string())),
    });
    Ok(fields.collect())
}

/// The record ids of a revoke request: JSON `[{"id":"…"}]`, or CSV with an `id` column.
fn revoke_ids(content_type: Option<&HeaderValue>, body: &[u8]) -> Result<Vec<String>, Reply> {
    let text = utf8(body)?;
    let ids = if content_type_has(content_type, "csv") {
        csv_ids(text)
    } else {
        json_ids(text)
    }
    .ok_or_else(|| {
        Reply::failure(
            "INVALID_DATA",
            "Expected a JSON array of objects with an id, or CSV with an id column.",
        )
    })?;
    if ids.is_empty() {
        return Err(Reply::failure("INVALID_DATA", "No record ids were given."));
    }
    if ids.len() > MAX_REVOKE_IDS {
        return Err(Reply::failure(
            "INVALID_DATA",
            "At most 500 records can be deleted per request.",
        ));
    }
    Ok(ids)
}

fn json_ids(text: &str) -> Option<Vec<String>> {
    let serde_json::Value::Array(items) = serde_json::from_str(text).ok()? else {
        return None;
    };
    items
        .iter()
        .map(|item| match item.get("id")? {
            serde_json::Value::String(id) => Some(id.clone()),
            serde_json::Value::Number(id) => Some(id.to_string()),
            _ => None,
        })
        .collect()
}

fn csv_ids(text: &str) -> Option<Vec<String>> {
    let unquote = |cell: &str| cell.trim().trim_matches('"').to_owned();
    let mut lines = text.lines().filter(|line| !line.trim().is_empty());
    let header: Vec<String> = lines.next()?.split(',').map(unquote).collect();
    let column = header
        .iter()
        .position(|name| name.eq_ignore_ascii_case("id"))?;
    lines
        .map(|line| line.split(',').nth(column).map(unquote))
        .collect()
}

/// `key=value&…` pairs, percent-decoded (`+` is a space).
fn form_pairs(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let hex = |i: usize| {
        let digit = char::from(*bytes.get(i)?).to_digit(16)?;
        u8::try_from(digit).ok()
    };
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(high), Some(low)) => {
                out.push(high * 16 + low);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Dates (UTC, by hand)
// ---------------------------------------------------------------------------------------------

/// Parses `YYYY-MM-DDTHH:MM:SSZ` into seconds since the Unix epoch.
fn parse_utc(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let separators = [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'Z'),
    ];
    if bytes.len() != 20 || separators.iter().any(|&(at, byte)| bytes[at] != byte) {
        return None;
    }
    let number = |from: usize, to: usize| -> Option<i64> {
        let digits = text.get(from..to)?;
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    };
    let (year, month, day) = (number(0, 4)?, number(5, 7)?, number(8, 10)?);
    let (hour, minute, second) = (number(11, 13)?, number(14, 16)?, number(17, 19)?);
    let valid = (1..=12).contains(&month)
        && (1..=days_in_month(year, month)).contains(&day)
        && hour < 24
        && minute < 60
        && second < 60;
    valid.then(|| days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second)
}

/// Formats as `YYYY-MM-DDTHH:MM:SS.000Z`, the way Vault returns date-times.
fn format_utc(time: SystemTime) -> String {
    let seconds = time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let seconds = i64::try_from(seconds).unwrap_or(i64::MAX / 2);
    let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
    let of_day = seconds.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.000Z",
        of_day / 3_600,
        of_day % 3_600 / 60,
        of_day % 60
    )
}

fn days_in_month(year: i64, month: i64) -> i64 {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date of a day count since 1970-01-01 (inverse of [`days_from_civil`]).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

// ---------------------------------------------------------------------------------------------
// Random-looking values without the rand crate
// ---------------------------------------------------------------------------------------------

/// Hashes a counter with randomly keyed SipHash: unpredictable enough for a test utility.
#[derive(Default)]
struct Entropy {
    keys: RandomState,
    counter: AtomicU64,
}

impl Entropy {
    fn next_u64(&self) -> u64 {
        let mut hasher = self.keys.build_hasher();
        hasher.write_u64(self.counter.fetch_add(1, Ordering::Relaxed));
        hasher.finish()
    }

    /// `veeva-vault-` followed by 32 characters from `[A-Za-z0-9]`.
    fn token_value(&self) -> String {
        const ALPHABET: &[u8; 62] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let mut value = String::with_capacity(TOKEN_PREFIX.len() + TOKEN_RANDOM_CHARS);
        value.push_str(TOKEN_PREFIX);
        let mut chars = 0;
        while chars < TOKEN_RANDOM_CHARS {
            // 62^10 < 2^64: ten characters per hash.
            let mut bits = self.next_u64();
            for _ in 0..10.min(TOKEN_RANDOM_CHARS - chars) {
                value.push(char::from(ALPHABET[(bits % 62) as usize]));
                bits /= 62;
                chars += 1;
            }
        }
        value
    }

    /// A UUID-shaped identifier for `X-VaultAPI-ExecutionId`.
    fn execution_id(&self) -> String {
        let (high, low) = (self.next_u64(), self.next_u64());
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            high >> 32,
            (high >> 16) & 0xffff,
            high & 0xffff,
            low >> 48,
            low & 0xffff_ffff_ffff
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Redaction for Debug output
// ---------------------------------------------------------------------------------------------

/// Headers whose values are never shown.
fn is_secret_header(name: &HeaderName, value: &HeaderValue) -> bool {
    value.is_sensitive()
        || name == AUTHORIZATION
        || name == http::header::PROXY_AUTHORIZATION
        || name == http::header::COOKIE
}

struct RedactedHeaders<'a>(&'a HeaderMap);

impl fmt::Debug for RedactedHeaders<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entries = self.0.iter().map(|(name, value)| {
            let shown = if is_secret_header(name, value) {
                "[REDACTED]".to_owned()
            } else {
                redact_tokens(&String::from_utf8_lossy(value.as_bytes()))
            };
            (name, shown)
        });
        f.debug_map().entries(entries).finish()
    }
}

/// Replaces what follows each `veeva-vault-` (letters and digits) with `[REDACTED]`.
fn redact_tokens(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(TOKEN_PREFIX) {
        let after = &rest[at + TOKEN_PREFIX.len()..];
        let secret_len = after
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(after.len());
        out.push_str(&rest[..at + TOKEN_PREFIX.len()]);
        out.push_str("[REDACTED]");
        rest = &after[secret_len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_session_body_matches_vault_byte_for_byte() {
        assert_eq!(
            Json::failure(INVALID_SESSION_ID, INVALID_SESSION_MESSAGE).0,
            r#"{"responseStatus":"FAILURE","errors":[{"type":"INVALID_SESSION_ID","message":"Invalid or expired session ID."}]}"#
        );
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(Json::string("a\"b\\c\n").0, r#""a\"b\\c\n""#);
    }

    #[test]
    fn dates_parse_and_format() {
        assert_eq!(parse_utc("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_utc("2000-02-29T12:34:56Z"), Some(951_827_696));
        let time = UNIX_EPOCH + Duration::from_secs(951_827_696);
        assert_eq!(format_utc(time), "2000-02-29T12:34:56.000Z");
        let far = parse_utc("9999-12-31T23:59:59Z").unwrap();
        let far_time = UNIX_EPOCH + Duration::from_secs(far as u64);
        assert_eq!(format_utc(far_time), "9999-12-31T23:59:59.000Z");
    }

    #[test]
    fn malformed_dates_are_rejected() {
        for bad in [
            "",
            "2026-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-00-10T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01 00:00:00Z",
            "2026-01-01T00:00:00",
            "2026-01-01T00:00:00+00:00",
            "+026-01-01T00:00:00Z",
            "2026-01-01T00:00:6éZ",
            "2026-01-01",
        ] {
            assert_eq!(parse_utc(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_day_round_trips() {
        for days in (-800_000..800_000).step_by(7) {
            let (y, m, d) = civil_from_days(days);
            assert!((1..=days_in_month(y, m)).contains(&d));
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn token_values_have_the_vault_shape() {
        let entropy = Entropy::default();
        let value = entropy.token_value();
        let random = value.strip_prefix(TOKEN_PREFIX).unwrap();
        assert_eq!(random.len(), TOKEN_RANDOM_CHARS);
        assert!(random.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(value, entropy.token_value());
    }

    #[test]
    fn tokens_are_redacted_from_text() {
        assert_eq!(
            redact_tokens("a veeva-vault-Abc123 b veeva-vault-"),
            "a veeva-vault-[REDACTED] b veeva-vault-[REDACTED]"
        );
        assert_eq!(redact_tokens("nothing here"), "nothing here");
    }

    #[test]
    fn routes() {
        let route =
            |method: Method, path: &str, query: Option<&str>| Route::resolve(&method, path, query);
        assert_eq!(route(Method::GET, "/api/", None), Route::Versions);
        assert_eq!(
            route(Method::GET, "/api/v26.2/objects/users/me", None),
            Route::Me
        );
        assert_eq!(
            route(Method::GET, "/api/v9/objects/documents/", None),
            Route::Documents
        );
        assert_eq!(
            route(
                Method::POST,
                "/api/v26.2/vobjects/api_access_token__sys",
                Some("_method=delete")
            ),
            Route::RevokeTokens
        );
        assert_eq!(
            route(
                Method::GET,
                "/api/v26.2/vobjects/api_access_token__sys/V8T1",
                None
            ),
            Route::TokenMetadata("V8T1".to_owned())
        );
        assert_eq!(
            route(Method::GET, "/api/latest/objects/documents", None),
            Route::NotFound
        );
        assert_eq!(
            route(Method::GET, "/api/v26.2/query", None),
            Route::NotFound
        );
        assert_eq!(route(Method::GET, "/", None), Route::NotFound);
    }

    #[test]
    fn form_and_json_fields() {
        let form = parse_fields(
            None,
            b"name__v=My+token&expiry_date__v=2030-01-01T00%3A00%3A00Z",
        )
        .unwrap();
        assert_eq!(form["name__v"], "My token");
        assert_eq!(form["expiry_date__v"], "2030-01-01T00:00:00Z");
        let json = parse_fields(None, br#"{"name__v":"x","expiry_date__v":null}"#).unwrap();
        assert_eq!(json["name__v"], "x");
        assert!(!json.contains_key("expiry_date__v"));
        assert!(parse_fields(Some(&JSON_CONTENT_TYPE), b"[1]").is_err());
        assert!(parse_fields(None, b"\xff").is_err());
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }

    #[test]
    fn revoke_id_lists() {
        let csv = HeaderValue::from_static("text/csv");
        assert_eq!(
            revoke_ids(Some(&csv), b"name,id\nx,V8T1\n\"y\",\"V8T2\"\n").unwrap(),
            ["V8T1", "V8T2"]
        );
        assert_eq!(revoke_ids(None, br#"[{"id":"V8T1"}]"#).unwrap(), ["V8T1"]);
        assert!(revoke_ids(None, br#"[{"name":"V8T1"}]"#).is_err());
        assert!(revoke_ids(None, b"[]").is_err());
        let many = format!("[{}]", vec![r#"{"id":"a"}"#; 501].join(","));
        assert!(revoke_ids(None, many.as_bytes()).is_err());
    }
}
