//! [`VaultAuthMiddleware`]: the layer's second front door, for `reqwest-middleware` chains.
//!
//! It shares everything with the [`VaultAuthLayer`](crate::VaultAuthLayer) it comes from: the source, the token cache,
//! the one-Vault rule, failure detection, the single binding refresh and the replay rules. A tower
//! client and a reqwest client made from one layer hold one token between them.
//!
//! It replays what the tower door replays, through the same flow: a request with an in-memory body
//! of at most the replay limit (64 KiB by default) is copied before it is sent; a streaming body is
//! recorded as reqwest sends it, up to the same limit, and replayed from the recording (then from
//! the rest of the original body, if Vault answered before reqwest had sent it all). A body past
//! the limit is sent once: that request gets Vault's answer and the next one carries the new token.
//!
//! An answer that reqwest reached by following a redirect is never taken for Vault's verdict on
//! the token: reqwest drops `Authorization` on a hop to another host and does not put it back, so
//! the last hop may have gone without it.
//!
//! Errors of this crate ([`TokenUnavailable`](crate::TokenUnavailable),
//! [`NotForVault`](crate::NotForVault)) come back as `reqwest_middleware::Error::Middleware`;
//! downcast the inner `anyhow::Error` to tell them apart.

use std::fmt;
use std::sync::Arc;

use ::reqwest::{Body, Request, Response, ResponseBuilderExt, Url};
use http::header::AUTHORIZATION;
use http::{Extensions, HeaderValue};
use reqwest_middleware::{Error, Middleware, Next, Result};

use crate::error::TokenUnavailable;
use crate::exchange::body::ResponseBody;
use crate::exchange::flow::{self, Door};
use crate::exchange::replay::tape::Tape;
use crate::vault::binding::{Admission, Binding};
use crate::vault::detect::{FailureRule, VaultRule};
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

/// Where a reqwest request goes, as far as the origin check cares.
fn target_of(url: &Url) -> Target<'_> {
    Target {
        scheme: Some(url.scheme()),
        host: url.host_str(),
        port: url.port(),
    }
}

/// A reqwest response again, with its URL, from a response whose body was read ahead.
fn rebuild(response: http::Response<ResponseBody<Body>>, url: Url) -> Response {
    let (mut parts, body) = response.into_parts();
    if let Ok(marker) = http::Response::builder().url(url).body(()) {
        parts.extensions.extend(marker.into_parts().0.extensions);
    }
    Response::from(http::Response::from_parts(parts, Body::wrap(body)))
}

/// The copy of a request kept for a replay: the request itself for an in-memory body, or its head
/// and the recording of its streaming body.
enum Copy {
    Whole(Request),
    Recorded(Request, Tape<Body>),
}

/// A copy of `request` to send again after a rejection, if its body is in memory and within
/// `limit`, or streams and can be recorded within it (then the body is swapped for its recorder).
fn replay_copy(request: &mut Request, limit: Option<u64>) -> Option<Copy> {
    let limit = limit?;
    let streaming = match request.body() {
        None => false,
        Some(body) => match body.as_bytes() {
            Some(bytes) => {
                if bytes.len() as u64 > limit {
                    return None;
                }
                false
            }
            None => {
                if http_body::Body::size_hint(body).lower() > limit {
                    return None;
                }
                true
            }
        },
    };
    if !streaming {
        return request.try_clone().map(Copy::Whole);
    }
    let body = request.body_mut().take()?;
    let head = request.try_clone();
    let cap = usize::try_from(limit).unwrap_or(usize::MAX);
    let (recorder, tape) = Tape::record(body, cap);
    *request.body_mut() = Some(Body::wrap(recorder));
    Some(Copy::Recorded(head?, tape))
}

/// The reqwest door's part in the shared flow.
struct ReqwestDoor<'a, R> {
    next: Next<'a>,
    extensions: &'a mut Extensions,
    binding: &'a Binding,
    rule: &'a R,
}

impl<R: FailureRule> Door for ReqwestDoor<'_, R> {
    type Request = Request;
    type Sent = Response;
    type Response = Response;
    type Replay = Copy;
    type Error = Error;

    fn unavailable(err: TokenUnavailable) -> Error {
        Error::middleware(err)
    }

    fn rebuild(&mut self, copy: Copy) -> Option<Request> {
        match copy {
            Copy::Whole(request) => Some(request),
            Copy::Recorded(mut request, tape) => {
                *request.body_mut() = Some(Body::wrap(tape.rewind()?));
                Some(request)
            }
        }
    }

    async fn send(&mut self, mut request: Request, header: HeaderValue) -> Result<Response> {
        request.headers_mut().insert(AUTHORIZATION, header);
        let sent_to = SentTo(request.url().clone());
        let mut response = self.next.clone().run(request, self.extensions).await?;
        response.extensions_mut().insert(sent_to);
        Ok(response)
    }

    async fn judge(&mut self, response: Response) -> (Response, bool) {
        judge(response, self.binding, self.rule).await
    }

    async fn discard(&mut self, response: Response) {
        let response: http::Response<Body> = response.into();
        flow::discard_body(response.into_body()).await;
    }
}

/// Whether `response` is Vault rejecting the token, reading its body only when the rule asks to.
/// The response handed back carries the same status, headers, URL and bytes.
async fn judge<R: FailureRule>(
    response: Response,
    binding: &Binding,
    rule: &R,
) -> (Response, bool) {
    if !binding.is_vault(&target_of(response.url())) || was_redirected(&response) {
        // Another host's answer, or one reached by a redirect whose last hop may have gone
        // without the token: not Vault's verdict on it.
        return (response, false);
    }
    let url = response.url().clone();
    let response: http::Response<Body> = response.into();
    let (response, rejected) =
        flow::judge_http(response, rule, binding.inspect_limit, binding.inspect_wait).await;
    (rebuild(response, url), rejected)
}

/// The URL a request was sent to, kept beside it so that its answer can tell whether reqwest
/// followed a redirect to get there.
#[derive(Clone)]
struct SentTo(Url);

fn was_redirected(response: &Response) -> bool {
    response
        .extensions()
        .get::<SentTo>()
        .is_some_and(|sent| sent.0 != *response.url())
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
        let mut admission = if binding.is_vault(&target_of(request.url())) {
            binding.admit_headers(request.headers_mut())
        } else {
            Admission::OtherHost
        };
        if let Admission::OtherHost = admission {
            admission = binding.admit_other(&target_of(request.url()), request.headers());
        }
        match admission {
            Admission::Authenticate => {}
            Admission::PassThrough => return next.run(request, extensions).await,
            // (`OtherHost` was resolved by `admit_other` above.)
            Admission::Foreign | Admission::OtherHost => {
                strip_vault_tokens(request.headers_mut());
                return next.run(request, extensions).await;
            }
            Admission::Refuse(refused) => return Err(Error::middleware(refused)),
        }
        let cache = &binding.cache;
        let (generation, header) = match cache.current() {
            Some(token) => token,
            None => flow::first_token(cache).await.map_err(Error::middleware)?,
        };
        let replay = replay_copy(&mut request, binding.replay_limit);
        let mut door = ReqwestDoor {
            next,
            extensions,
            binding,
            rule: &self.rule,
        };
        let response = door.send(request, header).await?;
        flow::judge_and_recover(door, Arc::clone(cache), generation, response, replay).await
    }
}
