//! [`VaultAuthLayer`], its builder, the [`VaultAuth`] service and the [`AuthHandle`].

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::AUTHORIZATION;
use http::{HeaderName, HeaderValue, Request, Response, Uri};
use http_body::Body;
use tower_layer::Layer;
use tower_service::Service;

use crate::body::ResponseBody;
use crate::cache::{AuthStatus, Backoff, Cache, CacheConfig, Outcome, RefreshPolicy};
use crate::detect::{FailureRule, VaultRule};
use crate::error::{ConfigError, NotForVault, TokenUnavailable};
use crate::future::ResponseFuture;
use crate::replay::ReplayCopy;
use crate::source::TokenSource;
use crate::trace::event;
use crate::BoxError;

/// The largest request body replayed after a rejection unless configured: 64 KiB.
pub const DEFAULT_REPLAY_LIMIT: u64 = 64 * 1024;

/// The largest response body read to look for a rejection unless configured: 64 KiB. Vault's
/// error bodies are a few hundred bytes.
pub const DEFAULT_INSPECT_LIMIT: usize = 64 * 1024;

/// The request header that names the calling program to Vault.
pub const VAULT_CLIENT_ID: HeaderName = HeaderName::from_static("x-vaultapi-clientid");

/// The scheme, host and port of the one Vault a layer sends its token to.
#[derive(Clone)]
pub(crate) struct VaultOrigin {
    https: bool,
    host: Box<str>,
    port: u16,
    shown: Box<str>,
    /// `host` when the port is the scheme's default: the authority most requests carry.
    bare_authority: Option<Box<str>>,
    /// `host:port`.
    full_authority: Box<str>,
}

impl VaultOrigin {
    fn parse(url: &str) -> Result<Self, ConfigError> {
        let invalid = |reason: &str| ConfigError::InvalidVaultUrl {
            reason: reason.to_owned(),
        };
        let uri: Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| invalid(&e.to_string()))?;
        let scheme = uri
            .scheme_str()
            .ok_or_else(|| invalid("it has no scheme"))?;
        let host = uri.host().ok_or_else(|| invalid("it has no host"))?;
        if host.is_empty() {
            return Err(invalid("it has no host"));
        }
        let https = scheme.eq_ignore_ascii_case("https");
        let loopback_http = scheme.eq_ignore_ascii_case("http") && is_loopback(host);
        if !(https || loopback_http) {
            return Err(ConfigError::InsecureScheme {
                scheme: scheme.to_owned(),
            });
        }
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let host = host.to_ascii_lowercase();
        let default_port = if https { 443 } else { 80 };
        Ok(Self {
            bare_authority: (port == default_port).then(|| host.clone().into()),
            full_authority: format!("{host}:{port}").into(),
            shown: format!(
                "{}://{}:{}",
                if https { "https" } else { "http" },
                host,
                port
            )
            .into(),
            https,
            host: host.into(),
            port,
        })
    }

    /// Whether a request for `scheme://host:port` is for this Vault: same scheme, host (any case)
    /// and port (the scheme's default when absent).
    #[inline]
    fn matches(&self, target: &Target<'_>) -> bool {
        let (Some(scheme), Some(host)) = (target.scheme, target.host) else {
            return false;
        };
        let https = if scheme.eq_ignore_ascii_case("https") {
            true
        } else if scheme.eq_ignore_ascii_case("http") {
            false
        } else {
            return false;
        };
        https == self.https
            && host.eq_ignore_ascii_case(&self.host)
            && target.port.unwrap_or(if https { 443 } else { 80 }) == self.port
    }

    /// A cheap exact check of the request URI's scheme and authority, for the request path: `true`
    /// only when [`matches`](Self::matches) would say so too; `false` means "not sure".
    #[inline]
    fn surely_matches(&self, uri: &Uri) -> bool {
        let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
            return false;
        };
        // Schemes are parsed to an enum for http and https: comparing the name with a constant is
        // a match and a fixed-length compare, cheaper than `Scheme`'s own (case-folding) equality.
        let scheme_ok = if self.https {
            scheme.as_str() == "https"
        } else {
            scheme.as_str() == "http"
        };
        let authority = authority.as_str();
        scheme_ok
            && (self
                .bare_authority
                .as_deref()
                .is_some_and(|bare| authority == bare || authority.eq_ignore_ascii_case(bare))
                || authority.eq_ignore_ascii_case(&self.full_authority))
    }

    fn refuse(&self, target: &Target<'_>) -> NotForVault {
        let origin = match (target.scheme, target.host) {
            (Some(scheme), Some(host)) => Some(match target.port {
                Some(port) => format!("{scheme}://{host}:{port}"),
                None => format!("{scheme}://{host}"),
            }),
            _ => None,
        };
        NotForVault::new(origin, self.shown.to_string())
    }
}

/// Where a request is going, as far as the origin check cares.
pub(crate) struct Target<'a> {
    pub(crate) scheme: Option<&'a str>,
    pub(crate) host: Option<&'a str>,
    pub(crate) port: Option<u16>,
}

impl<'a> Target<'a> {
    #[inline]
    pub(crate) fn of(uri: &'a Uri) -> Self {
        Self {
            scheme: uri.scheme_str(),
            host: uri.host(),
            port: uri.port_u16(),
        }
    }
}

/// What to do with a request, decided before anything is sent.
pub(crate) enum Admission {
    /// For the Vault, without a credential of its own: attach the token.
    Authenticate,
    /// Send as it is: the caller's own credential.
    PassThrough,
    /// Another host, let through: send without any Vault token.
    Foreign,
    /// Another host: refuse.
    Refuse(NotForVault),
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Settings the request path reads; fixed when the layer is built.
pub(crate) struct Shared {
    pub(crate) cache: Arc<Cache>,
    origin: VaultOrigin,
    pass_through_other_hosts: bool,
    override_authorization: bool,
    pub(crate) replay_limit: Option<u64>,
    pub(crate) inspect_limit: usize,
    client_id: Option<HeaderValue>,
}

impl Shared {
    /// Whether a request for `target` is for this layer's Vault.
    #[cfg_attr(not(feature = "reqwest"), allow(dead_code))]
    pub(crate) fn is_vault(&self, target: &Target<'_>) -> bool {
        self.origin.matches(target)
    }

    /// Whether a request for `uri` is for this layer's Vault: the cheap exact check first, the
    /// full one only when that is not sure.
    #[inline]
    pub(crate) fn is_vault_uri(&self, uri: &Uri) -> bool {
        self.origin.surely_matches(uri) || self.origin.matches(&Target::of(uri))
    }

    /// [`inspect_limit`](Self::inspect_limit), for a response future to carry in four bytes.
    #[inline]
    pub(crate) fn inspect_limit_u32(&self) -> u32 {
        u32::try_from(self.inspect_limit).unwrap_or(u32::MAX)
    }

    /// What both front doors do with a request that is not for the Vault: let it through without
    /// a token, or refuse it.
    pub(crate) fn admit_foreign(&self, target: &Target<'_>) -> Admission {
        if self.pass_through_other_hosts {
            event!(
                debug,
                host = target.host,
                "passing a request for another host through without the token"
            );
            return Admission::Foreign;
        }
        let refused = self.origin.refuse(target);
        event!(debug, error = %refused, "refused a request for another host");
        Admission::Refuse(refused)
    }

    /// What both front doors do with a request for the Vault, on its headers: add the client id,
    /// and let the caller's own `Authorization` stand unless told to override it.
    #[inline(always)]
    pub(crate) fn admit_headers(&self, headers: &mut http::HeaderMap) -> Admission {
        if let Some(client_id) = &self.client_id {
            add_client_id(headers, client_id);
        }
        if !self.override_authorization
            && !headers.is_empty()
            && headers.contains_key(AUTHORIZATION)
        {
            return Admission::PassThrough;
        }
        Admission::Authenticate
    }
}

/// Adds `X-VaultAPI-ClientID` unless the caller set one. Out of line: most layers have no client
/// id, and the request path stays small.
#[inline(never)]
fn add_client_id(headers: &mut http::HeaderMap, client_id: &HeaderValue) {
    if let http::header::Entry::Vacant(slot) = headers.entry(VAULT_CLIENT_ID) {
        slot.insert(client_id.clone());
    }
}

/// A [`Layer`] that attaches `Authorization: Bearer veeva-vault-…` to every request for one Vault.
///
/// - **One Vault only.** The token is attached only to requests whose scheme, host and port are
///   the Vault's. Any other request fails with [`NotForVault`] (or, if
///   [`pass_through_other_hosts`](VaultAuthLayerBuilder::pass_through_other_hosts) is set, goes
///   through without a token). The Vault URL must be `https://`, except for loopback addresses.
/// - **The caller's own header wins.** A request that already has an `Authorization` header is
///   sent as it is, without re-acquisition or replay, unless
///   [`override_authorization`](VaultAuthLayerBuilder::override_authorization) is set. This lets a
///   program make the odd call with another credential through the same stack.
/// - **Rejections are handled.** When Vault rejects the token (see [`detect`](crate::detect)) the
///   layer gets a new one, once for everyone whose request it failed, and replays the request if
///   its body can be reproduced (see [`DEFAULT_REPLAY_LIMIT`]).
///
/// Clones share one token cache. The layer needs a Tokio runtime for its fetches.
///
/// ```
/// use tower::ServiceBuilder;
/// use veeva_vault_auth::{source::EnvToken, VaultAuthLayer};
///
/// # fn main() -> Result<(), veeva_vault_auth::ConfigError> {
/// let auth = VaultAuthLayer::new("https://myvault.veevavault.com", EnvToken::new())?;
/// let handle = auth.handle();
/// let service = ServiceBuilder::new()
///     .layer(auth)
///     .service(tower::service_fn(|_req: http::Request<String>| async move {
///         Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
///     }));
/// # let _ = (service, handle);
/// # Ok(())
/// # }
/// ```
pub struct VaultAuthLayer<R = VaultRule> {
    shared: Arc<Shared>,
    rule: R,
}

impl<R: Clone> Clone for VaultAuthLayer<R> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            rule: self.rule.clone(),
        }
    }
}

impl<R: fmt::Debug> fmt::Debug for VaultAuthLayer<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultAuthLayer")
            .field("vault", &self.shared.origin.shown)
            .field("rule", &self.rule)
            .finish_non_exhaustive()
    }
}

impl VaultAuthLayer {
    /// A layer for the Vault at `vault_url` (such as `https://myvault.veevavault.com`) with the
    /// default settings.
    pub fn new(vault_url: &str, source: impl TokenSource) -> Result<Self, ConfigError> {
        Self::builder(vault_url, source).build()
    }

    /// Starts configuring a layer for the Vault at `vault_url`.
    pub fn builder(vault_url: &str, source: impl TokenSource) -> VaultAuthLayerBuilder {
        VaultAuthLayerBuilder {
            url: vault_url.to_owned(),
            source: Arc::new(source),
            config: CacheConfig::default(),
            pass_through_other_hosts: false,
            override_authorization: false,
            replay_limit: Some(DEFAULT_REPLAY_LIMIT),
            inspect_limit: DEFAULT_INSPECT_LIMIT,
            client_id: None,
            rule: VaultRule,
        }
    }
}

impl<R> VaultAuthLayer<R> {
    #[cfg_attr(not(feature = "reqwest"), allow(dead_code))]
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    #[cfg_attr(not(feature = "reqwest"), allow(dead_code))]
    pub(crate) fn rule(&self) -> &R {
        &self.rule
    }

    /// A handle to this layer's token cache: force a refresh, drop the token, read its status.
    pub fn handle(&self) -> AuthHandle {
        AuthHandle {
            cache: Arc::clone(&self.shared.cache),
        }
    }
}

impl<S, R: Clone> Layer<S> for VaultAuthLayer<R> {
    type Service = VaultAuth<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        VaultAuth {
            inner,
            shared: Arc::clone(&self.shared),
            rule: self.rule.clone(),
        }
    }
}

/// Configures a [`VaultAuthLayer`].
///
/// ```
/// use std::time::Duration;
/// use veeva_vault_auth::{source::StaticToken, VaultAuthLayer};
///
/// let layer = VaultAuthLayer::builder(
///     "https://myvault.veevavault.com",
///     StaticToken::new("veeva-vault-abc").unwrap(),
/// )
/// .fetch_timeout(Duration::from_secs(5))
/// .max_replay_body(16 * 1024)
/// .build()
/// .unwrap();
/// # let _ = layer;
/// ```
pub struct VaultAuthLayerBuilder<R = VaultRule> {
    url: String,
    source: Arc<dyn TokenSource>,
    config: CacheConfig,
    pass_through_other_hosts: bool,
    override_authorization: bool,
    replay_limit: Option<u64>,
    inspect_limit: usize,
    client_id: Option<Result<HeaderValue, ConfigError>>,
    rule: R,
}

impl<R: fmt::Debug> fmt::Debug for VaultAuthLayerBuilder<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultAuthLayerBuilder")
            .field("url", &self.url)
            .field("config", &self.config)
            .field("rule", &self.rule)
            .finish_non_exhaustive()
    }
}

impl<R: FailureRule> VaultAuthLayerBuilder<R> {
    /// How long one fetch from the source may take before it fails (30 s by default). Requests
    /// waiting for it then fail with [`TokenUnavailable`].
    #[must_use]
    pub fn fetch_timeout(mut self, timeout: Duration) -> Self {
        self.config.fetch_timeout = timeout;
        self
    }

    /// When to renew tokens that carry an expiry.
    #[must_use]
    pub fn refresh_policy(mut self, policy: RefreshPolicy) -> Self {
        self.config.refresh = policy;
        self
    }

    /// How long to wait before asking a failing source again.
    #[must_use]
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.config.backoff = backoff;
        self
    }

    /// Lets requests for other hosts through without a token, instead of failing them with
    /// [`NotForVault`]. Off by default.
    #[must_use]
    pub fn pass_through_other_hosts(mut self, yes: bool) -> Self {
        self.pass_through_other_hosts = yes;
        self
    }

    /// Replaces an `Authorization` header the caller set. Off by default: such requests are sent
    /// as they are.
    #[must_use]
    pub fn override_authorization(mut self, yes: bool) -> Self {
        self.override_authorization = yes;
        self
    }

    /// Replays rejected requests whose body is at most `bytes` long (64 KiB by default).
    #[must_use]
    pub fn max_replay_body(mut self, bytes: u64) -> Self {
        self.replay_limit = Some(bytes);
        self
    }

    /// Never replays: a rejected request reaches the caller and the next request carries the new
    /// token. Saves the copy of each request that replay needs (its head and in-memory body,
    /// written into a pooled per-thread buffer: no allocation, a few hundred instructions).
    #[must_use]
    pub fn no_replay(mut self) -> Self {
        self.replay_limit = None;
        self
    }

    /// Reads at most `bytes` of a response body when looking for a rejection (64 KiB by default).
    /// Larger bodies are passed through as they are. A bound above 4 GiB counts as 4 GiB.
    #[must_use]
    pub fn max_inspect_body(mut self, bytes: usize) -> Self {
        self.inspect_limit = bytes;
        self
    }

    /// Sends `X-VaultAPI-ClientID: {client_id}` with every request to the Vault, identifying your
    /// program in Vault's logs (Veeva recommends `{company}-{organization}-{team}-{server|client}-{program}`).
    ///
    /// Vault allows at most 100 characters of `A-Z a-z 0-9 . _ -`; anything else makes
    /// [`build`](Self::build) fail with [`ConfigError::InvalidClientId`]. The value is encoded
    /// once. A request that already carries the header keeps its own.
    ///
    /// ```
    /// use veeva_vault_auth::{source::EnvToken, ConfigError, VaultAuthLayer};
    ///
    /// let ok = VaultAuthLayer::builder("https://myvault.veevavault.com", EnvToken::new())
    ///     .client_id("acme-clinical-data-server-loader")
    ///     .build();
    /// assert!(ok.is_ok());
    ///
    /// let bad = VaultAuthLayer::builder("https://myvault.veevavault.com", EnvToken::new())
    ///     .client_id("acme loader/1.0")
    ///     .build();
    /// assert!(matches!(bad, Err(ConfigError::InvalidClientId { .. })));
    /// ```
    #[must_use]
    pub fn client_id(mut self, client_id: &str) -> Self {
        self.client_id = Some(encode_client_id(client_id));
        self
    }

    /// Uses `rule` to recognise rejections instead of [`VaultRule`].
    pub fn failure_rule<R2: FailureRule>(self, rule: R2) -> VaultAuthLayerBuilder<R2> {
        VaultAuthLayerBuilder {
            url: self.url,
            source: self.source,
            config: self.config,
            pass_through_other_hosts: self.pass_through_other_hosts,
            override_authorization: self.override_authorization,
            replay_limit: self.replay_limit,
            inspect_limit: self.inspect_limit,
            client_id: self.client_id,
            rule,
        }
    }

    /// Builds the layer. Fails if the Vault URL cannot be parsed or is not `https://` (plain
    /// `http://` is allowed only for loopback addresses).
    pub fn build(self) -> Result<VaultAuthLayer<R>, ConfigError> {
        let origin = VaultOrigin::parse(&self.url)?;
        let client_id = self.client_id.transpose()?;
        Ok(VaultAuthLayer {
            shared: Arc::new(Shared {
                cache: Cache::new(self.source, self.config),
                origin,
                pass_through_other_hosts: self.pass_through_other_hosts,
                override_authorization: self.override_authorization,
                replay_limit: self.replay_limit,
                inspect_limit: self.inspect_limit,
                client_id,
            }),
            rule: self.rule,
        })
    }
}

/// The service [`VaultAuthLayer`] wraps around `S`: see the layer for what it does.
///
/// `S` must be `Clone`: a clone sends the replay of a rejected request, and the request that
/// waits for the first token.
pub struct VaultAuth<S, R = VaultRule> {
    inner: S,
    shared: Arc<Shared>,
    rule: R,
}

impl<S: Clone, R: Clone> Clone for VaultAuth<S, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
            rule: self.rule.clone(),
        }
    }
}

impl<S: fmt::Debug, R: fmt::Debug> fmt::Debug for VaultAuth<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultAuth")
            .field("inner", &self.inner)
            .field("vault", &self.shared.origin.shown)
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
            cache: Arc::clone(&self.shared.cache),
        }
    }
}

impl<S, R, ReqBody, ResBody> Service<Request<ReqBody>> for VaultAuth<S, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    S::Error: Into<BoxError>,
    ReqBody: Body + 'static,
    ResBody: Body,
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
        let shared = &*self.shared;
        if !shared.is_vault_uri(req.uri()) {
            return self.call_foreign(req);
        }
        if let Admission::PassThrough = shared.admit_headers(req.headers_mut()) {
            return ResponseFuture::pass_through(self.inner.call(req), self.rule.clone());
        }
        // The copy for a replay is taken first: it must not hold the token.
        let replay = ReplayCopy::of(&mut req, shared.replay_limit, &self.inner);
        match shared.cache.attach(req.headers_mut()) {
            Some(generation) => ResponseFuture::sent(
                self.inner.call(req),
                self.rule.clone(),
                shared,
                generation,
                replay,
            ),
            None => {
                // The ready service goes with the request; the clone left here is polled ready
                // before its next call, as tower requires.
                let clone = self.inner.clone();
                let ready = std::mem::replace(&mut self.inner, clone);
                let wait = shared.cache.acquire();
                ResponseFuture::waiting(
                    wait,
                    Arc::clone(&self.shared),
                    req,
                    ready,
                    self.rule.clone(),
                    replay,
                )
            }
        }
    }
}

impl<S, R> VaultAuth<S, R> {
    /// A request for another host: let through without any Vault token, or refused. Out of line:
    /// the request path is for the Vault's requests.
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
        match self.shared.admit_foreign(&Target::of(req.uri())) {
            Admission::Refuse(refused) => ResponseFuture::failed(refused.into(), self.rule.clone()),
            _ => {
                strip_vault_tokens(req.headers_mut());
                ResponseFuture::pass_through(self.inner.call(req), self.rule.clone())
            }
        }
    }
}

/// Removes every `Authorization` header that carries a Vault token (`veeva-vault-…`, with or
/// without `Bearer `): a request for another host must not carry one, whoever put it there.
pub(crate) fn strip_vault_tokens(headers: &mut http::HeaderMap) {
    let carries_token = headers.get_all(AUTHORIZATION).iter().any(|value| {
        let bytes = value.as_bytes();
        let bytes = match bytes.get(..7) {
            Some(scheme) if scheme.eq_ignore_ascii_case(b"bearer ") => &bytes[7..],
            _ => bytes,
        };
        let bytes = bytes.trim_ascii_start();
        bytes.len() >= crate::TOKEN_PREFIX.len()
            && bytes[..crate::TOKEN_PREFIX.len()]
                .eq_ignore_ascii_case(crate::TOKEN_PREFIX.as_bytes())
    });
    if carries_token {
        headers.remove(AUTHORIZATION);
        event!(
            warn,
            "removed a vault token from a request for another host"
        );
    }
}

/// The longest client id Vault accepts.
const MAX_CLIENT_ID_LEN: usize = 100;

fn encode_client_id(client_id: &str) -> Result<HeaderValue, ConfigError> {
    let invalid = |reason: String| ConfigError::InvalidClientId { reason };
    if client_id.is_empty() {
        return Err(invalid("it is empty".into()));
    }
    if client_id.len() > MAX_CLIENT_ID_LEN {
        return Err(invalid(format!(
            "it is {} characters long, over Vault's limit of {MAX_CLIENT_ID_LEN}",
            client_id.chars().count()
        )));
    }
    if let Some((position, c)) = client_id
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(invalid(format!(
            "character {c:?} at byte {position} is not one of A-Z a-z 0-9 . _ -"
        )));
    }
    HeaderValue::from_str(client_id).map_err(|e| invalid(e.to_string()))
}

/// Controls a layer's token cache from outside the request path, and reports on it.
///
/// Every clone of the layer and its services shares one cache; so do all handles.
///
/// ```
/// # async fn demo(layer: veeva_vault_auth::VaultAuthLayer) {
/// let handle = layer.handle();
/// let status = handle.status();
/// println!("token generation {:?}, expires {:?}", status.generation, status.expires_at);
/// handle.force_refresh().await.expect("the source answered");
/// # }
/// ```
#[derive(Clone)]
pub struct AuthHandle {
    cache: Arc<Cache>,
}

impl fmt::Debug for AuthHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthHandle")
            .field("cache", &self.cache)
            .finish()
    }
}

impl AuthHandle {
    /// Asks the source for a token now, even while backing off, and waits for the answer. The
    /// current token keeps being served meanwhile; on failure it stays in place.
    pub async fn force_refresh(&self) -> Result<(), TokenUnavailable> {
        match self.cache.force_refresh().await {
            Outcome::Failed(err) => Err(err),
            Outcome::Installed(_) | Outcome::Unchanged => Ok(()),
        }
    }

    /// Drops the current token: the next request waits for a fresh one.
    pub fn invalidate(&self) {
        self.cache.invalidate();
    }

    /// A snapshot of the cache's state and counters.
    pub fn status(&self) -> AuthStatus {
        self.cache.status()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(url: &str) -> VaultOrigin {
        VaultOrigin::parse(url).unwrap()
    }

    #[test]
    fn origin_compares_scheme_host_and_port() {
        let vault = origin("https://MyVault.veevavault.com");
        for yes in [
            "https://myvault.veevavault.com/api/v26.2/objects/users/me",
            "https://MYVAULT.veevavault.com:443/api",
            "HTTPS://myvault.veevavault.com",
        ] {
            let uri: Uri = yes.parse().unwrap();
            assert!(vault.matches(&Target::of(&uri)), "{yes}");
        }
        for no in [
            "http://myvault.veevavault.com/api",
            "https://myvault.veevavault.com:8443/api",
            "https://other.veevavault.com/api",
            "https://myvault.veevavault.com.evil.example/api",
            "/api/v26.2/objects/users/me",
        ] {
            let uri: Uri = no.parse().unwrap();
            assert!(!vault.matches(&Target::of(&uri)), "{no}");
        }
    }

    #[test]
    fn the_fast_check_never_says_yes_when_the_full_one_says_no() {
        for vault in [
            "https://MyVault.veevavault.com",
            "http://127.0.0.1:8080",
            "https://h:8443",
        ] {
            let vault = origin(vault);
            for url in [
                "https://myvault.veevavault.com/api",
                "https://MYVAULT.veevavault.com:443/api",
                "https://myvault.veevavault.com:444/api",
                "http://myvault.veevavault.com/api",
                "http://127.0.0.1:8080/x",
                "http://127.0.0.1/x",
                "https://127.0.0.1:8080/x",
                "https://h:8443/x",
                "https://H:8443/x",
                "https://h/x",
                "https://user@myvault.veevavault.com/api",
                "/relative",
            ] {
                let uri: Uri = url.parse().unwrap();
                if vault.surely_matches(&uri) {
                    assert!(vault.matches(&Target::of(&uri)), "{url}");
                }
            }
        }
        let vault = origin("https://myvault.veevavault.com");
        let uri: Uri = "https://myvault.veevavault.com/api".parse().unwrap();
        assert!(
            vault.surely_matches(&uri),
            "the common case takes the fast path"
        );
    }

    #[test]
    fn plain_http_only_for_loopback() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://localhost",
            "http://[::1]:9000",
            "http://127.2.3.4",
        ] {
            assert!(VaultOrigin::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://myvault.veevavault.com",
            "http://10.0.0.1",
            "ftp://myvault.veevavault.com",
        ] {
            assert!(
                matches!(
                    VaultOrigin::parse(bad),
                    Err(ConfigError::InsecureScheme { .. })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            VaultOrigin::parse("not a url"),
            Err(ConfigError::InvalidVaultUrl { .. })
        ));
        assert!(matches!(
            VaultOrigin::parse("/relative"),
            Err(ConfigError::InvalidVaultUrl { .. })
        ));
    }
}
