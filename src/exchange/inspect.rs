//! Reading a response body, within bounds of memory and time, to see whether it is Vault's
//! rejection.
//!
//! The frames read are kept, as they came, for the caller. The bound counts what that holds: the
//! data bytes plus the frame list's slots (a slot is as large as a frame, about a hundred bytes,
//! and an empty frame takes one too), so a body that trickles in one-byte frames stops being read
//! after a few hundred frames, not after 64 Ki of them. Judging copies the data into one buffer
//! (or borrows it, when it came in one piece) for as long as the judgement takes.
//!
//! The rule is asked about the bytes read so far whenever the body pauses while they are few
//! (up to 1 KiB), and beyond that each time their number has doubled: a verdict that the first
//! bytes give (Vault writes `responseStatus` first) comes as soon as they are there, and the
//! judgements cost a bounded multiple of the bytes read. The head is never held longer than the
//! time bound: then the caller gets the response with what was read, and the rest of the body.

use std::collections::VecDeque;
use std::future::Future;
use std::mem::size_of;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Buf;
use http_body::{Body, Frame};
use tokio::time::{Instant, Sleep};

use super::body::ResponseBody;
use crate::vault::detect::{judge_body, FailureRule, Verdict};

#[cfg(test)]
use super::DEFAULT_INSPECT_WAIT;

/// A response whose body is being read to see whether it is Vault's rejection.
///
/// Shared by the tower future and the reqwest middleware: the body is read within the bounds,
/// the rule judges the bytes, and the response is rebuilt so the caller still gets every frame.
pub(crate) struct Inspection<B: Body> {
    parts: Option<http::response::Parts>,
    body: Option<Pin<Box<B>>>,
    frames: VecDeque<Frame<B::Data>>,
    // The data bytes in `frames`.
    data: usize,
    // The number of data bytes at which the rule is next asked about the prefix, and at which
    // it was last asked.
    next_look: usize,
    looked: usize,
    limit: usize,
    wait: Duration,
    started: Instant,
    // Set when the body first makes us wait.
    deadline: Option<Pin<Box<Sleep>>>,
}

/// Up to this many bytes read, the rule is asked about the prefix at every pause of the body (a
/// few hundred looks at most, each at most this long); past it, each time the bytes read double.
const EAGER_LOOKS: usize = 1024;

/// How much of an encoded body's content a look at its prefix decodes.
const PREFIX_CONTENT: usize = 256;

/// How reading stopped.
enum Stop {
    /// The body ended: judge it whole.
    Ended,
    /// The body failed, passed the bound, or the time ran out: judge what was read.
    Cut,
    /// The rule decided from the first bytes; the rest is still to be read, by the caller.
    Decided(Verdict),
}

impl<B: Body> Inspection<B> {
    /// Starts reading `response`, or hands it back untouched if it says it is larger than `limit`
    /// (its length and one frame's slot). Its head is held at most `wait` (from now) for the body
    /// to be judged; `Duration::ZERO` judges only what is there at the first poll. The timer is
    /// made, on Tokio's clock, only if the body makes us wait.
    pub(crate) fn start(response: http::Response<B>, limit: usize, wait: Duration) -> Started<B> {
        let (parts, body) = response.into_parts();
        let declared = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        // The least a body of that size holds: its bytes in at least one frame.
        let least = |len: u64| len.saturating_add(slot::<B>() as u64);
        let limit_u64 = limit as u64;
        if declared.is_some_and(|len| least(len) > limit_u64)
            || least(body.size_hint().lower()) > limit_u64
        {
            return Started::TooLarge(http::Response::from_parts(parts, ResponseBody::new(body)));
        }
        Started::Reading(Self {
            parts: Some(parts),
            body: Some(Box::pin(body)),
            frames: VecDeque::new(),
            data: 0,
            next_look: 1,
            looked: 0,
            limit,
            wait,
            started: Instant::now(),
            deadline: None,
        })
    }

    /// Reads until the body ends, errs or passes a bound, or the rule decides from its first
    /// bytes; then gives back the response and whether `rule` calls it a rejection. Returns
    /// `None` if polled again after that.
    pub(crate) fn poll_judge<R: FailureRule>(
        &mut self,
        cx: &mut Context<'_>,
        rule: &R,
    ) -> Poll<Option<(http::Response<ResponseBody<B>>, bool)>> {
        let mut error = None;
        let stop = loop {
            let Some(reading) = self.body.as_mut() else {
                return Poll::Ready(None);
            };
            match reading.as_mut().poll_frame(cx) {
                Poll::Pending => {
                    // While the body is short (where Vault's verdict is), every pause is a
                    // moment to look again; beyond, the doubling schedule bounds the cost.
                    if self.data > self.looked && self.data <= EAGER_LOOKS {
                        match self.look(rule) {
                            Verdict::InspectBody => {}
                            verdict => break Stop::Decided(verdict),
                        }
                    }
                    if self.out_of_time(cx) {
                        break Stop::Cut;
                    }
                    return Poll::Pending;
                }
                Poll::Ready(None) => break Stop::Ended,
                Poll::Ready(Some(Err(err))) => {
                    error = Some(err);
                    break Stop::Cut;
                }
                Poll::Ready(Some(Ok(frame))) => {
                    self.keep(frame);
                    if self.held() > self.limit {
                        break Stop::Cut;
                    }
                    if self.data >= self.next_look {
                        match self.look(rule) {
                            Verdict::InspectBody => {}
                            verdict => break Stop::Decided(verdict),
                        }
                    }
                }
            }
        };
        let verdict = match stop {
            Stop::Ended => self.judge(rule, true),
            Stop::Cut => self.judge(rule, false),
            Stop::Decided(verdict) => verdict,
        };
        let (Some(parts), Some(body)) = (self.parts.take(), self.body.take()) else {
            return Poll::Ready(None);
        };
        self.deadline = None;
        let frames = std::mem::take(&mut self.frames);
        let ended = matches!(stop, Stop::Ended) || error.is_some();
        let body = ResponseBody::with_read_ahead(frames, error, ended, body);
        let rejected = verdict == Verdict::AuthFailure;
        Poll::Ready(Some((http::Response::from_parts(parts, body), rejected)))
    }

    /// Asks `rule` about the prefix read so far, and schedules the next look.
    fn look<R: FailureRule>(&mut self, rule: &R) -> Verdict {
        self.looked = self.data;
        self.next_look = self.data.saturating_mul(2);
        self.judge(rule, false)
    }

    /// Keeps `frame` for the caller. The list of frames grows by doubling, except where doubling
    /// would pass the bound: then by one slot.
    fn keep(&mut self, frame: Frame<B::Data>) {
        let added = frame.data_ref().map_or(0, Buf::remaining);
        if self.frames.len() == self.frames.capacity() {
            let doubled = (self.frames.capacity() * 2).max(4);
            let after = doubled
                .saturating_mul(slot::<B>())
                .saturating_add(self.data)
                .saturating_add(added);
            if after > self.limit {
                self.frames.reserve_exact(1);
            }
        }
        self.data = self.data.saturating_add(added);
        self.frames.push_back(frame);
    }

    /// What the frames read hold in memory, as far as this crate can see: their data and the
    /// list's slots.
    fn held(&self) -> usize {
        self.frames
            .capacity()
            .saturating_mul(slot::<B>())
            .saturating_add(self.data)
    }

    /// Whether the time bound has passed; if not, the waker is registered for it.
    fn out_of_time(&mut self, cx: &mut Context<'_>) -> bool {
        if self.wait.is_zero() {
            return true;
        }
        let (started, wait) = (self.started, self.wait);
        let deadline = self.deadline.get_or_insert_with(|| {
            let at = started.checked_add(wait);
            Box::pin(match at {
                Some(at) => tokio::time::sleep_until(at),
                // Beyond what the clock can say: as good as never.
                None => tokio::time::sleep(Duration::from_secs(86_400 * 365)),
            })
        });
        deadline.as_mut().poll(cx).is_ready()
    }

    /// Asks `rule` about the data read so far.
    fn judge<R: FailureRule>(&self, rule: &R, complete: bool) -> Verdict {
        let Some(parts) = self.parts.as_ref() else {
            return Verdict::Pass;
        };
        let mut data = self.frames.iter().filter_map(Frame::data_ref);
        let mut whole = complete;
        let copied;
        let bytes = match data.next() {
            None => &[][..],
            Some(only) if self.data == only.chunk().len() => only.chunk(),
            Some(first) => {
                let mut all = Vec::with_capacity(self.data);
                for piece in std::iter::once(first).chain(data) {
                    if !copy_chunks(piece, &mut all) {
                        // Judge what could be copied, as a prefix.
                        whole = false;
                        break;
                    }
                }
                copied = all;
                &copied[..]
            }
        };
        // A look at a prefix needs its first bytes only (Vault writes `responseStatus` first): an
        // encoded body is decoded that far, so that a body trickling in does not cost a full
        // decode at every pause.
        let content = if complete {
            self.limit
        } else {
            self.limit.min(PREFIX_CONTENT)
        };
        let verdict = judge_body(rule, parts.status, &parts.headers, bytes, whole, content);
        if complete && verdict == Verdict::InspectBody {
            Verdict::Pass
        } else {
            verdict
        }
    }
}

/// What one frame takes in the list of frames read.
const fn slot<B: Body>() -> usize {
    size_of::<Frame<B::Data>>()
}

/// How [`Inspection::start`] went.
pub(crate) enum Started<B: Body> {
    /// The body is to be read.
    Reading(Inspection<B>),
    /// The body is larger than the bound: here is the response, untouched.
    TooLarge(http::Response<ResponseBody<B>>),
}

/// Appends the bytes of `data` to `out` without consuming it. Returns `false` if the buffer is
/// split into more pieces than this reads at once: then only the first of them were copied.
pub(crate) fn copy_chunks<D: Buf>(data: &D, out: &mut Vec<u8>) -> bool {
    let chunk = data.chunk();
    if chunk.len() == data.remaining() {
        out.extend_from_slice(chunk);
        return true;
    }
    let mut slices = [std::io::IoSlice::new(&[]); 16];
    let filled = data.chunks_vectored(&mut slices);
    let mut copied = 0;
    for slice in &slices[..filled] {
        out.extend_from_slice(slice);
        copied += slice.len();
    }
    copied == data.remaining()
}

#[cfg(test)]
#[path = "inspect_tests.rs"]
mod tests;
