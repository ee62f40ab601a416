//! Recording a streamed request body while the first attempt sends it, so that a replay can send
//! it again.
//!
//! The first attempt sends a [`Recorder`]: it passes every frame of the original body on as it is
//! and copies the data into the recording (and the trailers beside it). A replay sends a
//! [`Replayer`]: the recorded bytes first, then whatever of the original body the first attempt had
//! not read yet (Vault may answer before it has read the whole body), so nothing is lost.
//!
//! A replay starts only once the first attempt is done with the body: it read it to the end, or
//! its connection let go of it (the recorder was dropped and handed the rest back). The two never
//! read the body at once, so the first attempt's body is never cut short, and the replay never
//! waits on a connection that has stalled; the exchange bounds how long it waits for that
//! ([`Recording::poll_settled`]).
//!
//! The recording is one buffer, grown up to the replay cap and never past it. Growing copies the
//! bytes into a larger buffer and wipes the old one; past the cap the recording is wiped and freed,
//! and the request is not replayed. A body that fails while it is read is not replayed either.

use std::any::Any;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use crate::token::{wipe_bytes, wiped_copy};
use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

/// The smallest buffer a recording starts with when the body does not say how long it is.
const FIRST_BUFFER: usize = 1024;

/// One recording, shared by the body the first attempt sends and the body a replay sends.
pub(crate) struct Tape<B>(Arc<Mutex<Reel<B>>>);

impl<B> Clone for Tape<B> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

struct Reel<B> {
    /// The data the first attempt has read so far.
    recorded: SecretBuf,
    trailers: Option<HeaderMap>,
    /// The original body, while no attempt is reading it.
    rest: Option<B>,
    /// The original body has ended (or sent its trailers): everything it had is recorded.
    ended: bool,
    /// The recording can no longer be replayed: it grew past the cap, or the body failed.
    spoiled: bool,
    /// The replay's body was made: a recording is replayed once.
    rewound: bool,
    /// The first attempt let go of the body (its recorder was dropped).
    released: bool,
    /// The exchange waiting for the first attempt to be done with the body.
    waiting: Option<Waker>,
    cap: usize,
    /// The original body's size hint, which the replay repeats (so a length is sent again).
    hint: SizeHint,
}

impl<B> Reel<B> {
    fn record(&mut self, data: &[u8]) {
        if self.spoiled {
            return;
        }
        if !self.recorded.push(data, self.cap) {
            self.spoil();
        }
    }

    fn spoil(&mut self) {
        self.spoiled = true;
        self.recorded.wipe_and_free();
        self.trailers = None;
    }

    fn wake(&mut self) {
        if let Some(waker) = self.waiting.take() {
            waker.wake();
        }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Tape<B> {
    /// Starts recording `body`, at most `cap` bytes of it: the recorder goes to the first attempt,
    /// the tape stays with the replay copy.
    pub(crate) fn record(body: B, cap: usize) -> (Recorder<B>, Self) {
        let hint = body.size_hint();
        let first = usize::try_from(hint.lower())
            .unwrap_or(usize::MAX)
            .max(FIRST_BUFFER)
            .min(cap);
        let tape = Self(Arc::new(Mutex::new(Reel {
            recorded: SecretBuf(Vec::with_capacity(first)),
            trailers: None,
            rest: None,
            ended: false,
            spoiled: false,
            rewound: false,
            released: false,
            waiting: None,
            cap,
            hint,
        })));
        let recorder = Recorder {
            tape: tape.clone(),
            body: Some(body),
        };
        (recorder, tape)
    }

    /// The body for a replay; `None` if the recording cannot be replayed: it grew past the cap,
    /// the body failed, it was replayed already, or the first attempt is not done with the body
    /// yet (see [`Recording::poll_settled`]).
    pub(crate) fn rewind(&self) -> Option<Replayer<B>> {
        let mut reel = self.lock();
        if reel.spoiled || reel.rewound || !reel.settled() {
            return None;
        }
        reel.rewound = true;
        Some(Replayer {
            tape: self.clone(),
            sent: 0,
            body: None,
            done: false,
        })
    }

    /// The tape with its type erased, for a copy that cannot name `B` (its error type is generic);
    /// no allocation: the shared state is already behind an `Arc`.
    pub(crate) fn erased(self) -> Arc<dyn Recording>
    where
        B: Send + 'static,
    {
        self.0
    }

    /// The tape again, if `recording` is one of type `B`.
    pub(crate) fn from_erased(recording: Arc<dyn Recording>) -> Option<Self>
    where
        B: Send + 'static,
    {
        recording
            .into_any()
            .downcast::<Mutex<Reel<B>>>()
            .ok()
            .map(Self)
    }

    /// Resolves once the first attempt is done with the body (see [`Recording::poll_settled`]).
    #[cfg_attr(not(feature = "reqwest"), allow(dead_code))]
    pub(crate) fn settled_owned(self) -> impl std::future::Future<Output = ()> + Send + 'static
    where
        B: Send + 'static,
    {
        std::future::poll_fn(move |cx| self.0.poll_settled(cx))
    }

    fn lock(&self) -> MutexGuard<'_, Reel<B>> {
        // Every update leaves the reel consistent: a panic elsewhere cannot leave it half-written.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A recording whose body type is erased.
pub(crate) trait Recording: Send + Sync {
    /// Ready once the first attempt is done with the body: it read it to the end (or the body
    /// failed, or grew past the cap), or it let go of it. Until then a replay would have to share
    /// the body with a connection that may never let go.
    fn poll_settled(&self, cx: &mut Context<'_>) -> Poll<()>;

    /// The recording as `Any`, to find its type again.
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}

impl<B: Send + 'static> Recording for Mutex<Reel<B>> {
    fn poll_settled(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut reel = self.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if reel.settled() || reel.spoiled {
            return Poll::Ready(());
        }
        reel.waiting = Some(cx.waker().clone());
        Poll::Pending
    }

    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}

impl<B> Reel<B> {
    /// Whether the first attempt is done with the body.
    fn settled(&self) -> bool {
        self.ended || self.released
    }
}

/// The body the first attempt sends: the original, recorded as it passes.
pub(crate) struct Recorder<B> {
    tape: Tape<B>,
    body: Option<B>,
}

impl<B: Body<Data = Bytes> + Unpin> Body for Recorder<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        let Some(body) = this.body.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = std::task::ready!(Pin::new(body).poll_frame(cx));
        let mut reel = this.tape.lock();
        match &polled {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    reel.record(data);
                } else if let Some(trailers) = frame.trailers_ref() {
                    if !reel.spoiled {
                        reel.trailers = Some(trailers.clone());
                    }
                    reel.ended = true;
                }
            }
            Some(Err(_)) => reel.spoil(),
            None => reel.ended = true,
        }
        reel.wake();
        let ended = reel.ended;
        drop(reel);
        if ended {
            this.body = None;
        }
        Poll::Ready(polled)
    }

    fn is_end_stream(&self) -> bool {
        self.body.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.body
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

impl<B> Recorder<B> {
    /// Gives the original body back to the tape, for a replay to read on from where it stopped.
    fn hand_back(&mut self) {
        let body = self.body.take();
        let mut reel = self.tape.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(body) = body.filter(|_| !reel.ended) {
            reel.rest = Some(body);
        }
        reel.released = true;
        reel.wake();
    }
}

impl<B> Drop for Recorder<B> {
    fn drop(&mut self) {
        self.hand_back();
    }
}

/// The body a replay sends: what was recorded, then the rest of the original body.
pub(crate) struct Replayer<B> {
    tape: Tape<B>,
    /// Recorded bytes sent so far.
    sent: usize,
    /// The rest of the original body, once the first attempt let go of it.
    body: Option<B>,
    done: bool,
}

impl<B: Body<Data = Bytes> + Unpin> Body for Replayer<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        if let Some(body) = this.body.as_mut() {
            let polled = std::task::ready!(Pin::new(body).poll_frame(cx));
            if polled.is_none() {
                this.done = true;
                this.body = None;
            }
            return Poll::Ready(polled);
        }
        if this.done {
            return Poll::Ready(None);
        }
        let mut reel = this.tape.lock();
        let recorded = reel.recorded.as_slice();
        if recorded.len() > this.sent {
            let more = wiped_copy(&recorded[this.sent..]);
            this.sent = recorded.len();
            return Poll::Ready(Some(Ok(Frame::data(more))));
        }
        if reel.ended {
            this.done = true;
            return Poll::Ready(reel.trailers.take().map(|t| Ok(Frame::trailers(t))));
        }
        match reel.rest.take() {
            Some(body) => {
                drop(reel);
                this.body = Some(body);
                Pin::new(this).poll_frame(cx)
            }
            // Cannot be: a replay starts only once the first attempt let go of the body (with
            // its rest) or read it to the end. End here rather than wait on nothing.
            None => {
                this.done = true;
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        if let Some(body) = &self.body {
            return body.size_hint();
        }
        if self.done {
            return SizeHint::with_exact(0);
        }
        let hint = self.tape.lock().hint;
        let sent = self.sent as u64;
        let mut left = SizeHint::new();
        left.set_lower(hint.lower().saturating_sub(sent));
        if let Some(upper) = hint.upper() {
            left.set_upper(upper.saturating_sub(sent));
        }
        left
    }
}

/// A byte buffer that is wiped when it grows, when it is given up, and when it is dropped.
struct SecretBuf(Vec<u8>);

impl SecretBuf {
    /// Appends `bytes` unless the buffer would then hold more than `cap`.
    fn push(&mut self, bytes: &[u8], cap: usize) -> bool {
        let needed = self.0.len() + bytes.len();
        if needed > cap {
            return false;
        }
        if needed > self.0.capacity() {
            // Grown by hand: `Vec`'s own growth would free the old block unwiped.
            let mut grown = Vec::with_capacity(needed.max(self.0.capacity() * 2).min(cap));
            grown.extend_from_slice(&self.0);
            wipe_bytes(&mut self.0);
            self.0 = grown;
        }
        self.0.extend_from_slice(bytes);
        true
    }

    fn as_slice(&self) -> &[u8] {
        &self.0
    }

    fn wipe_and_free(&mut self) {
        wipe_bytes(&mut self.0);
        self.0 = Vec::new();
    }
}

impl Drop for SecretBuf {
    fn drop(&mut self) {
        wipe_bytes(&mut self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    type Chunk = Result<Frame<Bytes>, std::io::Error>;

    /// A body that hands out the given frames one by one.
    struct Frames(std::collections::VecDeque<Chunk>);

    impl Body for Frames {
        type Data = Bytes;
        type Error = std::io::Error;
        fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Chunk>> {
            Poll::Ready(self.0.pop_front())
        }
    }

    fn stream(chunks: Vec<Chunk>) -> http_body_util::combinators::BoxBody<Bytes, std::io::Error> {
        Frames(chunks.into()).boxed()
    }

    fn data(bytes: &'static [u8]) -> Chunk {
        Ok(Frame::data(Bytes::from_static(bytes)))
    }

    async fn collect<B: Body<Data = Bytes> + Unpin>(body: B) -> (Vec<u8>, Option<HeaderMap>)
    where
        B::Error: std::fmt::Debug,
    {
        let collected = body.collect().await.unwrap();
        let trailers = collected.trailers().cloned();
        (collected.to_bytes().to_vec(), trailers)
    }

    #[tokio::test]
    async fn a_body_read_to_its_end_is_replayed_whole_with_its_trailers() {
        let mut trailers = HeaderMap::new();
        trailers.insert("x-checksum", "abc".parse().unwrap());
        let body = stream(vec![
            data(b"hello "),
            data(b"world"),
            Ok(Frame::trailers(trailers.clone())),
        ]);
        let (recorder, tape) = Tape::record(body, 1024);
        assert_eq!(
            collect(recorder).await,
            (b"hello world".to_vec(), Some(trailers.clone()))
        );
        let replay = tape.rewind().expect("replayable");
        assert_eq!(
            collect(replay).await,
            (b"hello world".to_vec(), Some(trailers))
        );
        assert!(tape.rewind().is_none(), "a recording is replayed once");
    }

    #[tokio::test]
    async fn a_body_read_in_part_is_replayed_from_the_recording_then_the_original() {
        let body = stream(vec![data(b"one "), data(b"two "), data(b"three")]);
        let (mut recorder, tape) = Tape::record(body, 1024);
        let first = recorder.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "one ");
        drop(recorder);
        let replay = tape.rewind().expect("replayable");
        assert_eq!(collect(replay).await.0, b"one two three");
    }

    #[tokio::test]
    async fn no_replay_while_the_first_attempt_still_holds_the_body() {
        let body = stream(vec![data(b"a"), data(b"b"), data(b"c")]);
        let (mut recorder, tape) = Tape::record(body, 1024);
        recorder.frame().await.unwrap().unwrap();
        assert!(tape.rewind().is_none(), "not while the first attempt reads");
        let settled = tape.clone();
        let waiting = tokio::spawn(settled.settled_owned());
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        let rest = recorder.frame().await.unwrap().unwrap();
        assert_eq!(
            rest.into_data().unwrap(),
            "b",
            "the first attempt reads on, uncut"
        );
        drop(recorder);
        waiting.await.unwrap();
        let replay = tape.rewind().expect("settled: replayable");
        assert_eq!(collect(replay).await.0, b"abc");
    }

    #[tokio::test]
    async fn a_body_past_the_cap_is_not_replayed_and_its_recording_is_freed() {
        let body = stream(vec![data(b"0123456789"), data(b"x")]);
        let (recorder, tape) = Tape::record(body, 10);
        assert_eq!(
            collect(recorder).await.0,
            b"0123456789x",
            "the first attempt gets it all"
        );
        assert_eq!(tape.lock().recorded.0.capacity(), 0, "freed");
        assert!(tape.rewind().is_none());
    }

    #[tokio::test]
    async fn a_body_that_fails_is_not_replayed() {
        let body = stream(vec![data(b"part"), Err(std::io::Error::other("broken"))]);
        let (recorder, tape) = Tape::record(body, 1024);
        assert!(recorder.collect().await.is_err());
        assert!(tape.rewind().is_none());
    }

    #[test]
    fn the_buffer_grows_wiped_and_never_past_the_cap() {
        let mut buf = SecretBuf(Vec::with_capacity(4));
        assert!(buf.push(b"abcd", 10));
        assert!(buf.push(b"efgh", 10));
        assert!(buf.0.capacity() <= 10);
        assert!(!buf.push(b"ijk", 10), "past the cap");
        assert_eq!(buf.as_slice(), b"abcdefgh");
    }
}
