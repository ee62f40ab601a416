//! The copy of a request kept for a replay, made before the request is sent.
//!
//! A replay is rare and the copy is made for every request, so the copy is cheap and the rebuild
//! is not. The head (method, version, URI, headers, extensions) and, for the body types that hold
//! their content in memory, the body's bytes are written into a buffer that comes from a small
//! per-thread pool and goes back to it, wiped, when the request is done. In steady state that
//! costs no allocation and touches no reference count: cloning a `HeaderMap` allocates its tables,
//! and the first clone of a `Bytes` made from a `Vec` or `String` (a header value parsed from a
//! string, a body from `serde_json::to_vec`) allocates its shared form. The request is built
//! again from the bytes only if Vault rejects the token.

use std::any::{Any, TypeId};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::Request;
use http_body::Body;
use http_body_util::{Empty, Full};

use self::head::HeadCopy;
use crate::token::wiped_copy;
use crate::trace::event;

mod head;

/// Everything needed to send a request again: its head, its body and a clone of the service to
/// send it through.
pub(crate) struct ReplayCopy<B, S> {
    head: HeadCopy,
    body: BodyCopy<B>,
    service: S,
}

impl<B: Body + 'static, S: Clone> ReplayCopy<B, S> {
    /// A copy of `req` (which has no token yet) and of `service`; `None` when replay is off
    /// (`limit` is `None`) or the body cannot be reproduced.
    ///
    /// `req` is borrowed mutably for one body type only: a `Full<Bytes>` hands out its bytes by
    /// being polled, so they are taken out, copied and put back unchanged.
    #[inline]
    pub(crate) fn of(req: &mut Request<B>, limit: Option<u64>, service: &S) -> Option<Self> {
        let size = req.body().size_hint();
        // Known by its type before anything is copied, so that a stack whose body type is not
        // replayable (a boxed or streaming body) pays nothing.
        let kind = Kind::of::<B>()?;
        if size.upper() != Some(size.lower()) || size.lower() > limit? {
            return None;
        }
        // The size was checked against `limit`; the bytes of a body kept in the buffer fit the
        // room made for them.
        let body_len = if kind.keeps_bytes() {
            usize::try_from(size.lower()).ok()?
        } else {
            0
        };
        let mut head = HeadCopy::of(req, body_len);
        let body = BodyCopy::of(kind, req.body_mut(), head.text())?;
        Some(Self {
            head,
            body,
            service: service.clone(),
        })
    }
}

impl<B: 'static, S> ReplayCopy<B, S> {
    /// The request again, and the service to send it through; `None` only if the copy cannot be
    /// read back (which a copy of a valid request always can; the failure is logged).
    pub(crate) fn rebuild(self) -> Option<(Request<B>, S)> {
        let rebuilt = self
            .head
            .body_bytes()
            .and_then(|bytes| self.body.rebuild(bytes))
            .and_then(|body| self.head.rebuild(body));
        if rebuilt.is_none() {
            event!(
                warn,
                "could not build the request again for a replay; the caller gets Vault's answer"
            );
        }
        Some((rebuilt?, self.service))
    }
}

/// How a body is kept: the body types whose content is in memory are known by type (found with
/// an `Any` downcast, no unsafe code), and anything else is not replayed.
enum BodyCopy<B> {
    /// Holds nothing, or only `'static` data: a copy of the value itself.
    Value(B),
    /// A `Full<Bytes>` whose bytes are in the head's buffer.
    Full,
    /// A `String` whose bytes are in the head's buffer.
    String,
}

/// The body types a replay copy knows: those whose content is in memory.
#[derive(Clone, Copy)]
enum Kind {
    FullBytes,
    String,
    EmptyBytes,
    FullStatic,
    EmptyStatic,
}

impl Kind {
    /// The kind of bodies of type `B`, if it is one of them (a compile-time constant).
    #[inline]
    fn of<B: 'static>() -> Option<Self> {
        let id = TypeId::of::<B>();
        [
            (TypeId::of::<Full<Bytes>>(), Self::FullBytes),
            (TypeId::of::<String>(), Self::String),
            (TypeId::of::<Empty<Bytes>>(), Self::EmptyBytes),
            (TypeId::of::<Full<&'static [u8]>>(), Self::FullStatic),
            (TypeId::of::<Empty<&'static [u8]>>(), Self::EmptyStatic),
        ]
        .into_iter()
        .find_map(|(known, kind)| (known == id).then_some(kind))
    }

    /// Whether the body's bytes are kept in the head's buffer (rather than the value itself).
    fn keeps_bytes(self) -> bool {
        matches!(self, Self::FullBytes | Self::String)
    }
}

impl<B: 'static> BodyCopy<B> {
    /// Copies `body`, of kind `kind`: its bytes go to `text`, or the value is kept.
    fn of(kind: Kind, body: &mut B, text: &mut Vec<u8>) -> Option<Self> {
        let body: &mut dyn Any = body;
        match kind {
            Kind::FullBytes => {
                let full = body.downcast_mut::<Full<Bytes>>()?;
                // A `Full` gives its bytes up in its first frame, at once; it gets them back.
                let mut cx = Context::from_waker(Waker::noop());
                let data = match Pin::new(&mut *full).poll_frame(&mut cx) {
                    Poll::Ready(Some(Ok(frame))) => frame.into_data().ok(),
                    _ => None,
                };
                if let Some(data) = data {
                    text.extend_from_slice(&data);
                    *full = Full::new(data);
                }
                Some(Self::Full)
            }
            Kind::String => {
                text.extend_from_slice(body.downcast_ref::<String>()?.as_bytes());
                Some(Self::String)
            }
            Kind::EmptyBytes => cast(*body.downcast_ref::<Empty<Bytes>>()?).map(Self::Value),
            Kind::FullStatic => cast(*body.downcast_ref::<Full<&'static [u8]>>()?).map(Self::Value),
            Kind::EmptyStatic => {
                cast(*body.downcast_ref::<Empty<&'static [u8]>>()?).map(Self::Value)
            }
        }
    }

    fn rebuild(self, bytes: &[u8]) -> Option<B> {
        match self {
            Self::Value(body) => Some(body),
            Self::Full => cast(Full::new(wiped_copy(bytes))),
            Self::String => cast(String::from_utf8(bytes.to_vec()).ok()?),
        }
    }
}

/// Turns a value of a concrete type back into the generic type it was found to be.
fn cast<T: 'static, B: 'static>(value: T) -> Option<B> {
    let mut slot = Some(value);
    (&mut slot as &mut dyn Any)
        .downcast_mut::<Option<B>>()
        .and_then(Option::take)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::Full;

    /// A body of unknown length, like a stream.
    struct Chunks(Option<Bytes>);

    impl Body for Chunks {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.0.take().map(|b| Ok(http_body::Frame::data(b))))
        }
    }

    fn copied<B: Body + 'static>(body: B, limit: u64) -> Option<(Request<B>, ReplayCopy<B, ()>)> {
        let mut request = Request::post("https://h/form").body(body).unwrap();
        let copy = ReplayCopy::of(&mut request, Some(limit), &())?;
        Some((request, copy))
    }

    async fn bytes_of<B: Body>(body: B) -> Vec<u8>
    where
        B::Error: std::fmt::Debug,
    {
        use http_body_util::BodyExt;
        body.collect().await.unwrap().to_bytes().to_vec()
    }

    #[tokio::test]
    async fn known_bodies_come_back_and_the_original_is_untouched() {
        let form = "q=select id from documents";
        let (sent, copy) = copied(Full::new(Bytes::from(form.to_owned())), 64).expect("copied");
        assert_eq!(sent.body().size_hint().exact(), Some(26));
        assert_eq!(
            bytes_of(sent.into_body()).await,
            form.as_bytes(),
            "put back"
        );
        let (again, ()) = copy.rebuild().expect("rebuilt");
        assert_eq!(again.uri(), "https://h/form");
        assert_eq!(bytes_of(again.into_body()).await, form.as_bytes());

        let (_, copy) = copy_of_string(form);
        assert_eq!(copy.rebuild().unwrap().0.into_body(), form);
        let (_, copy) = copied(Empty::<Bytes>::new(), 0).expect("copied");
        assert!(bytes_of(copy.rebuild().unwrap().0.into_body())
            .await
            .is_empty());
        let (_, copy) = copied(Full::new(&b"static"[..]), 64).expect("copied");
        assert_eq!(
            bytes_of(copy.rebuild().unwrap().0.into_body()).await,
            b"static"
        );
    }

    fn copy_of_string(text: &str) -> (Request<String>, ReplayCopy<String, ()>) {
        copied(text.to_owned(), 64).expect("copied")
    }

    #[test]
    fn bodies_over_the_limit_or_unknown_are_not_copied() {
        assert!(copied(Full::new(Bytes::from_static(b"0123456789a")), 10).is_none());
        assert!(copied(Chunks(Some(Bytes::from_static(b"x"))), 1 << 20).is_none());
        let boxed = http_body_util::BodyExt::boxed(Full::new(Bytes::from_static(b"x")));
        assert!(
            copied(boxed, 1 << 20).is_none(),
            "type-erased bodies cannot be copied"
        );
        let mut request = Request::post("https://h/").body(String::new()).unwrap();
        assert!(
            ReplayCopy::of(&mut request, None, &()).is_none(),
            "replay off"
        );
    }

    #[test]
    fn a_body_type_that_cannot_be_copied_costs_no_copy_of_the_head() {
        let before = head::tests::copies();
        let boxed = http_body_util::BodyExt::boxed(Full::new(Bytes::from_static(b"x")));
        assert!(copied(boxed, 1 << 20).is_none());
        assert!(copied(Chunks(None), 1 << 20).is_none());
        assert_eq!(head::tests::copies(), before, "no head was copied");
        assert!(copied(Full::new(Bytes::from_static(b"x")), 1 << 20).is_some());
        assert_eq!(
            head::tests::copies(),
            before + 1,
            "a known body type's head was"
        );
    }
}
