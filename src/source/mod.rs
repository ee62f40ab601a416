//! Where tokens come from: the [`TokenSource`] trait and the sources this crate ships.
//!
//! | source | reads | picks up a new token |
//! |---|---|---|
//! | [`StaticToken`] | one value, validated when built | never |
//! | [`EnvToken`] | an environment variable (`VEEVA_VAULT_TOKEN` by default) | polled, every 5 s by default |
//! | [`FileToken`] | a file, off the async runtime | polled, every 5 s by default; rename, rewrite and symlink swap all count |
//! | [`RotatingToken`] | your async function, with the token's expiry | before the token expires |
//!
//! Any source is re-read at once when Vault rejects the token it gave, so a rotated file or
//! variable is also picked up on the first rejection.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::token::{AccessToken, InvalidToken};

mod env;
mod file;
#[cfg(feature = "issuer")]
mod issuer;
mod rotating;

pub use env::{EnvToken, DEFAULT_TOKEN_VAR};
pub use file::{FileToken, DEFAULT_MAX_FILE_SIZE};
#[cfg(feature = "issuer")]
#[cfg_attr(docsrs, doc(cfg(feature = "issuer")))]
pub use issuer::{
    IssuerConfigError, IssuerError, IssuerErrorKind, IssuerStats, VaultIssuer, VaultIssuerBuilder,
    DEFAULT_GRACE_PERIOD, DEFAULT_LIFETIME, DEFAULT_LOGIN_URL, DEFAULT_NAME_PREFIX,
    MAX_ACTIVE_TOKENS,
};
pub use rotating::RotatingToken;

/// A boxed future that is `Send`, as returned by [`TokenSource::fetch`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Something that can hand out the current access token.
///
/// The layer calls [`fetch`](TokenSource::fetch) when it has no usable token: at the first request,
/// when the token nears its expiry (if the token carries one), when Vault rejects it, on every
/// [`poll_interval`](TokenSource::poll_interval), and when the user forces a refresh. One fetch
/// serves everybody waiting, and the layer starts no second one while one runs (a call abandoned at
/// its timeout may still be running inside the source, a blocking file read say, when the next one
/// starts). A fetch has a timeout (see
/// [`VaultAuthLayerBuilder::fetch_timeout`](crate::VaultAuthLayerBuilder::fetch_timeout)).
///
/// The trait is object safe; the layer holds its source as `Arc<dyn TokenSource>`.
///
/// ```
/// use veeva_vault_auth::source::{BoxFuture, SourceError, TokenSource};
/// use veeva_vault_auth::AccessToken;
///
/// /// Reads the token from a secrets manager (here: a constant).
/// struct MySecrets;
///
/// impl TokenSource for MySecrets {
///     fn fetch(&self) -> BoxFuture<'_, Result<AccessToken, SourceError>> {
///         Box::pin(async {
///             let value = String::from("veeva-vault-from-my-secrets");
///             Ok(AccessToken::new(value)?)
///         })
///     }
/// }
///
/// let source: std::sync::Arc<dyn TokenSource> = std::sync::Arc::new(MySecrets);
/// # let _ = source;
/// ```
pub trait TokenSource: Send + Sync + 'static {
    /// Produces the current token, with its expiry when known.
    fn fetch(&self) -> BoxFuture<'_, Result<AccessToken, SourceError>>;

    /// How often the layer should ask again to see whether the token changed, if at all.
    ///
    /// Sources that can change under the process's feet (a file, a variable) return `Some`; the
    /// layer then re-fetches in the background at this interval and swaps in a changed token.
    /// Intervals under one second are polled once a second (`Some(Duration::ZERO)` included).
    fn poll_interval(&self) -> Option<Duration> {
        None
    }
}

impl<T: TokenSource + ?Sized> TokenSource for std::sync::Arc<T> {
    fn fetch(&self) -> BoxFuture<'_, Result<AccessToken, SourceError>> {
        (**self).fetch()
    }

    fn poll_interval(&self) -> Option<Duration> {
        (**self).poll_interval()
    }
}

impl<T: TokenSource + ?Sized> TokenSource for Box<T> {
    fn fetch(&self) -> BoxFuture<'_, Result<AccessToken, SourceError>> {
        (**self).fetch()
    }

    fn poll_interval(&self) -> Option<Duration> {
        (**self).poll_interval()
    }
}

/// A token that never changes, validated when it is built.
///
/// ```
/// use veeva_vault_auth::source::StaticToken;
///
/// let source = StaticToken::new("veeva-vault-abc123").unwrap();
/// assert!(StaticToken::new("not-a-token").is_err());
/// # let _ = source;
/// ```
#[derive(Clone, Debug)]
pub struct StaticToken {
    token: AccessToken,
}

impl StaticToken {
    /// Validates `value` as an [`AccessToken`].
    pub fn new(value: impl Into<String>) -> Result<Self, InvalidToken> {
        Ok(Self {
            token: AccessToken::new(value)?,
        })
    }

    /// Wraps a token that is already validated (it may carry an expiry).
    pub fn from_token(token: AccessToken) -> Self {
        Self { token }
    }
}

impl TokenSource for StaticToken {
    fn fetch(&self) -> BoxFuture<'_, Result<AccessToken, SourceError>> {
        let token = self.token.clone();
        Box::pin(async move { Ok(token) })
    }
}

/// A source could not produce a token.
///
/// The message names what went wrong (a variable's name, a file's path, a size) and never holds
/// a token's value. [`is_retryable`](SourceError::is_retryable) says whether asking again later
/// can help; the layer backs off longer when it cannot.
///
/// ```
/// use veeva_vault_auth::source::{SourceError, SourceErrorKind};
///
/// let err = SourceError::retryable("the secrets service answered 503");
/// assert!(err.is_retryable());
/// assert_eq!(err.kind(), SourceErrorKind::Other);
/// ```
#[derive(Debug)]
pub struct SourceError {
    kind: SourceErrorKind,
    retryable: bool,
    message: String,
    cause: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// What kind of failure a [`SourceError`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SourceErrorKind {
    /// The variable is unset, or the file does not exist.
    NotFound,
    /// The variable or file is empty or holds only whitespace.
    Empty,
    /// The variable or file is not valid UTF-8.
    NotUnicode,
    /// The file is larger than the source's size cap.
    TooLarge,
    /// The file changed while it was being read.
    ChangedWhileReading,
    /// The value is not a valid access token (see [`InvalidToken`]).
    InvalidToken,
    /// An I/O error other than "not found".
    Io,
    /// Anything else, such as an error from a user's function or from Vault.
    Other,
}

impl SourceError {
    /// An error of `kind`; `message` must not contain a secret.
    pub fn new(kind: SourceErrorKind, retryable: bool, message: impl Into<String>) -> Self {
        Self {
            kind,
            retryable,
            message: message.into(),
            cause: None,
        }
    }

    /// A failure that may go away if the source is asked again later.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self::new(SourceErrorKind::Other, true, message)
    }

    /// A failure that asking again is not expected to fix.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self::new(SourceErrorKind::Other, false, message)
    }

    /// Attaches the underlying error; it must not contain a secret either.
    #[must_use]
    pub fn with_cause(
        mut self,
        cause: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        self.cause = Some(cause.into());
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> SourceErrorKind {
        self.kind
    }

    /// Whether asking again later can help.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SourceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<InvalidToken> for SourceError {
    /// A source that read something which is not a token; asking again may read a fixed value.
    fn from(err: InvalidToken) -> Self {
        SourceError::new(SourceErrorKind::InvalidToken, true, err.to_string()).with_cause(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn sources_are_object_safe_and_shareable() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Arc<dyn TokenSource>>();
        let sources: Vec<Arc<dyn TokenSource>> = vec![
            Arc::new(StaticToken::new("veeva-vault-a").unwrap()),
            Arc::new(EnvToken::new()),
            Arc::new(FileToken::new("/nonexistent")),
        ];
        assert_eq!(sources.len(), 3);
    }

    #[tokio::test]
    async fn static_token_hands_out_its_value() {
        let source = StaticToken::new("veeva-vault-abc").unwrap();
        let token = source.fetch().await.unwrap();
        assert_eq!(token.expose_secret(), "veeva-vault-abc");
        assert_eq!(source.poll_interval(), None);
    }

    #[test]
    fn invalid_token_becomes_a_typed_source_error() {
        let err = SourceError::from(AccessToken::new("nope").unwrap_err());
        assert_eq!(err.kind(), SourceErrorKind::InvalidToken);
        assert!(std::error::Error::source(&err).is_some());
    }
}
