//! Per-request cost of one call through each stack, on one thread.
//!
//! The request is built outside the timing (`iter_batched`, `BatchSize::SmallInput`); the inner
//! service answers at once; the future is polled by hand with a no-op waker, so no runtime is on
//! the measured path. `VaultAuth` fetched its token before measuring starts.
//!
//! Variants, all in the group `per_request`:
//! - `bare`: the inner service alone (the floor of the harness);
//! - `set_request_header`: tower-http `SetRequestHeader::overriding` with a
//!   `HeaderValue::from_static` (the floor for injection: cloning it touches no reference count);
//! - `set_request_header_runtime`: the same with a value made at run time by
//!   `HeaderValue::from_str`, as a token read at startup is (its clones share a reference count);
//! - `add_authorization`: tower-http `AddAuthorization::bearer`;
//! - `rwlock_format`: `RwLock<String>` read, `format!("Bearer {}")`, `HeaderValue::from_str`;
//! - `vault_auth`: default configuration (failure detection and replay on), empty body;
//! - `vault_auth_no_replay`: the same with `.no_replay()`, so the replay copy's cost shows;
//! - `*_full_body`: a POST with a small `Full<Bytes>` body (made from a `String`);
//! - `*_boxed_body`: the same POST with its body in a `BoxBody` (what a generic client sends),
//!   which `VaultAuth` records as it is sent (here the inner service reads no body, so this is the
//!   recording's set-up: its state, its buffer and the recorder's box);
//! - `*_boxed_empty`: a GET whose `BoxBody` says it is empty, kept as empty (no recording);
//! - `*_success_response`: the inner service answers with `X-VaultAPI-Status: SUCCESS` and a JSON
//!   content type, the headers the failure rule reads (`set_request_header_runtime_success_response`
//!   is the baseline for `vault_auth_success_response`).
//!
//! Run: `cargo bench --bench hot_path`; summary: `cargo run --example bench_summary`.
//! Instructions per request (callgrind; stable where wall time is not):
//! `scripts/hot_path_instructions.sh`.

mod common;

use std::task::Context;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::Request;
use tower::Service;

use common::*;

/// Benchmarks one stack: a fresh request from `make` per iteration, one call, one poll.
fn bench_stack<S, B>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    mut service: S,
    make: fn() -> Request<B>,
) where
    S: Service<Request<B>> + Clone,
    S::Error: std::fmt::Debug,
{
    let waker = noop_waker();
    let mut cx = Context::from_waker(&waker);
    // Fetches the token (VaultAuth) and fills this thread's copy of the header.
    warm_up(runtime(), &service, make());
    for _ in 0..3 {
        std::hint::black_box(call_once(&mut service, make(), &mut cx));
    }
    let profiling = std::env::var_os(PROFILE_VAR).is_some();
    group.bench_function(name, |b| {
        if profiling {
            b.iter_batched(
                make,
                |request| profiled_call(&mut service, request, &mut cx),
                BatchSize::SmallInput,
            )
        } else {
            b.iter_batched(
                make,
                |request| call_once(&mut service, request, &mut cx),
                BatchSize::SmallInput,
            )
        }
    });
}

/// Set (to anything) to route every measured call through [`profiled_call`].
const PROFILE_VAR: &str = "HOT_PATH_PROFILE";

/// [`call_once`] behind a symbol that callgrind can switch collection on for
/// (`--toggle-collect='*profiled_call*'`), so that it counts the instructions of the measured
/// calls only: not the request building, not criterion. Used by
/// `scripts/hot_path_instructions.sh`; never on a timed run.
#[inline(never)]
fn profiled_call<S, R>(service: &mut S, request: R, cx: &mut Context<'_>) -> S::Response
where
    S: Service<R>,
    S::Error: std::fmt::Debug,
{
    call_once(service, request, cx)
}

fn per_request(c: &mut Criterion) {
    let mut group = c.benchmark_group("per_request");
    let vault = vault_layer();
    let no_replay = vault_layer_no_replay();
    let (rwlock, _lock) = rwlock_format(inner());

    bench_stack(&mut group, "bare", inner(), get_empty);
    bench_stack(
        &mut group,
        "set_request_header",
        set_request_header(inner()),
        get_empty,
    );
    bench_stack(
        &mut group,
        "set_request_header_runtime",
        set_request_header_runtime(inner()),
        get_empty,
    );
    bench_stack(
        &mut group,
        "add_authorization",
        add_authorization(inner()),
        get_empty,
    );
    bench_stack(&mut group, "rwlock_format", rwlock, get_empty);
    bench_stack(
        &mut group,
        "vault_auth",
        common::vault(&vault, inner()),
        get_empty,
    );
    bench_stack(
        &mut group,
        "vault_auth_no_replay",
        common::vault(&no_replay, inner()),
        get_empty,
    );

    bench_stack(
        &mut group,
        "set_request_header_full_body",
        set_request_header(inner()),
        post_full,
    );
    bench_stack(
        &mut group,
        "vault_auth_full_body",
        common::vault(&vault, inner()),
        post_full,
    );
    bench_stack(
        &mut group,
        "vault_auth_no_replay_full_body",
        common::vault(&no_replay, inner()),
        post_full,
    );

    bench_stack(
        &mut group,
        "set_request_header_boxed_body",
        set_request_header(inner()),
        post_boxed,
    );
    bench_stack(
        &mut group,
        "vault_auth_boxed_body",
        common::vault(&vault, inner()),
        post_boxed,
    );
    bench_stack(
        &mut group,
        "set_request_header_boxed_empty",
        set_request_header(inner()),
        get_boxed_empty,
    );
    bench_stack(
        &mut group,
        "vault_auth_boxed_empty",
        common::vault(&vault, inner()),
        get_boxed_empty,
    );

    bench_stack(
        &mut group,
        "set_request_header_success_response",
        set_request_header(inner_success()),
        get_empty,
    );
    bench_stack(
        &mut group,
        "set_request_header_runtime_success_response",
        set_request_header_runtime(inner_success()),
        get_empty,
    );
    bench_stack(
        &mut group,
        "vault_auth_success_response",
        common::vault(&vault, inner_success()),
        get_empty,
    );
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion(Duration::from_secs(3));
    targets = per_request
}
criterion_main!(benches);
