//! The rare part of an exchange, written once for both front doors: waiting for the first token,
//! judging an answer that may be a rejection, and after a rejection, getting a new token (once for
//! everybody rejected with the old one) and sending the request again, at most once.
//!
//! A front door says how it sends a request, judges an answer and discards one ([`Door`]); the
//! rules of the flow live here only. The common case (a token in hand, an answer that is plainly
//! not a rejection) never comes here: each door handles it inline.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use http_body::Body;

use super::body::ResponseBody;
use super::inspect::{Inspection, Started};
use crate::cache::{note_accepted, Cache, Reacquired};
use crate::error::TokenUnavailable;
use crate::trace::event;
use crate::vault::detect::{FailureRule, Verdict};

/// At most this much of a rejected answer's body is read (and thrown away) before the request is
/// sent again, so that the connection it came on can carry the replay.
pub(crate) const DISCARD_LIMIT: usize = 1024 * 1024;

/// And for at most this long.
pub(crate) const DISCARD_WAIT: Duration = Duration::from_secs(2);

/// What a front door does for the shared flow.
pub(crate) trait Door: Send {
    /// A request as the door sends it.
    type Request: Send;
    /// An answer as it comes from sending.
    type Sent: Send;
    /// An answer as the door hands it back, judged.
    type Response: Send;
    /// The copy of a request kept for a replay.
    type Replay: Send;
    /// The door's error.
    type Error: Send;

    /// The error for "no token could be had".
    fn unavailable(err: TokenUnavailable) -> Self::Error;

    /// Builds the request again from its copy; `None` if its body cannot be sent again after all.
    fn rebuild(&mut self, copy: Self::Replay) -> Option<Self::Request>;

    /// Sends `request` with `header` as its `Authorization`.
    fn send(
        &mut self,
        request: Self::Request,
        header: HeaderValue,
    ) -> impl Future<Output = Result<Self::Sent, Self::Error>> + Send;

    /// The answer to hand back, and whether it is Vault rejecting the token the request carried.
    fn judge(&mut self, sent: Self::Sent) -> impl Future<Output = (Self::Response, bool)> + Send;

    /// Finishes with an answer that will not be handed over: reads what is left of its body,
    /// within [`DISCARD_LIMIT`] and [`DISCARD_WAIT`], so that its connection can be used again.
    fn discard(&mut self, response: Self::Response) -> impl Future<Output = ()> + Send;
}

/// Waits for a token, starting or joining the fetch: the token's generation and header value.
///
/// A token that is gone again before this request could use it (another request had it rejected,
/// or it expired) is waited for once more; then the request fails.
pub(crate) async fn first_token(
    cache: &Arc<Cache>,
) -> Result<(u64, HeaderValue), TokenUnavailable> {
    for _ in 0..2 {
        let outcome = cache.acquire().await;
        if let Some(token) = cache.token_after(&outcome)? {
            return Ok(token);
        }
    }
    Err(TokenUnavailable::gone())
}

/// A request that had no token when it came: waits for one, sends, and goes on as any answer does.
pub(crate) async fn send_when_ready<D: Door>(
    mut door: D,
    cache: Arc<Cache>,
    request: D::Request,
    replay: Option<D::Replay>,
) -> Result<D::Response, D::Error> {
    let (generation, header) = first_token(&cache).await.map_err(D::unavailable)?;
    let response = door.send(request, header).await?;
    judge_and_recover(door, cache, generation, response, replay).await
}

/// An answer to a request sent with the token of `generation`: handed over unless it is a
/// rejection; after a rejection, the request is sent again with a new token if it can be.
pub(crate) async fn judge_and_recover<D: Door>(
    mut door: D,
    cache: Arc<Cache>,
    generation: u64,
    response: D::Sent,
    replay: Option<D::Replay>,
) -> Result<D::Response, D::Error> {
    let (response, rejected) = door.judge(response).await;
    if !rejected {
        note_accepted(cache.id(), generation);
        return Ok(response);
    }
    // Told at once, whether or not this request can be sent again: the fetch it starts serves
    // the next requests too.
    let reacquired = cache.reject(generation);
    let Some(copy) = replay else {
        return Ok(response);
    };
    if reacquired.await != Reacquired::Replay {
        return Ok(response);
    }
    let Some((generation, header)) = cache.current() else {
        return Ok(response);
    };
    let Some(request) = door.rebuild(copy) else {
        return Ok(response);
    };
    door.discard(response).await;
    cache.count_replay();
    event!(
        debug,
        generation,
        "replaying the request with the new token"
    );
    let second = door.send(request, header).await?;
    let (second, rejected) = door.judge(second).await;
    if rejected {
        // Never a second replay; the next request finds a fresh token.
        drop(cache.reject(generation));
    } else {
        note_accepted(cache.id(), generation);
    }
    Ok(second)
}

/// Judges an HTTP answer from the Vault with `rule`, reading its body (within `limit` bytes and
/// `wait`) only when the rule asks to; the answer handed back carries every byte as it came.
pub(crate) async fn judge_http<B: Body, R: FailureRule>(
    response: http::Response<B>,
    rule: &R,
    limit: usize,
    wait: Duration,
) -> (http::Response<ResponseBody<B>>, bool) {
    match rule.check_head(response.status(), response.headers()) {
        Verdict::Pass => (response.map(ResponseBody::new), false),
        Verdict::AuthFailure => (response.map(ResponseBody::new), true),
        Verdict::InspectBody => match Inspection::start(response, limit, wait) {
            Started::TooLarge(untouched) => (untouched, false),
            Started::Reading(mut inspection) => {
                let judged = std::future::poll_fn(|cx| inspection.poll_judge(cx, rule)).await;
                judged.expect("an inspection polled to its end once gives its answer")
            }
        },
    }
}

/// Reads and throws away what is left of `body`, within [`DISCARD_LIMIT`] and [`DISCARD_WAIT`].
pub(crate) async fn discard_body<B: Body>(body: B) {
    let drain = async {
        let mut body = std::pin::pin!(body);
        let mut left = DISCARD_LIMIT;
        while let Some(Ok(frame)) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
            let len = frame.data_ref().map_or(0, bytes::Buf::remaining);
            match left.checked_sub(len.max(1)) {
                Some(rest) => left = rest,
                None => break,
            }
        }
    };
    if tokio::time::timeout(DISCARD_WAIT, drain).await.is_err() {
        event!(
            debug,
            "gave up reading a rejected answer's body; its connection is not reused"
        );
    }
}
