//! A hostile Vault for the inspection tests: a hyper server on 127.0.0.1 that answers each
//! request with the next answer of a script (the last one repeats), with any headers (repeated
//! ones too) and a body sent step by step: data, a pause on Tokio's clock, or a stall.
#![allow(dead_code, unreachable_pub)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io::Write;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Response};
use http_body::Frame;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::time::Sleep;

/// One piece of a scripted body.
#[derive(Clone, Debug)]
pub enum Step {
    Data(Bytes),
    /// A pause on Tokio's clock (paused in the tests: moved by `tokio::time::advance`).
    Wait(Duration),
    /// No more frames, ever: the body neither goes on nor ends.
    Stall,
}

/// A scripted answer: headers (appended, so a name may repeat) and body steps.
#[derive(Clone, Debug, Default)]
pub struct Answer {
    pub headers: Vec<(&'static str, String)>,
    pub steps: Vec<Step>,
}

impl Answer {
    pub fn new(headers: &[(&'static str, &str)], body: impl Into<Bytes>) -> Self {
        Self {
            headers: headers.iter().map(|(k, v)| (*k, v.to_string())).collect(),
            steps: vec![Step::Data(body.into())],
        }
    }

    pub fn steps(mut self, steps: Vec<Step>) -> Self {
        self.steps = steps;
        self
    }

    /// The body as sent, all its data steps together.
    pub fn body(&self) -> Bytes {
        let mut all = Vec::new();
        for step in &self.steps {
            if let Step::Data(data) = step {
                all.extend_from_slice(data);
            }
        }
        all.into()
    }
}

/// `first`, then `rest` one byte every `every`.
pub fn trickle(first: &[u8], rest: &[u8], every: Duration) -> Vec<Step> {
    let mut steps = vec![Step::Data(Bytes::copy_from_slice(first))];
    for byte in rest {
        steps.push(Step::Wait(every));
        steps.push(Step::Data(Bytes::copy_from_slice(&[*byte])));
    }
    steps
}

struct ScriptBody {
    steps: VecDeque<Step>,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl http_body::Body for ScriptBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        loop {
            if let Some(sleep) = self.sleep.as_mut() {
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.sleep = None;
            }
            match self.steps.pop_front() {
                None => return Poll::Ready(None),
                Some(Step::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                Some(Step::Wait(pause)) => self.sleep = Some(Box::pin(tokio::time::sleep(pause))),
                Some(Step::Stall) => {
                    self.steps.push_front(Step::Stall);
                    return Poll::Pending;
                }
            }
        }
    }
}

use std::future::Future;

/// The server, and what it was sent.
#[derive(Clone)]
pub struct Hostile {
    pub url: String,
    answers: Arc<Mutex<VecDeque<Answer>>>,
    received: Arc<Mutex<Vec<HeaderMap>>>,
}

impl Hostile {
    /// Serves on the current runtime (and its clock).
    pub async fn start(answers: Vec<Answer>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = Self::with(&listener, answers);
        tokio::spawn(server.clone().serve(listener));
        server
    }

    /// Serves from a thread of its own, with its own runtime: what the server allocates is not
    /// counted with the test's thread.
    pub fn start_on_thread(answers: Vec<Answer>) -> Self {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let server = Self::with(&listener, answers);
                tx.send(server.clone()).unwrap();
                server.serve(listener).await;
            });
        });
        rx.recv().unwrap()
    }

    fn with(listener: &tokio::net::TcpListener, answers: Vec<Answer>) -> Self {
        Self {
            url: format!("http://{}", listener.local_addr().unwrap()),
            answers: Arc::new(Mutex::new(answers.into())),
            received: Arc::default(),
        }
    }

    async fn serve(self, listener: tokio::net::TcpListener) {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let server = self.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    server
                        .received
                        .lock()
                        .unwrap()
                        .push(request.headers().clone());
                    let answer = {
                        let mut answers = server.answers.lock().unwrap();
                        if answers.len() > 1 {
                            answers.pop_front().unwrap()
                        } else {
                            answers.front().cloned().unwrap_or_default()
                        }
                    };
                    let mut response = Response::new(ScriptBody {
                        steps: answer.steps.into(),
                        sleep: None,
                    });
                    for (name, value) in answer.headers {
                        response.headers_mut().append(name, value.parse().unwrap());
                    }
                    async move { Ok::<_, Infallible>(response) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }

    pub fn api_url(&self) -> String {
        format!("{}/api/v26.2/objects/documents", self.url)
    }

    /// The `Authorization` of each request received, in order.
    pub fn authorizations(&self) -> Vec<String> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .map(|h| {
                h.get("authorization")
                    .map(|v| v.to_str().unwrap().to_owned())
                    .unwrap_or_default()
            })
            .collect()
    }

    pub fn received(&self) -> Vec<HeaderMap> {
        self.received.lock().unwrap().clone()
    }
}

/// A test token, made at run time.
pub fn token(n: usize) -> String {
    format!("veeva-vault-hostile{n}")
}

pub fn bearer(n: usize) -> String {
    format!("Bearer {}", token(n))
}

pub const JSON: (&str, &str) = ("content-type", "application/json;charset=UTF-8");
pub const XML: (&str, &str) = ("content-type", "application/xml;charset=UTF-8");
pub const FAILURE: (&str, &str) = ("x-vaultapi-status", "FAILURE");
pub const SUCCESS: (&str, &str) = ("x-vaultapi-status", "SUCCESS");

pub const OK_JSON: &str = r#"{"responseStatus":"SUCCESS","data":{"id":"1"}}"#;

pub const XML_REJECTION: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<VaultResponse>
    <responseStatus>FAILURE</responseStatus>
    <errors>
        <error>
            <type>INVALID_SESSION_ID</type>
            <message>Invalid or expired session ID.</message>
        </error>
    </errors>
</VaultResponse>"#;

pub const XML_OK: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<VaultResponse><responseStatus>SUCCESS</responseStatus><data><id>1</id></data></VaultResponse>"#;

/// `data` in a content coding: `gzip`, `deflate` (zlib-wrapped) or `br`.
pub fn encode(coding: &str, data: &[u8]) -> Bytes {
    let level = flate2::Compression::default();
    let bytes = match coding {
        "gzip" => {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), level);
            encoder.write_all(data).unwrap();
            encoder.finish().unwrap()
        }
        "deflate" => {
            let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), level);
            encoder.write_all(data).unwrap();
            encoder.finish().unwrap()
        }
        "br" => {
            let mut out = Vec::new();
            {
                let mut writer = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
                writer.write_all(data).unwrap();
            }
            out
        }
        other => panic!("no coding {other}"),
    };
    bytes.into()
}

/// A flag raised when a response head passes a point of a stack.
#[derive(Clone, Default)]
pub struct Seen(Arc<AtomicBool>);

impl Seen {
    pub fn raise(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_raised(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}
