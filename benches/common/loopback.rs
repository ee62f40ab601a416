//! A small hyper server on `127.0.0.1` that answers like Vault, for the benches that send real
//! requests through a real client: a request whose `Authorization` the judge accepts gets
//! `X-VaultAPI-Status: SUCCESS` and a small JSON record; any other gets what Vault answers for a
//! revoked or unknown token (HTTP 200, `X-VaultAPI-Status: FAILURE`, `INVALID_SESSION_ID`).
//!
//! The server reads every request body to its end before it answers, and counts what it judged,
//! so that a bench can check that each stack did what it is measured for.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// The body of a successful answer: the size of a small Vault record.
pub const SUCCESS_BODY: &str = r#"{"responseStatus":"SUCCESS","users":[{"user":{"id":61603,"user_name__v":"bench@example.com","active__v":true}}]}"#;
/// The body of Vault's answer to a revoked or unknown token.
pub const INVALID_SESSION_BODY: &str = r#"{"responseStatus":"FAILURE","errors":[{"type":"INVALID_SESSION_ID","message":"Invalid or expired session ID."}]}"#;

/// Decides from a request's `Authorization` (if any) whether Vault accepts it.
pub type Judge = dyn Fn(Option<&HeaderValue>) -> bool + Send + Sync;

/// What the server answered, counted as each request's head arrived.
#[derive(Debug, Default)]
pub struct Answered {
    /// Requests answered with `SUCCESS`.
    pub success: AtomicU64,
    /// Requests answered with `INVALID_SESSION_ID`.
    pub rejected: AtomicU64,
}

impl Answered {
    /// `(success, rejected)` now.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.success.load(Ordering::Relaxed),
            self.rejected.load(Ordering::Relaxed),
        )
    }
}

/// A running loopback server: its base URL and its counts.
pub struct Loopback {
    /// `http://127.0.0.1:<port>`, the Vault the layers under test are configured for.
    pub base: String,
    /// What it answered so far.
    pub answered: Arc<Answered>,
}

impl Loopback {
    /// Binds a port on `127.0.0.1` and serves every connection on the current Tokio runtime
    /// (one task per connection), judging each request with `judge`.
    pub async fn start(judge: Arc<Judge>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let addr = listener.local_addr().expect("an address");
        let answered = Arc::new(Answered::default());
        tokio::spawn(serve(listener, judge, Arc::clone(&answered)));
        Self {
            base: format!("http://{addr}"),
            answered,
        }
    }

    /// The URL of `path` (which starts with `/`) under [`base`](Self::base).
    pub fn url(&self, path: &str) -> http::Uri {
        format!("{}{path}", self.base).parse().expect("a URI")
    }
}

/// A judge that accepts exactly `Authorization: <expected>`.
pub fn accepts_only(expected: &'static str) -> Arc<Judge> {
    Arc::new(move |value: Option<&HeaderValue>| value.is_some_and(|v| v == expected))
}

/// An answer as Vault writes one: a JSON body with its `X-VaultAPI-Status`.
pub fn vault_answer(status: &'static str, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    headers.insert("x-vaultapi-status", HeaderValue::from_static(status));
    response
}

async fn serve(listener: TcpListener, judge: Arc<Judge>, answered: Arc<Answered>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let judge = Arc::clone(&judge);
        let answered = Arc::clone(&answered);
        let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
            let accepted = judge(request.headers().get(AUTHORIZATION));
            let counter = if accepted {
                &answered.success
            } else {
                &answered.rejected
            };
            counter.fetch_add(1, Ordering::Relaxed);
            async move {
                let sent = request.into_body().collect().await;
                std::hint::black_box(sent.is_ok());
                Ok::<_, Infallible>(if accepted {
                    vault_answer("SUCCESS", SUCCESS_BODY)
                } else {
                    vault_answer("FAILURE", INVALID_SESSION_BODY)
                })
            }
        });
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// A hyper-util legacy client (HTTP/1, kept-alive pool, `TCP_NODELAY`) for bodies of type `B`.
pub fn client<B>() -> Client<HttpConnector, B>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new()).build(connector)
}
