//! [`ResponseFuture`]: one request's way through the layer, as a state machine.
//!
//! ```text
//!            (no token yet)                    Pass
//!  call ──► Waiting ──► Sent ──► check head ──────────► done
//!   │                    ▲           │ InspectBody
//!   │ (token held)       │           ▼
//!   └───────────────────►┘       Inspecting ──(not a rejection)──► done
//!                        │           │ rejection
//!                        │           ▼
//!                    Replaying ◄── Reacquiring ──(nothing better, or no copy)──► done
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::guard::ForeignAnswer;
use crate::cache::{BoxOutcome, BoxReacquired, Cache, Reacquired};
use crate::error::TokenUnavailable;
use crate::exchange::body::ResponseBody;
use crate::exchange::inspect::{Inspection, Started, DEFAULT_INSPECT_WAIT};
use crate::exchange::replay::ReplayCopy;
use crate::trace::event;
use crate::vault::binding::Binding;
use crate::vault::detect::{FailureRule, Verdict};
use crate::BoxError;

pin_project! {
    /// The future [`VaultAuth`](crate::VaultAuth) returns for each request.
    pub struct ResponseFuture<S, ReqBody, ResBody, R>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>>,
        ResBody: Body,
    {
        #[pin]
        state: State<S, ReqBody, ResBody>,
        ctx: Ctx<S, ReqBody, R>,
    }
}

/// What the states share: how to judge a response and what to replay.
struct Ctx<S, B, R> {
    rule: R,
    cache: u64,
    generation: u64,
    // At most `u32::MAX`: a bound on a body read into memory.
    inspect_limit: u32,
    replay: Option<ReplayCopy<B, S>>,
    replayed: bool,
}

type Answer<B> = Response<ResponseBody<B>>;

pin_project! {
    #[project = StateProj]
    enum State<S, B, ResB>
    where
        S: Service<Request<B>, Response = Response<ResB>>,
        ResB: Body,
    {
        // Not for this layer to judge: the caller's own credential, or another host let through.
        PassThrough { #[pin] fut: S::Future },
        // Refused before sending.
        Failed { error: Option<BoxError> },
        // No token yet: waiting for the binding fetch, holding the ready service.
        Waiting { waiting: Box<Waiting<S, B>> },
        // Sent with a token; the response is judged when it comes.
        Sent { #[pin] fut: S::Future },
        // Reading a body (up to the bound) to see if it is Vault's rejection.
        Inspecting { inspection: Box<Inspection<ResB>> },
        // Rejected: waiting for the one fetch that serves everybody rejected with this token.
        Reacquiring {
            wait: BoxReacquired,
            response: Option<Box<Answer<ResB>>>,
        },
        // A new token is in place: waiting for the service clone to be ready, then sending again.
        Replaying { replaying: Box<Replaying<S, B, ResB>> },
    }
}

// The states off the common path live in boxes, so that the future a request carries (and moves)
// stays small; they cost an allocation only when they happen.

struct Waiting<S, B> {
    wait: BoxOutcome,
    binding: Arc<Binding>,
    request: Option<Request<B>>,
    service: Option<S>,
    waited_before: bool,
}

struct Replaying<S, B, ResB: Body> {
    service: S,
    request: Option<Request<B>>,
    response: Option<Answer<ResB>>,
}

impl<S, B, ResB, R> ResponseFuture<S, B, ResB, R>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    ResB: Body,
{
    fn with(state: State<S, B, ResB>, ctx: Ctx<S, B, R>) -> Self {
        Self { state, ctx }
    }

    /// The context of a request the layer does not judge.
    fn unjudged(rule: R) -> Ctx<S, B, R> {
        Ctx {
            rule,
            cache: 0,
            generation: 0,
            inspect_limit: 0,
            replay: None,
            replayed: false,
        }
    }

    pub(crate) fn pass_through(fut: S::Future, rule: R) -> Self {
        Self::with(State::PassThrough { fut }, Self::unjudged(rule))
    }

    pub(crate) fn failed(error: BoxError, rule: R) -> Self {
        Self::with(State::Failed { error: Some(error) }, Self::unjudged(rule))
    }

    #[inline]
    pub(crate) fn sent(
        fut: S::Future,
        rule: R,
        binding: &Binding,
        generation: u64,
        replay: Option<ReplayCopy<B, S>>,
    ) -> Self {
        Self::with(
            State::Sent { fut },
            Ctx {
                rule,
                cache: binding.cache.id(),
                generation,
                inspect_limit: binding.inspect_limit_u32(),
                replay,
                replayed: false,
            },
        )
    }

    pub(crate) fn waiting(
        wait: BoxOutcome,
        binding: Arc<Binding>,
        request: Request<B>,
        service: S,
        rule: R,
        replay: Option<ReplayCopy<B, S>>,
    ) -> Self {
        let ctx = Ctx {
            rule,
            cache: binding.cache.id(),
            generation: 0,
            inspect_limit: binding.inspect_limit_u32(),
            replay,
            replayed: false,
        };
        Self::with(
            State::Waiting {
                waiting: Box::new(Waiting {
                    wait,
                    binding,
                    request: Some(request),
                    service: Some(service),
                    waited_before: false,
                }),
            },
            ctx,
        )
    }
}

impl<S, B, R> Ctx<S, B, R> {
    /// The token of this request was rejected: tell the cache, and wait for a new token if the
    /// request can be sent again. Otherwise the caller gets `response` now, and the fetch the
    /// cache started serves the next requests.
    fn rejected<ResB: Body>(&mut self, response: Answer<ResB>) -> Rejection<ResB> {
        let Some(cache) = Cache::find(self.cache) else {
            return Rejection::Done(response);
        };
        let wait = cache.reject(self.generation);
        if self.replayed || self.replay.is_none() {
            return Rejection::Done(response);
        }
        Rejection::Wait(wait, response)
    }
}

/// What a response to a request sent with a token leads to.
enum Step<S, B, ResB>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    ResB: Body,
{
    /// The caller's answer.
    Done(Answer<ResB>),
    /// The state to go on in.
    Next(State<S, B, ResB>),
}

impl<S, B, R: FailureRule> Ctx<S, B, R> {
    /// Judges the head of a response to a request sent with a token: the common pass inline, the
    /// rest out of line.
    #[inline]
    fn on_response<ResB: Body>(&mut self, response: Response<ResB>) -> Step<S, B, ResB>
    where
        S: Service<Request<B>, Response = Response<ResB>>,
    {
        if response.extensions().get::<ForeignAnswer>().is_some() {
            // Another host answered (a redirect followed beneath the layer): its verdict is not
            // Vault's.
            return Step::Done(response.map(ResponseBody::new));
        }
        match self.rule.check_head(response.status(), response.headers()) {
            Verdict::Pass => Step::Done(response.map(ResponseBody::new)),
            verdict => self.on_suspect(response, verdict),
        }
    }

    /// A response that is a rejection, or may be one once its body is read.
    #[inline(never)]
    fn on_suspect<ResB: Body>(
        &mut self,
        response: Response<ResB>,
        verdict: Verdict,
    ) -> Step<S, B, ResB>
    where
        S: Service<Request<B>, Response = Response<ResB>>,
    {
        if verdict == Verdict::InspectBody {
            return match Inspection::start(
                response,
                self.inspect_limit as usize,
                DEFAULT_INSPECT_WAIT,
            ) {
                Started::Reading(inspection) => Step::Next(State::Inspecting {
                    inspection: Box::new(inspection),
                }),
                Started::TooLarge(response) => Step::Done(response),
            };
        }
        match self.rejected(response.map(ResponseBody::new)) {
            Rejection::Wait(wait, response) => Step::Next(State::Reacquiring {
                wait,
                response: Some(Box::new(response)),
            }),
            Rejection::Done(response) => Step::Done(response),
        }
    }
}

enum Rejection<ResB: Body> {
    Wait(BoxReacquired, Answer<ResB>),
    Done(Answer<ResB>),
}

fn send<S, B>(service: &mut S, mut request: Request<B>, header: HeaderValue) -> S::Future
where
    S: Service<Request<B>>,
{
    request.headers_mut().insert(AUTHORIZATION, header);
    service.call(request)
}

impl<S, B, ResB, R> Future for ResponseFuture<S, B, ResB, R>
where
    S: Service<Request<B>, Response = Response<ResB>> + Clone,
    S::Error: Into<BoxError>,
    B: Body + 'static,
    ResB: Body,
    R: FailureRule,
{
    type Output = Result<Answer<ResB>, BoxError>;

    // The common case, a response to a request sent with a token that Vault did not reject, is
    // handled here, small enough to inline into the caller; every other state in `poll_states`.
    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let StateProj::Sent { fut } = this.state.as_mut().project() {
            let response = ready!(fut.poll(cx)).map_err(Into::into)?;
            match this.ctx.on_response(response) {
                Step::Done(answer) => return Poll::Ready(Ok(answer)),
                Step::Next(next) => this.state.set(next),
            }
        }
        Self::poll_states(this.state, this.ctx, cx)
    }
}

impl<S, B, ResB, R> ResponseFuture<S, B, ResB, R>
where
    S: Service<Request<B>, Response = Response<ResB>> + Clone,
    S::Error: Into<BoxError>,
    B: Body + 'static,
    ResB: Body,
    R: FailureRule,
{
    /// Drives the state machine to the answer, or to a point where it must wait.
    #[inline(never)]
    fn poll_states(
        mut state: Pin<&mut State<S, B, ResB>>,
        ctx: &mut Ctx<S, B, R>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Answer<ResB>, BoxError>> {
        loop {
            let next = match state.as_mut().project() {
                StateProj::PassThrough { fut } => {
                    let response = ready!(fut.poll(cx)).map_err(Into::into)?;
                    return Poll::Ready(Ok(response.map(ResponseBody::new)));
                }
                StateProj::Failed { error } => {
                    let error = error
                        .take()
                        .unwrap_or_else(|| "polled after completion".into());
                    return Poll::Ready(Err(error));
                }
                StateProj::Waiting { waiting } => {
                    let Waiting {
                        wait,
                        binding,
                        request,
                        service,
                        waited_before,
                    } = &mut **waiting;
                    let outcome = ready!(wait.as_mut().poll(cx));
                    let (generation, header) = match binding.cache.token_after(&outcome)? {
                        Some(token) => token,
                        None if !*waited_before => {
                            // Gone again before this request could use it: wait once more.
                            *wait = binding.cache.acquire();
                            *waited_before = true;
                            continue;
                        }
                        None => return Poll::Ready(Err(TokenUnavailable::gone().into())),
                    };
                    let (Some(request), Some(mut service)) = (request.take(), service.take())
                    else {
                        return Poll::Ready(Err("polled after completion".into()));
                    };
                    ctx.generation = generation;
                    State::Sent {
                        fut: send(&mut service, request, header),
                    }
                }
                StateProj::Sent { fut } => {
                    let response = ready!(fut.poll(cx)).map_err(Into::into)?;
                    match ctx.on_response(response) {
                        Step::Done(answer) => return Poll::Ready(Ok(answer)),
                        Step::Next(next) => next,
                    }
                }
                StateProj::Inspecting { inspection } => {
                    let Some((response, rejected)) = ready!(inspection.poll_judge(cx, &ctx.rule))
                    else {
                        return Poll::Ready(Err("polled after completion".into()));
                    };
                    if !rejected {
                        return Poll::Ready(Ok(response));
                    }
                    match ctx.rejected(response) {
                        Rejection::Wait(wait, response) => State::Reacquiring {
                            wait,
                            response: Some(Box::new(response)),
                        },
                        Rejection::Done(response) => return Poll::Ready(Ok(response)),
                    }
                }
                StateProj::Reacquiring { wait, response } => {
                    let decision = ready!(wait.as_mut().poll(cx));
                    let response = response.take().map(|r| *r);
                    // The request is built again only if it is going to be sent again.
                    let copy = match (decision, ctx.replay.take()) {
                        (Reacquired::Replay, Some(copy)) => copy.rebuild(),
                        _ => None,
                    };
                    match copy {
                        Some((request, service)) => State::Replaying {
                            replaying: Box::new(Replaying {
                                service,
                                request: Some(request),
                                response,
                            }),
                        },
                        None => {
                            return Poll::Ready(
                                response.ok_or_else(|| "polled after completion".into()),
                            )
                        }
                    }
                }
                StateProj::Replaying { replaying } => {
                    let Replaying {
                        service,
                        request,
                        response,
                    } = &mut **replaying;
                    ready!(service.poll_ready(cx)).map_err(Into::into)?;
                    let cache = Cache::find(ctx.cache);
                    let current = cache.as_ref().and_then(|cache| cache.current());
                    let (Some(cache), Some((generation, header)), Some(request)) =
                        (cache, current, request.take())
                    else {
                        return Poll::Ready(
                            response
                                .take()
                                .ok_or_else(|| "polled after completion".into()),
                        );
                    };
                    cache.count_replay();
                    event!(
                        debug,
                        generation,
                        "replaying the request with the new token"
                    );
                    ctx.generation = generation;
                    ctx.replayed = true;
                    State::Sent {
                        fut: send(service, request, header),
                    }
                }
            };
            state.set(next);
        }
    }
}

impl<S, B, ResB, R> fmt::Debug for ResponseFuture<S, B, ResB, R>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    ResB: Body,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::PassThrough { .. } => "PassThrough",
            State::Failed { .. } => "Failed",
            State::Waiting { .. } => "Waiting",
            State::Sent { .. } => "Sent",
            State::Inspecting { .. } => "Inspecting",
            State::Reacquiring { .. } => "Reacquiring",
            State::Replaying { .. } => "Replaying",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .field("generation", &self.ctx.generation)
            .field("replayed", &self.ctx.replayed)
            .finish_non_exhaustive()
    }
}
