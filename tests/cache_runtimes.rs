//! The cache across runtimes that stall or shut down: regressions of issue 11 (bugs 10, 11, 12).
//!
//! A fetch, its timeout and the expiry watch used to live on the runtime of the first fetch. These
//! tests leave that runtime undriven or shut it down and go on with another one. The stand-in
//! would die or stall with its runtime, so the Vault here is an in-memory service that records the
//! `Authorization` header of every request. Every runtime's clock is paused.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::ScriptedSource;
use http::header::AUTHORIZATION;
use http::{Request, Response};
use http_body_util::Full;
use tokio::time::Instant;
use tower::util::BoxCloneService;
use tower::ServiceExt;
use veeva_vault_auth::source::{BoxFuture, SourceError, TokenSource};
use veeva_vault_auth::{AccessToken, BoxError, TokenUnavailable, UnavailableKind, VaultAuthLayer};

const VAULT: &str = "https://myvault.veevavault.com";

type Vault = BoxCloneService<Request<Full<Bytes>>, Response<Full<Bytes>>, BoxError>;

/// A Vault that accepts every token, and the bearer values it saw.
fn recording_vault() -> (Vault, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let service = tower::service_fn(move |req: Request<Full<Bytes>>| {
        let bearer = req
            .headers()
            .get(AUTHORIZATION)
            .map(|v| v.to_str().unwrap().trim_start_matches("Bearer ").to_owned())
            .unwrap_or_default();
        log.lock().unwrap().push(bearer);
        async {
            let response = Response::builder()
                .header("content-type", "application/json")
                .header("x-vaultapi-status", "SUCCESS")
                .body(Full::new(Bytes::from_static(
                    br#"{"responseStatus":"SUCCESS"}"#,
                )))
                .unwrap();
            Ok::<_, BoxError>(response)
        }
    });
    (BoxCloneService::new(service), seen)
}

fn request() -> Request<Full<Bytes>> {
    Request::get(format!("{VAULT}/api/v26.2/objects/users/me"))
        .body(Full::new(Bytes::new()))
        .unwrap()
}

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
}

/// Its first `hanging` fetches never answer; later ones hand out `veeva-vault-runtime-{n}`.
struct FirstFetchesHang {
    hanging: usize,
    fetches: AtomicUsize,
}

impl FirstFetchesHang {
    fn new(hanging: usize) -> Arc<Self> {
        Arc::new(Self {
            hanging,
            fetches: AtomicUsize::new(0),
        })
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

impl TokenSource for FirstFetchesHang {
    fn fetch(&self) -> BoxFuture<'_, Result<AccessToken, SourceError>> {
        let n = self.fetches.fetch_add(1, Ordering::SeqCst) + 1;
        let hangs = n <= self.hanging;
        Box::pin(async move {
            if hangs {
                std::future::pending::<()>().await;
            }
            Ok(AccessToken::new(format!("veeva-vault-runtime-{n}"))?)
        })
    }
}

/// A request on `runtime` that starts (or joins) a fetch and gives up at once; the runtime
/// lives on, undriven.
fn park_a_fetch_on<S>(runtime: &tokio::runtime::Runtime, service: &S)
where
    S: tower::Service<Request<Full<Bytes>>, Error = BoxError> + Clone,
{
    let call = service.clone().oneshot(request());
    let gave_up =
        runtime.block_on(async { tokio::time::timeout(Duration::from_millis(10), call).await });
    assert!(gave_up.is_err());
}

/// Bug 10: a fetch started on a runtime that then stays alive but undriven must not hold a waiter
/// on another runtime past the fetch timeout, nor block the fetches after it.
#[test]
fn a_fetch_parked_on_an_undriven_runtime_holds_nobody_past_the_fetch_timeout() {
    let source = FirstFetchesHang::new(1);
    let layer = VaultAuthLayer::builder(VAULT, Arc::clone(&source))
        .fetch_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let (vault, seen) = recording_vault();
    let service = tower::Layer::layer(&layer, vault);

    // On A, the request starts the fetch and its caller gives up early (a sync wrapper with its
    // own timeout); A lives on, undriven.
    let a = paused_runtime();
    park_a_fetch_on(&a, &service);
    assert_eq!(source.fetches(), 1);

    let b = paused_runtime();
    b.block_on(async {
        // On B, a request joins that fetch: it gives up at the fetch timeout, not never.
        let started = Instant::now();
        let joined =
            tokio::time::timeout(Duration::from_secs(5), service.clone().oneshot(request()))
                .await
                .expect("the waiter gives up at the fetch timeout");
        let err = joined.unwrap_err();
        let err = err.downcast_ref::<TokenUnavailable>().expect("typed");
        assert_eq!(
            err.kind(),
            UnavailableKind::TimedOut(Duration::from_secs(1))
        );
        assert!(started.elapsed() <= Duration::from_secs(1));

        // The next request fetches afresh, on B.
        let response =
            tokio::time::timeout(Duration::from_secs(5), service.clone().oneshot(request()))
                .await
                .expect("not blocked by the parked fetch");
        assert!(response.is_ok());
    });
    assert_eq!(source.fetches(), 2);
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        ["veeva-vault-runtime-2".to_owned()]
    );
    drop(a);
}

/// Bug 11: with the renewal task's runtime undriven, a token past its expiry is not attached;
/// the request waits for a fresh one instead.
#[test]
fn an_expired_token_is_never_attached_when_its_renewal_task_is_not_driven() {
    let source = ScriptedSource::new(|n| {
        Ok(AccessToken::new(format!("veeva-vault-short-{n}"))
            .unwrap()
            .with_expires_in(Duration::from_millis(300)))
    });
    let layer = VaultAuthLayer::new(VAULT, source.clone()).unwrap();
    let (vault, seen) = recording_vault();
    let service = tower::Layer::layer(&layer, vault);

    // The first token is fetched on A, which also runs the renewal task, and then sits idle.
    let a = paused_runtime();
    a.block_on(service.clone().oneshot(request())).unwrap();
    assert_eq!(source.fetches(), 1);

    // 600 ms later, on B (its clock started after the token was issued): the token expired
    // 300 ms ago.
    let b = paused_runtime();
    b.block_on(async {
        tokio::time::advance(Duration::from_millis(600)).await;
        service.clone().oneshot(request()).await.unwrap();
        assert_eq!(layer.handle().status().generation, Some(2));
    });
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        [
            "veeva-vault-short-1".to_owned(),
            "veeva-vault-short-2".to_owned()
        ]
    );
    assert_eq!(source.fetches(), 2);
    drop(a);
}

/// Bug 12: a runtime that shuts down while a fetch runs on it is not the source failing: no
/// failure is recorded, no backoff, and the next request on a live runtime fetches at once.
#[test]
fn a_runtime_shut_down_mid_fetch_is_not_a_source_failure() {
    let source = FirstFetchesHang::new(1);
    let layer = VaultAuthLayer::builder(VAULT, Arc::clone(&source))
        .fetch_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let (vault, seen) = recording_vault();
    let service = tower::Layer::layer(&layer, vault);

    let a = paused_runtime();
    park_a_fetch_on(&a, &service);
    drop(a);

    let status = layer.handle().status();
    assert_eq!(status.fetch_failures, 0, "{status:?}");
    assert_eq!(status.consecutive_failures, 0);
    assert!(status.last_error.is_none(), "{status:?}");
    assert!(status.retry_at.is_none());

    let b = paused_runtime();
    b.block_on(async {
        let started = Instant::now();
        service
            .clone()
            .oneshot(request())
            .await
            .expect("fetched afresh");
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "without waiting out a backoff"
        );
    });
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        ["veeva-vault-runtime-2".to_owned()]
    );
}

/// Bug 12, for a request already waiting on another runtime when the fetch's runtime shuts down:
/// it asks again on its own runtime instead of failing.
#[test]
fn a_waiter_whose_fetch_runtime_shut_down_fetches_again_on_its_own() {
    let source = FirstFetchesHang::new(1);
    let layer = VaultAuthLayer::new(VAULT, Arc::clone(&source)).unwrap();
    let (vault, seen) = recording_vault();
    let service = tower::Layer::layer(&layer, vault);

    let a = paused_runtime();
    park_a_fetch_on(&a, &service);

    // On B, in another thread, a request joins the fetch parked on A; then A shuts down.
    let (joined_tx, joined_rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn({
        let service = service.clone();
        move || {
            let b = paused_runtime();
            b.block_on(async move {
                // B's clock stands still: the waiter must not reach its fetch deadline first.
                let _clock = common::hold_clock();
                let mut call = tokio_test::task::spawn(service.oneshot(request()));
                assert!(call.poll().is_pending());
                joined_tx.send(()).unwrap();
                call.await
            })
        }
    });
    joined_rx.recv().unwrap();
    drop(a);
    let answered = waiter.join().unwrap();
    assert!(answered.is_ok(), "{:?}", answered.err());
    assert_eq!(source.fetches(), 2);
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        ["veeva-vault-runtime-2".to_owned()]
    );
}

/// A waiter asks again once when its fetch's runtime shuts down, not forever: when the fetch it
/// joined then is abandoned too, it fails (`Aborted`) rather than chase a third runtime.
#[test]
fn a_waiter_abandoned_twice_fails_instead_of_fetching_again() {
    let source = FirstFetchesHang::new(2);
    let layer = VaultAuthLayer::new(VAULT, Arc::clone(&source)).unwrap();
    let (vault, seen) = recording_vault();
    let service = tower::Layer::layer(&layer, vault);

    let a = paused_runtime();
    park_a_fetch_on(&a, &service);
    // The waiter lives on C, polled by hand (C's clock never moves).
    let c = paused_runtime();
    let mut waiter = tokio_test::task::spawn(service.clone().oneshot(request()));
    macro_rules! poll_on_c {
        () => {{
            let _in_c = c.enter();
            waiter.poll()
        }};
    }
    assert!(poll_on_c!().is_pending(), "joined the fetch on A");
    drop(a);
    let b = paused_runtime();
    park_a_fetch_on(&b, &service);
    assert!(waiter.is_woken());
    assert!(poll_on_c!().is_pending(), "joined the fetch on B");
    drop(b);
    let answered = match poll_on_c!() {
        std::task::Poll::Ready(answered) => answered,
        std::task::Poll::Pending => panic!("the waiter went on waiting"),
    };
    let err = answered.expect_err("abandoned twice");
    let err = err.downcast_ref::<TokenUnavailable>().expect("typed");
    assert_eq!(err.kind(), UnavailableKind::Aborted);
    assert_eq!(source.fetches(), 2);
    assert!(seen.lock().unwrap().is_empty());
}

/// A fetch timed out on one runtime that answers later, on its own runtime driven again, while
/// a newer fetch is under way: its answer is dropped, and the newer fetch's waiters get the
/// newer fetch's token.
#[test]
#[allow(clippy::async_yields_async)] // the spawned request is polled again later, on B
fn a_late_answer_from_another_runtime_does_not_end_the_newer_fetch() {
    // Which fetches answered, in order.
    let answered = Arc::new(Mutex::new(Vec::new()));
    let source = ScriptedSource::new({
        let answered = Arc::clone(&answered);
        move |n| {
            answered.lock().unwrap().push(n);
            Ok(AccessToken::new(format!("veeva-vault-late-{n}")).unwrap())
        }
    });
    source.close_gate();
    let layer = VaultAuthLayer::builder(VAULT, source.clone())
        .fetch_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let (vault, seen) = recording_vault();
    let service = tower::Layer::layer(&layer, vault);

    // Fetch 1 starts on A and waits at the gate; A is left undriven.
    let a = paused_runtime();
    park_a_fetch_on(&a, &service);
    let b = paused_runtime();
    let newer = b.block_on(async {
        // On B a request joins fetch 1 and gives up on it at the fetch timeout.
        let err = service.clone().oneshot(request()).await.unwrap_err();
        let err = err.downcast_ref::<TokenUnavailable>().expect("typed");
        assert_eq!(
            err.kind(),
            UnavailableKind::TimedOut(Duration::from_secs(1))
        );
        // After the backoff that failure started, the next one starts fetch 2, which waits at
        // the gate too.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let mut newer = tokio_test::task::spawn(service.clone().oneshot(request()));
        assert!(newer.poll().is_pending());
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        newer
    });
    assert_eq!(source.fetches(), 2);
    // Fetch 1 (first at the gate) answers, on A.
    source.open(1);
    a.block_on(async {
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
    });
    assert_eq!(
        answered.lock().unwrap().as_slice(),
        [1],
        "fetch 1 answered, late"
    );
    assert_eq!(
        layer.handle().status().generation,
        None,
        "the late answer was dropped"
    );
    source.open(1);
    b.block_on(newer).expect("fetch 2's token");
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        ["veeva-vault-late-2".to_owned()]
    );
}
