//! The issuer wipes the password of a login form, the session id of a login answer, and the
//! token of a create answer, before their memory goes back to the allocator.
//!
//! As in `tests/wipe.rs`, a scanning global allocator looks through every block freed (or left
//! behind by a moving `realloc`) for a marker, and counts the blocks still holding it. Here the
//! marker is the session id a login answers with, or the token value a create answers with. The
//! issuer talks to an in-process service (through `http_service`) whose answers are static bytes,
//! so that every heap copy of a marker is one the issuer made: the buffer it read the answer
//! into, the parsed JSON, the session it keeps, the header it sends the session in. A real HTTP
//! client's own read buffers are that client's business, as in `tests/wipe.rs`.
#![cfg(feature = "issuer")]

use std::convert::Infallible;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::Full;
use secrecy::SecretString;
use veeva_vault_auth::source::{TokenSource, VaultIssuer};

mod scanning;
use scanning::unwiped_blocks_in;

const VAULT: &str = "http://127.0.0.1:9";
const VERSIONS: &str =
    r#"{"responseStatus":"SUCCESS","values":{"v26.2":"http://127.0.0.1:9/api/v26.2"}}"#;
/// The login's password: its spaces and `&` are percent-encoded in the form, so that a form
/// buffer with too little room would move, leaving the text so far behind.
const PASSWORD: &str = "PASSWORDWIPEMARKER & more, with spaces";
/// A login answer long enough that a buffer grown as it is read would have moved.
const LOGIN: &str = concat!(
    r#"{"responseStatus":"SUCCESS","sessionId":"SESSIONIDWIPEMARKER4711-0123456789abcdef","#,
    r#""userId":61234,"vaultId":1001,"vaultIds":[{"id":1001,"name":"Wipe Vault","url":"http://127.0.0.1:9/api"},"#,
    r#"{"id":1002,"name":"Another Vault with a long name to pad the answer out a little more","url":"https://other.veevavault.com/api"},"#,
    r#"{"id":1003,"name":"A third Vault, with a name as long as the second one's, or longer","url":"https://third.veevavault.com/api"}]}"#
);
const CREATED: &str = r#"{"responseStatus":"SUCCESS","data":{"id":"V8T000000002001","token__sys":"veeva-vault-ISSUEDTOKENWIPEMARKER0815-abcdefghijklmnopqrstuvwxyz"}}"#;
const REVOKED: &str =
    r#"{"responseStatus":"SUCCESS","data":[{"responseStatus":"SUCCESS","id":"V8T000000002001"}]}"#;
const OK: &str = r#"{"responseStatus":"SUCCESS"}"#;

/// Vault's answers, in static memory (never freed).
fn answer_for(request: &Request<Full<Bytes>>) -> &'static str {
    let path = request.uri().path();
    match (request.method(), path) {
        (&Method::GET, "/api/") => VERSIONS,
        (&Method::POST, "/api/v26.2/auth") => LOGIN,
        (&Method::POST, "/api/v26.2/objects/users/me/api_access_token__sys") => CREATED,
        (&Method::DELETE, "/api/v26.2/vobjects/api_access_token__sys") => REVOKED,
        _ => OK,
    }
}

/// The sizes of an answer's frames, as a network cuts a body: uneven, and the rest in one last
/// frame. Frames of one size would fill each buffer exactly, and small frames alone would never
/// outgrow a buffer that doubles; these show whether the reader grows its buffer exactly when a
/// frame does not fit.
const FRAMES: [usize; 5] = [10, 16, 16, 16, 16];

/// An answer's body in frames of static memory: the bytes still to send, and how many frames
/// were sent.
struct Chunked(&'static [u8], usize);

impl http_body::Body for Chunked {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        let (text, sent) = (self.0, self.1);
        if text.is_empty() {
            return std::task::Poll::Ready(None);
        }
        let size = FRAMES.get(sent).copied().unwrap_or(text.len());
        let (frame, rest) = text.split_at(size.min(text.len()));
        *self = Chunked(rest, sent + 1);
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from_static(frame)))))
    }
}

fn issuer() -> VaultIssuer {
    let service = tower::service_fn(|request: Request<Full<Bytes>>| {
        let text = answer_for(&request);
        drop(request);
        let body = Chunked(text.as_bytes(), 0);
        std::future::ready(Ok::<_, Infallible>(Response::new(body)))
    });
    VaultIssuer::builder(VAULT)
        .http_service(service)
        .password("svc@example.com", SecretString::from(PASSWORD))
        .build()
        .unwrap()
}

/// Logs in, issues, shuts down and drops the issuer on a thread and runtime of their own.
fn log_in_issue_and_drop() {
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let issuer = issuer();
                let token = issuer.fetch().await.unwrap();
                assert!(token.expose_secret().contains("ISSUEDTOKENWIPEMARKER0815"));
                assert_eq!(issuer.stats().logins, 1);
                drop(token);
                issuer.shutdown().await.unwrap();
                drop(issuer);
            });
            drop(runtime);
        });
    });
}

#[test]
fn the_session_id_of_the_login_answer_is_wiped() {
    let unwiped = unwiped_blocks_in("SESSIONIDWIPEMARKER4711", log_in_issue_and_drop);
    assert_eq!(
        unwiped, 0,
        "blocks freed while still holding the session id"
    );
}

#[test]
fn the_token_of_the_create_answer_is_wiped() {
    let unwiped = unwiped_blocks_in("ISSUEDTOKENWIPEMARKER0815", log_in_issue_and_drop);
    assert_eq!(
        unwiped, 0,
        "blocks freed while still holding the issued token"
    );
}

#[test]
fn the_password_of_the_login_form_is_wiped() {
    let unwiped = unwiped_blocks_in("PASSWORDWIPEMARKER", log_in_issue_and_drop);
    assert_eq!(unwiped, 0, "blocks freed while still holding the password");
}

/// The scanner itself: a block freed with the marker in it is counted.
#[test]
fn the_scanner_sees_an_unwiped_block() {
    let unwiped = unwiped_blocks_in("ISSUERSCANNERSELFCHECK", || {
        drop(std::hint::black_box("ISSUERSCANNERSELFCHECK".to_owned()));
    });
    assert_eq!(unwiped, 1);
}

/// The scanner itself: a block holding the marker grown by `realloc` is counted, whether or not
/// the allocator moved it this time (the wiped block freed after it is not).
#[test]
fn the_scanner_sees_a_secret_grown_in_place() {
    let unwiped = unwiped_blocks_in("ISSUERSCANNERGROWCHECK", || {
        let mut grown = zeroize::Zeroizing::new(Vec::with_capacity(22));
        grown.extend_from_slice(b"ISSUERSCANNERGROWCHECK");
        grown.extend_from_slice(b"!");
        drop(std::hint::black_box(grown));
    });
    assert_eq!(unwiped, 1);
}
