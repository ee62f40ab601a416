//! [`ResponseBody`]: the response body the layer hands back.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

pin_project! {
    /// The body of a response that passed through [`VaultAuth`](crate::VaultAuth).
    ///
    /// Most responses are passed through as they are. When the layer had to read a body to see
    /// whether Vault rejected the token, and it turned out not to be a rejection, the frames it read
    /// are handed out first, then the rest of the original body: the caller gets every byte (and
    /// trailers) exactly as the server sent them, still coded if they came with a
    /// `Content-Encoding`. What the layer reads ahead is bounded in memory (the bytes and the
    /// frames' bookkeeping, [`max_inspect_body`](crate::VaultAuthLayerBuilder::max_inspect_body))
    /// and in time: a body that stalls or trickles is handed over with what was read so far.
    pub struct ResponseBody<B>
    where
        B: Body,
    {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B>
    where
        B: Body,
    {
        Direct {
            #[pin]
            body: B,
        },
        // Boxed: responses that were read ahead are rare, and every response carries this enum.
        ReadAhead {
            ahead: Box<ReadAhead<B>>,
        },
    }
}

struct ReadAhead<B: Body> {
    frames: VecDeque<Frame<B::Data>>,
    error: Option<B::Error>,
    // The original body already ended (or failed) while it was read: never poll it again.
    ended: bool,
    body: Pin<Box<B>>,
}

impl<B: Body> ResponseBody<B> {
    #[inline]
    pub(crate) fn new(body: B) -> Self {
        Self {
            kind: Kind::Direct { body },
        }
    }

    pub(crate) fn with_read_ahead(
        frames: VecDeque<Frame<B::Data>>,
        error: Option<B::Error>,
        ended: bool,
        body: Pin<Box<B>>,
    ) -> Self {
        Self {
            kind: Kind::ReadAhead {
                ahead: Box::new(ReadAhead {
                    frames,
                    error,
                    ended,
                    body,
                }),
            },
        }
    }
}

impl<B: Body> ResponseBody<B> {
    /// How many frames read ahead are still to be handed out (`None`: passed through as it is).
    #[cfg(test)]
    pub(crate) fn read_ahead(&self) -> Option<usize> {
        match &self.kind {
            Kind::Direct { .. } => None,
            Kind::ReadAhead { ahead } => Some(ahead.frames.len()),
        }
    }
}

impl<B: Body> Body for ResponseBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Direct { body } => body.poll_frame(cx),
            KindProj::ReadAhead { ahead } => {
                let ReadAhead {
                    frames,
                    error,
                    ended,
                    body,
                } = &mut **ahead;
                if let Some(frame) = frames.pop_front() {
                    return Poll::Ready(Some(Ok(frame)));
                }
                if let Some(error) = error.take() {
                    return Poll::Ready(Some(Err(error)));
                }
                if *ended {
                    return Poll::Ready(None);
                }
                body.as_mut().poll_frame(cx)
            }
        }
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Direct { body } => body.is_end_stream(),
            Kind::ReadAhead { ahead } => {
                ahead.frames.is_empty()
                    && ahead.error.is_none()
                    && (ahead.ended || ahead.body.is_end_stream())
            }
        }
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Direct { body } => body.size_hint(),
            Kind::ReadAhead { ahead } => {
                let ReadAhead {
                    frames,
                    body,
                    ended,
                    ..
                } = &**ahead;
                let ahead: u64 = frames
                    .iter()
                    .filter_map(|f| f.data_ref())
                    .map(|d| d.remaining() as u64)
                    .sum();
                let rest = if *ended {
                    SizeHint::with_exact(0)
                } else {
                    body.size_hint()
                };
                let mut hint = SizeHint::new();
                hint.set_lower(rest.lower() + ahead);
                if let Some(upper) = rest.upper() {
                    hint.set_upper(upper + ahead);
                }
                hint
            }
        }
    }
}

impl<B> fmt::Debug for ResponseBody<B>
where
    B: Body + fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Direct { body } => f.debug_tuple("ResponseBody").field(body).finish(),
            Kind::ReadAhead { ahead } => f
                .debug_struct("ResponseBody")
                .field("read_ahead_frames", &ahead.frames.len())
                .field("rest", &ahead.body)
                .finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};

    #[tokio::test]
    async fn read_ahead_frames_come_first_then_the_rest() {
        let mut ahead = VecDeque::new();
        ahead.push_back(Frame::data(Bytes::from_static(b"hello ")));
        let body = ResponseBody::with_read_ahead(
            ahead,
            None,
            false,
            Box::pin(Full::new(Bytes::from_static(b"world"))),
        );
        assert_eq!(body.size_hint().exact(), Some(11));
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"hello world");
    }
}
