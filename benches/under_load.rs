//! Throughput under load: 1, 2 and 4 plain `std::thread`s calling through one layer, and the same
//! while another thread rotates the token every millisecond.
//!
//! Each criterion iteration is one request, spread over the threads (`iter_custom`: the time is
//! the wall time from the first thread's start to the last thread's end, after all threads lined
//! up on a barrier), so the reported time is the inverse of the aggregate throughput and criterion
//! prints it in elements (requests) per second. Each thread builds its request in the loop (the
//! same cheap, allocation-free `Request::new` + static URI for every stack) and polls the future by
//! hand with a no-op waker: the inner service is immediately ready.
//!
//! Groups:
//! - `under_load_shared_clone`: one clone of the stack per thread, reused (`poll_ready` + `call`);
//! - `under_load_clone_per_request`: `svc.clone().oneshot(req)` for every request;
//! - `rotation_storm`: `VaultAuth` (shared clone per thread) while a thread forces a refresh from a
//!   source that hands out a new token every time, every millisecond; and the `RwLock` pattern
//!   while a thread rewrites the string every millisecond. Each is measured right after the same
//!   stack without the storm (`*_calm`), so that both see the same machine load.
//!
//! Run: `cargo bench --bench under_load`; summary: `cargo run --example bench_summary`.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, SamplingMode,
    Throughput,
};
use http::Request;
use http_body_util::Empty;
use tower::Service;
use veeva_vault_auth::VaultAuthLayer;

use common::*;

/// The thread counts measured.
const THREADS: [usize; 3] = [1, 2, 4];

/// How often the storm changes the token.
const STORM_EVERY: Duration = Duration::from_millis(1);

fn group<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .throughput(Throughput::Elements(1))
        .sampling_mode(SamplingMode::Flat)
        .sample_size(20);
    group
}

/// Measures `service` from each thread count in `THREADS`.
fn bench_threads<S>(group: &mut BenchmarkGroup<'_, WallTime>, name: &str, service: &S, mode: Mode)
where
    S: Service<Request<Empty<bytes::Bytes>>> + Clone + Send,
    S::Error: std::fmt::Debug,
{
    // Fetches VaultAuth's token before anything is measured.
    warm_up(runtime(), service, get_empty());
    for threads in THREADS {
        group.bench_with_input(BenchmarkId::new(name, threads), &threads, |b, &threads| {
            b.iter_custom(|iters| run_threads(service, threads, iters, mode))
        });
    }
}

fn under_load(c: &mut Criterion) {
    for mode in [Mode::Shared, Mode::ClonePerRequest] {
        let mut group = group(c, &format!("under_load_{}", mode.name()));
        bench_threads(
            &mut group,
            "set_request_header",
            &set_request_header(inner()),
            mode,
        );
        bench_threads(
            &mut group,
            "set_request_header_runtime",
            &set_request_header_runtime(inner()),
            mode,
        );
        bench_threads(
            &mut group,
            "add_authorization",
            &add_authorization(inner()),
            mode,
        );
        bench_threads(&mut group, "rwlock_format", &rwlock_format(inner()).0, mode);
        bench_threads(
            &mut group,
            "vault_auth",
            &vault(&vault_layer(), inner()),
            mode,
        );
        group.finish();
    }
}

fn rotation_storm(c: &mut Criterion) {
    let mut group = group(c, "rotation_storm");

    let (source, issued) = rotating_source();
    let layer = VaultAuthLayer::new(VAULT, source).expect("valid");
    let service = vault(&layer, inner());
    warm_up(runtime(), &service, get_empty());
    let (rwlock, lock) = rwlock_format(inner());
    for threads in THREADS {
        // Calm, then storm, back to back: the machine's load drifts little between the two.
        group.bench_with_input(
            BenchmarkId::new("vault_auth_calm", threads),
            &threads,
            |b, &threads| {
                b.iter_custom(|iters| run_threads(&service, threads, iters, Mode::Shared))
            },
        );
        let before = issued.load(Ordering::Relaxed);
        let started = Instant::now();
        let rotator = Rotator::vault(layer.handle(), STORM_EVERY);
        group.bench_with_input(
            BenchmarkId::new("vault_auth", threads),
            &threads,
            |b, &threads| {
                b.iter_custom(|iters| run_threads(&service, threads, iters, Mode::Shared))
            },
        );
        let rotations = rotator.stop();
        // Every forced refresh asked the source, which hands out a new token each time.
        let new_tokens = issued.load(Ordering::Relaxed) - before;
        assert!(
            rotations > 0 && new_tokens >= rotations,
            "the token never changed"
        );
        eprintln!(
            "rotation_storm/vault_auth/{threads}: {new_tokens} new tokens in {:.1} s",
            started.elapsed().as_secs_f64()
        );

        group.bench_with_input(
            BenchmarkId::new("rwlock_format_calm", threads),
            &threads,
            |b, &threads| b.iter_custom(|iters| run_threads(&rwlock, threads, iters, Mode::Shared)),
        );
        let rotator = Rotator::rwlock(Arc::clone(&lock), STORM_EVERY);
        group.bench_with_input(
            BenchmarkId::new("rwlock_format", threads),
            &threads,
            |b, &threads| b.iter_custom(|iters| run_threads(&rwlock, threads, iters, Mode::Shared)),
        );
        assert!(rotator.stop() > 0, "the token never changed");
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion(Duration::from_secs(2));
    targets = under_load, rotation_storm
}
criterion_main!(benches);
