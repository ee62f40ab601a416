//! [`TokenGuardLayer`]: keeps Vault tokens off requests for other hosts, for stacks where a
//! redirect follower sits beneath [`VaultAuthLayer`](crate::VaultAuthLayer).
//!
//! The recommended stack puts a redirect follower *outside* the layer, so every hop passes through
//! it and only hops to the Vault get the token. When a stack must have it the other way round
//! (the token attached once, then redirects followed beneath), put this guard beneath the
//! follower. tower-http's `FollowRedirect` copies the first request's headers into every hop and,
//! with its standard policy, removes credentials only when a hop changes origin from the previous
//! hop, so a second hop on a foreign host would get the token back; the guard removes it there.
//! It also marks the answers of foreign hosts, and of hops back to the Vault that the follower
//! sent without the token, so that the layer above does not take such an `INVALID_SESSION_ID` or
//! 401 for Vault's verdict on its token.
//!
//! ```
//! use tower::ServiceBuilder;
//! use tower_http::follow_redirect::FollowRedirectLayer;
//! use veeva_vault_auth::{source::EnvToken, VaultAuthLayer};
//!
//! # fn demo() -> Result<(), veeva_vault_auth::ConfigError> {
//! let auth = VaultAuthLayer::new("https://myvault.veevavault.com", EnvToken::new())?;
//! let stack = ServiceBuilder::new()
//!     .layer(auth.clone())
//!     .layer(FollowRedirectLayer::new())
//!     .layer(auth.token_guard())
//!     .service(tower::service_fn(|_req: http::Request<String>| async {
//!         Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
//!     }));
//! # let _ = stack;
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::vault::binding::Binding;
use crate::vault::strip::{carries_vault_token, strip_vault_tokens};
use crate::VaultAuthLayer;

/// Marks an answer that is not Vault's verdict on the layer's token: one from another host, or
/// to a hop that went without the token (a follower strips it on a hop to another host and
/// never puts it back). The layer never judges such an answer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Unjudged;

/// Makes [`TokenGuard`]s; get one from [`VaultAuthLayer::token_guard`].
#[derive(Clone)]
pub struct TokenGuardLayer {
    binding: Arc<Binding>,
}

impl fmt::Debug for TokenGuardLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenGuardLayer").finish_non_exhaustive()
    }
}

impl<R> VaultAuthLayer<R> {
    /// A guard for this layer's Vault, to put beneath a redirect follower that sits beneath this
    /// layer: see the [module docs](crate::guard).
    pub fn token_guard(&self) -> TokenGuardLayer {
        TokenGuardLayer {
            binding: Arc::clone(self.binding()),
        }
    }
}

impl<S> Layer<S> for TokenGuardLayer {
    type Service = TokenGuard<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TokenGuard {
            inner,
            binding: Arc::clone(&self.binding),
        }
    }
}

/// Removes Vault tokens from requests for other hosts, and marks those hosts' answers.
#[derive(Clone)]
pub struct TokenGuard<S> {
    inner: S,
    binding: Arc<Binding>,
}

impl<S: fmt::Debug> fmt::Debug for TokenGuard<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenGuard")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, B, ResB> Service<Request<B>> for TokenGuard<S>
where
    S: Service<Request<B>, Response = Response<ResB>>,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = GuardFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let foreign = !self.binding.is_vault_uri(req.uri())
            || self.binding.foreign_host(req.headers()).is_some();
        if foreign {
            strip_vault_tokens(req.headers_mut());
        }
        let unjudged = foreign || !carries_vault_token(req.headers());
        GuardFuture {
            inner: self.inner.call(req),
            unjudged,
        }
    }
}

pin_project! {
    /// The future of [`TokenGuard`].
    #[derive(Debug)]
    pub struct GuardFuture<F> {
        #[pin]
        inner: F,
        unjudged: bool,
    }
}

impl<F, ResB, E> Future for GuardFuture<F>
where
    F: Future<Output = Result<Response<ResB>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.inner.poll(cx))?;
        if *this.unjudged {
            response.extensions_mut().insert(Unjudged);
        }
        Poll::Ready(Ok(response))
    }
}
