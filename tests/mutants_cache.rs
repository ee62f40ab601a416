//! Tests that kill mutants of `src/cache/` that the rest of the suite let live
//! (scripts/mutants.sh; mutants-report.md names each): what the cache shows in `Debug`, that a
//! dropped layer leaves no task behind, that a request uses a token installed while it waited
//! without another fetch, that a late rejection respects the backoff, and that a hung or late
//! fetch is timed out and its answer dropped. Over real HTTP to
//! the Vault stand-in. (That Vault's first acceptance of a token is logged once is in
//! tests/tracing.rs: events are caught there only, where every test has a subscriber.)

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use veeva_vault_auth::source::SourceError;
use veeva_vault_auth::testing::VaultStandIn;
use veeva_vault_auth::{AccessToken, Backoff, VaultAuth, VaultAuthLayer};

type Boxed = UnsyncBoxBody<Bytes, std::convert::Infallible>;

/// The layer around a hyper-util client whose body type is boxed.
fn boxed_client(
    layer: &VaultAuthLayer,
) -> VaultAuth<Client<hyper_util::client::legacy::connect::HttpConnector, Boxed>> {
    tower::Layer::layer(layer, Client::builder(TokioExecutor::new()).build_http())
}

/// The handle shows the cache's generation, and never the token.
#[tokio::test(start_paused = true)]
async fn the_handle_shows_the_generation_of_its_cache_but_not_the_token() {
    let vault = VaultStandIn::start().await.unwrap();
    let token = vault.issue_token();
    let layer = VaultAuthLayer::new(&vault.base_url(), ScriptedSource::fixed(&token)).unwrap();
    let handle = layer.handle();
    assert_eq!(
        format!("{handle:?}"),
        "AuthHandle { cache: Cache { generation: 0, .. } }"
    );
    let client = authed(&layer);
    send(&client, get(&vault.api_url("/objects/users/me")))
        .await
        .unwrap();
    let shown = format!("{handle:?}");
    let generation = handle.status().generation.expect("a token is held");
    assert_eq!(
        shown,
        format!("AuthHandle {{ cache: Cache {{ generation: {generation}, .. }} }}")
    );
    assert!(!shown.contains(&token));
}

/// The maintainer task the first fetch started ends with the last clone of the layer, even when
/// it has nothing to wait for (a token without expiry from a source that is never polled).
#[tokio::test(start_paused = true)]
async fn dropping_the_layer_ends_its_maintainer_task() {
    let vault = VaultStandIn::start().await.unwrap();
    let token = vault.issue_token();
    let metrics = tokio::runtime::Handle::current().metrics();
    let layer = VaultAuthLayer::new(&vault.base_url(), ScriptedSource::fixed(&token)).unwrap();
    let handle = layer.handle();
    // The token is fetched without a request, so that no connection task is counted.
    handle.force_refresh().await.unwrap();
    settle().await;
    let with_layer = metrics.num_alive_tasks();
    drop((layer, handle));
    settle().await;
    assert_eq!(
        metrics.num_alive_tasks(),
        with_layer - 1,
        "the maintainer ended with the layer"
    );
}

/// A request that came without a token but finds one in place by the time it asks for one
/// (another caller's fetch installed it in between) uses it, without another fetch.
#[tokio::test(start_paused = true)]
async fn a_request_that_finds_a_token_installed_meanwhile_uses_it() {
    use tower::{Service, ServiceExt};
    let vault = VaultStandIn::start().await.unwrap();
    let token = vault.issue_token();
    let source = ScriptedSource::fixed(&token);
    let layer = VaultAuthLayer::new(&vault.base_url(), source.clone()).unwrap();
    let handle = layer.handle();
    let mut client = authed(&layer);
    // Called while no token is held; not polled yet.
    let pending = client
        .ready()
        .await
        .unwrap()
        .call(get(&vault.api_url("/objects/users/me")));
    handle.force_refresh().await.unwrap();
    assert_eq!(source.fetches(), 1);
    let response = pending.await.unwrap();
    assert!(text(response).await.contains("SUCCESS"));
    assert_eq!(source.fetches(), 1, "the token in place was used");
}

/// A rejection that comes in after the token was dropped and the fetch for it failed, while the
/// layer backs off for longer than the fetch timeout: no new fetch (the request cannot be sent
/// again, and the backoff holds), and Vault's answer is handed over.
#[tokio::test(start_paused = true)]
async fn a_late_rejection_during_a_long_backoff_starts_no_fetch() {
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    let (first, second) = (vault.issue_token(), vault.issue_token());
    let source = ScriptedSource::new(move |n| match n {
        1 => Ok(AccessToken::new(first.clone()).unwrap()),
        2 => Err(SourceError::retryable("the source is down")),
        _ => Ok(AccessToken::new(second.clone()).unwrap()),
    });
    let layer = VaultAuthLayer::builder(&vault.base_url(), source.clone())
        .backoff(Backoff::new(
            Duration::from_secs(60),
            Duration::from_secs(60),
        ))
        .fetch_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let client = authed(&layer);
    let documents = vault.api_url("/objects/documents");
    drop(send(&client, get(&documents)).await.unwrap());

    // The late request (a stream: it cannot be sent again) is held at the server.
    vault.hold_requests(true);
    let late = tokio::spawn({
        let (client, documents) = (boxed_client(&layer), documents.clone());
        async move {
            let request = http::Request::post(documents.replace("/objects/documents", "/query"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Chunks(vec![Bytes::from_static(b"q=SELECT id FROM users")]).boxed_unsync())
                .unwrap();
            text(send(&client, request).await.unwrap()).await
        }
    });
    vault.wait_for_held(1).await;
    vault.stop_holding();
    let first_token = vault.requests()[0].headers["authorization"]
        .to_str()
        .unwrap()[7..]
        .to_owned();
    assert!(vault.revoke(&first_token));
    drop(send(&client, get(&documents)).await);
    assert_eq!(source.fetches(), 2, "the early rejection's fetch failed");
    vault.release();
    eventually("the late request to be answered", || late.is_finished()).await;
    let answer = late.await.unwrap();
    assert!(answer.contains("INVALID_SESSION_ID"), "{answer}");
    settle().await;
    assert_eq!(source.fetches(), 2, "the backoff held");
}

/// A source whose fetch number `n` (from 1) waits until [`Steps::open`] lets it through, then
/// gives `tokens[n - 1]`.
#[derive(Clone)]
struct Steps {
    fetches: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    gates: std::sync::Arc<Vec<tokio::sync::Semaphore>>,
    tokens: Vec<String>,
}

impl Steps {
    fn new(tokens: Vec<String>) -> Steps {
        Steps {
            fetches: Default::default(),
            gates: std::sync::Arc::new(
                tokens
                    .iter()
                    .map(|_| tokio::sync::Semaphore::new(0))
                    .collect(),
            ),
            tokens,
        }
    }

    fn open(&self, n: usize) {
        self.gates[n - 1].add_permits(1);
    }

    fn fetches(&self) -> usize {
        self.fetches.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl veeva_vault_auth::source::TokenSource for Steps {
    fn fetch(&self) -> veeva_vault_auth::source::BoxFuture<'_, Result<AccessToken, SourceError>> {
        let n = self
            .fetches
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        Box::pin(async move {
            self.gates[n - 1].acquire().await.unwrap().forget();
            Ok(AccessToken::new(self.tokens[n - 1].clone()).unwrap())
        })
    }
}

/// A layer over `source` whose fetches time out after 1 s and back off 100 ms.
fn short_waits(vault: &VaultStandIn, source: &Steps) -> VaultAuthLayer {
    VaultAuthLayer::builder(&vault.base_url(), source.clone())
        .fetch_timeout(Duration::from_secs(1))
        .backoff(Backoff::new(
            Duration::from_millis(100),
            Duration::from_millis(100),
        ))
        .build()
        .unwrap()
}

/// A fetch whose caller gave up on it and that hangs past its timeout is ended as timed out
/// (by the layer's own task, or by the next request): the next request starts a fetch of its
/// own and gets its token, instead of joining the hung one and failing with it.
#[tokio::test(start_paused = true)]
async fn a_hung_fetch_nobody_waits_for_is_timed_out_and_replaced() {
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    let source = Steps::new(vec![vault.issue_token(), vault.issue_token()]);
    source.open(2);
    let layer = short_waits(&vault, &source);
    let client = authed(&layer);
    let url = vault.api_url("/objects/users/me");
    // The first request starts fetch 1, which hangs; its caller gives up.
    let first = tokio::spawn({
        let (client, url) = (client.clone(), url.clone());
        async move { send(&client, get(&url)).await.map(drop) }
    });
    eventually("fetch 1 to start", || source.fetches() == 1).await;
    first.abort();
    tokio::time::advance(Duration::from_secs(2)).await;
    let second = tokio::spawn(async move {
        let response = send(&client, get(&url)).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(text(response).await)
    });
    // The clock is held: move it on (through a backoff of 100 ms, if one is left) until the
    // request is answered; it must be within the fetch timeout.
    for _ in 0..10 {
        settle().await;
        if second.is_finished() {
            break;
        }
        tokio::time::advance(Duration::from_millis(100)).await;
    }
    eventually("the second request to be answered", || second.is_finished()).await;
    let answer = second.await.unwrap().expect("a token from fetch 2");
    assert!(answer.contains("SUCCESS"), "{answer}");
    assert_eq!(source.fetches(), 2);
}

/// The answer of a fetch that was given up on (timed out) is dropped when it comes, even while
/// a later fetch is under way: it never stands in for that one.
#[tokio::test(start_paused = true)]
async fn the_late_answer_of_a_timed_out_fetch_is_dropped() {
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    let source = Steps::new(vec![vault.issue_token(), vault.issue_token()]);
    let layer = short_waits(&vault, &source);
    let handle = layer.handle();
    let client = authed(&layer);
    let url = vault.api_url("/objects/users/me");
    let request = |client: &AuthClient| {
        let (client, url) = (client.clone(), url.clone());
        tokio::spawn(async move {
            match send(&client, get(&url)).await {
                Ok(response) => Ok(text(response).await),
                Err(err) => Err(err.to_string()),
            }
        })
    };
    let first = request(&client);
    eventually("fetch 1 to start", || source.fetches() == 1).await;
    tokio::time::advance(Duration::from_millis(1100)).await;
    assert!(first.await.unwrap().is_err(), "fetch 1 timed out");
    tokio::time::advance(Duration::from_millis(200)).await;
    let second = request(&client);
    eventually("fetch 2 to start", || source.fetches() == 2).await;
    // Fetch 1 answers now, late: dropped; fetch 2 is still under way.
    source.open(1);
    settle().await;
    let status = handle.status();
    assert_eq!(status.generation, None, "the late answer was not installed");
    assert!(status.fetching);
    source.open(2);
    let answer = second.await.unwrap().expect("fetch 2's token");
    assert!(answer.contains("SUCCESS"), "{answer}");
    assert_eq!(handle.status().generation, Some(1));
}

/// The renewal window follows the policy's margins: a tenth of the lifetime, within the
/// margins, at most half of it; renewal somewhere in the last half margin before that point.
#[test]
fn the_renewal_window_follows_the_margins() {
    use veeva_vault_auth::RefreshPolicy;
    let hour = Duration::from_secs(3600);
    let secs = Duration::from_secs;
    assert_eq!(
        RefreshPolicy::default().window(hour),
        (secs(3150), secs(3300))
    );
    let wide = RefreshPolicy::default().min_margin(secs(600));
    assert_eq!(wide.window(hour), (secs(2700), secs(3000)));
    let narrow = RefreshPolicy::default().max_margin(secs(60));
    assert_eq!(narrow.window(hour), (secs(3510), secs(3540)));
    // Never more than half the lifetime.
    assert_eq!(wide.window(secs(600)), (secs(150), secs(300)));
}

/// A fetch timeout too long to add to the clock (`Duration::MAX`, "never") means no timeout:
/// a hung fetch is still waited for 400 days on.
#[tokio::test(start_paused = true)]
async fn a_fetch_timeout_of_duration_max_never_fires() {
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    let source = Steps::new(vec![vault.issue_token()]);
    let layer = VaultAuthLayer::builder(&vault.base_url(), source.clone())
        .fetch_timeout(Duration::MAX)
        .build()
        .unwrap();
    let client = authed(&layer);
    let url = vault.api_url("/objects/users/me");
    let waiting = tokio::spawn(async move { send(&client, get(&url)).await.map(drop) });
    eventually("the fetch to start", || source.fetches() == 1).await;
    for _ in 0..400 {
        tokio::time::advance(Duration::from_secs(24 * 3600)).await;
    }
    settle().await;
    assert!(
        !waiting.is_finished(),
        "the request still waits for the fetch"
    );
    source.open(1);
    waiting.await.unwrap().expect("the fetch's token");
}

/// One maintainer task per layer, however many fetches it makes.
#[tokio::test(start_paused = true)]
async fn fetches_share_one_maintainer_task() {
    let vault = VaultStandIn::start().await.unwrap();
    let token = vault.issue_token();
    let metrics = tokio::runtime::Handle::current().metrics();
    let layer = VaultAuthLayer::new(&vault.base_url(), ScriptedSource::fixed(&token)).unwrap();
    let handle = layer.handle();
    handle.force_refresh().await.unwrap();
    settle().await;
    let after_one = metrics.num_alive_tasks();
    for _ in 0..3 {
        handle.force_refresh().await.unwrap();
        settle().await;
    }
    assert_eq!(metrics.num_alive_tasks(), after_one);
}

/// A source that hands out `token` again and again, each time good for `lifetime`.
fn expiring(token: String, lifetime: Duration) -> ScriptedSource {
    ScriptedSource::new(move |_| {
        Ok(AccessToken::new(token.clone())
            .unwrap()
            .with_expires_in(lifetime))
    })
}

/// A token dropped by `invalidate` is fetched again when a request needs it, not before: not
/// even when the time comes at which it would have been renewed.
#[tokio::test(start_paused = true)]
async fn an_invalidated_token_is_fetched_by_the_next_request_only() {
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    let source = expiring(vault.issue_token(), Duration::from_secs(600));
    let layer = VaultAuthLayer::new(&vault.base_url(), source.clone()).unwrap();
    let handle = layer.handle();
    let client = authed(&layer);
    let url = vault.api_url("/objects/users/me");
    drop(send(&client, get(&url)).await.unwrap());
    handle.invalidate();
    for _ in 0..14 {
        tokio::time::advance(Duration::from_secs(50)).await;
        settle().await;
    }
    assert_eq!(source.fetches(), 1, "nothing fetched without a request");
    let response = send(&client, get(&url)).await.unwrap();
    assert!(text(response).await.contains("SUCCESS"));
    assert_eq!(source.fetches(), 2);
}

/// A token that expired unrenewed (the clock jumped past its renewal and its expiry at once, as
/// after a suspended machine wakes) is dropped and fetched again at once, before any request.
#[tokio::test(start_paused = true)]
async fn a_token_that_expired_unrenewed_is_fetched_again_at_once() {
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    let source = expiring(vault.issue_token(), Duration::from_secs(60));
    let layer = VaultAuthLayer::new(&vault.base_url(), source.clone()).unwrap();
    let handle = layer.handle();
    handle.force_refresh().await.unwrap();
    assert_eq!(source.fetches(), 1);
    tokio::time::advance(Duration::from_secs(120)).await;
    eventually("the token fetched again", || {
        source.fetches() == 2 && handle.status().generation.is_some()
    })
    .await;
}

/// `AuthStatus::retry_at` shows the end of a failure's backoff while it lies ahead, and nothing
/// from that very instant on. (A token is held, so the maintainer has nothing to retry at that
/// instant and the backoff stays in place to be looked at.)
#[tokio::test(start_paused = true)]
async fn retry_at_is_shown_until_the_backoffs_last_instant_and_not_at_it() {
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    let token = vault.issue_token();
    let source = ScriptedSource::new(move |n| match n {
        1 => Ok(AccessToken::new(token.clone()).unwrap()),
        _ => Err(SourceError::retryable("the source is down")),
    });
    let layer = VaultAuthLayer::new(&vault.base_url(), source.clone()).unwrap();
    let handle = layer.handle();
    handle.force_refresh().await.unwrap();
    assert!(handle.force_refresh().await.is_err());
    let until = handle
        .status()
        .retry_at
        .expect("a backoff after the failure");

    advance_to(until - Duration::from_nanos(1)).await;
    assert_eq!(
        handle.status().retry_at,
        Some(until),
        "one nanosecond before"
    );
    advance_to(until).await;
    settle().await;
    let status = handle.status();
    assert_eq!(
        (
            status.retry_at,
            status.consecutive_failures,
            source.fetches()
        ),
        (None, 1, 2),
        "at the instant itself, the failure still counted and no fetch started"
    );
}
