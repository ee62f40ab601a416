//! [`ResponseFuture`]: one request's way through the tower door.
//!
//! ```text
//!  call ──► Sent ──► head passes ──────────────────────────────► done
//!   │         │ head is a rejection, or its body must be read
//!   │         ▼
//!   └─────► Rare: the shared flow (exchange::flow), boxed ──────► done
//!  (no token yet: wait for one, then send)
//! ```
//!
//! The common case, a request sent with the token whose answer's head says it is not a
//! rejection, is the `Sent` state and nothing else. Everything rare (waiting for the first token,
//! reading a body, getting a new token, the replay) is one boxed async function shared with the
//! reqwest door, so that its rules are written once.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::bounds::{AnswerBody, Upstream};
use super::door::TowerDoor;
use super::guard::Unjudged;
use crate::cache::{note_accepted, Cache};
use crate::exchange::body::ResponseBody;
use crate::exchange::flow;
use crate::exchange::replay::ReplayCopy;
use crate::vault::binding::{Binding, Judging};
use crate::vault::detect::{FailureRule, Verdict};
use crate::BoxError;

type Answer<B> = Response<ResponseBody<B>>;

/// The rare part of an exchange, boxed: it happens to few requests, and the future every request
/// carries stays small.
type Rare<B> = Pin<Box<dyn Future<Output = Result<Answer<B>, BoxError>> + Send>>;

pin_project! {
    /// The future [`VaultAuth`](crate::VaultAuth) returns for each request.
    pub struct ResponseFuture<S, ReqBody, ResBody, R>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>>,
        ResBody: Body,
    {
        #[pin]
        state: State<S::Future, ResBody>,
        sent: Sent<S, ReqBody, R>,
    }
}

/// What a request sent with a token needs if its answer turns out to be a rejection.
struct Sent<S, B, R> {
    rule: R,
    /// The cache's id: it is found again only if the answer is not plainly a pass, so that the
    /// request path clones no shared pointer.
    cache: u64,
    generation: u64,
    judging: Judging,
    replay: Option<ReplayCopy<B, S>>,
}

pin_project! {
    #[project = StateProj]
    enum State<F, ResB>
    where
        ResB: Body,
    {
        // Sent with a token; the answer's head is judged when it comes.
        Sent { #[pin] fut: F },
        // Not for this layer to judge: the caller's own credential, or another host let through.
        PassThrough { #[pin] fut: F },
        // Refused before sending.
        Failed { error: Option<BoxError> },
        // The shared flow.
        Rare { fut: Rare<ResB> },
    }
}

impl<S, B, ResB, R> ResponseFuture<S, B, ResB, R>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    ResB: Body,
{
    /// The context of a request the layer does not judge.
    fn unjudged(rule: R) -> Sent<S, B, R> {
        Sent {
            rule,
            cache: 0,
            generation: 0,
            judging: Judging::NONE,
            replay: None,
        }
    }

    pub(crate) fn pass_through(fut: S::Future, rule: R) -> Self {
        Self {
            state: State::PassThrough { fut },
            sent: Self::unjudged(rule),
        }
    }

    pub(crate) fn failed(error: BoxError, rule: R) -> Self {
        Self {
            state: State::Failed { error: Some(error) },
            sent: Self::unjudged(rule),
        }
    }

    #[inline]
    pub(crate) fn sent(
        fut: S::Future,
        rule: R,
        binding: &Binding,
        generation: u64,
        replay: Option<ReplayCopy<B, S>>,
    ) -> Self {
        Self {
            state: State::Sent { fut },
            sent: Sent {
                rule,
                cache: binding.cache.id(),
                generation,
                judging: binding.judging,
                replay,
            },
        }
    }
}

impl<S, B, ResB, R> ResponseFuture<S, B, ResB, R>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    ResB: Body,
{
    /// A request that found no token: it waits for one (holding no readiness of the inner
    /// service), then `service` is polled ready and sends it.
    pub(crate) fn waiting(
        cache: Arc<Cache>,
        request: Request<B>,
        service: S,
        rule: R,
        binding: &Binding,
        replay: Option<ReplayCopy<B, S>>,
    ) -> Self
    where
        S: Upstream<B, ResB>,
        B: Body + Send + 'static,
        ResB: AnswerBody,
        R: FailureRule,
    {
        let door = TowerDoor {
            service: Some(service),
            rule: rule.clone(),
            inspect_limit: binding.inspect_limit,
            inspect_wait: binding.inspect_wait,
            body: PhantomData,
        };
        Self {
            state: State::Rare {
                fut: Box::pin(flow::send_when_ready(door, cache, request, replay)),
            },
            sent: Self::unjudged(rule),
        }
    }
}

impl<S, B, R> Sent<S, B, R> {
    /// Judges the head of an answer to a request sent with the token: `true` when it is the
    /// caller's answer now, `false` when the rest of the flow must take it. Takes the answer by
    /// reference, so that in the common case it is moved once, into the caller's hands.
    #[inline]
    fn passes<ResB>(&self, response: &Response<ResB>) -> bool
    where
        R: FailureRule,
    {
        if response.extensions().get::<Unjudged>().is_none() {
            if self.rule.check_head(response.status(), response.headers()) != Verdict::Pass {
                return false;
            }
            // Vault took the token: a replacement that works ends a streak of rejected ones.
            note_accepted(self.cache, self.generation);
        }
        true
    }

    /// An answer that is a rejection, or may be one once its body is read: the shared flow takes
    /// it from here.
    #[inline(never)]
    fn on_suspect<ResB>(&mut self, response: Response<ResB>) -> Result<Answer<ResB>, Rare<ResB>>
    where
        S: Upstream<B, ResB>,
        B: Body + Send + 'static,
        ResB: AnswerBody,
        R: FailureRule,
    {
        let Some(cache) = Cache::find(self.cache) else {
            // The layer is gone: nobody is left to get a new token for.
            return Ok(response.map(ResponseBody::new));
        };
        let door = TowerDoor {
            service: None,
            rule: self.rule.clone(),
            inspect_limit: self.judging.limit as usize,
            inspect_wait: self.judging.wait(),
            body: PhantomData,
        };
        Err(Box::pin(flow::judge_and_recover(
            door,
            cache,
            self.generation,
            response,
            self.replay.take(),
        )))
    }
}

impl<S, B, ResB, R> Future for ResponseFuture<S, B, ResB, R>
where
    S: Service<Request<B>, Response = Response<ResB>> + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    ResB: Body + Send + 'static,
    ResB::Data: Send,
    ResB::Error: Send,
    R: FailureRule,
{
    type Output = Result<Answer<ResB>, BoxError>;

    // The common case, an answer to a request sent with the token whose head passes, is handled
    // here, small enough to inline into the caller; every other state in `poll_other`.
    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let StateProj::Sent { fut } = this.state.as_mut().project() {
            let response = ready!(fut.poll(cx)).map_err(Into::into)?;
            if this.sent.passes(&response) {
                return Poll::Ready(Ok(response.map(ResponseBody::new)));
            }
            match this.sent.on_suspect(response) {
                Ok(answer) => return Poll::Ready(Ok(answer)),
                Err(rare) => this.state.set(State::Rare { fut: rare }),
            }
        }
        poll_other(this.state, cx)
    }
}

/// Every state but `Sent`.
#[inline(never)]
fn poll_other<F, ResB, E>(
    state: Pin<&mut State<F, ResB>>,
    cx: &mut Context<'_>,
) -> Poll<Result<Answer<ResB>, BoxError>>
where
    F: Future<Output = Result<Response<ResB>, E>>,
    E: Into<BoxError>,
    ResB: Body,
{
    match state.project() {
        StateProj::Rare { fut } => fut.as_mut().poll(cx),
        StateProj::PassThrough { fut } => {
            let response = ready!(fut.poll(cx)).map_err(Into::into)?;
            Poll::Ready(Ok(response.map(ResponseBody::new)))
        }
        StateProj::Failed { error } => Poll::Ready(Err(error
            .take()
            .unwrap_or_else(|| "polled after completion".into()))),
        StateProj::Sent { .. } => Poll::Ready(Err("polled after completion".into())),
    }
}

impl<S, B, ResB, R> fmt::Debug for ResponseFuture<S, B, ResB, R>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    ResB: Body,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Sent { .. } => "Sent",
            State::PassThrough { .. } => "PassThrough",
            State::Failed { .. } => "Failed",
            State::Rare { .. } => "Rare",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .field("generation", &self.sent.generation)
            .finish_non_exhaustive()
    }
}
