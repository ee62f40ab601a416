//! [`AccessToken`]: the one way a token value enters this crate.

use std::fmt;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::HeaderValue;
use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;
use zeroize::{Zeroize, Zeroizing};

/// Every Vault API access token starts with this prefix (exact case).
pub const TOKEN_PREFIX: &str = "veeva-vault-";

/// The longest token value accepted, in bytes, prefix included.
///
/// Vault's tokens are the prefix followed by a short random string; 1,024 bytes leaves ample room
/// for format changes while keeping a corrupt file or variable from becoming a huge header.
pub const MAX_TOKEN_LEN: usize = 1024;

/// A validated Veeva Vault API access token, with its expiry when one is known.
///
/// The value is a secret:
/// - it is checked once, here, before it can be used: it starts with [`TOKEN_PREFIX`], has a
///   non-empty remainder, is at most [`MAX_TOKEN_LEN`] bytes and holds only visible ASCII
///   without spaces (so it can never smuggle CR, LF or NUL into a header);
/// - `Debug` prints `AccessToken([REDACTED])` and there is no `Display`;
/// - its memory is wiped when it is dropped, and so is the input of a rejected value;
/// - reading it takes an explicit call to [`expose_secret`](AccessToken::expose_secret).
///
/// ```
/// use veeva_vault_auth::AccessToken;
///
/// let token = AccessToken::new("veeva-vault-3f9a8c").unwrap();
/// assert_eq!(format!("{token:?}"), "AccessToken([REDACTED])");
/// assert_eq!(token.expose_secret(), "veeva-vault-3f9a8c");
///
/// let err = AccessToken::new("veeva-vault-abc\r\nX-Injected: 1").unwrap_err();
/// assert_eq!(err.to_string(), "invalid access token: illegal character at byte 15");
/// ```
pub struct AccessToken {
    secret: SecretString,
    expires_at: Option<Instant>,
}

impl AccessToken {
    /// Validates `value` and wraps it. The input is wiped whether or not it is accepted.
    pub fn new(value: impl Into<String>) -> Result<Self, InvalidToken> {
        let value = Zeroizing::new(value.into());
        validate(&value)?;
        Ok(Self {
            secret: SecretString::from(value.as_str()),
            expires_at: None,
        })
    }

    /// Like [`new`](Self::new), after trimming surrounding ASCII whitespace (a trailing newline
    /// in a file or variable is normal).
    pub fn new_trimmed(value: impl Into<String>) -> Result<Self, InvalidToken> {
        let value = Zeroizing::new(value.into());
        Self::new(value.trim_matches(|c: char| c.is_ascii_whitespace()))
    }

    /// The token's value. Every read of the secret goes through this call, so it is easy to find.
    pub fn expose_secret(&self) -> &str {
        self.secret.expose_secret()
    }

    /// Sets the moment the token stops working, as a duration from now.
    ///
    /// Measured on Tokio's clock, so tests that pause time see it expire when they advance.
    #[must_use]
    pub fn with_expires_in(mut self, lifetime: Duration) -> Self {
        // A lifetime too long to represent is no expiry at all.
        self.expires_at = Instant::now().checked_add(lifetime);
        self
    }

    /// Sets the moment the token stops working, as a wall-clock time (Vault's `expiry_date__v`).
    ///
    /// The time is converted to Tokio's monotonic clock now; a time in the past means the token
    /// has already expired.
    #[must_use]
    pub fn with_expires_at(mut self, at: SystemTime) -> Self {
        let remaining = at
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        self.expires_at = Instant::now().checked_add(remaining);
        self
    }

    /// Sets the expiry as a Tokio instant, or clears it with `None`.
    #[must_use]
    pub fn with_expiry(mut self, at: Option<Instant>) -> Self {
        self.expires_at = at;
        self
    }

    /// When the token stops working, if known.
    pub fn expires_at(&self) -> Option<Instant> {
        self.expires_at
    }

    /// Whether the token is past its expiry at `now`.
    pub fn is_expired_at(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// Whether two tokens have the same value (their expiries are not compared).
    ///
    /// The comparison takes the same time wherever the values first differ.
    pub fn same_value(&self, other: &AccessToken) -> bool {
        let (a, b) = (
            self.expose_secret().as_bytes(),
            other.expose_secret().as_bytes(),
        );
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }

    /// A fresh `Authorization: Bearer …` value, marked sensitive, whose bytes are wiped when the
    /// last clone of it is dropped.
    pub(crate) fn bearer_header(&self) -> HeaderValue {
        let token = self.expose_secret().as_bytes();
        let mut bytes = Vec::with_capacity(7 + token.len());
        bytes.extend_from_slice(b"Bearer ");
        bytes.extend_from_slice(token);
        let mut value = HeaderValue::from_maybe_shared(Bytes::from_owner(WipedOnDrop(bytes)))
            .expect("a validated token is a legal header value");
        value.set_sensitive(true);
        value
    }
}

impl Clone for AccessToken {
    fn clone(&self) -> Self {
        Self {
            secret: SecretString::from(self.expose_secret()),
            expires_at: self.expires_at,
        }
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken([REDACTED])")
    }
}

/// Zeroes a byte buffer, its bytes and its spare room, in bulk, and empties it.
///
/// `zeroize`'s own `Vec` impl zeroes the bytes one by one (about 1.4 instructions a byte: 2,859
/// for a 2 KiB recording in scripts/end_to_end_instructions.sh); its slice impls fill in bulk
/// behind the same optimisation barrier, so the wipe is as sure and about 20 times cheaper.
pub(crate) fn wipe_bytes(buffer: &mut Vec<u8>) {
    buffer.as_mut_slice().zeroize();
    buffer.spare_capacity_mut().zeroize();
    buffer.clear();
}

/// Bytes that are zeroed when dropped; the owner behind each pre-built header value.
struct WipedOnDrop(Vec<u8>);

/// A copy of `bytes` in memory that is zeroed when the last clone of the result drops.
pub(crate) fn wiped_copy(bytes: &[u8]) -> Bytes {
    Bytes::from_owner(WipedOnDrop(bytes.to_vec()))
}

impl AsRef<[u8]> for WipedOnDrop {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for WipedOnDrop {
    fn drop(&mut self) {
        wipe_bytes(&mut self.0);
    }
}

fn validate(value: &str) -> Result<(), InvalidToken> {
    if value.len() > MAX_TOKEN_LEN {
        return Err(InvalidToken::new(InvalidTokenKind::TooLong {
            len: value.len(),
        }));
    }
    let Some(rest) = value.strip_prefix(TOKEN_PREFIX) else {
        return Err(InvalidToken::new(if value.is_empty() {
            InvalidTokenKind::Empty
        } else {
            InvalidTokenKind::MissingPrefix
        }));
    };
    if rest.is_empty() {
        return Err(InvalidToken::new(InvalidTokenKind::Empty));
    }
    match value.bytes().position(|b| !b.is_ascii_graphic()) {
        Some(position) => Err(InvalidToken::new(InvalidTokenKind::IllegalCharacter {
            position,
        })),
        None => Ok(()),
    }
}

/// A token value was refused. The message says why, never what the value was.
///
/// ```
/// use veeva_vault_auth::{AccessToken, InvalidTokenKind};
///
/// let err = AccessToken::new("Veeva-Vault-abc").unwrap_err();
/// assert_eq!(err.kind(), InvalidTokenKind::MissingPrefix);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidToken {
    kind: InvalidTokenKind,
}

/// Why a token value was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidTokenKind {
    /// The value does not start with `veeva-vault-` (the case must match exactly).
    MissingPrefix,
    /// The value is empty, or nothing follows the prefix.
    Empty,
    /// The byte at this position is not visible ASCII (space, control character or non-ASCII).
    IllegalCharacter {
        /// Zero-based byte offset into the value.
        position: usize,
    },
    /// The value is longer than [`MAX_TOKEN_LEN`] bytes.
    TooLong {
        /// The value's length in bytes.
        len: usize,
    },
}

impl InvalidToken {
    fn new(kind: InvalidTokenKind) -> Self {
        Self { kind }
    }

    /// Why the value was refused.
    pub fn kind(&self) -> InvalidTokenKind {
        self.kind
    }
}

impl fmt::Display for InvalidToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid access token: ")?;
        match self.kind {
            InvalidTokenKind::MissingPrefix => {
                write!(f, "it does not start with `{TOKEN_PREFIX}`")
            }
            InvalidTokenKind::Empty => f.write_str("it is empty after the prefix"),
            InvalidTokenKind::IllegalCharacter { position } => {
                write!(f, "illegal character at byte {position}")
            }
            InvalidTokenKind::TooLong { len } => {
                write!(f, "{len} bytes is over the limit of {MAX_TOKEN_LEN}")
            }
        }
    }
}

impl std::error::Error for InvalidToken {}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(value: &str) -> InvalidTokenKind {
        AccessToken::new(value).unwrap_err().kind()
    }

    #[test]
    fn accepts_prefix_and_visible_ascii() {
        let token = AccessToken::new("veeva-vault-AbC123_-.~").unwrap();
        assert_eq!(token.expose_secret(), "veeva-vault-AbC123_-.~");
        assert!(token.expires_at().is_none());
    }

    #[test]
    fn refuses_bad_values_with_a_reason() {
        assert_eq!(kind(""), InvalidTokenKind::Empty);
        assert_eq!(kind("veeva-vault-"), InvalidTokenKind::Empty);
        assert_eq!(kind("VEEVA-VAULT-abc"), InvalidTokenKind::MissingPrefix);
        assert_eq!(kind("session-abc"), InvalidTokenKind::MissingPrefix);
        assert_eq!(
            kind("veeva-vault-a b"),
            InvalidTokenKind::IllegalCharacter { position: 13 }
        );
        assert_eq!(
            kind("veeva-vault-a\r\nX: y"),
            InvalidTokenKind::IllegalCharacter { position: 13 }
        );
        assert_eq!(
            kind("veeva-vault-\0"),
            InvalidTokenKind::IllegalCharacter { position: 12 }
        );
        assert_eq!(
            kind("veeva-vault-é"),
            InvalidTokenKind::IllegalCharacter { position: 12 }
        );
        assert_eq!(
            kind("veeva-vault-\tx"),
            InvalidTokenKind::IllegalCharacter { position: 12 }
        );
        let long = format!("{TOKEN_PREFIX}{}", "a".repeat(MAX_TOKEN_LEN));
        assert_eq!(
            kind(&long),
            InvalidTokenKind::TooLong {
                len: MAX_TOKEN_LEN + TOKEN_PREFIX.len()
            }
        );
        let longest = format!(
            "{TOKEN_PREFIX}{}",
            "a".repeat(MAX_TOKEN_LEN - TOKEN_PREFIX.len())
        );
        assert!(AccessToken::new(longest).is_ok());
    }

    #[test]
    fn trimming_removes_only_surrounding_whitespace() {
        let token = AccessToken::new_trimmed("  veeva-vault-abc\r\n").unwrap();
        assert_eq!(token.expose_secret(), "veeva-vault-abc");
        assert_eq!(
            AccessToken::new_trimmed(" \n").unwrap_err().kind(),
            InvalidTokenKind::Empty
        );
    }

    #[test]
    fn header_is_bearer_and_sensitive() {
        let token = AccessToken::new("veeva-vault-abc").unwrap();
        let header = token.bearer_header();
        assert_eq!(header.as_bytes(), b"Bearer veeva-vault-abc");
        assert!(header.is_sensitive());
        assert_eq!(format!("{header:?}"), "Sensitive");
    }

    #[test]
    fn same_value_ignores_expiry() {
        let a = AccessToken::new("veeva-vault-abc").unwrap();
        let b = a.clone().with_expires_in(Duration::from_secs(5));
        let c = AccessToken::new("veeva-vault-abd").unwrap();
        assert!(a.same_value(&b));
        assert!(!a.same_value(&c));
    }
}
