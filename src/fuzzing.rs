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
