//! [`EnvToken`]: a token read from an environment variable.

use std::ffi::OsString;
use std::time::Duration;

use super::{BoxFuture, SourceError, SourceErrorKind, TokenSource};
use crate::token::AccessToken;

/// The variable [`EnvToken::new`] reads.
pub const DEFAULT_TOKEN_VAR: &str = "VEEVA_VAULT_TOKEN";

const DEFAULT_POLL: Duration = Duration::from_secs(5);

/// A token read from an environment variable, `VEEVA_VAULT_TOKEN` unless named otherwise.
///
/// Surrounding whitespace is trimmed. An unset variable, an empty one (or only whitespace) and one
/// that is not UTF-8 are distinct errors ([`SourceErrorKind::NotFound`],
/// [`SourceErrorKind::Empty`], [`SourceErrorKind::NotUnicode`]). While a token is held, the
/// variable is read again every [`poll_interval`](EnvToken::with_poll_interval) (5 s by default)
/// and whenever Vault rejects the token, so a process that sets it anew is picked up. Its errors
/// are not expected to fix themselves (a process's environment rarely changes), so after one the
/// layer waits out its longest backoff (60 s by default) before reading again.
///
/// ```
/// use std::time::Duration;
/// use veeva_vault_auth::source::EnvToken;
///
/// let source = EnvToken::from_var("MY_VAULT_TOKEN").with_poll_interval(Duration::from_secs(30));
/// # let _ = source;
/// ```
#[derive(Clone, Debug)]
pub struct EnvToken {
    var: String,
    poll: Option<Duration>,
}

impl EnvToken {
    /// Reads `VEEVA_VAULT_TOKEN`.
    pub fn new() -> Self {
        Self::from_var(DEFAULT_TOKEN_VAR)
    }

    /// Reads the variable `name`.
    pub fn from_var(name: impl Into<String>) -> Self {
        Self {
            var: name.into(),
            poll: Some(DEFAULT_POLL),
        }
    }

    /// How often to read the variable again; `Duration::ZERO` turns polling off.
    #[must_use]
    pub fn with_poll_interval(mut self, every: Duration) -> Self {
        self.poll = (!every.is_zero()).then_some(every);
        self
    }

    /// Reads and validates the variable now.
    pub fn read(&self) -> Result<AccessToken, SourceError> {
        let value: OsString = std::env::var_os(&self.var).ok_or_else(|| {
            SourceError::new(
                SourceErrorKind::NotFound,
                false,
                format!("environment variable {} is not set", self.var),
            )
        })?;
        let value = value.into_string().map_err(|raw| {
            drop(zeroize::Zeroizing::new(raw.into_encoded_bytes()));
            SourceError::new(
                SourceErrorKind::NotUnicode,
                false,
                format!("environment variable {} is not valid UTF-8", self.var),
            )
        })?;
        let value = zeroize::Zeroizing::new(value);
        if value.trim().is_empty() {
            return Err(SourceError::new(
                SourceErrorKind::Empty,
                false,
                format!("environment variable {} is empty", self.var),
            ));
        }
        AccessToken::new_trimmed(value.as_str()).map_err(|err| {
            SourceError::new(
                SourceErrorKind::InvalidToken,
                false,
                format!("environment variable {}: {err}", self.var),
            )
            .with_cause(err)
        })
    }
}

impl Default for EnvToken {
    fn default() -> Self {
        Self::new()
    }
}

impl TokenSource for EnvToken {
    fn fetch(&self) -> BoxFuture<'_, Result<AccessToken, SourceError>> {
        let result = self.read();
        Box::pin(async move { result })
    }

    fn poll_interval(&self) -> Option<Duration> {
        self.poll
    }
}
