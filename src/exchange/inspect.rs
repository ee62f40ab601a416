//! Reading a response body, up to a bound, to see whether it is Vault's rejection.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Buf;
use http_body::{Body, Frame};

use super::body::ResponseBody;
use crate::vault::detect::FailureRule;

/// A response whose body is being read to see whether it is Vault's rejection.
///
/// Shared by the tower future and the reqwest middleware: the body is read up to a bound, then
/// the rule judges the bytes, and the response is rebuilt so the caller still gets every frame.
pub(crate) struct Inspection<B: Body> {
    parts: Option<http::response::Parts>,
    body: Option<Pin<Box<B>>>,
    frames: VecDeque<Frame<B::Data>>,
    seen: Vec<u8>,
    limit: usize,
}

impl<B: Body> Inspection<B> {
    /// Starts reading `response`, or hands it back untouched if it says it is larger than `limit`.
    pub(crate) fn start(response: http::Response<B>, limit: usize) -> Started<B> {
        let (parts, body) = response.into_parts();
        let declared = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let limit_u64 = limit as u64;
        if declared.is_some_and(|len| len > limit_u64) || body.size_hint().lower() > limit_u64 {
            return Started::TooLarge(http::Response::from_parts(parts, ResponseBody::new(body)));
        }
        Started::Reading(Self {
            parts: Some(parts),
            body: Some(Box::pin(body)),
            frames: VecDeque::new(),
            seen: Vec::new(),
            limit,
        })
    }

    /// Reads until the body ends, errs or passes the bound; then gives back the response and
    /// whether `rule` calls it a rejection. Returns `None` if polled again after that.
    pub(crate) fn poll_judge<R: FailureRule>(
        &mut self,
        cx: &mut Context<'_>,
        rule: &R,
    ) -> Poll<Option<(http::Response<ResponseBody<B>>, bool)>> {
        let Some(reading) = self.body.as_mut() else {
            return Poll::Ready(None);
        };
        let mut error = None;
        let mut complete = false;
        loop {
            match reading.as_mut().poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    complete = true;
                    break;
                }
                Poll::Ready(Some(Err(err))) => {
                    error = Some(err);
                    break;
                }
                Poll::Ready(Some(Ok(frame))) => {
                    let fits = match frame.data_ref() {
                        Some(data) => {
                            self.seen.len() + data.remaining() <= self.limit
                                && copy_chunks(data, &mut self.seen)
                        }
                        None => true,
                    };
                    self.frames.push_back(frame);
                    if !fits {
                        break;
                    }
                }
            }
        }
        let (Some(parts), Some(body)) = (self.parts.take(), self.body.take()) else {
            return Poll::Ready(None);
        };
        let rejected = complete && rule.check_body(parts.status, &parts.headers, &self.seen);
        let frames = std::mem::take(&mut self.frames);
        let ended = complete || error.is_some();
        let body = ResponseBody::with_read_ahead(frames, error, ended, body);
        Poll::Ready(Some((http::Response::from_parts(parts, body), rejected)))
    }
}

/// How [`Inspection::start`] went.
pub(crate) enum Started<B: Body> {
    /// The body is to be read.
    Reading(Inspection<B>),
    /// The body is larger than the bound: here is the response, untouched.
    TooLarge(http::Response<ResponseBody<B>>),
}

/// Copies the bytes of `data` into `out` without consuming it. Returns `false` if the buffer is
/// split into more pieces than this reads at once (then the caller gives up inspecting).
pub(crate) fn copy_chunks<D: Buf>(data: &D, out: &mut Vec<u8>) -> bool {
    let mut slices = [IoSlice::new(&[]); 16];
    let filled = data.chunks_vectored(&mut slices);
    let mut copied = 0;
    for slice in &slices[..filled] {
        out.extend_from_slice(slice);
        copied += slice.len();
    }
    copied == data.remaining()
}
