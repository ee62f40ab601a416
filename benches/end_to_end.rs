//! What the layer costs on a real HTTP request: hyper-util's client through each stack, over a
//! kept-alive loopback connection, to a small hyper server on `127.0.0.1` that answers like Vault
//! (`X-VaultAPI-Status: SUCCESS`, a JSON body, which the client reads to the end).
//!
//! The per-request benches put the layer next to a bare header insert; this one puts it next to
//! the request it is part of. Client and server run on one current-thread Tokio runtime, so each
//! request is the same sequence of steps for every stack; the server counts the requests that
//! carried an `Authorization` header, and the bench fails unless every stack that should attach
//! one did.
//!
//! Stacks, timed in interleaved rounds (as in `paired`: each round times a chunk of requests
//! through each stack, one right after the other, in an order that rotates from round to round):
//! - `client`: hyper-util's client alone, no header;
//! - `set_request_header_runtime`: tower-http `SetRequestHeader` with a value made at run time;
//! - `vault_auth`: `VaultAuth`, default configuration, with a static token;
//! - `vault_auth_no_replay`: the same with `.no_replay()`, so the replay copy's cost shows.
//!
//! Run: `cargo bench --bench end_to_end` (about 10 seconds).
//!
//! With `END_TO_END_PROFILE=<stack>` it sends [`PROFILED`] requests through that stack inside
//! `profiled_requests` and nothing else timed, for `scripts/end_to_end_instructions.sh`, which
//! counts the instructions (client and server, user space) per request with callgrind.

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
const ROUNDS: usize = 80;
/// Requests per stack per round.
const CHUNK: usize = 200;
/// Requests sent in profile mode.
const PROFILED: u64 = 2_000;

/// The stacks, in the order of [`Stacks::send`].
const STACKS: [&str; 4] = [
    "client",
    "set_request_header_runtime",
    "vault_auth",
    "vault_auth_no_replay",
];

/// The body of every answer (168 bytes): the size of a small Vault record.
const BODY: &str = r#"{"responseStatus":"SUCCESS","users":[{"user":{"id":61603,"user_name__v":"bench@example.com","user_first_name__v":"Bench","user_last_name__v":"Mark","active__v":true}}]}"#;

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// Serves every connection on the current runtime, answering each request like Vault's
/// `GET /objects/users/me`; counts the requests that carried `Authorization`.
async fn serve(listener: TcpListener, authorized: Arc<AtomicU64>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let authorized = Arc::clone(&authorized);
        let answer = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
            if request.headers().contains_key(AUTHORIZATION) {
                authorized.fetch_add(1, Ordering::Relaxed);
            }
            let mut response = Response::new(Full::new(Bytes::from_static(BODY.as_bytes())));
            let headers = response.headers_mut();
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/json;charset=UTF-8"),
            );
            headers.insert("x-vaultapi-status", HeaderValue::from_static("SUCCESS"));
            std::future::ready(Ok::<_, Infallible>(response))
        });
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), answer)
                .await;
        });
    }
}

/// A service that a stack of this bench can be: takes the bench's requests, answers with a body
/// whose errors can be shown.
trait Stack:
    Service<Request<Empty<Bytes>>, Response = Response<Self::Body>, Error: std::fmt::Debug>
{
    type Body: http_body::Body<Error: std::fmt::Debug>;
}

impl<S, B> Stack for S
where
    S: Service<Request<Empty<Bytes>>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: http_body::Body<Error: std::fmt::Debug>,
{
    type Body = B;
}

/// One request through `service`, its answer read to the end.
async fn send(service: &mut impl Stack, uri: &http::Uri) {
    let mut request = Request::new(Empty::new());
    *request.uri_mut() = uri.clone();
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

/// The stacks around clones of one client, and the URI they all ask for.
struct Stacks<C, H, V, N> {
    client: C,
    header: H,
    vault: V,
    no_replay: N,
    uri: http::Uri,
}

impl<C: Stack, H: Stack, V: Stack, N: Stack> Stacks<C, H, V, N> {
    /// Sends `count` requests through the stack at `index`.
    async fn send(&mut self, index: usize, count: u64) {
        for _ in 0..count {
            match index {
                0 => send(&mut self.client, &self.uri).await,
                1 => send(&mut self.header, &self.uri).await,
                2 => send(&mut self.vault, &self.uri).await,
                _ => send(&mut self.no_replay, &self.uri).await,
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
    let authorized = Arc::new(AtomicU64::new(0));
    let listener = runtime
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .expect("a loopback port");
    let addr = listener.local_addr().expect("an address");
    runtime.spawn(serve(listener, Arc::clone(&authorized)));

    let base = format!("http://{addr}");
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let token = || StaticToken::new(TOKEN).expect("a valid token");
    let layer = VaultAuthLayer::new(&base, token()).expect("a loopback Vault");
    let no_replay = VaultAuthLayer::builder(&base, token())
        .no_replay()
        .build()
        .expect("a loopback Vault");
    let mut stacks = Stacks {
        client: client.clone(),
        header: set_request_header_runtime(client.clone()),
        vault: vault(&layer, client.clone()),
        no_replay: vault(&no_replay, client),
        uri: format!("{base}/api/v26.2/objects/users/me")
            .parse()
            .expect("a URI"),
    };

    // Opens the kept-alive connections, fetches the token, warms every stack; then checks that
    // the two header stacks attached one and the bare client did not.
    runtime.block_on(async {
        for (index, name) in STACKS.iter().enumerate() {
            let before = authorized.load(Ordering::Relaxed);
            stacks.send(index, 100).await;
            let carried = authorized.load(Ordering::Relaxed) - before;
            let expected = if index == 0 { 0 } else { 100 };
            assert_eq!(carried, expected, "{name} attached the header");
        }
    });

    if let Ok(stack) = std::env::var("END_TO_END_PROFILE") {
        let index = STACKS
            .iter()
            .position(|name| *name == stack)
            .unwrap_or_else(|| panic!("END_TO_END_PROFILE: no stack {stack:?} in {STACKS:?}"));
        profiled_requests(&runtime, stacks.send(index, PROFILED));
        println!("{stack}: {PROFILED} requests");
        return;
    }

    let mut per_stack = vec![Vec::with_capacity(ROUNDS); STACKS.len()];
    for round in 0..ROUNDS {
        for step in 0..STACKS.len() {
            let index = (round + step) % STACKS.len();
            let start = Instant::now();
            runtime.block_on(stacks.send(index, CHUNK as u64));
            per_stack[index].push(start.elapsed().as_nanos() as f64 / CHUNK as f64);
        }
    }

    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "End to end over loopback: {ROUNDS} interleaved rounds of {CHUNK} requests per stack, {cores} cores, `cargo bench --bench end_to_end`\n"
    );
    println!("| stack | µs per request, median [25th–75th percentile] |");
    println!("|---|---:|");
    for (name, times) in STACKS.iter().zip(&per_stack) {
        let (median, low, high) = quartiles(times.iter().map(|ns| ns / 1000.0).collect());
        println!("| {name} | {median:.2} [{low:.2}–{high:.2}] |");
    }
    println!("\n| per round | median [25th–75th percentile] |");
    println!("|---|---:|");
    let rows: [(&str, usize, usize); 4] = [
        ("SetRequestHeader (run-time value) / client", 1, 0),
        ("VaultAuth / client", 2, 0),
        ("VaultAuth / SetRequestHeader (run-time value)", 2, 1),
        (
            "VaultAuth no_replay / SetRequestHeader (run-time value)",
            3,
            1,
        ),
    ];
    for (name, a, b) in rows {
        let (median, low, high) = quartiles(
            per_stack[a]
                .iter()
                .zip(&per_stack[b])
                .map(|(a, b)| a / b)
                .collect(),
        );
        println!("| {name} | {median:.3} [{low:.3}–{high:.3}] |");
    }
    let (median, low, high) = quartiles(
        per_stack[2]
            .iter()
            .zip(&per_stack[1])
            .map(|(a, b)| a - b)
            .collect(),
    );
    println!(
        "| VaultAuth − SetRequestHeader (run-time value), ns | {median:.0} [{low:.0}–{high:.0}] |"
    );
}
