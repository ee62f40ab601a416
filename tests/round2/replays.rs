//! Replays after today's change to the replay copy (http and https kept by name, not copied):
//! over http a replay is the first request byte for byte but for its `Authorization` line (a
//! [`RawServer`] keeps both off the wire); over https (the stand-in behind a real TLS listener,
//! a real rustls client) it repeats the method, path, query, every header in order and the body;
//! a relative URI (origin form, sent on a hyper connection of its own) never gets the token.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Request};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use veeva_vault_auth::testing::VaultStandIn;
use veeva_vault_auth::{BoxError, NotForVault, VaultAuthLayer};

use super::raw::{
    head_and_body, header_values, reject_token, vault_invalid_session, vault_success,
    without_authorization, RawServer,
};
use crate::common::{send, text, tokens_in_order, Chunks};
use crate::issuer_common::tls::{client_config_trusting, TestCa, TlsFront};

const FIRST: &str = "veeva-vault-round2-replay-first";
const SECOND: &str = "veeva-vault-round2-replay-second";

fn two_tokens() -> crate::common::ScriptedSource {
    tokens_in_order(vec![FIRST.to_owned(), SECOND.to_owned()])
}

/// The caller's headers of every request shape: repeated names, a sensitive value, odd case in
/// values, the Vault's own `Host`, and `count` names in all.
fn headers_of(builder: http::request::Builder, count: usize) -> http::request::Builder {
    let mut builder = builder
        .header("accept", "application/json")
        .header("accept", "text/plain;q=0.5")
        .header("x-vaultapi-clientid", "round2-Client")
        .header("cookie", {
            let mut value = HeaderValue::from_static("session=SeCrEt");
            value.set_sensitive(true);
            value
        })
        .header("x-mixed", "Value With Spaces");
    for i in 5..count {
        builder = builder.header(format!("x-pad-{i:02}").as_str(), format!("pad {i}"));
    }
    builder
}

/// Checks that `server` saw the request twice, first with the first token and then with the
/// second, and the same bytes otherwise.
fn assert_replayed_byte_for_byte(server: &RawServer, what: &str) {
    let seen = server.requests();
    assert_eq!(seen.len(), 2, "{what}: one replay");
    assert_eq!(
        header_values(&seen[0], "authorization"),
        [format!("Bearer {FIRST}")],
        "{what}"
    );
    assert_eq!(
        header_values(&seen[1], "authorization"),
        [format!("Bearer {SECOND}")],
        "{what}"
    );
    let (first, again) = (
        without_authorization(&seen[0]),
        without_authorization(&seen[1]),
    );
    assert!(
        first == again,
        "{what}: the replay differs:\n{}\n---\n{}",
        String::from_utf8_lossy(&first),
        String::from_utf8_lossy(&again)
    );
}

/// In-memory bodies (none, a JSON POST), with 5, 9 and 30 header names, to the Vault named as
/// `http://127.0.0.1:port` and as `HTTP://LOCALHOST:port`.
#[tokio::test]
async fn held_an_http_replay_is_the_request_byte_for_byte() {
    for vault_host in ["127.0.0.1", "localhost"] {
        for count in [5, 9, 30] {
            for post in [false, true] {
                let server =
                    RawServer::start("127.0.0.1:0", reject_token(FIRST, vault_invalid_session))
                        .await;
                let port = server.addr().port();
                let layer =
                    VaultAuthLayer::new(&format!("http://{vault_host}:{port}"), two_tokens())
                        .unwrap();
                let client = crate::common::authed(&layer);
                let uri = format!(
                    "HTTP://{}:{port}/api/v26.2/query?q=SELECT+id&limit=5",
                    vault_host.to_ascii_uppercase()
                );
                let builder = headers_of(Request::builder().uri(uri), count);
                let request = if post {
                    builder
                        .method("POST")
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from_static(
                            br#"{"q":"SELECT id FROM documents__v"}"#,
                        )))
                } else {
                    builder.body(Full::new(Bytes::new()))
                }
                .unwrap();
                let response = send(&client, request).await.unwrap();
                assert!(text(response).await.contains("SUCCESS"));
                assert_replayed_byte_for_byte(
                    &server,
                    &format!("{vault_host}, {count} names, post {post}"),
                );
            }
        }
    }
}

type Boxed = BoxBody<Bytes, BoxError>;

/// A streamed body of unknown length (sent chunked), recorded as it goes and replayed: the head
/// byte for byte, the body's bytes the same. The chunk boundaries are not (40 chunks of 309 bytes
/// first, the recording as one chunk of 12,360 in the replay): the recording is one buffer by
/// design, and chunking carries no meaning in HTTP.
#[tokio::test]
async fn held_an_http_replay_of_a_streamed_body_is_byte_for_byte() {
    let server = RawServer::start("127.0.0.1:0", reject_token(FIRST, vault_invalid_session)).await;
    let url = format!("http://{}", server.addr());
    let layer = VaultAuthLayer::new(&url, two_tokens()).unwrap();
    let client: Client<HttpConnector, Boxed> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let client = tower::Layer::layer(&layer, client);
    let chunks = (0..40)
        .map(|i| Bytes::from(format!("chunk {i:02} {}", "x".repeat(300))))
        .collect();
    let body = Chunks(chunks).map_err(|never| match never {}).boxed();
    let request = headers_of(
        Request::post(format!("{url}/api/v26.2/query")).header("content-type", "text/plain"),
        12,
    )
    .body(body)
    .unwrap();
    let response = send(&client, request).await.unwrap();
    assert!(text(response).await.contains("SUCCESS"));
    let seen = server.requests();
    assert_eq!(seen.len(), 2, "one replay");
    assert_eq!(
        header_values(&seen[1], "authorization"),
        [format!("Bearer {SECOND}")]
    );
    let (head, body) = head_and_body(&without_authorization(&seen[0]));
    let (head_again, body_again) = head_and_body(&without_authorization(&seen[1]));
    assert_eq!(
        String::from_utf8_lossy(&head),
        String::from_utf8_lossy(&head_again),
        "the head, byte for byte"
    );
    assert_eq!(header_values(&seen[1], "transfer-encoding"), ["chunked"]);
    assert!(body == body_again, "the body's bytes");
    assert_eq!(body.len(), 40 * 309);
}

/// Over https: the layer's Vault is `https://127.0.0.1:port`, a TLS listener in front of the
/// stand-in; the first token was revoked, so the first attempt is rejected and replayed.
#[tokio::test]
async fn held_an_https_replay_repeats_the_request() {
    let vault = VaultStandIn::start().await.unwrap();
    let ca = TestCa::new("round2 replay");
    let front = TlsFront::start(&vault, &ca).await;
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(client_config_trusting(&ca))
        .https_only()
        .enable_http1()
        .build();
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(https);
    for post in [false, true] {
        let revoked = vault.issue_token();
        assert!(vault.revoke(&revoked));
        let fresh = vault.issue_token();
        let layer = VaultAuthLayer::new(
            &front.url(),
            tokens_in_order(vec![revoked.clone(), fresh.clone()]),
        )
        .unwrap();
        let client = tower::Layer::layer(&layer, client.clone());
        vault.clear_requests();
        let builder = headers_of(Request::builder(), 14);
        let request = if post {
            builder
                .method("POST")
                .uri(format!("{}/api/v26.2/query", front.url()))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Full::new(Bytes::from_static(
                    b"q=SELECT+id+FROM+documents__v",
                )))
        } else {
            builder
                .uri(format!(
                    "HTTPS://{}/api/v26.2/objects/users/me?x=1&y=%20",
                    front.url().trim_start_matches("https://")
                ))
                .body(Full::new(Bytes::new()))
        }
        .unwrap();
        let response = send(&client, request).await.unwrap();
        assert_eq!(
            response.headers()["x-vaultapi-status"],
            "SUCCESS",
            "post {post}"
        );
        let seen = vault.requests();
        assert_eq!(seen.len(), 2, "post {post}: one replay");
        let credential = |n: usize| {
            seen[n]
                .headers
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_owned())
        };
        assert_eq!(credential(0), Some(format!("Bearer {revoked}")));
        assert_eq!(credential(1), Some(format!("Bearer {fresh}")));
        let rest = |n: usize| {
            seen[n]
                .headers
                .iter()
                .filter(|(name, _)| *name != "authorization")
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(rest(0), rest(1), "post {post}: headers, in order");
        assert_eq!(seen[0].method, seen[1].method);
        assert_eq!(seen[0].path, seen[1].path);
        assert_eq!(seen[0].query, seen[1].query);
        assert_eq!(seen[0].body, seen[1].body);
    }
}

/// A hyper connection of its own, sending URIs as they are (a relative one in origin form).
async fn connection(
    addr: std::net::SocketAddr,
) -> impl tower::Service<
    Request<Full<Bytes>>,
    Response = http::Response<hyper::body::Incoming>,
    Error = BoxError,
    Future = impl Send,
> + Clone
       + Send {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let sender = Arc::new(tokio::sync::Mutex::new(sender));
    tower::service_fn(move |request: Request<Full<Bytes>>| {
        let sender = Arc::clone(&sender);
        async move {
            let mut sender = sender.lock().await;
            sender.ready().await?;
            Ok::<_, BoxError>(sender.send_request(request).await?)
        }
    })
}

/// `/path` only, with or without a `Host` naming the Vault: the layer cannot tell where it goes,
/// so it is refused, or let through without the token when other hosts pass through.
#[tokio::test]
async fn held_a_relative_uri_never_gets_the_token() {
    let server = RawServer::start("127.0.0.1:0", |_, _| vault_success()).await;
    let url = format!("http://{}", server.addr());
    for pass_through in [false, true] {
        let layer = VaultAuthLayer::builder(&url, two_tokens())
            .pass_through_other_hosts(pass_through)
            .build()
            .unwrap();
        let service = tower::Layer::layer(&layer, connection(server.addr()).await);
        for host in [None, Some(server.addr().to_string())] {
            let mut builder = Request::get("/api/v26.2/objects/users/me?x=1");
            if let Some(host) = &host {
                builder = builder.header("host", host.as_str());
            }
            let before = server.requests().len();
            let result = send(&service, builder.body(Full::new(Bytes::new())).unwrap()).await;
            let seen = server.requests();
            if pass_through {
                let response = result.unwrap();
                assert_eq!(response.status(), 200);
                assert_eq!(seen.len(), before + 1);
                assert!(
                    header_values(&seen[before], "authorization").is_empty(),
                    "Host {host:?}: the token went out"
                );
                assert!(
                    seen[before].starts_with(b"GET /api/v26.2/objects/users/me?x=1 HTTP/1.1\r\n")
                );
            } else {
                let err = result.unwrap_err();
                assert!(err.downcast_ref::<NotForVault>().is_some(), "{err}");
                assert_eq!(seen.len(), before, "refused, yet sent");
            }
        }
    }
}
