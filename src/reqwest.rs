//! [`VaultAuthMiddleware`]: the layer's second front door, for `reqwest-middleware` chains.
//!
//! It shares everything with the [`VaultAuthLayer`](crate::VaultAuthLayer) it comes from: the source, the token cache,
//! the one-Vault rule, failure detection, the single binding refresh and the replay rules. A tower
//! client and a reqwest client made from one layer hold one token between them.
//!
//! Replay uses [`reqwest::Request::try_clone`]: requests with an in-memory body of at most the
//! replay limit (64 KiB by default) are sent again once after a rejection; a streaming body cannot
//! be cloned, so that request gets Vault's answer and the next request carries the new token.
//!
//! Errors of this crate ([`TokenUnavailable`](crate::TokenUnavailable),
//! [`NotForVault`](crate::NotForVault)) come back as `reqwest_middleware::Error::Middleware`;
//! downcast the inner `anyhow::Error` to tell them apart.

use std::fmt;
use std::sync::Arc;

use http::header::AUTHORIZATION;
use http::Extensions;
use reqwest::{Request, Response, ResponseBuilderExt};
use reqwest_middleware::{Error, Middleware, Next, Result};

use crate::cache::Reacquired;
use crate::exchange::body::ResponseBody;
use crate::exchange::inspect::{Inspection, Started, DEFAULT_INSPECT_WAIT};
use crate::trace::event;
use crate::vault::binding::{Admission, Binding};
use crate::vault::detect::{FailureRule, VaultRule, Verdict};
use crate::vault::origin::Target;
use crate::vault::strip::strip_vault_tokens;
use crate::VaultAuthLayer;

/// Attaches the Vault token to a reqwest client's requests, with the same cache and rules as the
/// [`VaultAuthLayer`](crate::VaultAuthLayer) it was made from ([`VaultAuthLayer::middleware`]).
///
/// ```no_run
/// use reqwest_middleware::ClientBuilder;
/// use veeva_vault_auth::{source::EnvToken, VaultAuthLayer};
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let auth = VaultAuthLayer::new("https://myvault.veevavault.com", EnvToken::new())?;
/// let client = ClientBuilder::new(reqwest::Client::new())
///     .with(auth.middleware())
///     .build();
/// let me = client
///     .get("https://myvault.veevavault.com/api/v26.2/objects/users/me")
///     .send()
///     .await?;
/// println!("{}", me.status());
/// # Ok(())
/// # }
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
pub struct VaultAuthMiddleware<R = VaultRule> {
    binding: Arc<Binding>,
    rule: R,
}

impl<R: Clone> Clone for VaultAuthMiddleware<R> {
    fn clone(&self) -> Self {
        Self {
            binding: Arc::clone(&self.binding),
            rule: self.rule.clone(),
        }
    }
}

impl<R: fmt::Debug> fmt::Debug for VaultAuthMiddleware<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultAuthMiddleware")
            .field("rule", &self.rule)
            .finish_non_exhaustive()
    }
}

impl<R: Clone> VaultAuthLayer<R> {
    /// The reqwest-middleware front door to this layer's token cache.
    #[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
    pub fn middleware(&self) -> VaultAuthMiddleware<R> {
        VaultAuthMiddleware {
            binding: Arc::clone(self.binding()),
            rule: self.rule().clone(),
        }
    }
}

impl<R: FailureRule> VaultAuthMiddleware<R> {
    /// Whether `response` is Vault rejecting the token, reading its body only when the rule asks
    /// to. The response handed back carries the same status, headers, URL and bytes.
    async fn judge(&self, response: Response) -> (Response, bool) {
        if !self.binding.is_vault(&target_of(response.url())) {
            // reqwest followed a redirect to another host: its verdict is not Vault's.
            return (response, false);
        }
        match self.rule.check_head(response.status(), response.headers()) {
            Verdict::Pass => (response, false),
            Verdict::AuthFailure => (response, true),
            Verdict::InspectBody => {
                let url = response.url().clone();
                let response: http::Response<reqwest::Body> = response.into();
                match Inspection::start(response, self.binding.inspect_limit, DEFAULT_INSPECT_WAIT)
                {
                    Started::TooLarge(untouched) => (rebuild(untouched, url), false),
                    Started::Reading(mut inspection) => {
                        let judged =
                            std::future::poll_fn(|cx| inspection.poll_judge(cx, &self.rule)).await;
                        let (response, rejected) = judged.expect("an inspection ends once");
                        (rebuild(response, url), rejected)
                    }
                }
            }
        }
    }
}

/// Where a reqwest request goes, as far as the origin check cares.
fn target_of(url: &reqwest::Url) -> Target<'_> {
    Target {
        scheme: Some(url.scheme()),
        host: url.host_str(),
        port: url.port(),
    }
}

/// A reqwest response again, with its URL, from a response whose body was read ahead.
fn rebuild(response: http::Response<ResponseBody<reqwest::Body>>, url: reqwest::Url) -> Response {
    let (mut parts, body) = response.into_parts();
    if let Ok(marker) = http::Response::builder().url(url).body(()) {
        parts.extensions.extend(marker.into_parts().0.extensions);
    }
    Response::from(http::Response::from_parts(parts, reqwest::Body::wrap(body)))
}

/// A copy of `request` to send again after a rejection, if its body is in memory and small enough.
fn replay_copy(request: &Request, limit: Option<u64>) -> Option<Request> {
    let limit = limit?;
    let fits = match request.body() {
        None => true,
        Some(body) => body.as_bytes().is_some_and(|b| b.len() as u64 <= limit),
    };
    if fits {
        request.try_clone()
    } else {
        None
    }
}

#[async_trait::async_trait]
impl<R: FailureRule> Middleware for VaultAuthMiddleware<R> {
    async fn handle(
        &self,
        mut request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> Result<Response> {
        let binding = &*self.binding;
        let target = target_of(request.url());
        let admission = if binding.is_vault(&target) {
            binding.admit_headers(request.headers_mut())
        } else {
            binding.admit_foreign(&target)
        };
        match admission {
            Admission::Authenticate => {}
            Admission::PassThrough => return next.run(request, extensions).await,
            Admission::Foreign => {
                strip_vault_tokens(request.headers_mut());
                return next.run(request, extensions).await;
            }
            Admission::Refuse(refused) => return Err(Error::middleware(refused)),
        }

        let mut token = binding.cache.current();
        for _ in 0..2 {
            if token.is_some() {
                break;
            }
            // No token, or gone again before this request could use it: wait for one.
            let outcome = binding.cache.acquire().await;
            token = binding
                .cache
                .token_after(&outcome)
                .map_err(Error::middleware)?;
        }
        let (generation, header) =
            token.ok_or_else(|| Error::middleware(crate::TokenUnavailable::gone()))?;
        let replay = replay_copy(&request, binding.replay_limit);
        request.headers_mut().insert(AUTHORIZATION, header);
        let response = next.clone().run(request, extensions).await?;
        let (response, rejected) = self.judge(response).await;
        if !rejected {
            return Ok(response);
        }

        let reacquired = binding.cache.reject(generation);
        let Some(mut replay) = replay else {
            // The fetch goes on without us and serves the next request.
            return Ok(response);
        };
        if reacquired.await != Reacquired::Replay {
            return Ok(response);
        }
        let Some((generation, header)) = binding.cache.current() else {
            return Ok(response);
        };
        binding.cache.count_replay();
        event!(
            debug,
            generation,
            "replaying the request with the new token"
        );
        replay.headers_mut().insert(AUTHORIZATION, header);
        let second = next.run(replay, extensions).await?;
        let (second, rejected) = self.judge(second).await;
        if rejected {
            // Never a second replay; let the next request find a fresh token.
            drop(binding.cache.reject(generation));
        }
        Ok(second)
    }
}
