//! What the layer costs on a real HTTP request: hyper-util's client through each stack, over a
//! kept-alive loopback connection, to a small hyper server on `127.0.0.1` that answers like Vault
//! (`X-VaultAPI-Status: SUCCESS`, a JSON body, which the client reads to the end).
//!
//! The per-request benches put the layer next to a bare header insert; this one puts it next to
//! the request it is part of. Client and server run on one current-thread Tokio runtime, so each
//! request is the same sequence of steps for every stack. The server counts the requests that
//! carried exactly `Authorization: Bearer <the bench's token>` and those that carried any other
//! `Authorization`; after the warm-up, the timed rounds and the profiled requests, the bench fails
//! unless the header stacks sent the token on every request, the bare client on none, and no
//! request carried another value. (Counting is the server's only extra work for a header, inside
//! the timing: one comparison and one uncontended increment.)
//!
//! Stacks, timed in interleaved rounds (as in `paired`: each round times a chunk of requests
//! through each stack, one right after the other, in an order that rotates from round to round):
//! - `client`: hyper-util's client alone, no header;
//! - `set_request_header_runtime`: tower-http `SetRequestHeader` with a value made at run time;
//! - `vault_auth`: `VaultAuth`, default configuration, with a static token;
//! - `vault_auth_no_replay`: the same with `.no_replay()`, so the replay copy's cost shows;
//! - `*_post`: the first three stacks around a client whose body type is `Full<Bytes>`, sending a
//!   2 KiB JSON POST held in memory (`VaultAuth` copies its bytes for a replay);
//! - `*_boxed_post`: the same stacks around a client whose body type is
//!   `BoxBody<Bytes, BoxError>` (what a generic Vault client uses), sending a 2 KiB JSON POST in
//!   memory; `VaultAuth` records it as it is sent;
//! - `*_boxed_stream`: the same POST as a boxed stream of four chunks of unknown length.
//!
//! The server reads every request body to its end before it answers.
//!
//! Run: `cargo bench --bench end_to_end` (about 20 seconds after the build on two busy cores).
//!
//! With `END_TO_END_PROFILE=<stack>` it sends [`PROFILED`] requests through that stack inside
//! `profiled_requests` and nothing else is collected there, for
//! `scripts/end_to_end_instructions.sh`, which counts the instructions (client and server, user
//! space) per request with callgrind.

mod common;

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tower::{Service, ServiceExt};
use veeva_vault_auth::source::StaticToken;
use veeva_vault_auth::VaultAuthLayer;

use common::*;

/// Rounds per measurement.
const ROUNDS: usize = 200;
/// Requests per stack per round.
const CHUNK: usize = 200;
/// Requests sent in profile mode.
const PROFILED: u64 = 2_000;

/// The stacks compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Which {
    Client,
    Header,
    Vault,
    NoReplay,
    PostClient,
    PostHeader,
    PostVault,
    BoxedClient,
    BoxedHeader,
    BoxedVault,
    StreamClient,
    StreamHeader,
    StreamVault,
}

impl Which {
    const ALL: [Which; 13] = [
        Which::Client,
        Which::Header,
        Which::Vault,
        Which::NoReplay,
        Which::PostClient,
        Which::PostHeader,
        Which::PostVault,
        Which::BoxedClient,
        Which::BoxedHeader,
        Which::BoxedVault,
        Which::StreamClient,
        Which::StreamHeader,
        Which::StreamVault,
    ];

    /// The name in the report, and for `END_TO_END_PROFILE`.
    fn name(self) -> &'static str {
        match self {
            Which::Client => "client",
            Which::Header => "set_request_header_runtime",
            Which::Vault => "vault_auth",
            Which::NoReplay => "vault_auth_no_replay",
            Which::PostClient => "client_post",
            Which::PostHeader => "set_request_header_runtime_post",
            Which::PostVault => "vault_auth_post",
            Which::BoxedClient => "client_boxed_post",
            Which::BoxedHeader => "set_request_header_runtime_boxed_post",
            Which::BoxedVault => "vault_auth_boxed_post",
            Which::StreamClient => "client_boxed_stream",
            Which::StreamHeader => "set_request_header_runtime_boxed_stream",
            Which::StreamVault => "vault_auth_boxed_stream",
        }
    }

    /// Whether the stack attaches the token.
    fn attaches(self) -> bool {
        !matches!(
            self,
            Which::Client | Which::PostClient | Which::BoxedClient | Which::StreamClient
        )
    }
}

/// The POST the `*_post` and boxed stacks send: 2 KiB of JSON.
fn post_json() -> Bytes {
    let mut json = String::from(r#"{"data":["#);
    while json.len() < 2030 {
        json.push_str(r#""name__v","#);
    }
    json.push_str(r#""end"]}"#);
    Bytes::from(json)
}

type Boxed = http_body_util::combinators::BoxBody<Bytes, veeva_vault_auth::BoxError>;

/// A body of unknown length that hands out `chunks` one by one.
struct Chunked(std::collections::VecDeque<Bytes>);

impl http_body::Body for Chunked {
    type Data = Bytes;
    type Error = veeva_vault_auth::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(self.0.pop_front().map(|b| Ok(http_body::Frame::data(b))))
    }
}

/// How the boxed stacks' body is made.
#[derive(Clone, Copy)]
enum Shape {
    InMemory,
    Stream,
}

/// The 2 KiB JSON POST with its body in memory, as `Full<Bytes>`.
fn full_request(uri: &http::Uri, json: &Bytes) -> Request<Full<Bytes>> {
    let mut request = Request::new(Full::new(json.clone()));
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = uri.clone();
    request
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    request
}

fn boxed_request(uri: &http::Uri, json: &Bytes, shape: Shape) -> Request<Boxed> {
    let body = match shape {
        Shape::InMemory => Full::new(json.clone())
            .map_err(|never| match never {})
            .boxed(),
        Shape::Stream => Chunked(
            json.chunks(json.len() / 4 + 1)
                .map(|c| json.slice_ref(c))
                .collect(),
        )
        .boxed(),
    };
    let mut request = Request::new(body);
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = uri.clone();
    request
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    request
}

/// What the server saw, to check that each stack did what it is measured for.
#[derive(Debug, Default)]
struct Seen {
    /// Requests with `Authorization: Bearer <TOKEN>`.
    token: AtomicU64,
    /// Requests with any other `Authorization`.
    other: AtomicU64,
}

impl Seen {
    /// Panics unless, since `before` (the token count then), `sent` requests went through
    /// `which` and each carried the token if the stack attaches it, and no request ever carried
    /// another value.
    fn check(&self, before: u64, which: Which, sent: u64) {
        let carried = self.token.load(Ordering::Relaxed) - before;
        let expected = if which.attaches() { sent } else { 0 };
        assert_eq!(
            carried,
            expected,
            "requests through {} with the token",
            which.name()
        );
        assert_eq!(
            self.other.load(Ordering::Relaxed),
            0,
            "requests with another Authorization"
        );
    }
}

/// The body of every answer (168 bytes): the size of a small Vault record.
const BODY: &str = r#"{"responseStatus":"SUCCESS","users":[{"user":{"id":61603,"user_name__v":"bench@example.com","user_first_name__v":"Bench","user_last_name__v":"Mark","active__v":true}}]}"#;

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// Serves every connection on the current runtime, answering each request like Vault's
/// `GET /objects/users/me`; notes the `Authorization` each request carried in `seen`.
async fn serve(listener: TcpListener, seen: Arc<Seen>) {
    loop {
        let (stream, _) = listener.accept().await.expect("a loopback connection");
        let seen = Arc::clone(&seen);
        let answer = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
            match request.headers().get(AUTHORIZATION) {
                Some(value) if value == BEARER => seen.token.fetch_add(1, Ordering::Relaxed),
                Some(_) => seen.other.fetch_add(1, Ordering::Relaxed),
                None => 0,
            };
            async move {
                let sent = request.into_body().collect().await.expect("a request body");
                std::hint::black_box(sent);
                let mut response = Response::new(Full::new(Bytes::from_static(BODY.as_bytes())));
                let headers = response.headers_mut();
                headers.insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/json;charset=UTF-8"),
                );
                headers.insert("x-vaultapi-status", HeaderValue::from_static("SUCCESS"));
                Ok::<_, Infallible>(response)
            }
        });
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), answer)
                .await;
        });
    }
}

/// A service that a stack of this bench can be: takes the bench's requests (bodies of type `R`),
/// answers with a body whose errors can be shown.
trait Stack<R = Empty<Bytes>>:
    Service<Request<R>, Response = Response<Self::Body>, Error: std::fmt::Debug>
{
    type Body: http_body::Body<Error: std::fmt::Debug>;
}

impl<S, R, B> Stack<R> for S
where
    S: Service<Request<R>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: http_body::Body<Error: std::fmt::Debug>,
{
    type Body = B;
}

/// One request through `service`, its answer read to the end.
async fn send(service: &mut impl Stack, uri: &http::Uri) {
    let mut request = Request::new(Empty::new());
    *request.uri_mut() = uri.clone();
    finish(service, request).await;
}

/// Sends `request` through `service` and reads the answer to the end.
async fn finish<R>(service: &mut impl Stack<R>, request: Request<R>) {
    let response = service
        .ready()
        .await
        .expect("ready")
        .call(request)
        .await
        .expect("the request succeeds");
    assert!(response.status().is_success(), "the server answers 200");
    let body = response.into_body().collect().await.expect("a body");
    std::hint::black_box(body);
}

/// The stacks around clones of one client (and of one `Full<Bytes>`-body client, and of one
/// boxed-body client), and the URIs they ask for.
struct Stacks<C, H, V, N, PC, PH, PV, BC, BH, BV> {
    client: C,
    header: H,
    vault: V,
    no_replay: N,
    post_client: PC,
    post_header: PH,
    post_vault: PV,
    boxed_client: BC,
    boxed_header: BH,
    boxed_vault: BV,
    uri: http::Uri,
    post_uri: http::Uri,
    json: Bytes,
}

impl<C, H, V, N, PC, PH, PV, BC, BH, BV> Stacks<C, H, V, N, PC, PH, PV, BC, BH, BV>
where
    C: Stack,
    H: Stack,
    V: Stack,
    N: Stack,
    PC: Stack<Full<Bytes>>,
    PH: Stack<Full<Bytes>>,
    PV: Stack<Full<Bytes>>,
    BC: Stack<Boxed>,
    BH: Stack<Boxed>,
    BV: Stack<Boxed>,
{
    /// Sends `count` requests through `which`.
    async fn send(&mut self, which: Which, count: u64) {
        for _ in 0..count {
            let post = |shape| boxed_request(&self.post_uri, &self.json, shape);
            match which {
                Which::Client => send(&mut self.client, &self.uri).await,
                Which::Header => send(&mut self.header, &self.uri).await,
                Which::Vault => send(&mut self.vault, &self.uri).await,
                Which::NoReplay => send(&mut self.no_replay, &self.uri).await,
                Which::PostClient => {
                    let request = full_request(&self.post_uri, &self.json);
                    finish(&mut self.post_client, request).await
                }
                Which::PostHeader => {
                    let request = full_request(&self.post_uri, &self.json);
                    finish(&mut self.post_header, request).await
                }
                Which::PostVault => {
                    let request = full_request(&self.post_uri, &self.json);
                    finish(&mut self.post_vault, request).await
                }
                Which::BoxedClient => {
                    let request = post(Shape::InMemory);
                    finish(&mut self.boxed_client, request).await
                }
                Which::BoxedHeader => {
                    let request = post(Shape::InMemory);
                    finish(&mut self.boxed_header, request).await
                }
                Which::BoxedVault => {
                    let request = post(Shape::InMemory);
                    finish(&mut self.boxed_vault, request).await
                }
                Which::StreamClient => {
                    let request = post(Shape::Stream);
                    finish(&mut self.boxed_client, request).await
                }
                Which::StreamHeader => {
                    let request = post(Shape::Stream);
                    finish(&mut self.boxed_header, request).await
                }
                Which::StreamVault => {
                    let request = post(Shape::Stream);
                    finish(&mut self.boxed_vault, request).await
                }
            }
        }
    }
}

/// Runs `requests` to the end, behind a symbol that callgrind can switch collection on for.
#[inline(never)]
fn profiled_requests(runtime: &tokio::runtime::Runtime, requests: impl std::future::Future) {
    runtime.block_on(requests);
}

fn main() {
    // `cargo test --benches` runs bench targets with `--bench` absent: do nothing then.
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let runtime = new_runtime();
    let seen = Arc::new(Seen::default());
    let listener = runtime
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .expect("a loopback port");
    let addr = listener.local_addr().expect("an address");
    runtime.spawn(serve(listener, Arc::clone(&seen)));

    let base = format!("http://{addr}");
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let token = || StaticToken::new(TOKEN).expect("a valid token");
    let layer = VaultAuthLayer::new(&base, token()).expect("a loopback Vault");
    let no_replay = VaultAuthLayer::builder(&base, token())
        .no_replay()
        .build()
        .expect("a loopback Vault");
    let posting: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let boxed: Client<HttpConnector, Boxed> = Client::builder(TokioExecutor::new()).build_http();
    let mut stacks = Stacks {
        client: client.clone(),
        header: set_request_header_runtime(client.clone()),
        vault: vault(&layer, client.clone()),
        no_replay: vault(&no_replay, client),
        post_client: posting.clone(),
        post_header: set_request_header_runtime(posting.clone()),
        post_vault: vault(&layer, posting),
        boxed_client: boxed.clone(),
        boxed_header: set_request_header_runtime(boxed.clone()),
        boxed_vault: vault(&layer, boxed),
        uri: format!("{base}/api/v26.2/objects/users/me")
            .parse()
            .expect("a URI"),
        post_uri: format!("{base}/api/v26.2/vobjects/product__v")
            .parse()
            .expect("a URI"),
        json: post_json(),
    };
    // Sends `count` requests through `which`, then checks what the server saw of them; returns
    // the time the requests took.
    let mut checked = |which: Which, count: u64, profiled: bool| {
        let before = seen.token.load(Ordering::Relaxed);
        let requests = stacks.send(which, count);
        let start = Instant::now();
        if profiled {
            profiled_requests(&runtime, requests);
        } else {
            runtime.block_on(requests);
        }
        let took = start.elapsed();
        seen.check(before, which, count);
        took
    };

    // Opens the kept-alive connection, fetches the tokens, warms every stack up.
    for which in Which::ALL {
        checked(which, 100, false);
    }

    if let Ok(name) = std::env::var("END_TO_END_PROFILE") {
        let which = Which::ALL
            .into_iter()
            .find(|which| which.name() == name)
            .unwrap_or_else(|| panic!("END_TO_END_PROFILE: no stack named {name:?}"));
        checked(which, PROFILED, true);
        println!("{name}: {PROFILED} requests");
        return;
    }

    let mut per_stack = vec![Vec::with_capacity(ROUNDS); Which::ALL.len()];
    for round in 0..ROUNDS {
        for index in rotated(round, Which::ALL.len()) {
            let took = checked(Which::ALL[index], CHUNK as u64, false);
            per_stack[index].push(took.as_nanos() as f64 / CHUNK as f64);
        }
    }
    let times = |which: Which| &per_stack[which as usize];

    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "End to end over loopback: {ROUNDS} interleaved rounds of {CHUNK} requests per stack, {cores} cores, `cargo bench --bench end_to_end`\n"
    );
    println!("| stack | µs per request, median [25th–75th percentile] |");
    println!("|---|---:|");
    for which in Which::ALL {
        let (median, low, high) = quartiles(times(which).iter().map(|ns| ns / 1000.0).collect());
        println!("| {} | {median:.2} [{low:.2}–{high:.2}] |", which.name());
    }
    println!("\n| per round | median [25th–75th percentile] |");
    println!("|---|---:|");
    let rows = [
        (
            "SetRequestHeader (run-time value) / client",
            Which::Header,
            Which::Client,
        ),
        ("VaultAuth / client", Which::Vault, Which::Client),
        (
            "VaultAuth / SetRequestHeader (run-time value)",
            Which::Vault,
            Which::Header,
        ),
        (
            "VaultAuth no_replay / SetRequestHeader (run-time value)",
            Which::NoReplay,
            Which::Header,
        ),
        (
            "VaultAuth / SetRequestHeader, 2 KiB POST (Full<Bytes>)",
            Which::PostVault,
            Which::PostHeader,
        ),
        (
            "VaultAuth / SetRequestHeader, boxed 2 KiB POST",
            Which::BoxedVault,
            Which::BoxedHeader,
        ),
        (
            "VaultAuth / SetRequestHeader, boxed 2 KiB stream",
            Which::StreamVault,
            Which::StreamHeader,
        ),
    ];
    for (name, a, b) in rows {
        let (median, low, high) =
            quartiles(times(a).iter().zip(times(b)).map(|(a, b)| a / b).collect());
        println!("| {name} | {median:.3} [{low:.3}–{high:.3}] |");
    }
    let (median, low, high) = quartiles(
        times(Which::Vault)
            .iter()
            .zip(times(Which::Header))
            .map(|(a, b)| a - b)
            .collect(),
    );
    println!(
        "| VaultAuth − SetRequestHeader (run-time value), ns | {median:.0} [{low:.0}–{high:.0}] |"
    );
}
