//! The ratios measured in interleaved rounds, so that the machine's drift cancels out.
//!
//! On a shared VM, wall time drifts by 10–30 % over minutes. Criterion measures one stack after
//! another, tens of seconds apart, so a ratio of two of its medians can land either side of a
//! target. Here every round times a chunk of requests through each stack, one right after the
//! other, in an order that rotates from round to round; each round gives one value of each ratio,
//! and the report is the median over the rounds with the middle half (25th–75th percentile).
//!
//! - One thread: `CHUNK` requests per stack per round, each built before its chunk is timed and
//!   sent with `poll_ready` + `call` + one poll, as in `hot_path`.
//! - Two threads: two threads that live through all rounds, each with its own clone of every
//!   stack (as in `under_load`'s shared-clone group), line up on a barrier before each chunk; a
//!   chunk's time is the wall time from the common start to the last thread's end.
//!
//! Scaling (two threads against one) compares two phases, not two stacks in one round, so it
//! cannot be interleaved; the report gives it from the two phases' medians, seconds apart, beside
//! `under_load`'s criterion measurement of it.
//!
//! Run: `cargo bench --bench paired` (about 10 seconds).

mod common;

use std::sync::Barrier;
use std::task::Context;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Empty;
use tower::Service;

use common::*;

/// Rounds per measurement.
const ROUNDS: usize = 150;
/// Requests per stack per round (per thread with two threads).
const CHUNK: usize = 4_000;

/// The stacks compared, in the order of [`STACKS`].
const STACKS: [&str; 6] = [
    "set_request_header",
    "set_request_header_runtime",
    "add_authorization",
    "rwlock_format",
    "vault_auth",
    "vault_auth_no_replay",
];

fn requests() -> Vec<Request<Empty<Bytes>>> {
    (0..CHUNK).map(|_| get_empty()).collect()
}

/// Sends `batch` through `service` on this thread; the time of the sends only.
fn one_thread<S>(service: &mut S, batch: Vec<Request<Empty<Bytes>>>) -> Duration
where
    S: Service<Request<Empty<Bytes>>>,
    S::Error: std::fmt::Debug,
{
    let waker = noop_waker();
    let mut cx = Context::from_waker(&waker);
    let start = Instant::now();
    for request in batch {
        std::hint::black_box(call_once(service, request, &mut cx));
    }
    start.elapsed()
}

/// The stacks, each behind a uniform "time one chunk" call, so that rounds can rotate them.
struct Stacks<A, B, C, D, E, F> {
    stacks: (A, B, C, D, E, F),
}

impl<A, B, C, D, E, F> Clone for Stacks<A, B, C, D, E, F>
where
    A: Clone,
    B: Clone,
    C: Clone,
    D: Clone,
    E: Clone,
    F: Clone,
{
    fn clone(&self) -> Self {
        Self {
            stacks: self.stacks.clone(),
        }
    }
}

/// The schedule on `threads` threads that live through all rounds (a fresh thread per chunk
/// would pay for its new allocator arena inside the timing): each thread has its own clone of
/// every stack, builds each chunk's requests, lines up with the others on a barrier, and sends
/// them. Returns, per stack, the ns per request of each round: the wall time from the common
/// start to the last thread's end, over the requests one thread sent.
fn rounds<A, B, C, D, E, F>(stacks: &Stacks<A, B, C, D, E, F>, threads: usize) -> Vec<Vec<f64>>
where
    Stacks<A, B, C, D, E, F>: Clone + Send + Timed,
{
    let barrier = Barrier::new(threads);
    let spans: Vec<Vec<(Instant, Instant)>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let mut stacks = stacks.clone();
                let barrier = &barrier;
                scope.spawn(move || {
                    let mut spans = Vec::with_capacity(ROUNDS * STACKS.len());
                    for round in 0..ROUNDS {
                        for index in rotated(round, STACKS.len()) {
                            barrier.wait();
                            let start = Instant::now();
                            let took = stacks.timed(index);
                            spans.push((start, start + took));
                        }
                    }
                    spans
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("a bench thread panicked"))
            .collect()
    });
    let mut per_stack = vec![Vec::with_capacity(ROUNDS); STACKS.len()];
    let mut at = 0;
    for round in 0..ROUNDS {
        for index in rotated(round, STACKS.len()) {
            let start = spans.iter().map(|s| s[at].0).min().expect("a thread");
            let end = spans.iter().map(|s| s[at].1).max().expect("a thread");
            per_stack[index].push((end - start).as_nanos() as f64 / CHUNK as f64);
            at += 1;
        }
    }
    per_stack
}

/// Times one chunk through the stack at `index`, on this thread (a trait, so that `rounds`
/// needs no bounds on each stack).
trait Timed {
    fn timed(&mut self, index: usize) -> Duration;
}

impl<A, B, C, D, E, F> Timed for Stacks<A, B, C, D, E, F>
where
    A: Service<Request<Empty<Bytes>>> + Clone + Send,
    B: Service<Request<Empty<Bytes>>> + Clone + Send,
    C: Service<Request<Empty<Bytes>>> + Clone + Send,
    D: Service<Request<Empty<Bytes>>> + Clone + Send,
    E: Service<Request<Empty<Bytes>>> + Clone + Send,
    F: Service<Request<Empty<Bytes>>> + Clone + Send,
    A::Error: std::fmt::Debug,
    B::Error: std::fmt::Debug,
    C::Error: std::fmt::Debug,
    D::Error: std::fmt::Debug,
    E::Error: std::fmt::Debug,
    F::Error: std::fmt::Debug,
{
    fn timed(&mut self, index: usize) -> Duration {
        let s = &mut self.stacks;
        match index {
            0 => one_thread(&mut s.0, requests()),
            1 => one_thread(&mut s.1, requests()),
            2 => one_thread(&mut s.2, requests()),
            3 => one_thread(&mut s.3, requests()),
            4 => one_thread(&mut s.4, requests()),
            _ => one_thread(&mut s.5, requests()),
        }
    }
}

fn main() {
    // `cargo test --benches` runs bench targets with `--bench` absent: do nothing then.
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let layer = vault_layer();
    let no_replay = vault_layer_no_replay();
    let (rwlock, _lock) = rwlock_format(inner());
    let mut stacks = Stacks {
        stacks: (
            set_request_header(inner()),
            set_request_header_runtime(inner()),
            add_authorization(inner()),
            rwlock,
            vault(&layer, inner()),
            vault(&no_replay, inner()),
        ),
    };
    // The layers fetch their tokens; every stack warms up.
    warm_up(runtime(), &stacks.stacks.4, get_empty());
    warm_up(runtime(), &stacks.stacks.5, get_empty());
    for index in 0..STACKS.len() {
        stacks.timed(index);
    }

    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "Interleaved rounds: {ROUNDS} rounds of {CHUNK} requests per stack (per thread), {cores} cores, `cargo bench --bench paired`\n"
    );
    // Each stack's median ns per request (per thread), on one thread and on two.
    let mut medians: Vec<Vec<f64>> = Vec::new();
    for threads in [1, 2] {
        let per_round = rounds(&stacks, threads);
        medians.push(per_round.iter().map(|t| quartiles(t.clone()).0).collect());
        println!(
            "{threads} thread(s): ns per request (per thread), median [25th–75th percentile]\n"
        );
        println!("| stack | ns |");
        println!("|---|---:|");
        for (name, times) in STACKS.iter().zip(&per_round) {
            let (median, low, high) = quartiles(times.clone());
            println!("| {name} | {median:.1} [{low:.1}–{high:.1}] |");
        }
        let ratio = |a: usize, b: usize| {
            quartiles(
                per_round[a]
                    .iter()
                    .zip(&per_round[b])
                    .map(|(a, b)| a / b)
                    .collect(),
            )
        };
        println!("\n| ratio ({threads} thread(s)) | median [25th–75th percentile] |");
        println!("|---|---:|");
        let rows: &[(&str, usize, usize)] = if threads == 1 {
            &[
                ("VaultAuth / SetRequestHeader (static)", 4, 0),
                ("VaultAuth / SetRequestHeader (run-time value)", 4, 1),
                ("VaultAuth / AddAuthorization", 4, 2),
                ("RwLock+format! / VaultAuth", 3, 4),
                ("VaultAuth no_replay / SetRequestHeader (static)", 5, 0),
            ]
        } else {
            // Throughput ratios are time ratios upside down.
            &[
                ("VaultAuth / AddAuthorization throughput", 2, 4),
                ("VaultAuth / RwLock+format! throughput", 3, 4),
                (
                    "SetRequestHeader (static) / AddAuthorization throughput",
                    2,
                    0,
                ),
                (
                    "SetRequestHeader (static) / RwLock+format! throughput",
                    3,
                    0,
                ),
            ]
        };
        for (name, a, b) in rows {
            let (median, low, high) = ratio(*a, *b);
            println!("| {name} | {median:.2} [{low:.2}–{high:.2}] |");
        }
        println!();
    }

    println!("Scaling: two threads' throughput over one thread's, from the medians above (the two");
    println!(
        "phases run seconds apart, not interleaved; `under_load` measures it with criterion)\n"
    );
    println!("| stack | 2 threads / 1 |");
    println!("|---|---:|");
    for (index, name) in STACKS.iter().enumerate() {
        println!(
            "| {name} | {:.2} |",
            2.0 * medians[0][index] / medians[1][index]
        );
    }
}
