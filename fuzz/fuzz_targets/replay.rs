//! The replay copy and rebuild: any request in (method, version, URI, headers with sensitive and
//! non-UTF-8 values, extensions, a body of each kind the copy knows) and the same request out.
#![no_main]

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use arbitrary::Arbitrary;
use bytes::{Buf, Bytes};
use http::{HeaderName, HeaderValue, Method, Request, Uri, Version};
use http_body::{Body, Frame};
use http_body_util::combinators::{BoxBody, UnsyncBoxBody};
use http_body_util::{BodyExt, Empty, Full};
use libfuzzer_sys::fuzz_target;
use veeva_vault_auth::__fuzz::ReplayCopy;

#[derive(Arbitrary, Debug)]
struct Spec {
    method: MethodSpec,
    version: u8,
    uri: Vec<u8>,
    headers: Vec<(Vec<u8>, Vec<u8>, bool)>,
    extension: Option<(u32, String)>,
    body: BodySpec,
    limit: u16,
}

#[derive(Arbitrary, Debug)]
enum MethodSpec {
    Known(u8),
    Other(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum BodySpec {
    Full(Vec<u8>),
    Text(String),
    Empty,
    Static(u8),
    StaticEmpty,
    /// A boxed body in chunks; it may say its length or not.
    Boxed(Vec<Vec<u8>>, bool),
    UnsyncBoxed(Vec<Vec<u8>>, bool),
}

/// An extension whose value must come back equal.
#[derive(Clone, Debug, PartialEq)]
struct Tag(u32, String);

const STATICS: [&[u8]; 3] = [b"", b"x", b"q=select id from documents"];

/// A body in chunks, ready at once; it knows its length when `exact`.
struct Chunks {
    chunks: Vec<Bytes>,
    exact: bool,
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.chunks.is_empty() {
            return Poll::Ready(None);
        }
        Poll::Ready(Some(Ok(Frame::data(self.chunks.remove(0)))))
    }
    fn size_hint(&self) -> http_body::SizeHint {
        let len: usize = self.chunks.iter().map(Bytes::len).sum();
        if self.exact {
            http_body::SizeHint::with_exact(len as u64)
        } else {
            http_body::SizeHint::default()
        }
    }
}

/// Every byte of a body whose frames are all ready (the bodies made here).
fn drain<B: Body + Unpin>(mut body: B) -> Vec<u8>
where
    B::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    let mut out = Vec::new();
    loop {
        match Pin::new(&mut body).poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Ok(mut data) = frame.into_data() {
                    while data.has_remaining() {
                        let chunk = data.chunk();
                        out.extend_from_slice(chunk);
                        let n = chunk.len();
                        data.advance(n);
                    }
                }
            }
            Poll::Ready(Some(Err(e))) => panic!("body failed: {e:?}"),
            Poll::Ready(None) => return out,
            Poll::Pending => panic!("a ready body was pending"),
        }
    }
}

fn head(spec: &Spec) -> Option<Request<()>> {
    let method = match &spec.method {
        MethodSpec::Known(n) => [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
            Method::HEAD,
            Method::OPTIONS,
            Method::TRACE,
            Method::CONNECT,
        ][usize::from(*n) % 9]
            .clone(),
        MethodSpec::Other(bytes) => Method::from_bytes(bytes).ok()?,
    };
    let version = [
        Version::HTTP_09,
        Version::HTTP_10,
        Version::HTTP_11,
        Version::HTTP_2,
        Version::HTTP_3,
    ][usize::from(spec.version) % 5];
    let uri = Uri::from_maybe_shared(Bytes::copy_from_slice(&spec.uri)).ok()?;
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.version_mut() = version;
    *request.uri_mut() = uri;
    for (name, value, sensitive) in &spec.headers {
        let (Ok(name), Ok(mut value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        else {
            continue;
        };
        value.set_sensitive(*sensitive);
        request.headers_mut().append(name, value);
    }
    if let Some((n, text)) = &spec.extension {
        request.extensions_mut().insert(Tag(*n, text.clone()));
    }
    Some(request)
}

fn same_head<A, B>(a: &Request<A>, b: &Request<B>) {
    assert_eq!(a.method(), b.method());
    assert_eq!(a.version(), b.version());
    assert_eq!(a.uri(), b.uri());
    assert_eq!(a.uri().to_string(), b.uri().to_string());
    let left: Vec<_> = a.headers().iter().collect();
    let right: Vec<_> = b.headers().iter().collect();
    assert_eq!(left, right, "headers, in order");
    for ((_, x), (_, y)) in left.iter().zip(&right) {
        assert_eq!(x.is_sensitive(), y.is_sensitive(), "sensitive flag");
    }
    assert_eq!(a.extensions().get::<Tag>(), b.extensions().get::<Tag>());
}

/// How the copy must behave for a body.
enum Kind {
    /// In memory: copied when it fits the limit, and always rebuilt.
    Memory,
    /// Boxed, saying its length exactly (or not): recorded unless it says it is over the limit,
    /// and rebuilt when what was sent fit.
    Boxed { exact: bool },
}

/// Copies the request `spec` describes, with `body`, sends the body (recording a boxed one),
/// rebuilds it and checks both the request sent and the rebuilt one against a fresh build.
fn round_trip<B>(spec: &Spec, body: B, bytes: &[u8], kind: Kind)
where
    B: Body + Unpin + 'static,
    B::Error: std::fmt::Debug + 'static,
{
    let limit = u64::from(spec.limit);
    let len = bytes.len() as u64;
    let Some(head_only) = head(spec) else { return };
    let mut request = head_only.map(|()| body);
    let copy = ReplayCopy::of(&mut request, limit);
    let must_copy = match kind {
        Kind::Memory => len <= limit,
        Kind::Boxed { exact } => !exact || len <= limit,
    };
    assert_eq!(
        copy.is_some(),
        must_copy,
        "copied or not, as the limit says"
    );
    let reference = head(spec).expect("built once, builds again");
    same_head(&request, &reference);
    assert_eq!(
        drain(request.into_body()),
        bytes,
        "the request sent is untouched"
    );
    let Some(copy) = copy else { return };
    let rebuilt = copy.rebuild();
    if len > limit {
        assert!(
            rebuilt.is_none(),
            "a recording past the limit is not replayed"
        );
        return;
    }
    let rebuilt = rebuilt.expect("a copy within the limit rebuilds");
    same_head(&rebuilt, &reference);
    assert_eq!(drain(rebuilt.into_body()), bytes, "the replayed body");
}

fn boxed_chunks(chunks: &[Vec<u8>], exact: bool) -> (Chunks, Vec<u8>) {
    let all = chunks.concat();
    let body = Chunks {
        chunks: chunks.iter().map(|c| Bytes::copy_from_slice(c)).collect(),
        exact,
    };
    (body, all)
}

fuzz_target!(|spec: Spec| {
    match &spec.body {
        BodySpec::Full(bytes) => round_trip(
            &spec,
            Full::new(Bytes::copy_from_slice(bytes)),
            bytes,
            Kind::Memory,
        ),
        BodySpec::Text(text) => round_trip(&spec, text.clone(), text.as_bytes(), Kind::Memory),
        BodySpec::Empty => round_trip(&spec, Empty::<Bytes>::new(), b"", Kind::Memory),
        BodySpec::Static(n) => {
            let bytes = STATICS[usize::from(*n) % STATICS.len()];
            round_trip(&spec, Full::new(bytes), bytes, Kind::Memory)
        }
        BodySpec::StaticEmpty => {
            round_trip(&spec, Empty::<&'static [u8]>::new(), b"", Kind::Memory)
        }
        BodySpec::Boxed(chunks, exact) => {
            let (body, all) = boxed_chunks(chunks, *exact);
            let body: BoxBody<Bytes, Infallible> = body.boxed();
            round_trip(&spec, body, &all, Kind::Boxed { exact: *exact });
        }
        BodySpec::UnsyncBoxed(chunks, exact) => {
            let (body, all) = boxed_chunks(chunks, *exact);
            let body: UnsyncBoxBody<Bytes, Infallible> = body.boxed_unsync();
            round_trip(&spec, body, &all, Kind::Boxed { exact: *exact });
        }
    }
});
