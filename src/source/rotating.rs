//! [`RotatingToken`]: tokens from a user's async function, renewed before they expire.

use std::fmt;
use std::future::Future;

use super::{BoxFuture, SourceError, TokenSource};
use crate::token::AccessToken;

/// Tokens produced by your async function, each with its expiry, renewed before they expire.
///
/// The function is called for the first token and then ahead of each token's expiry (see
/// [`RefreshPolicy`](crate::RefreshPolicy)): early enough that requests never wait for it, with
/// random jitter so a fleet of processes does not refresh in lockstep. While the current token is
/// still valid, a failed call changes nothing for requests: the old token keeps being served and
/// the call is retried with backoff. Requests wait only when no valid token exists.
///
/// A token without an expiry is kept until Vault rejects it.
///
/// ```
/// use std::time::Duration;
/// use veeva_vault_auth::source::{RotatingToken, SourceError};
/// use veeva_vault_auth::AccessToken;
///
/// let source = RotatingToken::new(|| async {
///     // Ask your issuer for a fresh token here.
///     let value = String::from("veeva-vault-fresh");
///     Ok::<_, SourceError>(AccessToken::new(value)?.with_expires_in(Duration::from_secs(3600)))
/// });
/// # let _ = source;
/// ```
pub struct RotatingToken<F> {
    issue: F,
}

impl<F, Fut> RotatingToken<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<AccessToken, SourceError>> + Send + 'static,
{
    /// Wraps `issue`, which returns a fresh token (with its expiry, when it has one).
    pub fn new(issue: F) -> Self {
        Self { issue }
    }
}

impl<F> fmt::Debug for RotatingToken<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RotatingToken").finish_non_exhaustive()
    }
}

impl<F, Fut> TokenSource for RotatingToken<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<AccessToken, SourceError>> + Send + 'static,
{
    fn fetch(&self) -> BoxFuture<'_, Result<AccessToken, SourceError>> {
        Box::pin((self.issue)())
    }
}
