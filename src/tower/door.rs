//! The tower front door's part in the shared flow: how it sends a request through a clone of the
//! inner service, judges an answer and discards one.

use std::marker::PhantomData;
use std::time::Duration;

use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, Response};
use http_body::Body;
use tower_service::Service;

use super::bounds::{AnswerBody, Upstream};
use super::guard::Unjudged;
use crate::error::TokenUnavailable;
use crate::exchange::body::ResponseBody;
use crate::exchange::flow::{self, Door};
use crate::exchange::replay::ReplayCopy;
use crate::vault::detect::FailureRule;
use crate::BoxError;

/// Sends through a clone of the inner service, polled ready only when it is about to send.
pub(crate) struct TowerDoor<S, B, R> {
    /// The service to send through; a replay brings its own, from its copy.
    pub(crate) service: Option<S>,
    pub(crate) rule: R,
    pub(crate) inspect_limit: usize,
    pub(crate) inspect_wait: Duration,
    pub(crate) body: PhantomData<fn(B)>,
}

impl<S, B, ResB, R> Door for TowerDoor<S, B, R>
where
    // `Service` names `ResB` (an impl's parameter must appear in a projection).
    S: Service<Request<B>, Response = Response<ResB>> + Upstream<B, ResB>,
    B: Body + Send + 'static,
    ResB: AnswerBody,
    R: FailureRule,
{
    type Request = Request<B>;
    type Sent = Response<ResB>;
    type Response = Response<ResponseBody<ResB>>;
    type Replay = ReplayCopy<B, S>;
    type Error = BoxError;

    fn unavailable(err: TokenUnavailable) -> BoxError {
        err.into()
    }

    fn settled(copy: &ReplayCopy<B, S>) -> impl std::future::Future<Output = ()> + Send + 'static {
        copy.settled()
    }

    fn rebuild(&mut self, copy: ReplayCopy<B, S>) -> Option<Request<B>> {
        let (request, service) = copy.rebuild()?;
        self.service = Some(service);
        Some(request)
    }

    async fn send(
        &mut self,
        mut request: Request<B>,
        header: HeaderValue,
    ) -> Result<Response<ResB>, BoxError> {
        let service = self
            .service
            .as_mut()
            .ok_or("the layer had no service to send the request through")?;
        std::future::poll_fn(|cx| service.poll_ready(cx))
            .await
            .map_err(Into::into)?;
        request.headers_mut().insert(AUTHORIZATION, header);
        service.call(request).await.map_err(Into::into)
    }

    async fn judge(&mut self, sent: Response<ResB>) -> (Self::Response, bool) {
        if sent.extensions().get::<Unjudged>().is_some() {
            // Not an answer to the layer's token (another host's, or a hop that went without it).
            return (sent.map(ResponseBody::new), false);
        }
        flow::judge_http(sent, &self.rule, self.inspect_limit, self.inspect_wait).await
    }

    async fn discard(&mut self, response: Self::Response) {
        flow::discard_body(response.into_body()).await;
    }
}
