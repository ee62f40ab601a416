//! Regression tests for bugs in the exchange and the origin rules (issue 11: bugs 1, 3, 14, 17
//! and 18), over real HTTP, through both doors.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::header::{AUTHORIZATION, HOST};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_http::follow_redirect::FollowRedirectLayer;
use veeva_vault_auth::source::{RotatingToken, SourceError};
use veeva_vault_auth::testing::VaultStandIn;
use veeva_vault_auth::{AccessToken, BoxError, NotForVault, VaultAuthLayer};

fn reqwest_client(layer: &VaultAuthLayer) -> reqwest_middleware::ClientWithMiddleware {
    reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(layer.middleware())
        .build()
}

fn authorization_of(vault: &VaultStandIn, n: usize) -> Option<String> {
    vault.requests()[n]
        .headers
        .get(AUTHORIZATION)
        .map(|v| v.to_str().unwrap().to_owned())
}

// Bug 1: a caller's `Host` header is part of the origin check.

#[tokio::test(start_paused = true)]
async fn a_host_header_naming_another_vault_gets_no_token() {
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    let token = vault.issue_token();
    let layer = VaultAuthLayer::new(&vault.base_url(), ScriptedSource::fixed(&token)).unwrap();
    let client = authed(&layer);
    let url = vault.api_url("/objects/users/me");

    let mut request = get(&url);
    request
        .headers_mut()
        .insert(HOST, "othervault.veevavault.com".parse().unwrap());
    let err = send(&client, request).await.unwrap_err();
    let refused = err.downcast_ref::<NotForVault>().expect("refused");
    assert!(refused.to_string().contains("othervault.veevavault.com"));
    assert_eq!(vault.request_count(), 0, "nothing was sent");

    let mut request = get(&url);
    let own = vault.addr().to_string();
    request.headers_mut().insert(HOST, own.parse().unwrap());
    let response = send(&client, request).await.unwrap();
    assert_eq!(
        response.headers()["x-vaultapi-status"],
        "SUCCESS",
        "its own Host is fine"
    );

    let passing = VaultAuthLayer::builder(&vault.base_url(), ScriptedSource::fixed(&token))
        .pass_through_other_hosts(true)
        .build()
        .unwrap();
    let mut request = get(&url);
    request
        .headers_mut()
        .insert(HOST, "othervault.veevavault.com".parse().unwrap());
    send(&authed(&passing), request).await.unwrap();
    assert_eq!(
        authorization_of(&vault, 1),
        None,
        "let through without the token"
    );
}

#[tokio::test(start_paused = true)]
async fn a_host_header_naming_another_vault_gets_no_token_through_reqwest() {
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    let token = vault.issue_token();
    let layer = VaultAuthLayer::new(&vault.base_url(), ScriptedSource::fixed(&token)).unwrap();
    let client = reqwest_client(&layer);
    let err = client
        .get(vault.api_url("/objects/users/me"))
        .header(HOST, "othervault.veevavault.com")
        .send()
        .await
        .unwrap_err();
    let reqwest_middleware::Error::Middleware(err) = err else {
        panic!("a middleware error, not {err:?}");
    };
    assert!(err.downcast_ref::<NotForVault>().is_some());
    assert_eq!(vault.request_count(), 0);
}

// Bug 3: an answer to a hop that went without the token never condemns it.

fn bounce(vault: &VaultStandIn, elsewhere: &VaultStandIn) -> String {
    vault.redirect(
        "/objects/bounce",
        StatusCode::TEMPORARY_REDIRECT,
        &elsewhere.api_url("/objects/away"),
    );
    elsewhere.redirect(
        "/objects/away",
        StatusCode::TEMPORARY_REDIRECT,
        &vault.api_url("/objects/users/me"),
    );
    vault.api_url("/objects/bounce")
}

#[tokio::test(start_paused = true)]
async fn a_redirect_that_leaves_the_vault_and_comes_back_burns_no_token() {
    let _clock = hold_clock();
    let (vault, elsewhere) = (
        VaultStandIn::start().await.unwrap(),
        VaultStandIn::start().await.unwrap(),
    );
    let token = vault.issue_token();
    let source = ScriptedSource::fixed(&token);
    let auth = VaultAuthLayer::new(&vault.base_url(), source.clone()).unwrap();
    let stack = ServiceBuilder::new()
        .layer(auth.clone())
        .layer(FollowRedirectLayer::new())
        .layer(auth.token_guard())
        .service(http_client());
    let url = bounce(&vault, &elsewhere);
    let response = stack.clone().oneshot(get(&url)).await.unwrap();
    assert_eq!(
        text(response).await,
        INVALID_SESSION,
        "the last hop went without a token"
    );
    let status = auth.handle().status();
    assert_eq!((source.fetches(), status.reacquisitions), (1, 0));
    assert_eq!(status.generation, Some(1), "the token stays");
    assert_eq!(
        authorization_of(&vault, 1),
        None,
        "the hop back carried no token"
    );
}

#[tokio::test(start_paused = true)]
async fn a_redirect_that_leaves_the_vault_and_comes_back_burns_no_token_through_reqwest() {
    let _clock = hold_clock();
    let (vault, elsewhere) = (
        VaultStandIn::start().await.unwrap(),
        VaultStandIn::start().await.unwrap(),
    );
    let token = vault.issue_token();
    let source = ScriptedSource::fixed(&token);
    let auth = VaultAuthLayer::new(&vault.base_url(), source.clone()).unwrap();
    let url = bounce(&vault, &elsewhere);
    let response = reqwest_client(&auth).get(&url).send().await.unwrap();
    assert_eq!(response.text().await.unwrap(), INVALID_SESSION);
    assert_eq!(
        (source.fetches(), auth.handle().status().reacquisitions),
        (1, 0)
    );
}

// Bug 14: a token behind a tab or leading whitespace is stripped too.

#[tokio::test(start_paused = true)]
async fn tokens_behind_tabs_or_spaces_never_reach_another_host() {
    let _clock = hold_clock();
    let (vault, elsewhere) = (
        VaultStandIn::start().await.unwrap(),
        VaultStandIn::start().await.unwrap(),
    );
    let token = vault.issue_token();
    let auth = VaultAuthLayer::builder(&vault.base_url(), ScriptedSource::fixed(&token))
        .pass_through_other_hosts(true)
        .build()
        .unwrap();
    let through_layer = authed(&auth);
    let guard_only = tower::Layer::layer(&auth.token_guard(), http_client());
    let reqwest = reqwest_client(&auth);
    let url = elsewhere.api_url("/objects/users/me");
    let mut sent = 0;
    for value in [
        format!("Bearer\t{token}"),
        format!(" Bearer {token}"),
        format!("\tBearer {token}"),
        format!("bearer  {token}"),
    ] {
        let mut request = get(&url);
        request
            .headers_mut()
            .insert(AUTHORIZATION, value.parse().unwrap());
        send(&through_layer, request).await.unwrap();
        let mut request = get(&url);
        request
            .headers_mut()
            .insert(AUTHORIZATION, value.parse().unwrap());
        guard_only.clone().oneshot(request).await.unwrap();
        reqwest
            .get(&url)
            .header(AUTHORIZATION, value.as_str())
            .send()
            .await
            .unwrap();
        sent += 3;
        for n in sent - 3..sent {
            assert_eq!(
                authorization_of(&elsewhere, n),
                None,
                "{value:?} reached another host"
            );
        }
    }
}

// Bug 17: a rejection whose body is not read in one go does not kill a single connection.

/// A server that answers `rejected` with 401 and a body of `size` bytes, anything else with
/// Vault's success; it counts the connections it accepted.
async fn big_401_server(rejected: &'static str, size: usize) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&connections);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |request: Request<hyper::body::Incoming>| async move {
                        let bearer = request.headers()[AUTHORIZATION]
                            .to_str()
                            .unwrap()
                            .to_owned();
                        let _ = request.into_body().collect().await;
                        let answer = if bearer.ends_with(rejected) {
                            Response::builder()
                                .status(StatusCode::UNAUTHORIZED)
                                .body(Full::new(Bytes::from(vec![b'x'; size])))
                                .unwrap()
                        } else {
                            Response::builder()
                                .header("content-type", "application/json")
                                .header("x-vaultapi-status", "SUCCESS")
                                .body(Full::new(Bytes::from_static(
                                    br#"{"responseStatus":"SUCCESS"}"#,
                                )))
                                .unwrap()
                        };
                        Ok::<_, Infallible>(answer)
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, connections)
}

/// One HTTP/1 connection as a tower service.
struct OneConnection(hyper::client::conn::http1::SendRequest<Full<Bytes>>);

impl Service<Request<Full<Bytes>>> for OneConnection {
    type Response = Response<hyper::body::Incoming>;
    type Error = hyper::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, hyper::Error>> + Send>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), hyper::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Full<Bytes>>) -> Self::Future {
        Box::pin(self.0.send_request(request))
    }
}

#[tokio::test(start_paused = true)]
async fn a_401_with_a_large_body_on_one_connection_behind_a_buffer_is_replayed() {
    let _clock = hold_clock();
    let (old, new) = ("veeva-vault-one-old", "veeva-vault-one-new");
    let (addr, connections) = big_401_server(old, 200 * 1024).await;
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let buffered = tower::buffer::Buffer::new(OneConnection(sender), 8);
    let source = tokens_in_order(vec![old.to_owned(), new.to_owned(), new.to_owned()]);
    let auth = VaultAuthLayer::new(&format!("http://{addr}"), source.clone()).unwrap();
    let client = tower::Layer::layer(&auth, buffered);
    let url = format!("http://{addr}/api/v26.2/objects/users/me");

    let response = send(&client, get(&url)).await.unwrap();
    assert_eq!(
        response.headers()["x-vaultapi-status"],
        "SUCCESS",
        "replayed"
    );
    let response = send(&client, get(&url)).await.unwrap();
    assert_eq!(
        response.headers()["x-vaultapi-status"],
        "SUCCESS",
        "the stack lives on"
    );
    assert_eq!(
        connections.load(Ordering::SeqCst),
        1,
        "on the one connection"
    );
    assert_eq!(auth.handle().status().replays, 1);
}

/// The same through the reqwest door: the rejected answer's body is read off (it is under the
/// discard bound), so reqwest's pool sends the replay on the same connection.
#[cfg(feature = "reqwest")]
#[tokio::test(start_paused = true)]
async fn a_401_through_the_reqwest_door_leaves_its_connection_for_the_replay() {
    let _clock = hold_clock();
    let (old, new) = ("veeva-vault-pool-old", "veeva-vault-pool-new");
    let (addr, connections) = big_401_server(old, 200 * 1024).await;
    let source = tokens_in_order(vec![old.to_owned(), new.to_owned()]);
    let auth = VaultAuthLayer::new(&format!("http://{addr}"), source).unwrap();
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(auth.middleware())
        .build();
    let url = format!("http://{addr}/api/v26.2/objects/users/me");
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(
        response.headers()["x-vaultapi-status"],
        "SUCCESS",
        "replayed"
    );
    assert_eq!(auth.handle().status().replays, 1);
    assert_eq!(
        connections.load(Ordering::SeqCst),
        1,
        "the replay went on the rejected answer's connection"
    );
}

// Bug 18: a request waiting for its first token holds no concurrency permit.

#[tokio::test(start_paused = true)]
async fn a_request_waiting_for_its_token_leaves_the_concurrency_limit_to_the_source() {
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    let bootstrap = vault.issue_token();
    let limited = tower::limit::ConcurrencyLimit::new(http_client(), 1);
    let issuing = limited.clone();
    let create = vault.api_url("/objects/users/me/api_access_token__sys");
    let issued = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&issued);
    let source = RotatingToken::new(move || {
        let (client, create, bootstrap) = (issuing.clone(), create.clone(), bootstrap.clone());
        counted.fetch_add(1, Ordering::SeqCst);
        async move {
            // The guide's own advice: issue through a clone of the same client.
            let request = Request::post(create)
                .header(AUTHORIZATION, format!("Bearer {bootstrap}"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Full::new(Bytes::from_static(b"name__v=limited")))
                .unwrap();
            let response = client
                .oneshot(request)
                .await
                .map_err(SourceError::retryable_from)?;
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(SourceError::retryable_from)?;
            let value: serde_json::Value = serde_json::from_slice(&body.to_bytes())
                .map_err(|e| SourceError::retryable(e.to_string()))?;
            let token = value["data"]["token__sys"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            Ok(AccessToken::new(token)?.with_expires_in(Duration::from_secs(3600)))
        }
    });
    let auth = VaultAuthLayer::builder(&vault.base_url(), source)
        .fetch_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut client = tower::Layer::layer(&auth, limited);
    let url = vault.api_url("/objects/users/me");
    // One long-lived service, polled ready and called, as `ServiceExt::ready` users do.
    let first = client.ready().await.unwrap().call(get(&url));
    let task = tokio::spawn(first);
    eventually("the first request to finish", || task.is_finished()).await;
    let response = task
        .await
        .unwrap()
        .expect("the first request got its token");
    assert_eq!(response.headers()["x-vaultapi-status"], "SUCCESS");
    assert_eq!(issued.load(Ordering::SeqCst), 1);
}

trait RetryableFrom {
    fn retryable_from(err: impl Into<BoxError>) -> SourceError;
}

impl RetryableFrom for SourceError {
    fn retryable_from(err: impl Into<BoxError>) -> SourceError {
        SourceError::retryable(err.into().to_string())
    }
}
