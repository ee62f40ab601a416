//! The Vault stand-in's request parsing: a session of arbitrary requests (method, path, query,
//! headers, credential, a body in chunks, maybe broken or oversized) served one after another by
//! one stand-in, never a panic or a hang. Every answer is checked: a redirect has a 3xx status
//! and a `Location`; anything else is a JSON object whose `responseStatus` agrees with
//! `X-VaultAPI-Status`. The `Debug` of what the stand-in recorded never shows a token it issued,
//! nor the password of a login it accepted.
//!
//! Words the stand-in knows (paths, field names, VQL) and the values it hands out (tokens,
//! session ids, record ids, taken from its answers) are pieces the fuzzer can put anywhere.
#![no_main]

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use arbitrary::Arbitrary;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri};
use http_body::{Body, Frame};
use libfuzzer_sys::fuzz_target;
use veeva_vault_auth::__fuzz::StandIn;

/// At most this many requests per input, and chunks per body: each input's cost stays small.
const MAX_REQUESTS: usize = 8;
const MAX_CHUNKS: usize = 16;
/// A body may be padded with up to 20 blocks of this size, past the stand-in's 1 MiB limit.
const PAD_BLOCK: usize = 64 * 1024;

#[derive(Arbitrary, Debug)]
struct Session {
    unauthorized_mode: bool,
    picklists_as_arrays: bool,
    admin: bool,
    /// A well-formed login by password before the fuzzed requests, so that they can use its
    /// session id: the session's paths (VQL, creating and revoking tokens, ending the session)
    /// are then a piece or two away instead of a whole login.
    log_in_first: bool,
    requests: Vec<Req>,
}

/// The login a session may start with: `POST /api/v26.2/auth`, the user and password as a form.
fn login() -> Request<Chunks> {
    let form = format!("username={}&password={}", StandIn::USER, StandIn::PASSWORD);
    let mut request = Request::new(Chunks {
        frames: VecDeque::from([Frame::data(Bytes::from(form))]),
        broken: false,
    });
    *request.method_mut() = Method::POST;
    *request.uri_mut() = Uri::from_static("/api/v26.2/auth");
    request.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    request
}

#[derive(Arbitrary, Debug)]
struct Req {
    method: Verb,
    /// A route under `/api/v26.2` that the path's pieces follow; without one, the pieces alone
    /// make the path. (A known route is then one choice away, not two pieces in a row.)
    route: Option<Word>,
    path: Vec<Piece>,
    query: Option<Vec<Piece>>,
    credential: Credential,
    headers: Vec<(Name, Vec<Piece>)>,
    body: Vec<Vec<Piece>>,
    /// Blocks of zeros after the body (`% 21`).
    padding: u8,
    /// A trailers frame at the end.
    trailers: bool,
    /// The body fails after its chunks, as a connection reset would.
    broken: bool,
}

#[derive(Arbitrary, Debug)]
enum Verb {
    Get,
    Post,
    Delete,
    Put,
    Head,
    Other(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Credential {
    None,
    /// `Bearer <value>`, the scheme in the case given.
    Bearer(Value, bool),
    /// The value alone.
    Raw(Value),
    /// Any bytes, pieces included.
    Any(Vec<Piece>),
}

#[derive(Arbitrary, Debug)]
enum Value {
    Token(u8),
    Session(u8),
    Idp,
}

#[derive(Arbitrary, Debug)]
enum Name {
    ContentType(ContentType),
    ReferenceId,
    Authorization,
    Other(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum ContentType {
    Form,
    Json,
    Csv,
    Xml,
}

#[derive(Arbitrary, Debug)]
enum Piece {
    Bytes(Vec<u8>),
    Text(String),
    Word(Word),
    Token(u8),
    /// A token with its prefix percent-encoded.
    EncodedToken(u8),
    Session(u8),
    RecordId(u8),
    User,
    Password,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Word {
    Api,
    ApiVersion,
    Auth,
    OAuth,
    CreateToken,
    Sandbox,
    Revoke,
    Metadata,
    Me,
    Query,
    Documents,
    KeepAlive,
    EndSession,
    Redirected,
    MethodDelete,
    Q,
    Select,
    Where,
    And,
    Like,
    Equal,
    NotEqual,
    Quote,
    Name,
    Expiry,
    Date,
    Username,
    PasswordField,
    VaultDns,
    JsonIds,
    CsvIds,
    JsonLogin,
}

impl Word {
    fn text(self) -> &'static str {
        match self {
            Word::Api => "/api/",
            Word::ApiVersion => "/api/v26.2",
            Word::Auth => "/auth",
            Word::OAuth => "/auth/oauth/session/0oafuzz",
            Word::CreateToken => "/objects/users/me/api_access_token__sys",
            Word::Sandbox => "/objects/sandbox/uat/users/me/api_access_token__sys",
            Word::Revoke => "/vobjects/api_access_token__sys",
            Word::Metadata => "/vobjects/api_access_token__sys/",
            Word::Me => "/objects/users/me",
            Word::Query => "/query",
            Word::Documents => "/objects/documents",
            Word::KeepAlive => "/keep-alive",
            Word::EndSession => "/session",
            Word::Redirected => "/redirected",
            Word::MethodDelete => "_method=DELETE",
            Word::Q => "q=",
            Word::Select => "SELECT id, name__v, status__v, user__sys, expiry_date__sys, last_used_date__sys FROM api_access_token__sys",
            Word::Where => " WHERE ",
            Word::And => " AND ",
            Word::Like => " LIKE ",
            Word::Equal => " = ",
            Word::NotEqual => " != ",
            Word::Quote => "'",
            Word::Name => "name__v=",
            Word::Expiry => "&expiry_date__v=",
            Word::Date => "2031-02-03T04:05:06Z",
            Word::Username => "username=",
            Word::PasswordField => "&password=",
            Word::VaultDns => "&vaultDNS=",
            Word::JsonIds => "[{\"id\":\"",
            Word::CsvIds => "id\n",
            Word::JsonLogin => "{\"username\":\"fuzz@example.com\",\"password\":\"",
        }
    }
}

/// What the stand-in handed out so far, for the pieces to name.
#[derive(Default)]
struct Known {
    tokens: Vec<String>,
    sessions: Vec<String>,
    ids: Vec<String>,
}

fn pick(list: &[String], index: u8) -> &str {
    if list.is_empty() {
        return "";
    }
    &list[usize::from(index) % list.len()]
}

impl Known {
    fn bytes(&self, pieces: &[Piece]) -> Vec<u8> {
        let mut out = Vec::new();
        for piece in pieces {
            match piece {
                Piece::Bytes(bytes) => out.extend_from_slice(bytes),
                Piece::Text(text) => out.extend_from_slice(text.as_bytes()),
                Piece::Word(word) => out.extend_from_slice(word.text().as_bytes()),
                Piece::Token(i) => out.extend_from_slice(pick(&self.tokens, *i).as_bytes()),
                Piece::EncodedToken(i) => {
                    let token = pick(&self.tokens, *i);
                    let rest = token.strip_prefix("veeva-vault-").unwrap_or(token);
                    out.extend_from_slice(b"veeva%2Dvault%2d");
                    out.extend_from_slice(rest.as_bytes());
                }
                Piece::Session(i) => out.extend_from_slice(pick(&self.sessions, *i).as_bytes()),
                Piece::RecordId(i) => out.extend_from_slice(pick(&self.ids, *i).as_bytes()),
                Piece::User => out.extend_from_slice(StandIn::USER.as_bytes()),
                Piece::Password => out.extend_from_slice(StandIn::PASSWORD.as_bytes()),
            }
        }
        out
    }

    fn value(&self, value: &Value) -> String {
        match value {
            Value::Token(i) => pick(&self.tokens, *i).to_owned(),
            Value::Session(i) => pick(&self.sessions, *i).to_owned(),
            Value::Idp => StandIn::OAUTH.1.to_owned(),
        }
    }

    /// Takes the tokens, session ids and record ids out of an answer.
    fn learn(&mut self, json: &serde_json::Value) {
        match json {
            serde_json::Value::Object(members) => {
                for (key, member) in members {
                    if let serde_json::Value::String(text) = member {
                        match key.as_str() {
                            "token__sys" => self.tokens.push(text.clone()),
                            "sessionId" => self.sessions.push(text.clone()),
                            "id" => self.ids.push(text.clone()),
                            _ => {}
                        }
                    }
                    self.learn(member);
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|item| self.learn(item)),
            _ => {}
        }
    }
}

/// A body of chunks, ready at once, that may end in trailers or an error.
struct Chunks {
    frames: VecDeque<Frame<Bytes>>,
    broken: bool,
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = &'static str;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, &'static str>>> {
        if let Some(frame) = self.frames.pop_front() {
            return Poll::Ready(Some(Ok(frame)));
        }
        if std::mem::take(&mut self.broken) {
            return Poll::Ready(Some(Err("connection reset")));
        }
        Poll::Ready(None)
    }
}

fn method(verb: &Verb) -> Option<Method> {
    Some(match verb {
        Verb::Get => Method::GET,
        Verb::Post => Method::POST,
        Verb::Delete => Method::DELETE,
        Verb::Put => Method::PUT,
        Verb::Head => Method::HEAD,
        Verb::Other(bytes) => Method::from_bytes(bytes).ok()?,
    })
}

/// The request as hyper would hand it over, or `None` where hyper would refuse it.
fn build(req: &Req, known: &Known, pad: &Bytes) -> Option<Request<Chunks>> {
    let mut target = match req.route {
        Some(route) => format!("{}{}", Word::ApiVersion.text(), route.text()).into_bytes(),
        None => Vec::new(),
    };
    target.extend(known.bytes(&req.path));
    if !target.starts_with(b"/") {
        target.insert(0, b'/');
    }
    if let Some(query) = &req.query {
        target.push(b'?');
        target.extend(known.bytes(query));
    }
    let uri = Uri::try_from(target).ok()?;
    let mut headers = HeaderMap::new();
    let credential = match &req.credential {
        Credential::None => None,
        Credential::Bearer(value, upper) => {
            let scheme = if *upper { "Bearer " } else { "bearer " };
            Some(format!("{scheme}{}", known.value(value)).into_bytes())
        }
        Credential::Raw(value) => Some(known.value(value).into_bytes()),
        Credential::Any(pieces) => Some(known.bytes(pieces)),
    };
    if let Some(credential) = credential {
        headers.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_bytes(&credential).ok()?,
        );
    }
    for (name, pieces) in &req.headers {
        let (name, value) = match name {
            Name::ContentType(kind) => {
                let text = match kind {
                    ContentType::Form => "application/x-www-form-urlencoded",
                    ContentType::Json => "application/json",
                    ContentType::Csv => "text/csv",
                    ContentType::Xml => "application/xml",
                };
                let mut value = text.as_bytes().to_vec();
                // Parameters, or anything, after the type.
                value.extend(known.bytes(pieces));
                (http::header::CONTENT_TYPE, value)
            }
            Name::ReferenceId => (
                HeaderName::from_static("x-vaultapi-referenceid"),
                known.bytes(pieces),
            ),
            Name::Authorization => (http::header::AUTHORIZATION, known.bytes(pieces)),
            Name::Other(bytes) => (HeaderName::from_bytes(bytes).ok()?, known.bytes(pieces)),
        };
        let Ok(value) = HeaderValue::from_bytes(&value) else {
            continue;
        };
        headers.append(name, value);
    }
    let mut frames: VecDeque<Frame<Bytes>> = req
        .body
        .iter()
        .take(MAX_CHUNKS)
        .map(|chunk| Frame::data(Bytes::from(known.bytes(chunk))))
        .collect();
    for _ in 0..req.padding % 21 {
        frames.push_back(Frame::data(pad.clone()));
    }
    if req.trailers {
        let mut trailers = HeaderMap::new();
        trailers.insert("x-trailer", HeaderValue::from_static("1"));
        frames.push_back(Frame::trailers(trailers));
    }
    let mut request = Request::new(Chunks {
        frames,
        broken: req.broken,
    });
    *request.method_mut() = method(&req.method)?;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    Some(request)
}

/// Checks one answer and learns what it hands out; returns whether it opened a session.
fn check(response: &http::Response<http_body_util::Full<Bytes>>, known: &mut Known) -> bool {
    let status = response.status();
    let headers = response.headers();
    let mut body = response.body().clone();
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let bytes = match Pin::new(&mut body).poll_frame(&mut cx) {
        Poll::Ready(Some(Ok(frame))) => frame.into_data().unwrap_or_default(),
        Poll::Ready(None) => Bytes::new(),
        other => panic!("a stand-in answer's body is not ready: {other:?}"),
    };
    if let Some(location) = headers.get(http::header::LOCATION) {
        assert!(status.is_redirection(), "{status} with a Location");
        assert_eq!(location, "/api/v26.2/objects/documents");
        return false;
    }
    assert!(!status.is_redirection(), "{status} without a Location");
    assert_eq!(
        headers[http::header::CONTENT_TYPE],
        "application/json;charset=UTF-8"
    );
    let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "the answer is not JSON ({e}): {:?}",
            String::from_utf8_lossy(&bytes)
        )
    });
    let said = json["responseStatus"].as_str().expect("a responseStatus");
    assert!(said == "SUCCESS" || said == "FAILURE", "{said}");
    assert_eq!(headers["x-vaultapi-status"], said);
    known.learn(&json);
    said == "SUCCESS" && json.get("sessionId").is_some()
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

fuzz_target!(|session: Session| {
    let stand_in = StandIn::new(
        session.unauthorized_mode,
        session.picklists_as_arrays,
        session.admin,
    );
    let mut known = Known::default();
    known.tokens.push(stand_in.issue_token());
    let pad = Bytes::from(vec![b'0'; PAD_BLOCK]);
    // Whether each request served opened a session.
    let mut sessions = Vec::new();
    if session.log_in_first {
        let response = stand_in
            .serve(login())
            .expect("an in-memory body is read at once");
        let opened = check(&response, &mut known);
        assert!(
            opened || session.unauthorized_mode,
            "the stand-in refused its own user's login"
        );
        sessions.push(opened);
    }
    for req in session.requests.iter().take(MAX_REQUESTS) {
        let Some(request) = build(req, &known, &pad) else {
            continue;
        };
        let response = stand_in
            .serve(request)
            .expect("an in-memory body is read at once");
        sessions.push(check(&response, &mut known));
    }
    let recorded = stand_in.recorded();
    assert_eq!(recorded.len(), sessions.len());
    for (request, opened) in recorded.iter().zip(sessions) {
        let shown = format!("{request:?}");
        for token in &known.tokens {
            assert!(!shown.contains(token.as_str()), "a token in {shown}");
        }
        // A login by password that was accepted had a `password` field holding the password:
        // written plainly (no escapes in the body), it is masked, so fewer copies show than
        // were sent.
        let raw = String::from_utf8_lossy(&request.body);
        let login = opened && !request.path.contains("oauth");
        if login && !raw.contains(['\\', '%', '+']) && raw.contains(StandIn::PASSWORD) {
            let body_only = veeva_vault_auth::testing::RecordedRequest {
                path: String::new(),
                query: None,
                headers: HeaderMap::new(),
                ..request.clone()
            };
            let shown = format!("{body_only:?}");
            assert!(
                count(&shown, StandIn::PASSWORD) < count(&raw, StandIn::PASSWORD),
                "the password in {shown}"
            );
        }
    }
});
