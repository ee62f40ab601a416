//! Error types. The service returns [`BoxError`](crate::BoxError); downcast it to these.
//!
//! None of them ever holds a token's value.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::source::SourceError;

/// The layer had no usable token for a request, and could not get one.
///
/// ```
/// # async fn demo(err: veeva_vault_auth::BoxError) {
/// use veeva_vault_auth::TokenUnavailable;
///
/// if let Some(err) = err.downcast_ref::<TokenUnavailable>() {
///     eprintln!("no vault token ({}); retry in {:?}", err, err.retry_in());
/// }
/// # }
/// ```
#[derive(Clone)]
pub struct TokenUnavailable {
    details: Arc<Details>,
    retry_in: Option<Duration>,
}

/// What a [`TokenUnavailable`] says, shared by its clones.
struct Details {
    kind: UnavailableKind,
    cause: Option<SourceError>,
}

/// Why no token could be had.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnavailableKind {
    /// The token source returned an error; see [`TokenUnavailable::source_error`].
    Source,
    /// The token source did not answer within the fetch timeout.
    TimedOut(Duration),
    /// The fetch ended without an answer: the source panicked or its task was cancelled.
    Aborted,
    /// No Tokio runtime was running to drive the fetch.
    NoRuntime,
    /// Vault rejected the token and the source had no other to give.
    Rejected,
    /// Tokens were fetched for the request, but each was gone again (rejected by Vault for
    /// another request, or expired) before the request could be sent with it. Asking again
    /// usually helps.
    Gone,
}

impl TokenUnavailable {
    fn new(kind: UnavailableKind, cause: Option<SourceError>) -> Self {
        Self {
            details: Arc::new(Details { kind, cause }),
            retry_in: None,
        }
    }

    pub(crate) fn from_source(err: SourceError) -> Self {
        Self::new(UnavailableKind::Source, Some(err))
    }

    pub(crate) fn timed_out(after: Duration) -> Self {
        Self::new(UnavailableKind::TimedOut(after), None)
    }

    pub(crate) fn panicked() -> Self {
        Self::new(UnavailableKind::Aborted, None)
    }

    pub(crate) fn rejected() -> Self {
        Self::new(UnavailableKind::Rejected, None)
    }

    /// The token a request waited for was rejected or expired before the request could use it,
    /// twice over.
    pub(crate) fn gone() -> Self {
        Self::new(UnavailableKind::Gone, None)
    }

    pub(crate) fn no_runtime() -> Self {
        Self::new(UnavailableKind::NoRuntime, None)
    }

    /// The same error, as returned while backing off for `retry_in`.
    pub(crate) fn backing_off(&self, retry_in: Duration) -> Self {
        Self {
            details: Arc::clone(&self.details),
            retry_in: Some(retry_in),
        }
    }

    /// Why no token could be had.
    pub fn kind(&self) -> UnavailableKind {
        self.details.kind
    }

    /// The source's own error, when the source failed.
    pub fn source_error(&self) -> Option<&SourceError> {
        self.details.cause.as_ref()
    }

    /// When the layer is backing off after failures: how long until it asks the source again.
    pub fn retry_in(&self) -> Option<Duration> {
        self.retry_in
    }

    /// Whether asking again later can help.
    pub fn is_retryable(&self) -> bool {
        match self.details.kind {
            UnavailableKind::Source => self
                .details
                .cause
                .as_ref()
                .is_none_or(SourceError::is_retryable),
            UnavailableKind::NoRuntime => false,
            UnavailableKind::TimedOut(_)
            | UnavailableKind::Aborted
            | UnavailableKind::Rejected
            | UnavailableKind::Gone => true,
        }
    }
}

impl fmt::Debug for TokenUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenUnavailable")
            .field("kind", &self.details.kind)
            .field("cause", &self.details.cause)
            .field("retry_in", &self.retry_in)
            .finish()
    }
}

impl fmt::Display for TokenUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no vault access token: ")?;
        match (&self.details.kind, &self.details.cause) {
            (UnavailableKind::Source, Some(cause)) => {
                write!(f, "the token source failed: {cause}")?
            }
            (UnavailableKind::Source, None) => f.write_str("the token source failed")?,
            (UnavailableKind::TimedOut(after), _) => {
                write!(f, "the token source did not answer within {after:?}")?
            }
            (UnavailableKind::Aborted, _) => f.write_str(
                "the fetch ended without an answer (the source panicked or was cancelled)",
            )?,
            (UnavailableKind::NoRuntime, _) => f.write_str("no Tokio runtime is running")?,
            (UnavailableKind::Rejected, _) => f.write_str(
                "vault rejected the token and the source has no other (it returned the same one)",
            )?,
            (UnavailableKind::Gone, _) => f.write_str(
                "the tokens fetched for this request were gone (rejected or expired) before it could be sent",
            )?,
        }
        if let Some(retry_in) = self.retry_in {
            write!(f, "; next attempt in {retry_in:?}")?;
        }
        Ok(())
    }
}

impl std::error::Error for TokenUnavailable {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.details
            .cause
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// A request was not for the layer's Vault, so it was not sent (the default for such requests).
///
/// A token works for one Vault only, and this layer never sends it anywhere else. To let such
/// requests through without a token instead, use
/// [`VaultAuthLayerBuilder::pass_through_other_hosts`](crate::VaultAuthLayerBuilder::pass_through_other_hosts).
///
/// ```
/// # fn demo(err: veeva_vault_auth::BoxError) {
/// use veeva_vault_auth::NotForVault;
/// if let Some(err) = err.downcast_ref::<NotForVault>() {
///     eprintln!("{err}");
/// }
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotForVault {
    origin: Option<String>,
    vault: String,
}

impl NotForVault {
    pub(crate) fn new(origin: Option<String>, vault: String) -> Self {
        Self { origin, vault }
    }

    /// The request's scheme and authority, if its URI had them.
    pub fn origin(&self) -> Option<&str> {
        self.origin.as_deref()
    }

    /// The Vault the layer is bound to.
    pub fn vault(&self) -> &str {
        &self.vault
    }
}

impl fmt::Display for NotForVault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            Some(origin) => write!(
                f,
                "request to {origin} refused: the layer only authenticates requests to {}",
                self.vault
            ),
            None => write!(
                f,
                "request without scheme and host refused: the layer only authenticates absolute URIs for {}",
                self.vault
            ),
        }
    }
}

impl std::error::Error for NotForVault {}

/// The layer could not be built from its settings.
///
/// ```
/// use veeva_vault_auth::{source::StaticToken, ConfigError, VaultAuthLayer};
///
/// let source = StaticToken::new("veeva-vault-abc").unwrap();
/// let err = VaultAuthLayer::builder("http://myvault.veevavault.com", source).build().unwrap_err();
/// assert!(matches!(err, ConfigError::InsecureScheme { .. }));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The Vault URL could not be parsed, or has no host.
    InvalidVaultUrl {
        /// What is wrong with it.
        reason: String,
    },
    /// The Vault URL is not `https://` (plain `http://` is allowed only to loopback addresses).
    InsecureScheme {
        /// The URL's scheme.
        scheme: String,
    },
    /// The client id is not what Vault accepts (at most 100 characters of `A-Z a-z 0-9 . _ -`).
    InvalidClientId {
        /// What is wrong with it.
        reason: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::InvalidVaultUrl { reason } => write!(f, "invalid vault url: {reason}"),
            ConfigError::InvalidClientId { reason } => {
                write!(f, "invalid vault client id: {reason}")
            }
            ConfigError::InsecureScheme { scheme } => write!(
                f,
                "vault url must use https (`{scheme}` is allowed only for loopback addresses)"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_gone_before_use_does_not_read_as_the_source_returning_the_same_one() {
        let gone = TokenUnavailable::gone();
        let rejected = TokenUnavailable::rejected();
        assert_eq!(gone.kind(), UnavailableKind::Gone);
        assert_eq!(rejected.kind(), UnavailableKind::Rejected);
        assert_ne!(gone.to_string(), rejected.to_string());
        assert!(!gone.to_string().contains("same one"), "{gone}");
        assert!(
            gone.to_string().contains("before it could be sent"),
            "{gone}"
        );
        assert!(gone.is_retryable());
    }
}
