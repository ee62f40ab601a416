//! What the layer reads of a response, and when: observed over real HTTP with a server that holds
//! each response body back until the test lets it go. A response the layer hands over before its
//! body was sent is one whose body the layer did not touch.

mod common;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use common::*;
use http::Response;
use http_body::Frame;
use http_body_util::BodyExt;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;
use veeva_vault_auth::detect::UnauthorizedOnly;
use veeva_vault_auth::source::StaticToken;
use veeva_vault_auth::testing::{Outcome, VaultStandIn};
use veeva_vault_auth::{AccessToken, TokenUnavailable, VaultAuthLayer};

/// A response body that is sent only once the gate opens.
struct GatedBody {
    gate: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    data: Option<Bytes>,
}

impl http_body::Body for GatedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(gate) = self.gate.as_mut() {
            if gate.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.gate = None;
        }
        Poll::Ready(self.data.take().map(|d| Ok(Frame::data(d))))
    }
}

/// The head's headers and the body the server answers with.
type Answer = (Vec<(&'static str, String)>, Bytes);

/// A server that answers every request with the configured head at once, and the body when the
/// gate opens.
struct GatedServer {
    url: String,
    answer: Arc<Mutex<Answer>>,
    gate: watch::Sender<bool>,
}

impl GatedServer {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let answer = Arc::new(Mutex::new((
            Vec::<(&'static str, String)>::new(),
            Bytes::new(),
        )));
        let (gate, _) = watch::channel(false);
        let (served_answer, served_gate) = (Arc::clone(&answer), gate.clone());
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let (answer, gate) = (Arc::clone(&served_answer), served_gate.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |_request| {
                        let (headers, body) = answer.lock().unwrap().clone();
                        let mut open = gate.subscribe();
                        let mut response = Response::new(GatedBody {
                            gate: Some(Box::pin(async move {
                                let _ = open.wait_for(|open| *open).await;
                            })),
                            data: Some(body),
                        });
                        for (name, value) in headers {
                            response.headers_mut().insert(name, value.parse().unwrap());
                        }
                        async move { Ok::<_, Infallible>(response) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { url, answer, gate }
    }

    fn answer_with(&self, headers: &[(&'static str, &str)], body: &'static str) {
        let headers = headers.iter().map(|(k, v)| (*k, v.to_string())).collect();
        *self.answer.lock().unwrap() = (headers, Bytes::from_static(body.as_bytes()));
        self.gate.send_replace(false);
    }

    fn open(&self) {
        self.gate.send_replace(true);
    }
}

/// Sends one request through the layer while the server holds the body back, and waits until
/// the layer hands the response over: it can only do that without reading the body. Then lets the
/// body go and returns it.
async fn handed_over_unread(server: &GatedServer, layer: &VaultAuthLayer) -> Bytes {
    let client = authed(layer);
    let url = format!("{}/api/v26.2/objects/documents", server.url);
    let task = tokio::spawn(async move { send(&client, get(&url)).await.unwrap() });
    eventually(
        "the response is handed over before its body is sent",
        || task.is_finished(),
    )
    .await;
    server.open();
    let response = task.await.unwrap();
    assert!(!format!("{:?}", response.body()).contains("read_ahead"));
    response.into_body().collect().await.unwrap().to_bytes()
}

fn layer_for(server: &GatedServer) -> VaultAuthLayer {
    VaultAuthLayer::new(
        &server.url,
        StaticToken::new("veeva-vault-detection").unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn success_and_non_json_responses_are_handed_over_unread() {
    let server = GatedServer::start().await;
    let layer = layer_for(&server);

    server.answer_with(
        &[
            ("content-type", "application/json;charset=UTF-8"),
            ("x-vaultapi-status", "SUCCESS"),
        ],
        r#"{"responseStatus":"SUCCESS"}"#,
    );
    let body = handed_over_unread(&server, &layer).await;
    assert_eq!(&body[..], br#"{"responseStatus":"SUCCESS"}"#);

    server.answer_with(&[("content-type", "application/pdf")], "%PDF-1.7 ...");
    let body = handed_over_unread(&server, &layer).await;
    assert_eq!(&body[..], b"%PDF-1.7 ...");
}

#[tokio::test]
async fn json_without_the_status_header_is_read_and_passed_on_intact() {
    let server = GatedServer::start().await;
    let layer = layer_for(&server);
    let body =
        r#"{"responseStatus":"FAILURE","errors":[{"type":"INSUFFICIENT_ACCESS","message":"no"}]}"#;
    server.answer_with(&[("content-type", "application/json")], body);
    server.open();
    let client = authed(&layer);
    let url = format!("{}/api/v26.2/objects/documents", server.url);
    let response = send(&client, get(&url)).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        format!("{:?}", response.body()).contains("read_ahead_frames: 1"),
        "the layer read this body to judge it"
    );
    let received = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&received[..], body.as_bytes());
    assert_eq!(layer.handle().status().reacquisitions, 0);
}

#[tokio::test]
async fn a_body_over_the_inspection_bound_is_not_read() {
    let server = GatedServer::start().await;
    let layer = VaultAuthLayer::builder(
        &server.url,
        StaticToken::new("veeva-vault-detection").unwrap(),
    )
    .max_inspect_body(16)
    .build()
    .unwrap();
    server.answer_with(
        &[
            ("content-type", "application/json"),
            ("x-vaultapi-status", "FAILURE"),
            ("content-length", &INVALID_SESSION.len().to_string()),
        ],
        INVALID_SESSION,
    );
    let received = handed_over_unread(&server, &layer).await;
    assert_eq!(&received[..], INVALID_SESSION.as_bytes());
    assert_eq!(layer.handle().status().reacquisitions, 0);
}

#[tokio::test]
async fn a_pluggable_rule_replaces_vaults() {
    let vault = VaultStandIn::start().await.unwrap();
    let token = vault.issue_token();
    let source = ScriptedSource::fixed(&token);
    // This gateway only ever signals with 401; Vault's 200 + INVALID_SESSION_ID is not a rejection.
    let layer = VaultAuthLayer::builder(&vault.base_url(), source.clone())
        .failure_rule(UnauthorizedOnly)
        .build()
        .unwrap();
    let client = tower::Layer::layer(&layer, http_client());
    let url = vault.api_url("/objects/users/me");
    send(&client, get(&url)).await.unwrap();
    vault.revoke(&token);
    let response = send(&client, get(&url)).await.unwrap();
    assert_eq!(text(response).await, INVALID_SESSION);
    assert_eq!(
        (source.fetches(), layer.handle().status().reacquisitions),
        (1, 0)
    );

    vault.set_unauthorized_mode(true);
    let response = send(&client, get(&url)).await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(layer.handle().status().reacquisitions, 1);
    assert_eq!(source.fetches(), 2);
}

#[tokio::test(start_paused = true)]
async fn invalidate_makes_the_next_request_fetch() {
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    let tokens: Vec<String> = (0..2).map(|_| vault.issue_token()).collect();
    let issued = tokens.clone();
    let source = ScriptedSource::new(move |n| Ok(AccessToken::new(issued[n - 1].clone()).unwrap()));
    let layer = VaultAuthLayer::new(&vault.base_url(), source.clone()).unwrap();
    let client = authed(&layer);
    let url = vault.api_url("/objects/users/me");
    send(&client, get(&url)).await.unwrap();
    layer.handle().invalidate();
    assert_eq!(layer.handle().status().generation, None);
    send(&client, get(&url)).await.unwrap();
    let seen = vault.requests();
    assert_eq!(
        seen[1].headers["authorization"],
        format!("Bearer {}", tokens[1]).as_str()
    );
    assert_eq!(layer.handle().status().generation, Some(2));
}

#[tokio::test(start_paused = true)]
async fn an_expiry_from_any_source_is_honoured() {
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    let token = AccessToken::new(vault.issue_token())
        .unwrap()
        .with_expires_in(std::time::Duration::from_secs(60));
    let layer = VaultAuthLayer::new(&vault.base_url(), StaticToken::from_token(token)).unwrap();
    let client = authed(&layer);
    let url = vault.api_url("/objects/users/me");
    send(&client, get(&url)).await.unwrap();
    tokio::time::advance(std::time::Duration::from_secs(61)).await;
    let handle = layer.handle();
    eventually("the expired token is dropped", || {
        handle.status().generation.is_none()
    })
    .await;
    // The static source can only hand back the expired token: the request waits for the next
    // attempt (due in 1 s), which fails with a typed error, and nothing is sent.
    let request = tokio::spawn(async move { send(&client, get(&url)).await });
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    tokio::time::advance(std::time::Duration::from_secs(1)).await;
    let err = request.await.unwrap().unwrap_err();
    assert!(err
        .downcast_ref::<TokenUnavailable>()
        .unwrap()
        .to_string()
        .contains("already expired"));
    assert_eq!(vault.request_count(), 1);
    assert!(vault
        .requests()
        .iter()
        .all(|r| r.outcome == Outcome::Accepted));
}
