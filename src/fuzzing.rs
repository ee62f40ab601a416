//! Internals opened to the fuzz targets in `fuzz/` (feature `__fuzz`, never on by default).
//!
//! Not part of the public API: the names here may change with any release. Each item wraps one
//! crate-internal piece so that a fuzz target can drive it with arbitrary input and check what
//! comes out; nothing here adds behaviour of its own.

use http::{Request, Uri};
use http_body::Body;

use crate::error::ConfigError;
use crate::exchange::replay;
use crate::vault::origin::{Target, VaultOrigin};

/// The copy of a request kept for a replay (the exchange's own, with no service to send it
/// through).
pub struct ReplayCopy<B>(replay::ReplayCopy<B, ()>);

impl<B> std::fmt::Debug for ReplayCopy<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReplayCopy")
    }
}

impl<B> ReplayCopy<B>
where
    B: Body + 'static,
    B::Error: 'static,
{
    /// Copies `req` as the exchange does before a request is sent, with a body limit of `limit`
    /// bytes; `None` when the body cannot be reproduced. A boxed body is wrapped in a recorder:
    /// send (poll) `req`'s body to the end before [`rebuild`](Self::rebuild).
    pub fn of(req: &mut Request<B>, limit: u64) -> Option<Self> {
        replay::ReplayCopy::of(req, Some(limit), &()).map(Self)
    }

    /// The request built again from the copy, as a replay would send it.
    pub fn rebuild(self) -> Option<Request<B>> {
        self.0.rebuild().map(|(request, ())| request)
    }
}

/// The origin of a Vault, as a layer reads its URL and checks requests against it.
#[derive(Clone)]
pub struct Origin(VaultOrigin);

impl std::fmt::Debug for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Origin").field(&self.0.shown).finish()
    }
}

impl Origin {
    /// Reads a Vault URL as `VaultAuthLayer::new` does.
    pub fn parse(url: &str) -> Result<Self, ConfigError> {
        VaultOrigin::parse(url).map(Self)
    }

    /// The full check: whether a request for `uri` is for this Vault.
    pub fn matches(&self, uri: &Uri) -> bool {
        self.0.matches(&Target::of(uri))
    }

    /// The request path's fast check: `true` only where [`matches`](Self::matches) says so too.
    pub fn surely_matches(&self, uri: &Uri) -> bool {
        self.0.surely_matches(uri)
    }

    /// Whether a `Host` header value names this Vault.
    pub fn is_host(&self, value: &[u8]) -> bool {
        self.0.is_host(value)
    }

    /// The origin as the layer shows it (`scheme://host:port`, the host in lower case).
    pub fn shown(&self) -> &str {
        &self.0.shown
    }
}

/// The Vault stand-in's request handling (`testing::VaultStandIn`) without its server: routes,
/// `_method` overrides, credentials, form and JSON bodies, revoke id lists, VQL, logins and
/// token creation, each request answered on the caller's thread as the server would answer it
/// (requests are never held). Needs the `test-util` feature too.
#[cfg(feature = "test-util")]
pub struct StandIn(crate::testing::fuzz::Offline);

#[cfg(feature = "test-util")]
impl std::fmt::Debug for StandIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StandIn")
    }
}

#[cfg(feature = "test-util")]
impl StandIn {
    /// The user who can log in ([`PASSWORD`](Self::PASSWORD)); its tokens come from
    /// [`issue_token`](Self::issue_token).
    pub const USER: &'static str = crate::testing::fuzz::FUZZ_USER;
    /// [`USER`](Self::USER)'s password.
    pub const PASSWORD: &'static str = crate::testing::fuzz::FUZZ_PASSWORD;
    /// The OAuth profile id and identity provider token that open a session for
    /// [`USER`](Self::USER).
    pub const OAUTH: (&'static str, &'static str) = crate::testing::fuzz::FUZZ_OAUTH;
    /// Paths ending so are redirected (HTTP 302).
    pub const REDIRECTED: &'static str = crate::testing::fuzz::FUZZ_REDIRECTED;
    /// Paths ending so answer an injected `INSUFFICIENT_ACCESS` to a good credential.
    pub const FAILING: &'static str = crate::testing::fuzz::FUZZ_FAILING;

    /// A fresh stand-in: 401s for bad credentials when `unauthorized_mode`, picklists in VQL
    /// results as arrays when `picklists_as_arrays`, [`USER`](Self::USER) an admin when `admin`.
    pub fn new(unauthorized_mode: bool, picklists_as_arrays: bool, admin: bool) -> Self {
        Self(crate::testing::fuzz::Offline::new(
            unauthorized_mode,
            picklists_as_arrays,
            admin,
        ))
    }

    /// A new token for [`USER`](Self::USER).
    pub fn issue_token(&self) -> String {
        self.0.issue_token()
    }

    /// Answers `request` as the stand-in's server would; `None` if reading its body did not
    /// finish at once (for an in-memory body, a hang).
    pub fn serve<B>(
        &self,
        request: Request<B>,
    ) -> Option<http::Response<http_body_util::Full<bytes::Bytes>>>
    where
        B: Body<Data = bytes::Bytes> + Unpin,
    {
        self.0.serve(request)
    }

    /// What the stand-in recorded of every request so far (`Debug` is the redacted view).
    pub fn recorded(&self) -> Vec<crate::testing::RecordedRequest> {
        self.0.recorded()
    }
}
