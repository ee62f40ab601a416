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
/// JSON member (`"password":"…"`, with any whitespace around the colon, up to the closing quote
/// that no backslash escapes) with `[REDACTED]`, so a recorded login never shows one.
pub(super) fn redact_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let form = find_field(rest, "password=").map(|at| {
            let start = at + "password=".len();
            let end = rest[start..]
                .find('&')
                .map_or(rest.len(), |len| start + len);
            (at, start, end)
        });
        let Some((_, start, end)) = [form, json_password(rest)]
            .into_iter()
            .flatten()
            .min_by_key(|(at, _, _)| *at)
        else {
            break;
        };
        out.push_str(&rest[..start]);
        out.push_str("[REDACTED]");
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// The first JSON member `"password"` with a string value in `text`: where its name starts, and
/// where its value starts and ends (the closing quote, or the end of the text).
fn json_password(text: &str) -> Option<(usize, usize, usize)> {
    let bytes = text.as_bytes();
    let skip_space = |mut i: usize| {
        while bytes.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        i
    };
    let mut from = 0;
    while let Some(found) = find_field(&text[from..], "\"password\"") {
        let at = from + found;
        from = at + 1;
        let colon = skip_space(at + "\"password\"".len());
        if bytes.get(colon) != Some(&b':') {
            continue;
        }
        let quote = skip_space(colon + 1);
        if bytes.get(quote) != Some(&b'"') {
            continue;
        }
        let start = quote + 1;
        let mut end = start;
        while end < bytes.len() && bytes[end] != b'"' {
            // An escape's second byte is ASCII in JSON; past the end is the end.
            end += if bytes[end] == b'\\' { 2 } else { 1 };
        }
        // Stopped on a quote (a char boundary) or at the end.
        return Some((at, start, end.min(bytes.len())));
    }
    None
}

/// Where `key` starts in `text`, ignoring ASCII case, at the text's start or after a separator.
fn find_field(text: &str, key: &str) -> Option<usize> {
    let lower = text.to_ascii_lowercase();
    let mut from = 0;
    while let Some(found) = lower[from..].find(key) {
        let at = from + found;
        let before = lower[..at].chars().next_back();
        if before.is_none_or(|c| matches!(c, '&' | '?' | ',' | '{' | ' ' | '\n' | '\r' | '\t')) {
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
        // JSON with whitespace around the colon, an escaped quote, and no closing quote.
        assert_eq!(
            redact_passwords(r#"{"username":"a", "password" : "p\"q w"}"#),
            r#"{"username":"a", "password" : "[REDACTED]"}"#
        );
        assert_eq!(
            redact_passwords("{\n\t\"Password\":\t\"secret"),
            "{\n\t\"Password\":\t\"[REDACTED]"
        );
        assert_eq!(
            redact_passwords(r#"{"password": 5, "x": "password"}"#),
            r#"{"password": 5, "x": "password"}"#,
            "not a string value: nothing to hide, nothing changed"
        );
        assert_eq!(redact_passwords("password="), "password=[REDACTED]");
    }
}
