//! Recovery: how long 1,000 concurrent requests take to all succeed when Vault has revoked the
//! token they were sent with.
//!
//! The inner service is an in-memory Vault: it accepts a token whose serial number is above the
//! revocation mark and answers any other the way Vault does (HTTP 200,
//! `X-VaultAPI-Status: FAILURE`, `application/json`, an `INVALID_SESSION_ID` error in the body).
//! The layer's source hands out a new token, with the next serial number, on every fetch.
//!
//! Each round builds 1,000 requests and forces an ordinary refresh (outside the timing: a token
//! that replaced a rejected one and is rejected in turn makes the layer back off, by design, so
//! each round starts from a token of an ordinary fetch), revokes every token issued so far, then
//! starts the clock: it calls the stack 1,000 times (all 1,000 pick up the revoked token), spawns
//! the 1,000 response futures on a two-worker Tokio runtime and waits for all of them. Each one is
//! rejected, the layer fetches one new token for all of them, and replays each. The clock stops
//! when the last replayed request has succeeded. After each round the bench checks that every
//! answer was a success, that exactly one fetch was made and that all 1,000 requests were replayed.
//!
//! `recovery/revoked_1000` is that round; `recovery/valid_1000` is the same round without the
//! revocation (the floor: 1,000 spawned requests that succeed at once).
//!
//! Then the same wave over HTTP (`http_wave`): a hyper-util client over loopback to a hyper
//! server that judges tokens the same way, for a small form POST as a `Full<Bytes>` body and as
//! a boxed one (`BoxBody<Bytes, BoxError>`, which the layer records as it is sent), in
//! interleaved rounds; it prints the medians and writes `target/bench-results/recovery.tsv`.
//!
//! Run: `cargo bench --bench recovery` (about a minute after the build; `RECOVERY_HTTP_ROUNDS`,
//! default 30, sets the HTTP rounds); summary: `cargo run --example bench_summary`.

mod common;
// Only this bench's, kept beside the shared pieces (a file directly under `benches/` would be a
// bench target of its own).
#[path = "common/http_wave.rs"]
mod http_wave;

use std::convert::Infallible;
use std::future::ready;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, Criterion};
use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, Uri};
use http_body_util::Full;
use tower::Service;
use veeva_vault_auth::VaultAuthLayer;

use common::loopback::vault_answer;
use common::*;

/// Requests in flight per round.
const CONCURRENT: usize = 1_000;

const SUCCESS_BODY: &str = r#"{"responseStatus":"SUCCESS","data":{"id":1}}"#;
const INVALID_SESSION_BODY: &str = r#"{"responseStatus":"FAILURE","errors":[{"type":"INVALID_SESSION_ID","message":"Invalid or expired session ID."}]}"#;

/// The serial number of a token from `rotating_source`, read from its header.
fn serial(request: &Request<Full<Bytes>>) -> u64 {
    serial_of(request.headers().get(AUTHORIZATION))
}

/// The serial number in an `Authorization` value of a token from `rotating_source` (0 if none).
fn serial_of(value: Option<&HeaderValue>) -> u64 {
    value
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer veeva-vault-rotated-"))
        .and_then(|serial| serial.parse().ok())
        .unwrap_or(0)
}

fn recovery(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let (source, issued) = rotating_source();
    let revoked_through = Arc::new(AtomicU64::new(0));
    let mark = Arc::clone(&revoked_through);
    let in_memory_vault = tower::service_fn(move |request: Request<Full<Bytes>>| {
        let answer = if serial(&request) > mark.load(Ordering::Acquire) {
            vault_answer("SUCCESS", SUCCESS_BODY)
        } else {
            vault_answer("FAILURE", INVALID_SESSION_BODY)
        };
        ready(Ok::<_, Infallible>(answer))
    });
    let layer = VaultAuthLayer::new(VAULT, source).expect("valid");
    let handle = layer.handle();
    let service = vault(&layer, in_memory_vault);
    let get = || {
        let mut request = Request::new(Full::new(Bytes::new()));
        *request.uri_mut() = Uri::from_static(URL);
        request
    };
    runtime.block_on(async {
        let response = tower::ServiceExt::oneshot(service.clone(), get()).await;
        assert_eq!(
            response.expect("warm-up").headers()["x-vaultapi-status"],
            "SUCCESS"
        );
    });

    let waker = noop_waker();
    let round = |revoke: bool| -> Duration {
        let requests: Vec<_> = (0..CONCURRENT).map(|_| get()).collect();
        if revoke {
            // A token from an ordinary fetch: the layer backs off (by design) when a token it
            // fetched because of a rejection is rejected in turn, which is not what is measured.
            runtime
                .block_on(handle.force_refresh())
                .expect("the source answers");
        }
        let before = handle.status();
        if revoke {
            revoked_through.store(issued.load(Ordering::Acquire), Ordering::Release);
        }
        let mut cx = Context::from_waker(&waker);
        let start = Instant::now();
        // Every request picks its token before any answer is looked at.
        let in_flight: Vec<_> = requests
            .into_iter()
            .map(|request| {
                let mut service = service.clone();
                assert!(matches!(service.poll_ready(&mut cx), Poll::Ready(Ok(()))));
                service.call(request)
            })
            .collect();
        let tasks: Vec<_> = in_flight.into_iter().map(|f| runtime.spawn(f)).collect();
        let failed = runtime.block_on(async {
            let mut failed = 0;
            for task in tasks {
                let response = task.await.expect("no panic").expect("no error");
                failed += usize::from(response.headers()["x-vaultapi-status"] != "SUCCESS");
            }
            failed
        });
        let elapsed = start.elapsed();
        let after = handle.status();
        assert_eq!(
            failed, 0,
            "{failed} requests failed; before {before:?}, after {after:?}"
        );
        if revoke {
            assert_eq!(after.fetches - before.fetches, 1, "one fetch for everybody");
            assert_eq!(
                after.replays - before.replays,
                CONCURRENT as u64,
                "everybody replayed"
            );
        } else {
            assert_eq!(after.fetches, before.fetches);
            assert_eq!(after.replays, before.replays);
        }
        elapsed
    };

    let mut group = c.benchmark_group("recovery");
    group.sample_size(20);
    group.bench_function("valid_1000", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| round(false)).sum())
    });
    group.bench_function("revoked_1000", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| round(true)).sum())
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion(Duration::from_secs(3));
    targets = recovery
}
fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    // `cargo test --benches` runs bench targets with `--bench` absent: the criterion group runs
    // each benchmark once then; the HTTP rounds do not run.
    if std::env::args().any(|arg| arg == "--bench") {
        http_wave::run(common::results::env_count("RECOVERY_HTTP_ROUNDS", 30));
    }
}
