//! [`IssuerError`]: why the issuer could not issue, log in or revoke, never with a secret.

use std::fmt;
use std::time::Duration;

use crate::source::{SourceError, SourceErrorKind};

/// What went wrong in [`VaultIssuer`](super::VaultIssuer).
///
/// The message names the step, Vault's error type and message when Vault gave one, and never a
/// token, session id or password. The layer sees it as the cause of a [`SourceError`]
/// (reach it with [`IssuerError::from_source`]); [`is_retryable`](Self::is_retryable) says whether
/// the layer should keep asking at its usual backoff or wait its longest.
///
/// ```
/// use veeva_vault_auth::source::{IssuerError, IssuerErrorKind, SourceError};
///
/// # fn demo(err: &SourceError) {
/// if let Some(issuer) = IssuerError::from_source(err) {
///     if issuer.kind() == IssuerErrorKind::BadCredential {
///         eprintln!("Vault refused the credential: {:?}", issuer.vault_error_type());
///     }
/// }
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct IssuerError {
    kind: IssuerErrorKind,
    vault_type: Option<String>,
    message: String,
    retry_in: Option<Duration>,
    retryable: bool,
}

/// What kind of failure an [`IssuerError`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IssuerErrorKind {
    /// Vault refused the bootstrap credential: a token it answers `INVALID_SESSION_ID` to, or a
    /// login refused with `USERNAME_OR_PASSWORD_INCORRECT`, `INACTIVE_USER`, `USER_LOCKED_OUT`,
    /// `PASSWORD_CHANGE_REQUIRED` or the like. Not retryable: a person must fix it (a new
    /// bootstrap token in the variable or file is picked up at the next attempt).
    BadCredential,
    /// The bootstrap source (a [`TokenSource`](crate::source::TokenSource), or the identity
    /// provider's function) failed; retryable as its error says.
    BootstrapUnavailable,
    /// Vault logged the user into another Vault than the one asked for (authentication
    /// defaulting); nothing was issued. Not retryable.
    WrongVault,
    /// Vault's per-minute login limit (`API_LIMIT_EXCEEDED`), or the issuer's own pacing of
    /// logins; retryable after [`retry_after`](IssuerError::retry_after).
    LoginLimited,
    /// Vault refused to create a token for a reason other than the cap (`INSUFFICIENT_ACCESS`,
    /// an expiry the security profile does not allow, …). Not retryable.
    CreateRefused,
    /// The user holds 25 active tokens and none carries the issuer's name prefix, so none is
    /// the issuer's to revoke. Retryable (someone may free one).
    CapFullOfOthers,
    /// Vault could not be reached, timed out, or answered something that is not Vault's JSON.
    /// Retryable.
    Transport,
    /// The TLS handshake with Vault (or the login host) failed, most often because no trusted
    /// root vouches for the certificate it presented (a TLS-inspecting proxy with a private CA:
    /// trust it with [`tls_root_certificates_pem`](super::VaultIssuerBuilder::tls_root_certificates_pem)).
    /// The message says what rustls found. Not retryable: a person must fix the trust. Detected
    /// on the issuer's own client (feature `rustls`).
    Tls,
    /// The issuer was shut down.
    ShutDown,
}

impl IssuerError {
    pub(super) fn new(kind: IssuerErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            vault_type: None,
            message: message.into(),
            retry_in: None,
            retryable: kind.is_retryable(),
        }
    }

    /// An error carrying Vault's error type; Vault's message is added after `what`.
    pub(super) fn from_vault(
        kind: IssuerErrorKind,
        what: &str,
        vault_type: &str,
        vault_message: &str,
    ) -> Self {
        let message = if vault_message.is_empty() {
            format!("{what}: Vault answered {vault_type}")
        } else {
            format!(
                "{what}: Vault answered {vault_type} ({})",
                scrub(vault_message)
            )
        };
        Self {
            kind,
            vault_type: Some(vault_type.to_owned()),
            message,
            retry_in: None,
            retryable: kind.is_retryable(),
        }
    }

    #[must_use]
    pub(super) fn retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    #[must_use]
    pub(super) fn retry_in(mut self, after: Duration) -> Self {
        self.retry_in = Some(after);
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> IssuerErrorKind {
        self.kind
    }

    /// Vault's `errors[0].type`, when Vault answered with one (`INSUFFICIENT_ACCESS`,
    /// `USER_LOCKED_OUT`, `INVALID_SESSION_ID`, …).
    pub fn vault_error_type(&self) -> Option<&str> {
        self.vault_type.as_deref()
    }

    /// For [`LoginLimited`](IssuerErrorKind::LoginLimited): how long until a login may be tried.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_in
    }

    /// Whether asking again later can help without a person changing something.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// The issuer's error behind a [`SourceError`] (such as
    /// [`TokenUnavailable::source_error`](crate::TokenUnavailable::source_error) in
    /// [`AuthStatus::last_error`](crate::AuthStatus)), if it came from a [`VaultIssuer`](super::VaultIssuer).
    pub fn from_source(err: &SourceError) -> Option<&IssuerError> {
        std::error::Error::source(err)?.downcast_ref::<IssuerError>()
    }
}

impl fmt::Display for IssuerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for IssuerError {}

impl From<IssuerError> for SourceError {
    fn from(err: IssuerError) -> Self {
        SourceError::new(SourceErrorKind::Other, err.retryable, err.to_string()).with_cause(err)
    }
}

impl IssuerErrorKind {
    fn is_retryable(self) -> bool {
        matches!(
            self,
            IssuerErrorKind::BootstrapUnavailable
                | IssuerErrorKind::LoginLimited
                | IssuerErrorKind::CapFullOfOthers
                | IssuerErrorKind::Transport
        )
    }
}

/// Vault's message, with anything shaped like a token cut out and its length bounded.
fn scrub(message: &str) -> String {
    let mut out = String::new();
    for word in message.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        if word.contains(crate::TOKEN_PREFIX) {
            out.push_str("[REDACTED]");
        } else {
            out.push_str(word);
        }
        if out.len() > 300 {
            out.push('…');
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::scrub;

    #[test]
    fn vault_messages_are_cut_after_300_bytes_and_tokens_hidden() {
        // 30 words of 9 letters and a space: 299 bytes, then 10 more.
        let word = "abcdefghi";
        let exactly = [word; 30].join(" ") + "j";
        assert_eq!(exactly.len(), 300);
        assert_eq!(scrub(&exactly), exactly, "300 bytes are kept whole");
        let longer = [word; 31].join(" ");
        let cut = scrub(&longer);
        assert!(cut.ends_with('…'), "{cut}");
        assert_eq!(cut.len(), 309 + '…'.len_utf8());
        let long = ["0123456789abcdef"; 200].join(" ");
        assert!(scrub(&long).len() < 330);
        assert_eq!(
            scrub("bad   token veeva-vault-secret\there"),
            "bad token [REDACTED] here"
        );
    }
}
