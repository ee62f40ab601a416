//! Redaction for `Debug` output.

use super::*;

/// Headers whose values are never shown.
pub(super) fn is_secret_header(name: &HeaderName, value: &HeaderValue) -> bool {
    value.is_sensitive()
        || name == AUTHORIZATION
        || name == http::header::PROXY_AUTHORIZATION
        || name == http::header::COOKIE
}

pub(super) struct RedactedHeaders<'a>(pub(super) &'a HeaderMap);

impl fmt::Debug for RedactedHeaders<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entries = self.0.iter().map(|(name, value)| {
            let shown = if is_secret_header(name, value) {
                "[REDACTED]".to_owned()
            } else {
                redact_tokens(&String::from_utf8_lossy(value.as_bytes()))
            };
            (name, shown)
        });
        f.debug_map().entries(entries).finish()
    }
}

/// Replaces what follows each `veeva-vault-` (letters and digits) with `[REDACTED]`.
pub(super) fn redact_tokens(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(TOKEN_PREFIX) {
        let after = &rest[at + TOKEN_PREFIX.len()..];
        let secret_len = after
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(after.len());
        out.push_str(&rest[..at + TOKEN_PREFIX.len()]);
        out.push_str("[REDACTED]");
        rest = &after[secret_len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_redacted_from_text() {
        assert_eq!(
            redact_tokens("a veeva-vault-Abc123 b veeva-vault-"),
            "a veeva-vault-[REDACTED] b veeva-vault-[REDACTED]"
        );
        assert_eq!(redact_tokens("nothing here"), "nothing here");
    }
}
