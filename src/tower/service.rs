//! [`VaultAuth`](crate::VaultAuth): the service the layer wraps around the inner one, and its request path.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use super::bounds::{AnswerBody, Upstream};
use super::future::ResponseFuture;
use super::layer::VaultAuthLayer;
use crate::error::ConfigError;
use crate::exchange::body::ResponseBody;
use crate::exchange::replay::ReplayCopy;
use crate::handle::AuthHandle;
use crate::source::TokenSource;
use crate::vault::binding::{Admission, Binding};
use crate::vault::detect::{FailureRule, VaultRule};
use crate::vault::origin::Target;
use crate::vault::strip::strip_vault_tokens;
use crate::BoxError;

/// The service [`VaultAuthLayer`](crate::VaultAuthLayer) wraps around `S`: see the layer for what it does.
///
/// `S` must be `Clone`: a clone sends the replay of a rejected request, and the request that
/// waits for the first token.
pub struct VaultAuth<S, R = VaultRule> {
    pub(crate) inner: S,
    pub(crate) binding: Arc<Binding>,
    pub(crate) rule: R,
}

impl<S: Clone, R: Clone> Clone for VaultAuth<S, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            binding: Arc::clone(&self.binding),
            rule: self.rule.clone(),
        }
    }
}

impl<S: fmt::Debug, R: fmt::Debug> fmt::Debug for VaultAuth<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultAuth")
            .field("inner", &self.inner)
            .field("vault", &self.binding.origin.shown)
            .field("rule", &self.rule)
            .finish_non_exhaustive()
    }
}

impl<S> VaultAuth<S> {
    /// A layer that wraps services in `VaultAuth`; the same as [`VaultAuthLayer::new`].
    pub fn layer(vault_url: &str, source: impl TokenSource) -> Result<VaultAuthLayer, ConfigError> {
        VaultAuthLayer::new(vault_url, source)
    }
}

impl<S, R> VaultAuth<S, R> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Gives back the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// A handle to the layer's token cache.
    pub fn handle(&self) -> AuthHandle {
        AuthHandle {
            cache: Arc::clone(&self.binding.cache),
        }
    }
}

impl<S, R, ReqBody, ResBody> Service<Request<ReqBody>> for VaultAuth<S, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    ReqBody: Body + Send + 'static,
    ResBody: Body + Send + 'static,
    ResBody::Data: Send,
    ResBody::Error: Send,
    R: FailureRule,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = BoxError;
    type Future = ResponseFuture<S, ReqBody, ResBody, R>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let binding = &*self.binding;
        if !binding.is_vault_uri(req.uri()) {
            return self.call_foreign(req);
        }
        match binding.admit_headers(req.headers_mut()) {
            Admission::Authenticate => {}
            Admission::PassThrough => {
                return ResponseFuture::pass_through(self.inner.call(req), self.rule.clone())
            }
            _ => return self.call_foreign(req),
        }
        // The copy for a replay is taken first: it must not hold the token.
        let replay = ReplayCopy::of(&mut req, binding.replay_limit, &self.inner);
        match binding.cache.attach(req.headers_mut()) {
            Some(generation) => ResponseFuture::sent(
                self.inner.call(req),
                self.rule.clone(),
                binding,
                generation,
                replay,
            ),
            None => self.call_waiting(req, replay),
        }
    }
}

impl<S, R> VaultAuth<S, R> {
    /// A request that found no token. It waits for one without holding the inner service's
    /// readiness: the ready service is dropped here (giving back a concurrency permit or a buffer
    /// slot, which the source's own requests may need), and a clone is polled ready once the
    /// token is in hand. The clone left here is polled ready before its next call, as tower
    /// requires.
    #[inline(never)]
    fn call_waiting<ReqBody, ResBody>(
        &mut self,
        req: Request<ReqBody>,
        replay: Option<ReplayCopy<ReqBody, S>>,
    ) -> ResponseFuture<S, ReqBody, ResBody, R>
    where
        S: Upstream<ReqBody, ResBody> + Clone,
        ReqBody: Body + Send + 'static,
        ResBody: AnswerBody,
        R: FailureRule,
    {
        let unready = self.inner.clone();
        drop(std::mem::replace(&mut self.inner, unready.clone()));
        ResponseFuture::waiting(
            Arc::clone(&self.binding.cache),
            req,
            unready,
            self.rule.clone(),
            &self.binding,
            replay,
        )
    }

    /// A request for another host (by its URI or its `Host` header): let through without any
    /// Vault token, or refused. Out of line: the request path is for the Vault's requests.
    #[inline(never)]
    fn call_foreign<ReqBody, ResBody>(
        &mut self,
        mut req: Request<ReqBody>,
    ) -> ResponseFuture<S, ReqBody, ResBody, R>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>>,
        ResBody: Body,
        R: Clone,
    {
        match self
            .binding
            .admit_other(&Target::of(req.uri()), req.headers())
        {
            Admission::Refuse(refused) => ResponseFuture::failed(refused.into(), self.rule.clone()),
            _ => {
                strip_vault_tokens(req.headers_mut());
                ResponseFuture::pass_through(self.inner.call(req), self.rule.clone())
            }
        }
    }
}
