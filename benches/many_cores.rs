//! Throughput on many cores through a real client: `VaultAuth` against tower-http's
//! `SetRequestHeader` with a value made at run time, both around one hyper-util client.
//!
//! For 1, 2 and 4 worker threads of a multi-thread Tokio runtime, a loopback hyper server on the
//! same runtime answers like Vault (`X-VaultAPI-Status: SUCCESS`, a small JSON record, see
//! `common::loopback`), and one hyper-util legacy client (HTTP/1, kept-alive pool) sends to it,
//! from `TASKS` tasks at once, through either stack:
//! - `set_request_header_runtime`: `SetRequestHeader::overriding` with `HeaderValue::from_str`;
//! - `vault_auth`: `VaultAuthLayer` with a `StaticToken`, the loopback server as its Vault.
//!
//! Two ways to use a stack: `oneshot`, `svc.clone().oneshot(req)` for every request (the common
//! pattern), and `per_task`, one clone per task reused with `poll_ready` + `call`. Each request is
//! an empty GET whose answer is read to the end.
//!
//! Each round sends `REQUESTS` requests through each stack, one stack right after the other, in
//! an order that alternates from round to round (A, B, then B, A), so that the machine's drift
//! cancels out. The report gives each stack's median throughput over the rounds, the ratio of the
//! medians, and the median [25th–75th percentile] of the rounds' own ratios. The server counts
//! the requests that carried the bench's token; the bench fails unless every request did.
//!
//! Run: `cargo bench --bench many_cores` (about 80 seconds after the build on two cores). Knobs:
//! `MANY_CORES_ROUNDS` (default 100), `MANY_CORES_REQUESTS` per stack per round (default 1,600),
//! `MANY_CORES_TASKS` (default 16). The table is also written to
//! `target/bench-results/many_cores.tsv`: `threads pattern set_rps vault_rps ratio`.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::{BodyExt, Empty};
use tower::{Service, ServiceExt};
use veeva_vault_auth::source::StaticToken;
use veeva_vault_auth::VaultAuthLayer;

use common::loopback::{accepts_only, client, Loopback};
use common::results::{env_count, write_tsv};
use common::*;

/// The worker-thread counts measured.
const THREADS: [usize; 3] = [1, 2, 4];

/// How each task uses the stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pattern {
    /// `svc.clone().oneshot(req)` for every request.
    Oneshot,
    /// One clone per task, `poll_ready` + `call` in a loop.
    PerTask,
}

impl Pattern {
    const ALL: [Pattern; 2] = [Pattern::Oneshot, Pattern::PerTask];

    fn name(self) -> &'static str {
        match self {
            Pattern::Oneshot => "oneshot",
            Pattern::PerTask => "per_task",
        }
    }
}

/// The knobs of a run.
#[derive(Clone, Copy, Debug)]
struct Plan {
    rounds: usize,
    requests: usize,
    tasks: usize,
}

/// Reads the answer to the end; panics on an error or a non-success answer.
async fn finish<B>(response: Result<Response<B>, impl std::fmt::Debug>)
where
    B: http_body::Body<Error: std::fmt::Debug>,
{
    let response = response.expect("the request succeeds");
    assert!(response.status().is_success(), "the server answers 200");
    let body = response.into_body().collect().await.expect("a body");
    std::hint::black_box(body);
}

fn get(uri: &Uri) -> Request<Empty<Bytes>> {
    let mut request = Request::new(Empty::new());
    *request.uri_mut() = uri.clone();
    request
}

/// Sends `requests` requests through `stack` from `tasks` tasks at once, using it as `pattern`
/// says; the wall time from the first spawn to the last task's end.
async fn wave<S, B>(stack: &S, uri: &Uri, pattern: Pattern, plan: Plan) -> Duration
where
    S: Service<Request<Empty<Bytes>>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: std::fmt::Debug + Send,
    B: http_body::Body<Data: Send, Error: std::fmt::Debug> + Send + 'static,
{
    let start = Instant::now();
    let tasks: Vec<_> = (0..plan.tasks)
        .map(|index| {
            let count =
                plan.requests / plan.tasks + usize::from(index < plan.requests % plan.tasks);
            let mut stack = stack.clone();
            let uri = uri.clone();
            tokio::spawn(async move {
                for _ in 0..count {
                    let response = match pattern {
                        Pattern::Oneshot => stack.clone().oneshot(get(&uri)).await,
                        Pattern::PerTask => match stack.ready().await {
                            Ok(ready) => ready.call(get(&uri)).await,
                            Err(err) => Err(err),
                        },
                    };
                    finish(response).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a bench task panicked");
    }
    start.elapsed()
}

/// One configuration's measurement: per pattern, each stack's requests per second in each round.
struct Measured {
    /// `[pattern][stack][round]`, stack 0 the header, 1 `VaultAuth`.
    rps: Vec<[Vec<f64>; 2]>,
}

fn measure(threads: usize, plan: Plan) -> Measured {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let server = Loopback::start(accepts_only(BEARER)).await;
        let uri = server.url("/api/v26.2/objects/users/me");
        let client = client::<Empty<Bytes>>();
        let layer = VaultAuthLayer::new(
            &server.base,
            StaticToken::new(TOKEN).expect("a valid token"),
        )
        .expect("a loopback Vault");
        let header = set_request_header_runtime(client.clone());
        let vault = vault(&layer, client);

        // Opens the pool's connections, fetches the token, warms both stacks up.
        let warm = Plan {
            requests: plan.tasks * 20,
            ..plan
        };
        for pattern in Pattern::ALL {
            wave(&header, &uri, pattern, warm).await;
            wave(&vault, &uri, pattern, warm).await;
        }

        let mut rps = Vec::new();
        for pattern in Pattern::ALL {
            let mut per_stack: [Vec<f64>; 2] = Default::default();
            for round in 0..plan.rounds {
                for index in rotated(round, 2) {
                    let took = if index == 0 {
                        wave(&header, &uri, pattern, plan).await
                    } else {
                        wave(&vault, &uri, pattern, plan).await
                    };
                    per_stack[index].push(plan.requests as f64 / took.as_secs_f64());
                }
            }
            rps.push(per_stack);
        }

        let sent =
            2 * Pattern::ALL.len() as u64 * (warm.requests + plan.rounds * plan.requests) as u64;
        assert_eq!(
            server.answered.counts(),
            (sent, 0),
            "every request carried the token"
        );
        Measured { rps }
    })
}

fn main() {
    // `cargo test --benches` runs bench targets with `--bench` absent: do nothing then.
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let plan = Plan {
        rounds: env_count("MANY_CORES_ROUNDS", 100),
        requests: env_count("MANY_CORES_REQUESTS", 1_600),
        tasks: env_count("MANY_CORES_TASKS", 16),
    };
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let started = Instant::now();
    let mut rows = Vec::new();
    for threads in THREADS {
        let measured = measure(threads, plan);
        for (pattern, [header, vault]) in Pattern::ALL.into_iter().zip(measured.rps) {
            let per_round = quartiles(vault.iter().zip(&header).map(|(v, h)| v / h).collect());
            let header = quartiles(header).0;
            let vault = quartiles(vault).0;
            rows.push((threads, pattern, header, vault, vault / header, per_round));
        }
    }

    println!(
        "Many cores, one hyper-util client over loopback, server in the same process: {} interleaved rounds of {} requests per stack, {} tasks, {cores} cores, {:.0} s, `cargo bench --bench many_cores`\n",
        plan.rounds,
        plan.requests,
        plan.tasks,
        started.elapsed().as_secs_f64()
    );
    println!("| worker threads | pattern | set_request_header_runtime req/s | vault_auth req/s | ratio of medians | per-round ratio, median [25th–75th] |");
    println!("|---:|---|---:|---:|---:|---:|");
    for (threads, pattern, header, vault, ratio, (median, low, high)) in &rows {
        println!(
            "| {threads} | {} | {header:.0} | {vault:.0} | {ratio:.3} | {median:.3} [{low:.3}–{high:.3}] |",
            pattern.name()
        );
    }
    println!("\nTarget: vault_auth / set_request_header_runtime ≥ 0.99 in every row.");
    let tsv: Vec<Vec<String>> = rows
        .iter()
        .map(|(threads, pattern, header, vault, ratio, _)| {
            vec![
                threads.to_string(),
                pattern.name().to_owned(),
                format!("{header:.0}"),
                format!("{vault:.0}"),
                format!("{ratio:.4}"),
            ]
        })
        .collect();
    write_tsv("many_cores.tsv", &tsv);
}
