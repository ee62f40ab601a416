//! A soak under faults: many tasks send requests through one `VaultAuthLayer` for a bounded time
//! while everything around it misbehaves, then it prints a summary and exits non-zero on any
//! breach of the layer's promises.
//!
//! - The Vault stand-in revokes tokens at random (one, or all at once) and issues some that
//!   expire within seconds.
//! - The token source fails 30 % of the time, hangs now and then (the layer's fetch timeout cuts
//!   it off), and otherwise either issues a token or reads one from a file that another task
//!   rewrites (and whose old token it sometimes revokes).
//! - Bodies of every kind: empty, `Full`, `String`, boxed, boxed streams (and streams too big to
//!   replay).
//!
//! It checks that
//! 1. no replayable request gets Vault's rejection unless the token was revoked or expired again
//!    while it was in flight (the replay's token), and no request fails but for want of a token;
//! 2. the source is asked for a token at most once per rejection wave (a revocation, an expiring
//!    token) plus retries of failed fetches;
//! 3. resident memory (`/proc/self/statm`) is flat after warm-up;
//! 4. no token value appears in the TRACE log (every line is scanned, none is kept).
//!
//! ```sh
//! scripts/soak.sh 120          # or: cargo run --release --example soak --features tracing -- 120
//! ```
//! The first argument is the run's length in seconds (default 60); `SOAK_SEED` fixes the seed.

use std::convert::Infallible;
use std::io::Write;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Frame;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;
use tower::{Layer, ServiceExt};
use veeva_vault_auth::source::{BoxFuture, FileToken, SourceError, TokenSource};
use veeva_vault_auth::testing::VaultStandIn;
use veeva_vault_auth::{
    AccessToken, AuthStatus, BoxError, ResponseBody, TokenUnavailable, UnavailableKind, VaultAuth,
    VaultAuthLayer,
};

const TASKS: usize = 32;
/// A stream this long is over the layer's replay limit (64 KiB): its rejection reaches the caller.
const TOO_BIG: usize = 70 * 1024;
/// The layer's longest backoff here: a request rejected this soon after the source handed back a
/// revoked token may have met the backoff that follows (or joined the fetch that read it).
const BACKOFF_MAX: Duration = Duration::from_millis(200);
/// Resident memory may grow this much after warm-up.
const MEMORY_SLACK: u64 = 16 * 1024 * 1024;

/// A small deterministic generator (xorshift64*), one per task.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Counters shared by every part of the soak.
#[derive(Default)]
struct Tally {
    requests: AtomicU64,
    ok: AtomicU64,
    /// Rejections that reached the caller, excused: the token died again in flight, or the body
    /// was too big to replay.
    rejected_excused: AtomicU64,
    rejected_too_big: AtomicU64,
    /// Replayed, and the replay was rejected too.
    rejected_replayed: AtomicU64,
    /// How often the stand-in's records were cleared.
    clears: AtomicU64,
    /// Not replayed while a fetch failed or hung: no token to be had.
    rejected_no_token: AtomicU64,
    /// The stand-in's records were cleared before they could be checked.
    rejected_unverified: AtomicU64,
    /// Not replayed because the source had just handed back the rejected token (a file not yet
    /// rewritten) and the layer was backing off before asking it again, as documented.
    rejected_handed_back: AtomicU64,
    /// Rejections that reached the caller with no excuse: breaches.
    rejected_breach: AtomicU64,
    unavailable: Mutex<std::collections::BTreeMap<String, u64>>,
    other_errors: AtomicU64,
    fetch_calls: AtomicU64,
    fetch_ok: AtomicU64,
    fetch_failed: AtomicU64,
    fetch_hung: AtomicU64,
    /// When the source last handed back a revoked token from the file.
    last_dead_at: Mutex<Option<Instant>>,
    /// Hung fetches the layer gave up on (its fetch timeout dropped them).
    fetch_hung_given_up: AtomicU64,
    /// Fetches that read a token already revoked from the file.
    fetch_dead: AtomicU64,
    /// Events that may each cost one fetch: revocations, expiring tokens issued.
    waves: AtomicU64,
    revocations: AtomicU64,
    file_rewrites: AtomicU64,
    /// Bumped on every revocation; a request that sees it move twice was revoked twice.
    epoch: AtomicU64,
    /// When issued tokens expire (a request spanning one is excused a second rejection).
    expiries: Mutex<Vec<Instant>>,
    /// Every token value handed out, to look for in the log.
    secrets: Mutex<Vec<String>>,
}

impl Tally {
    fn note_token(&self, value: &str) {
        self.secrets.lock().unwrap().push(value.to_owned());
    }
}

/// Counts a hung fetch that the layer gave up on, when it drops it.
struct HangGivenUp(Arc<Tally>);

impl Drop for HangGivenUp {
    fn drop(&mut self) {
        self.0.fetch_hung_given_up.fetch_add(1, Ordering::SeqCst);
    }
}

/// The misbehaving source: fails 30 %, hangs 3 %, else issues a token or reads the file.
struct Faulty {
    vault: VaultStandIn,
    file: FileToken,
    tally: Arc<Tally>,
    rng: Mutex<Rng>,
}

impl TokenSource for Faulty {
    fn fetch(&self) -> BoxFuture<'_, Result<AccessToken, SourceError>> {
        Box::pin(async move {
            self.tally.fetch_calls.fetch_add(1, Ordering::Relaxed);
            let (roll, from_file, expiring, lifetime) = {
                let mut rng = self.rng.lock().unwrap();
                (
                    rng.below(100),
                    rng.chance(50),
                    rng.chance(30),
                    2 + rng.below(5),
                )
            };
            if roll < 30 {
                self.tally.fetch_failed.fetch_add(1, Ordering::Relaxed);
                return Err(SourceError::retryable("soak: injected failure"));
            }
            if roll < 33 {
                self.tally.fetch_hung.fetch_add(1, Ordering::Relaxed);
                // Counted again when the layer gives up on it (its fetch timeout drops this
                // future): a request that joined the fetch after the hang began learns only then
                // that no token came.
                let _given_up = HangGivenUp(Arc::clone(&self.tally));
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            self.tally.fetch_ok.fetch_add(1, Ordering::Relaxed);
            if from_file {
                let token = self.file.fetch().await?;
                if !self.vault.is_active(token.expose_secret()) {
                    // The file still holds a token the chaos revoked: the layer is documented
                    // to hand the rejection over and back off (guide, "rejections", 4).
                    self.tally.fetch_dead.fetch_add(1, Ordering::SeqCst);
                    *self.tally.last_dead_at.lock().unwrap() = Some(Instant::now());
                }
                return Ok(token);
            }
            let (value, expiry) = if expiring {
                let lifetime = Duration::from_secs(lifetime);
                self.tally.waves.fetch_add(1, Ordering::Relaxed);
                self.tally
                    .expiries
                    .lock()
                    .unwrap()
                    .push(Instant::now() + lifetime);
                (
                    self.vault.issue_token_expiring_in(lifetime),
                    Some(Instant::now() + lifetime),
                )
            } else {
                (self.vault.issue_token(), None)
            };
            self.tally.note_token(&value);
            AccessToken::new(value)
                .map(|token| token.with_expiry(expiry))
                .map_err(|e| SourceError::permanent(e.to_string()))
        })
    }
}

/// A log writer that scans every line for token values and keeps none of it.
#[derive(Clone)]
struct Scanner {
    tally: Arc<Tally>,
    lines: Arc<AtomicU64>,
    leaks: Arc<AtomicU64>,
}

impl Write for Scanner {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.lines.fetch_add(1, Ordering::Relaxed);
        let text = String::from_utf8_lossy(buf);
        let leaked = leaks_token(&text)
            || self
                .tally
                .secrets
                .lock()
                .unwrap()
                .iter()
                .any(|secret| text.contains(&secret["veeva-vault-".len()..]));
        if leaked {
            self.leaks.fetch_add(1, Ordering::Relaxed);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `veeva-vault-` (any case) followed by a token character.
fn leaks_token(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    lower.match_indices("veeva-vault-").any(|(at, prefix)| {
        lower[at + prefix.len()..]
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
    })
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Scanner {
    type Writer = Scanner;
    fn make_writer(&'a self) -> Scanner {
        self.clone()
    }
}

/// A body of unknown length in chunks (yields between them).
struct Stream {
    chunks: Vec<Bytes>,
    yielded: bool,
}

impl http_body::Body for Stream {
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.chunks.is_empty() {
            return Poll::Ready(None);
        }
        if !std::mem::replace(&mut self.yielded, true) {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.yielded = false;
        Poll::Ready(Some(Ok(Frame::data(self.chunks.remove(0)))))
    }
}

fn boxed_full(bytes: &'static [u8]) -> BoxBody<Bytes, BoxError> {
    Full::new(Bytes::from_static(bytes))
        .map_err(|never: Infallible| match never {})
        .boxed()
}

type FullClient = VaultAuth<Client<HttpConnector, Full<Bytes>>>;
type TextClient = VaultAuth<Client<HttpConnector, String>>;
type BoxedClient = VaultAuth<Client<HttpConnector, BoxBody<Bytes, BoxError>>>;

struct Clients {
    full: FullClient,
    text: TextClient,
    boxed: BoxedClient,
}

type Answer = Result<Response<ResponseBody<hyper::body::Incoming>>, BoxError>;
type Sending = Pin<Box<dyn std::future::Future<Output = Answer> + Send>>;

// Boxed here, for each concrete body type: the compiler proves these futures `Send`, which it
// cannot inside the generic spawned task.
fn send_full(client: &FullClient, request: Request<Full<Bytes>>) -> Sending {
    Box::pin(client.clone().oneshot(request))
}

fn send_text(client: &TextClient, request: Request<String>) -> Sending {
    Box::pin(client.clone().oneshot(request))
}

fn send_boxed(client: &BoxedClient, request: Request<BoxBody<Bytes, BoxError>>) -> Sending {
    Box::pin(client.clone().oneshot(request))
}

const QUERY: &[u8] = b"q=select id from documents";
const REFERENCE: &str = "x-vaultapi-referenceid";

/// Reads an answer: `Ok(true)` for SUCCESS, `Ok(false)` for Vault's rejection.
async fn read(response: Answer) -> Result<bool, BoxError> {
    let body = response?.into_body().collect().await?.to_bytes();
    Ok(!body
        .windows(b"INVALID_SESSION_ID".len())
        .any(|w| w == b"INVALID_SESSION_ID"))
}

/// Sends one request of a random kind, tagged with `reference` (`X-VaultAPI-ReferenceId`, which
/// the stand-in records). Returns the answer and whether the body was too big to replay.
async fn one_request(
    clients: &Clients,
    vault: &VaultStandIn,
    rng: &mut Rng,
    reference: &str,
) -> (Result<bool, BoxError>, bool, &'static str) {
    let documents = vault.api_url("/objects/documents");
    let query = vault.api_url("/query");
    let form = |b: http::request::Builder| {
        b.header(REFERENCE, reference)
            .method("POST")
            .uri(&query)
            .header("content-type", "application/x-www-form-urlencoded")
    };
    match rng.below(7) {
        0 => {
            let request = Request::get(&documents)
                .header(REFERENCE, reference)
                .body(Full::new(Bytes::new()))
                .unwrap();
            (
                read(send_full(&clients.full, request).await).await,
                false,
                "empty GET (Full)",
            )
        }
        1 => {
            let request = form(Request::builder())
                .body(Full::new(Bytes::from_static(QUERY)))
                .unwrap();
            (
                read(send_full(&clients.full, request).await).await,
                false,
                "form POST (Full)",
            )
        }
        2 => {
            let request = form(Request::builder())
                .body(String::from_utf8(QUERY.to_vec()).unwrap())
                .unwrap();
            (
                read(send_text(&clients.text, request).await).await,
                false,
                "form POST (String)",
            )
        }
        3 => {
            let request = form(Request::builder()).body(boxed_full(QUERY)).unwrap();
            (
                read(send_boxed(&clients.boxed, request).await).await,
                false,
                "form POST (boxed Full)",
            )
        }
        4 => {
            let request = Request::get(&documents)
                .header(REFERENCE, reference)
                .body(
                    http_body_util::Empty::new()
                        .map_err(|n: Infallible| match n {})
                        .boxed(),
                )
                .unwrap();
            (
                read(send_boxed(&clients.boxed, request).await).await,
                false,
                "empty GET (boxed)",
            )
        }
        5 => {
            let chunks = QUERY.chunks(5).map(Bytes::copy_from_slice).collect();
            let body = Stream {
                chunks,
                yielded: false,
            }
            .boxed();
            let request = form(Request::builder()).body(body).unwrap();
            (
                read(send_boxed(&clients.boxed, request).await).await,
                false,
                "form POST (boxed stream)",
            )
        }
        _ => {
            // Too big to replay: `q=` and a long comment-like tail the stand-in ignores.
            let mut big = QUERY.to_vec();
            big.extend(std::iter::repeat_n(b' ', TOO_BIG));
            let chunks = big.chunks(8 * 1024).map(Bytes::copy_from_slice).collect();
            let body = Stream {
                chunks,
                yielded: false,
            }
            .boxed();
            let request = form(Request::builder()).body(body).unwrap();
            (
                read(send_boxed(&clients.boxed, request).await).await,
                true,
                "too big (boxed stream)",
            )
        }
    }
}

/// Whether the source's last answer was the token Vault had rejected, so that the layer backs
/// off before asking again. Read after the request's answer: the backoff may have ended (and a
/// fetch begun) since, so the failure streak, not the retry time, is what is checked.
fn handed_back_while_backing_off(status: &AuthStatus) -> bool {
    status.consecutive_failures > 0
        && status
            .last_error
            .as_ref()
            .is_some_and(|err| err.kind() == UnavailableKind::Rejected)
}

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

async fn write_token_file(path: &PathBuf, value: &str) {
    let tmp = path.with_extension("tmp");
    tokio::fs::write(&tmp, format!("{value}\n")).await.unwrap();
    tokio::fs::rename(&tmp, path).await.unwrap();
}

fn main() {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let seed: u64 = std::env::var("SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    let tally = Arc::new(Tally::default());
    let lines = Arc::new(AtomicU64::new(0));
    let leaks = Arc::new(AtomicU64::new(0));
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(Scanner {
            tally: Arc::clone(&tally),
            lines: Arc::clone(&lines),
            leaks: Arc::clone(&leaks),
        })
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let code = runtime.block_on(soak(seconds, seed, tally, lines, leaks));
    std::process::exit(code);
}

async fn soak(
    seconds: u64,
    seed: u64,
    tally: Arc<Tally>,
    lines: Arc<AtomicU64>,
    leaks: Arc<AtomicU64>,
) -> i32 {
    println!("soak: {seconds}s, {TASKS} tasks, seed {seed} (SOAK_SEED={seed} to repeat)");
    let vault = VaultStandIn::start().await.expect("stand-in");
    let dir = std::env::temp_dir().join(format!("vault-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("token");
    let first = vault.issue_token();
    tally.note_token(&first);
    write_token_file(&path, &first).await;
    let source = Faulty {
        vault: vault.clone(),
        file: FileToken::new(&path),
        tally: Arc::clone(&tally),
        rng: Mutex::new(Rng(seed ^ 0x9E37_79B9_7F4A_7C15)),
    };
    let layer = VaultAuthLayer::builder(&vault.base_url(), source)
        .fetch_timeout(Duration::from_secs(1))
        // Retried soon after a failure, so that a token can be had most of the time.
        .backoff(veeva_vault_auth::Backoff::new(
            Duration::from_millis(20),
            BACKOFF_MAX,
        ))
        .build()
        .expect("layer");
    let clients = Arc::new(Clients {
        full: layer.layer(Client::builder(TokioExecutor::new()).build(HttpConnector::new())),
        text: layer.layer(Client::builder(TokioExecutor::new()).build(HttpConnector::new())),
        boxed: layer.layer(Client::builder(TokioExecutor::new()).build(HttpConnector::new())),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = tokio::task::JoinSet::new();

    // Chaos: revoke one active token or all of them, every 50 to 400 ms.
    {
        let (vault, tally, stop) = (vault.clone(), Arc::clone(&tally), Arc::clone(&stop));
        let mut rng = Rng(seed ^ 0xC0FF_EE00);
        tasks.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(50 + rng.below(350))).await;
                tally.epoch.fetch_add(1, Ordering::SeqCst);
                if rng.chance(20) {
                    vault.revoke_all();
                } else {
                    let secrets = tally.secrets.lock().unwrap().clone();
                    let recent = &secrets[secrets.len().saturating_sub(4)..];
                    if let Some(victim) = recent.get(rng.below(recent.len().max(1) as u64) as usize)
                    {
                        vault.revoke(victim);
                    }
                }
                tally.revocations.fetch_add(1, Ordering::Relaxed);
                tally.waves.fetch_add(1, Ordering::Relaxed);
                tally.epoch.fetch_add(1, Ordering::SeqCst);
            }
        });
    }
    // The file's rotator: a new token every 700 ms, the old one sometimes revoked.
    {
        let (vault, tally, stop, path) = (
            vault.clone(),
            Arc::clone(&tally),
            Arc::clone(&stop),
            path.clone(),
        );
        let mut rng = Rng(seed ^ 0xF11E);
        tasks.spawn(async move {
            let mut old = first;
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(700)).await;
                let new = vault.issue_token();
                tally.note_token(&new);
                write_token_file(&path, &new).await;
                tally.file_rewrites.fetch_add(1, Ordering::Relaxed);
                if rng.chance(50) {
                    tally.epoch.fetch_add(1, Ordering::SeqCst);
                    vault.revoke(&old);
                    tally.revocations.fetch_add(1, Ordering::Relaxed);
                    tally.waves.fetch_add(1, Ordering::Relaxed);
                    tally.epoch.fetch_add(1, Ordering::SeqCst);
                }
                old = new;
            }
        });
    }
    // The stand-in records every request, bodies included: forget them every second, or its
    // records are most of the memory measured (5 s of them were several hundred MiB, and how
    // many big bodies fell in one window moved the peak by 100 MiB). A request in flight across a
    // clearing cannot be checked ("unverified").
    {
        let (vault, stop, tally) = (vault.clone(), Arc::clone(&stop), Arc::clone(&tally));
        tasks.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_secs(1)).await;
                tally.clears.fetch_add(1, Ordering::SeqCst);
                vault.clear_requests();
            }
        });
    }
    for task in 0..TASKS {
        let (clients, vault, tally, stop) = (
            Arc::clone(&clients),
            vault.clone(),
            Arc::clone(&tally),
            Arc::clone(&stop),
        );
        let mut rng = Rng(seed.wrapping_add(task as u64 * 0x1000_0001) | 1);
        let handle = layer.handle();
        tasks.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let start = Instant::now();
                let epoch = tally.epoch.load(Ordering::SeqCst);
                let clears = tally.clears.load(Ordering::SeqCst);
                let failed = || {
                    tally.fetch_failed.load(Ordering::SeqCst)
                        + tally.fetch_hung.load(Ordering::SeqCst)
                        + tally.fetch_hung_given_up.load(Ordering::SeqCst)
                        + tally.fetch_dead.load(Ordering::SeqCst)
                };
                let failed_before = failed();
                let reference = format!("soak-{task}-{}", rng.next());
                let (outcome, too_big, kind) = one_request(&clients, &vault, &mut rng, &reference).await;
                tally.requests.fetch_add(1, Ordering::Relaxed);
                match outcome {
                    Ok(true) => {
                        tally.ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(false) => {
                        let revoked_twice = tally.epoch.load(Ordering::SeqCst) >= epoch + 3;
                        let now = Instant::now();
                        let expired = tally
                            .expiries
                            .lock()
                            .unwrap()
                            .iter()
                            .any(|at| *at >= start && *at <= now + Duration::from_millis(50));
                        // How often the stand-in saw this request: twice is a replay that was
                        // rejected too (its fresh token was already dead: revoked again, the
                        // file's token revoked, expired); once is no replay.
                        let attempts = vault.count_requests(|r| {
                            r.headers.get(REFERENCE).map(|v| v.as_bytes())
                                == Some(reference.as_bytes())
                        });
                        if too_big {
                            tally.rejected_too_big.fetch_add(1, Ordering::Relaxed);
                        } else if attempts >= 2 {
                            tally.rejected_replayed.fetch_add(1, Ordering::Relaxed);
                        } else if attempts == 0 || tally.clears.load(Ordering::SeqCst) != clears {
                            tally.rejected_unverified.fetch_add(1, Ordering::Relaxed);
                        } else if failed() > failed_before {
                            // The new token could not be had: a fetch failed, hung or read a
                            // dead token meanwhile.
                            tally.rejected_no_token.fetch_add(1, Ordering::Relaxed);
                        } else if revoked_twice || expired {
                            tally.rejected_excused.fetch_add(1, Ordering::Relaxed);
                        } else if handed_back_while_backing_off(&handle.status())
                            || tally
                                .last_dead_at
                                .lock()
                                .unwrap()
                                .is_some_and(|at| at + BACKOFF_MAX >= start)
                        {
                            // The documented answer when the source hands back the very token
                            // Vault rejected (the file still held it): the caller gets Vault's
                            // answer, and the source is not asked again until the backoff ends.
                            tally.rejected_handed_back.fetch_add(1, Ordering::Relaxed);
                        } else {
                            tally.rejected_breach.fetch_add(1, Ordering::Relaxed);
                            let status = handle.status();
                            eprintln!(
                                "soak: not replayed: {reference} ({kind}): attempts {attempts}, consecutive fetch failures {}, retry at {:?}, generation {:?}",
                                status.consecutive_failures,
                                status.retry_at.map(|at| at.saturating_duration_since(Instant::now())),
                                status.generation,
                            );
                        }
                    }
                    Err(err) => {
                        if let Some(unavailable) = err.downcast_ref::<TokenUnavailable>() {
                            let kind = format!("{:?}", unavailable.kind());
                            *tally.unavailable.lock().unwrap().entry(kind).or_default() += 1;
                        } else {
                            tally.other_errors.fetch_add(1, Ordering::Relaxed);
                            eprintln!("soak: request failed: {err}");
                        }
                    }
                }
            }
        });
    }
    // Memory: sampled each second; the baseline is taken after a quarter of the run, and not
    // before 15 s (the stand-in keeps a second of requests, big bodies included, and connection pools
    // fill): runs shorter than a minute say little about memory.
    let warm_up = Instant::now() + Duration::from_secs((seconds / 4).max(15));
    let mut baseline = None;
    let mut peak_after = 0u64;
    let mut samples = Vec::new();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss = resident_bytes();
        samples.push(rss);
        if Instant::now() >= warm_up {
            baseline.get_or_insert(rss);
            peak_after = peak_after.max(rss);
        }
        // Forget expiries long past, so the list stays short.
        let horizon = Instant::now() - Duration::from_secs(10);
        tally.expiries.lock().unwrap().retain(|at| *at > horizon);
    }
    stop.store(true, Ordering::Relaxed);
    let drain = tokio::time::timeout(Duration::from_secs(10), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    let hung_at_end = drain.is_err();
    let status = layer.handle().status();
    let end_rss = resident_bytes();
    let _ = std::fs::remove_dir_all(&dir);

    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let fetch_ok = get(&tally.fetch_ok);
    let waves = get(&tally.waves);
    let baseline = baseline.unwrap_or(end_rss);
    let growth = peak_after.saturating_sub(baseline);
    println!(
        "requests {} | ok {} | rejection reached the caller: {} replayed and rejected again, {} not replayed while a fetch failed, {} not replayed while backing off from a handed-back rejected token, {} not replayed but revoked again or expired in flight, {} too big to replay, {} unverified, {} with no excuse | token unavailable {:?} | other errors {}",
        get(&tally.requests),
        get(&tally.ok),
        get(&tally.rejected_replayed),
        get(&tally.rejected_no_token),
        get(&tally.rejected_handed_back),
        get(&tally.rejected_excused),
        get(&tally.rejected_too_big),
        get(&tally.rejected_unverified),
        get(&tally.rejected_breach),
        tally.unavailable.lock().unwrap(),
        get(&tally.other_errors),
    );
    println!(
        "source calls {} (ok {}, of which {} read a revoked token from the file; failed {}, hung {}) | layer: fetches {}, failures {}, re-acquisitions {}, replays {} | waves {} (revocations {}, expiring tokens, file rewrites {})",
        get(&tally.fetch_calls),
        fetch_ok,
        get(&tally.fetch_dead),
        get(&tally.fetch_failed),
        get(&tally.fetch_hung),
        status.fetches,
        status.fetch_failures,
        status.reacquisitions,
        status.replays,
        waves,
        get(&tally.revocations),
        get(&tally.file_rewrites),
    );
    println!(
        "memory: after warm-up {:.1} MiB, peak after {:.1} MiB (+{:.1} MiB), at the end {:.1} MiB; samples (MiB, at most 30): {}",
        baseline as f64 / 1048576.0,
        peak_after as f64 / 1048576.0,
        growth as f64 / 1048576.0,
        end_rss as f64 / 1048576.0,
        samples
            .iter()
            .step_by(samples.len().div_ceil(30).max(1))
            .map(|s| format!("{:.0}", *s as f64 / 1048576.0))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "trace log: {} lines scanned, {} with a token value",
        get(&lines),
        get(&leaks)
    );
    let mut breaches = Vec::new();
    if get(&tally.rejected_breach) > 0 {
        breaches.push("a replayable request got Vault's rejection with no second revocation or expiry in flight".to_owned());
    }
    if get(&tally.other_errors) > 0 {
        breaches.push("requests failed for another reason than a token".to_owned());
    }
    // Each wave may cost one successful fetch, plus the first token.
    if fetch_ok > waves + 1 {
        breaches.push(format!(
            "{fetch_ok} successful fetches for {waves} waves: more than one per wave"
        ));
    }
    if growth > MEMORY_SLACK {
        breaches.push(format!(
            "resident memory grew {:.1} MiB after warm-up",
            growth as f64 / 1048576.0
        ));
    }
    if get(&leaks) > 0 {
        breaches.push("a token value appeared in the TRACE log".to_owned());
    }
    if get(&lines) == 0 {
        breaches.push("the TRACE log was empty: build with --features tracing".to_owned());
    }
    if hung_at_end {
        breaches.push("tasks did not finish within 10 s of the end".to_owned());
    }
    if get(&tally.ok) == 0 {
        breaches.push("no request succeeded".to_owned());
    }
    if breaches.is_empty() {
        println!("soak: PASS");
        0
    } else {
        for breach in &breaches {
            println!("soak: BREACH: {breach}");
        }
        1
    }
}
