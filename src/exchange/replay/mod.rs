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
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::Request;
use http_body::Body;
use http_body_util::combinators::{BoxBody, UnsyncBoxBody};
use http_body_util::{Empty, Full};

use self::head::HeadCopy;
use self::tape::{Recording, Tape};
use crate::token::wiped_copy;
use crate::trace::event;

mod head;
pub(crate) mod tape;

/// Everything needed to send a request again: its head, its body and a clone of the service to
/// send it through.
pub(crate) struct ReplayCopy<B, S> {
    head: HeadCopy,
    body: BodyCopy<B>,
    service: S,
}

impl<B, S: Clone> ReplayCopy<B, S>
where
    B: Body + 'static,
    B::Error: 'static,
{
    /// A copy of `req` (which has no token yet) and of `service`; `None` when replay is off
    /// (`limit` is `None`) or the body cannot be reproduced.
    ///
    /// `req` is borrowed mutably for the body types whose content is taken out and put back (a
    /// `Full<Bytes>` hands out its bytes by being polled) and for boxed bodies, which are wrapped
    /// in a recorder inside the same box type.
    #[inline]
    pub(crate) fn of(req: &mut Request<B>, limit: Option<u64>, service: &S) -> Option<Self> {
        // Known by its type before anything is copied, so that a stack whose body type cannot be
        // replayed pays nothing.
        let kind = Kind::of::<B>()?;
        let limit = limit?;
        let size = req.body().size_hint();
        if size.lower() > limit || (kind.in_memory() && size.upper() != Some(size.lower())) {
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
        let cap = usize::try_from(limit).unwrap_or(usize::MAX);
        let body = BodyCopy::of(kind, req.body_mut(), &mut head, cap)?;
        Some(Self {
            head,
            body,
            service: service.clone(),
        })
    }
}

impl<B, S> ReplayCopy<B, S>
where
    B: Body + 'static,
    B::Error: 'static,
{
    /// Resolves once the first attempt is done with the body: at once, unless the body is
    /// recorded and the first attempt still reads it (see [`tape::Recording::poll_settled`]).
    pub(crate) fn settled(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let recording = self.head.tape().cloned();
        std::future::poll_fn(move |cx| match &recording {
            Some(recording) => recording.poll_settled(cx),
            None => Poll::Ready(()),
        })
    }

    /// The request again, and the service to send it through; `None` if the body cannot be sent
    /// again after all (a recorded body that grew past the cap or failed), or the copy cannot be
    /// read back (which a copy of a valid request always can; that failure is logged).
    pub(crate) fn rebuild(self) -> Option<(Request<B>, S)> {
        let Self {
            mut head,
            body,
            service,
        } = self;
        let body = match body {
            BodyCopy::Recorded => rewind(head.take_tape()?)?,
            body => {
                let rebuilt = head.body_bytes().and_then(|bytes| body.rebuild(bytes));
                if rebuilt.is_none() {
                    event!(warn, "could not build a request body again for a replay");
                }
                rebuilt?
            }
        };
        let rebuilt = head.rebuild(body);
        if rebuilt.is_none() {
            event!(
                warn,
                "could not build the request again for a replay; the caller gets Vault's answer"
            );
        }
        Some((rebuilt?, service))
    }
}

/// How a body is kept. The body types whose content is in memory, and the boxed types, are known
/// by type (found with an `Any` downcast, no unsafe code); anything else is not replayed.
enum BodyCopy<B> {
    /// Holds nothing, or only `'static` data: a copy of the value itself.
    Value(B),
    /// A `Full<Bytes>` whose bytes are in the head's buffer.
    Full,
    /// A `String` whose bytes are in the head's buffer.
    String,
    /// A boxed body that says it is empty: replayed as an empty one of the same box type.
    EmptyBoxed,
    /// A boxed body recorded as the first attempt sends it. The tape (of a `BoxBody` or an
    /// `UnsyncBoxBody` of `B`'s error type, its type erased: it cannot be named here) is kept
    /// with the head.
    Recorded,
}

/// The body types a replay copy knows: those whose content is in memory, and the boxed ones
/// (whose content is recorded as it is sent).
#[derive(Clone, Copy)]
enum Kind {
    FullBytes,
    String,
    EmptyBytes,
    FullStatic,
    EmptyStatic,
    /// `BoxBody<Bytes, E>`, for the body's own `E`.
    Boxed,
    /// `UnsyncBoxBody<Bytes, E>`, for the body's own `E`.
    UnsyncBoxed,
}

impl Kind {
    /// The kind of bodies of type `B`, if it is one of them (a compile-time constant).
    #[inline]
    fn of<B: Body + 'static>() -> Option<Self>
    where
        B::Error: 'static,
    {
        let id = TypeId::of::<B>();
        [
            (TypeId::of::<Full<Bytes>>(), Self::FullBytes),
            (TypeId::of::<String>(), Self::String),
            (TypeId::of::<Empty<Bytes>>(), Self::EmptyBytes),
            (TypeId::of::<Full<&'static [u8]>>(), Self::FullStatic),
            (TypeId::of::<Empty<&'static [u8]>>(), Self::EmptyStatic),
            (TypeId::of::<BoxBody<Bytes, B::Error>>(), Self::Boxed),
            (
                TypeId::of::<UnsyncBoxBody<Bytes, B::Error>>(),
                Self::UnsyncBoxed,
            ),
        ]
        .into_iter()
        .find_map(|(known, kind)| (known == id).then_some(kind))
    }

    /// Whether the body's bytes are kept in the head's buffer (rather than the value itself).
    fn keeps_bytes(self) -> bool {
        matches!(self, Self::FullBytes | Self::String)
    }

    /// Whether the body's whole content is in memory (so its size is known exactly).
    fn in_memory(self) -> bool {
        !matches!(self, Self::Boxed | Self::UnsyncBoxed)
    }
}

impl<B: Body + 'static> BodyCopy<B>
where
    B::Error: 'static,
{
    /// Copies `body`, of kind `kind`: its bytes go to `text`, the value is kept, or a boxed body
    /// is wrapped in a recorder of at most `cap` bytes.
    fn of(kind: Kind, body: &mut B, head: &mut HeadCopy, cap: usize) -> Option<Self> {
        let exactly_empty = body.size_hint().exact() == Some(0);
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
                    head.text().extend_from_slice(&data);
                    *full = Full::new(data);
                }
                Some(Self::Full)
            }
            Kind::String => {
                head.text()
                    .extend_from_slice(body.downcast_ref::<String>()?.as_bytes());
                Some(Self::String)
            }
            Kind::EmptyBytes => cast(*body.downcast_ref::<Empty<Bytes>>()?).map(Self::Value),
            Kind::FullStatic => cast(*body.downcast_ref::<Full<&'static [u8]>>()?).map(Self::Value),
            Kind::EmptyStatic => {
                cast(*body.downcast_ref::<Empty<&'static [u8]>>()?).map(Self::Value)
            }
            Kind::Boxed | Kind::UnsyncBoxed if exactly_empty => Some(Self::EmptyBoxed),
            Kind::Boxed => {
                let boxed = body.downcast_mut::<BoxBody<Bytes, B::Error>>()?;
                let original = std::mem::replace(boxed, BoxBody::new(Nothing::new()));
                let (recorder, tape) = Tape::record(original, cap);
                *boxed = BoxBody::new(recorder);
                head.keep_tape(tape.erased());
                Some(Self::Recorded)
            }
            Kind::UnsyncBoxed => {
                let boxed = body.downcast_mut::<UnsyncBoxBody<Bytes, B::Error>>()?;
                let original = std::mem::replace(boxed, UnsyncBoxBody::new(Nothing::new()));
                let (recorder, tape) = Tape::record(original, cap);
                *boxed = UnsyncBoxBody::new(recorder);
                head.keep_tape(tape.erased());
                Some(Self::Recorded)
            }
        }
    }

    fn rebuild(self, bytes: &[u8]) -> Option<B> {
        match self {
            Self::Value(body) => Some(body),
            Self::Full => cast(Full::new(wiped_copy(bytes))),
            Self::String => cast(String::from_utf8(bytes.to_vec()).ok()?),
            Self::EmptyBoxed => cast(BoxBody::<Bytes, B::Error>::new(Nothing::new()))
                .or_else(|| cast(UnsyncBoxBody::<Bytes, B::Error>::new(Nothing::new()))),
            Self::Recorded => None,
        }
    }
}

/// The body a replay of a recorded boxed body sends, boxed again as `B` is.
fn rewind<B: Body + 'static>(tape: Arc<dyn Recording>) -> Option<B>
where
    B::Error: 'static,
{
    if let Some(tape) = Tape::<BoxBody<Bytes, B::Error>>::from_erased(Arc::clone(&tape)) {
        return cast(BoxBody::new(tape.rewind()?));
    }
    let tape = Tape::<UnsyncBoxBody<Bytes, B::Error>>::from_erased(tape)?;
    cast(UnsyncBoxBody::new(tape.rewind()?))
}

/// An empty body with any error type. Zero-sized, so that boxing it allocates nothing: it stands
/// in a boxed body's place while the original is moved into its recorder, and it is the replay
/// of a boxed body that said it was empty.
struct Nothing<E>(PhantomData<fn() -> E>);

impl<E> Nothing<E> {
    fn new() -> Self {
        Self(PhantomData)
    }
}

impl<E> Body for Nothing<E> {
    type Data = Bytes;
    type Error = E;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, E>>> {
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        true
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(0)
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
        let boxed = http_body_util::BodyExt::boxed(Full::new(Bytes::from_static(b"0123456789a")));
        assert!(
            copied(boxed, 10).is_none(),
            "a boxed body that says it is over the limit is not recorded"
        );
        let mut request = Request::post("https://h/").body(String::new()).unwrap();
        assert!(
            ReplayCopy::of(&mut request, None, &()).is_none(),
            "replay off"
        );
    }

    #[tokio::test]
    async fn boxed_bodies_are_recorded_as_they_are_sent_and_come_back() {
        use http_body_util::BodyExt;
        let stream = Chunks(Some(Bytes::from_static(b"streamed"))).boxed();
        let (sent, copy) = copied(stream, 64).expect("a boxed body is recorded");
        assert_eq!(
            bytes_of(sent.into_body()).await,
            b"streamed",
            "sent as it was"
        );
        let (again, ()) = copy.rebuild().expect("rebuilt");
        assert_eq!(bytes_of(again.into_body()).await, b"streamed");

        let unsync = Chunks(Some(Bytes::from_static(b"unsync"))).boxed_unsync();
        let (sent, copy) = copied(unsync, 64).expect("recorded");
        assert_eq!(bytes_of(sent.into_body()).await, b"unsync");
        assert_eq!(
            bytes_of(copy.rebuild().unwrap().0.into_body()).await,
            b"unsync"
        );

        let empty = Empty::<Bytes>::new().boxed();
        let (_, copy) = copied(empty, 0).expect("an empty boxed body is kept as empty");
        assert!(matches!(copy.body, BodyCopy::EmptyBoxed));
        assert!(bytes_of(copy.rebuild().unwrap().0.into_body())
            .await
            .is_empty());

        let long = Chunks(Some(Bytes::from(vec![b'x'; 65]))).boxed();
        let (sent, copy) = copied(long, 64).expect("recorded while it fits");
        assert_eq!(bytes_of(sent.into_body()).await.len(), 65);
        assert!(copy.rebuild().is_none(), "past the cap: not replayed");
    }

    #[test]
    fn a_body_type_that_cannot_be_copied_costs_no_copy_of_the_head() {
        let before = head::tests::copies();
        assert!(copied(Chunks(None), 1 << 20).is_none());
        assert_eq!(head::tests::copies(), before, "no head was copied");
        assert!(copied(Full::new(Bytes::from_static(b"x")), 1 << 20).is_some());
        assert_eq!(
            head::tests::copies(),
            before + 1,
            "a known body type's head was"
        );
    }

    fn boxed(bytes: Vec<u8>) -> BoxBody<Bytes, std::convert::Infallible> {
        BoxBody::new(Full::new(Bytes::from(bytes)))
    }

    /// Room for the body's bytes is made in the head's buffer only for the bodies whose bytes
    /// are kept there: a boxed body of a known 1000 bytes is recorded, not copied.
    #[test]
    fn room_for_the_body_is_made_only_where_its_bytes_are_kept() {
        let (_, copy) = copied(boxed(vec![b'x'; 1000]), 4096).expect("a copy");
        assert!(copy.head.text_room() < 1000, "{}", copy.head.text_room());
        drop(copy);
        let (_, copy) = copied(String::from_utf8(vec![b'x'; 1000]).unwrap(), 4096).expect("a copy");
        assert!(copy.head.text_room() >= 1000);
    }

    /// A recorded body settles when the first attempt has read it to its end, or dropped it;
    /// a body kept by value is settled from the start.
    #[tokio::test]
    async fn a_recorded_body_settles_when_the_first_attempt_is_done_with_it() {
        use http_body_util::BodyExt;
        fn poll_once<B: Body + 'static>(copy: &ReplayCopy<B, ()>) -> bool {
            let settled = std::pin::pin!(copy.settled());
            let mut cx = Context::from_waker(std::task::Waker::noop());
            std::future::Future::poll(settled, &mut cx).is_ready()
        }
        let stream = Chunks(Some(Bytes::from_static(b"streamed"))).boxed();
        let (sent, copy) = copied(stream, 64).expect("recorded");
        assert!(!poll_once(&copy), "not while the body is unread");
        bytes_of(sent.into_body()).await;
        assert!(poll_once(&copy), "read to its end");

        let stream = Chunks(Some(Bytes::from_static(b"dropped"))).boxed();
        let (sent, copy) = copied(stream, 64).expect("recorded");
        assert!(!poll_once(&copy));
        drop(sent);
        assert!(poll_once(&copy), "dropped unread");

        let (_, copy) = copy_of_string("by value");
        assert!(poll_once(&copy));
    }

    /// The first attempt's recorded body says it has ended as soon as the body inside does, so
    /// that a client need not poll it once more (HTTP/2 ends the stream on the last data frame);
    /// the replay says so once it is read to its end.
    #[tokio::test]
    async fn a_recorded_body_says_when_the_body_inside_has_ended() {
        use http_body_util::BodyExt;
        let (mut sent, copy) = copied(boxed(b"form=1".to_vec()), 64).expect("recorded");
        assert!(!sent.body().is_end_stream());
        let frame = sent.body_mut().frame().await.expect("a frame").unwrap();
        assert_eq!(frame.into_data().unwrap(), &b"form=1"[..]);
        assert!(sent.body().is_end_stream(), "the data was all of it");
        drop(sent);

        let (again, ()) = copy.rebuild().expect("rebuilt");
        let mut body = again.into_body();
        assert!(!body.is_end_stream());
        while body.frame().await.is_some() {}
        assert!(body.is_end_stream(), "the replay, read to its end");
    }

    /// The replay of an empty boxed body says it is empty: at its end, of length 0, so that a
    /// client sends it as the first attempt went (`content-length: 0`, not a stream).
    #[test]
    fn an_empty_boxed_body_is_replayed_as_exactly_empty() {
        let (_, copy) = copied(boxed(Vec::new()), 0).expect("a copy");
        let (again, ()) = copy.rebuild().expect("rebuilt");
        assert!(again.body().is_end_stream());
        assert_eq!(again.body().size_hint().exact(), Some(0));
    }
}
