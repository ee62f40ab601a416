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

/// Replaces each token with `veeva-vault-[REDACTED]`: from its prefix, written plainly or
/// percent-encoded (`veeva%2Dvault%2D…`, any byte of it may be encoded), up to the next byte that
/// is not visible ASCII (whitespace, a control byte, or the end).
///
/// A token may hold any visible ASCII, so nothing visible can be taken for its end: what follows
/// it up to the next space is masked too (a `"` closing a JSON string, an `&` and the next form
/// field). Masking too much is the safe side of this choice.
pub(super) fn redact_tokens(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut at = 0;
    while at < bytes.len() {
        let Some(prefix_end) = prefix_at(bytes, at) else {
            at += 1;
            continue;
        };
        let secret_end = bytes[prefix_end..]
            .iter()
            .position(|b| !b.is_ascii_graphic())
            .map_or(bytes.len(), |len| prefix_end + len);
        // Both ends fall on ASCII bytes (or the text's end), hence on char boundaries.
        out.push_str(&text[copied..at]);
        out.push_str(TOKEN_PREFIX);
        out.push_str("[REDACTED]");
        copied = secret_end;
        at = secret_end;
    }
    out.push_str(&text[copied..]);
    out
}

/// Replaces the value of every `password` form field (`password=…` up to the next `&`) and
/// JSON member (`"password":"…"`) with `[REDACTED]`, so a recorded login never shows one.
pub(super) fn redact_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let form = find_field(rest, "password=");
        let json = find_field(rest, "\"password\":\"");
        let Some((at, key_len, end)) = [form.map(|at| (at, 9, '&')), json.map(|at| (at, 12, '"'))]
            .into_iter()
            .flatten()
            .min_by_key(|(at, _, _)| *at)
        else {
            break;
        };
        let value_start = at + key_len;
        let value_len = rest[value_start..]
            .find(end)
            .unwrap_or(rest.len() - value_start);
        out.push_str(&rest[..value_start]);
        out.push_str("[REDACTED]");
        rest = &rest[value_start + value_len..];
    }
    out.push_str(rest);
    out
}

/// Where `key` starts in `text`, ignoring ASCII case, at the text's start or after a separator.
fn find_field(text: &str, key: &str) -> Option<usize> {
    let lower = text.to_ascii_lowercase();
    let mut from = 0;
    while let Some(found) = lower[from..].find(key) {
        let at = from + found;
        let before = lower[..at].chars().next_back();
        if before.is_none_or(|c| matches!(c, '&' | '?' | ',' | '{' | ' ' | '\n')) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// Where the token prefix starting at `at` ends, if one starts there, each of its bytes written
/// as itself or as `%XX` (hex digits in either case).
fn prefix_at(bytes: &[u8], at: usize) -> Option<usize> {
    let hex = |i: usize| char::from(*bytes.get(i)?).to_digit(16);
    let mut i = at;
    for &expected in TOKEN_PREFIX.as_bytes() {
        match bytes.get(i)? {
            &b if b == expected => i += 1,
            b'%' if hex(i + 1)? * 16 + hex(i + 2)? == u32::from(expected) => i += 3,
            _ => return None,
        }
    }
    Some(i)
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
        assert_eq!(
            redact_tokens("x veeva-vault-a.B-c_D~e!f y"),
            "x veeva-vault-[REDACTED] y"
        );
        assert_eq!(
            redact_tokens("t=veeva%2dvault%2Dab%2Ecd&u=1 é veeva-vaul"),
            "t=veeva-vault-[REDACTED] é veeva-vaul"
        );
        assert_eq!(redact_tokens("é%2"), "é%2");
    }

    #[test]
    fn passwords_are_redacted_from_text() {
        assert_eq!(
            redact_passwords("username=a&password=p%26q&vaultDNS=x"),
            "username=a&password=[REDACTED]&vaultDNS=x"
        );
        assert_eq!(
            redact_passwords(r#"{"username":"a","Password":"p&q"}"#),
            r#"{"username":"a","Password":"[REDACTED]"}"#
        );
        assert_eq!(redact_passwords("mypassword=x"), "mypassword=x");
        assert_eq!(redact_passwords("password="), "password=[REDACTED]");
    }
}
