//! The recovery bench's revocation wave over HTTP (only `benches/recovery.rs` includes this file).
//!
//! A hyper server on `127.0.0.1` (`common::loopback`, on the bench's two-worker runtime) accepts
//! a token from `rotating_source` whose serial number is above the revocation mark and answers
//! any other with `INVALID_SESSION_ID`. One `VaultAuthLayer` (its Vault: the server) wraps two
//! hyper-util clients: one for `Full<Bytes>` bodies, one for `BoxBody<Bytes, BoxError>` bodies.
//! Every request is the same small form POST, in memory, boxed for the second client.
//!
//! A wave builds 1,000 requests; for a revoked wave it forces an ordinary refresh and revokes
//! every token issued so far (both outside the timing, as in the in-process group). Then the
//! clock starts: the stack is called 1,000 times (every request picks up the current token), the
//! 1,000 response futures are spawned, and the clock stops when the last answer has been read to
//! the end. After each wave the bench checks that every answer was a success and what the server
//! saw: for a valid wave 1,000 accepted requests and no fetch; for a revoked wave 1,000 rejected,
//! 1,000 replays accepted, and exactly one fetch.
//!
//! A third wave, for comparison, has each of 1,000 tasks send its request twice in a row with a
//! valid token: the 2,000 exchanges a revoked wave makes, without the layer's recovery (over HTTP
//! a replay is a second round trip, so this is the floor of a revoked wave).
//!
//! Each round runs the six waves (two bodies, three waves) in an order that rotates from round
//! to round; the first round is a warm-up (it opens the pool's connections) and is not
//! counted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Request, Response, Uri};
use http_body_util::{BodyExt, Full};
use tower::{Service, ServiceExt};
use veeva_vault_auth::{AuthHandle, VaultAuthLayer};

use crate::common::loopback::{client, Answered, Judge, Loopback};
use crate::common::results::write_tsv;
use crate::common::{quartiles, rotated, rotating_source, vault, Boxed, FORM};
use crate::{serial_of, CONCURRENT};

/// The body types measured, in the order of the report.
const BODIES: [&str; 2] = ["full", "boxed"];

/// The waves measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wave {
    /// 1,000 requests with a valid token.
    Valid,
    /// 1,000 requests with a token that has just been revoked: one fetch, 1,000 replays.
    Revoked,
    /// 1,000 tasks that each send their request twice in a row with a valid token, through the
    /// same stack: the requests a revoked wave sends, without the layer's recovery.
    Twice,
}

impl Wave {
    const ALL: [Wave; 3] = [Wave::Valid, Wave::Revoked, Wave::Twice];
}

/// What every wave shares: the layer's handle, the source's count, the revocation mark and the
/// server's counts.
struct Waves {
    handle: AuthHandle,
    issued: Arc<AtomicU64>,
    revoked_through: Arc<AtomicU64>,
    answered: Arc<Answered>,
}

/// Reads an answer to the end; whether it was a `SUCCESS`.
async fn read<R>(response: Response<R>) -> bool
where
    R: http_body::Body<Error: std::fmt::Debug>,
{
    let success = response
        .headers()
        .get("x-vaultapi-status")
        .is_some_and(|status| status == "SUCCESS");
    let body = response.into_body().collect().await.expect("a body");
    std::hint::black_box(body);
    success
}

impl Waves {
    /// One wave of [`CONCURRENT`] requests (each made by `make`, twice for [`Wave::Twice`])
    /// through `service`; the time from the first call to the last answer read. Panics unless
    /// everything happened as described in the module's comment.
    async fn wave<S, B, R>(
        &self,
        service: &S,
        make: impl Fn() -> Request<B>,
        wave: Wave,
    ) -> Duration
    where
        S: Service<Request<B>, Response = Response<R>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: std::fmt::Debug + Send,
        B: Send + 'static,
        R: http_body::Body<Data: Send, Error: std::fmt::Debug> + Send + 'static,
    {
        let revoke = wave == Wave::Revoked;
        let requests: Vec<_> = (0..CONCURRENT)
            .map(|_| (make(), (wave == Wave::Twice).then(&make)))
            .collect();
        if revoke {
            // A token from an ordinary fetch (see the in-process group: the layer backs off when
            // a token fetched because of a rejection is rejected in turn).
            self.handle
                .force_refresh()
                .await
                .expect("the source answers");
        }
        let before = self.handle.status();
        let (accepted, rejected) = self.answered.counts();
        if revoke {
            self.revoked_through
                .store(self.issued.load(Ordering::Acquire), Ordering::Release);
        }

        let start = Instant::now();
        let mut in_flight = Vec::with_capacity(CONCURRENT);
        for (request, second) in requests {
            let mut service = service.clone();
            let answer = service
                .ready()
                .await
                .expect("the stack is ready")
                .call(request);
            in_flight.push((answer, second.map(|second| (service, second))));
        }
        let tasks: Vec<_> = in_flight
            .into_iter()
            .map(|(answer, second)| {
                tokio::spawn(async move {
                    let mut success = read(answer.await.expect("the request succeeds")).await;
                    if let Some((mut service, request)) = second {
                        let ready = service.ready().await.expect("the stack is ready");
                        let answer = ready.call(request).await.expect("the request succeeds");
                        success &= read(answer).await;
                    }
                    success
                })
            })
            .collect();
        let mut failed = 0;
        for task in tasks {
            failed += usize::from(!task.await.expect("no panic"));
        }
        let elapsed = start.elapsed();

        let after = self.handle.status();
        let (now_accepted, now_rejected) = self.answered.counts();
        let n = CONCURRENT as u64;
        assert_eq!(
            failed, 0,
            "{failed} requests failed; before {before:?}, after {after:?}"
        );
        let (successes, rejections, fetches, replays) = match wave {
            Wave::Valid => (n, 0, 0, 0),
            Wave::Revoked => (n, n, 1, n),
            Wave::Twice => (2 * n, 0, 0, 0),
        };
        assert_eq!(now_accepted - accepted, successes, "accepted at the server");
        assert_eq!(
            now_rejected - rejected,
            rejections,
            "rejected at the server"
        );
        assert_eq!(after.fetches - before.fetches, fetches, "fetches");
        assert_eq!(after.replays - before.replays, replays, "replays");
        elapsed
    }
}

/// The small form POST of every wave, its body in memory as a client builds it.
fn post_full(uri: &Uri) -> Request<Full<Bytes>> {
    let mut request = Request::new(Full::new(Bytes::from(FORM.to_owned())));
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = uri.clone();
    request.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    request
}

/// Runs `rounds` counted rounds (and a warm-up round), prints the table and writes
/// `target/bench-results/recovery.tsv`.
pub fn run(rounds: usize) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let started = Instant::now();
    // `[body][wave]`: the waves' times in ms.
    let times: [[Vec<f64>; 3]; 2] = runtime.block_on(async {
        let (source, issued) = rotating_source();
        let revoked_through = Arc::new(AtomicU64::new(0));
        let mark = Arc::clone(&revoked_through);
        let judge: Arc<Judge> = Arc::new(move |value: Option<&HeaderValue>| {
            serial_of(value) > mark.load(Ordering::Acquire)
        });
        let server = Loopback::start(judge).await;
        let uri = server.url("/api/v26.2/vobjects/product__v");
        let layer = VaultAuthLayer::new(&server.base, source).expect("a loopback Vault");
        let waves = Waves {
            handle: layer.handle(),
            issued,
            revoked_through,
            answered: Arc::clone(&server.answered),
        };
        let full = vault(&layer, client::<Full<Bytes>>());
        let boxed = vault(&layer, client::<Boxed>());
        let make_full = || post_full(&uri);
        let make_boxed =
            || post_full(&uri).map(|body| body.map_err(|never| match never {}).boxed());

        // The layer's first fetch.
        let response = full.clone().oneshot(make_full()).await.expect("warm-up");
        assert_eq!(response.headers()["x-vaultapi-status"], "SUCCESS");
        let (accepted, _) = waves.answered.counts();
        assert_eq!(accepted, 1, "the warm-up request was accepted");

        let mut times: [[Vec<f64>; 3]; 2] = Default::default();
        let kinds = BODIES.len() * Wave::ALL.len();
        for round in 0..=rounds {
            for index in rotated(round, kinds) {
                let (body, wave) = (index / Wave::ALL.len(), index % Wave::ALL.len());
                let took = if body == 0 {
                    waves.wave(&full, make_full, Wave::ALL[wave]).await
                } else {
                    waves.wave(&boxed, make_boxed, Wave::ALL[wave]).await
                };
                if round > 0 {
                    times[body][wave].push(took.as_secs_f64() * 1000.0);
                }
            }
        }
        times
    });

    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "\nRevocation wave over HTTP: {CONCURRENT} concurrent POSTs through a hyper-util client to a loopback server, {rounds} interleaved rounds (after a warm-up round), two Tokio workers, {cores} cores, {:.0} s, `cargo bench --bench recovery`\n",
        started.elapsed().as_secs_f64()
    );
    println!("| body | valid token, ms | just revoked, ms | revoked / valid (medians) | per-round ratio, median [25th–75th] | each sent twice, ms | revoked / twice (medians) |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let mut tsv = Vec::new();
    for (name, [valid, revoked, twice]) in BODIES.iter().zip(times) {
        let per_round = quartiles(revoked.iter().zip(&valid).map(|(r, v)| r / v).collect());
        let (valid, valid_low, valid_high) = quartiles(valid);
        let (revoked, revoked_low, revoked_high) = quartiles(revoked);
        let (twice, twice_low, twice_high) = quartiles(twice);
        let ratio = revoked / valid;
        let (median, low, high) = per_round;
        println!(
            "| {name} | {valid:.1} [{valid_low:.1}–{valid_high:.1}] | {revoked:.1} [{revoked_low:.1}–{revoked_high:.1}] | {ratio:.2} | {median:.2} [{low:.2}–{high:.2}] | {twice:.1} [{twice_low:.1}–{twice_high:.1}] | {:.2} |",
            revoked / twice
        );
        tsv.push(vec![
            (*name).to_owned(),
            format!("{valid:.2}"),
            format!("{revoked:.2}"),
            format!("{ratio:.3}"),
        ]);
    }
    println!("\nTarget: revoked / valid ≤ 2.0 for each body.");
    write_tsv("recovery.tsv", &tsv);
}
