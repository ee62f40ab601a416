//! Vault's JSON answers: the whole body's errors, and the status a prefix already shows.

use super::INVALID_SESSION_ID;

/// Whether a whole JSON body lists an `INVALID_SESSION_ID` error in its top-level `errors`.
pub(crate) fn lists_invalid_session(body: &[u8]) -> bool {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return false;
    };
    value
        .get("errors")
        .and_then(|errors| errors.as_array())
        .is_some_and(|errors| {
            errors
                .iter()
                .any(|error| error.get("type").and_then(|t| t.as_str()) == Some(INVALID_SESSION_ID))
        })
}

/// The value of `responseStatus` when it is the first member of the body's object and the prefix
/// shows it in full (Vault writes it first). `None` when the prefix is too short, the body starts
/// otherwise, or the value is written with escapes: then the body has to be read on.
pub(crate) fn leading_status(prefix: &[u8]) -> Option<&[u8]> {
    let rest = prefix.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(prefix);
    let rest = skip_space(rest).strip_prefix(b"{")?;
    let rest = skip_space(rest).strip_prefix(b"\"responseStatus\"")?;
    let rest = skip_space(rest).strip_prefix(b":")?;
    let rest = skip_space(rest).strip_prefix(b"\"")?;
    let end = rest.iter().position(|&b| b == b'"' || b == b'\\')?;
    (rest[end] == b'"').then(|| &rest[..end])
}

fn skip_space(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        .unwrap_or(bytes.len());
    &bytes[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leading_status_is_read_from_the_first_bytes() {
        let body = br#"{"responseStatus":"SUCCESS","data":[1,2,3]}"#;
        for cut in 0..body.len() {
            let seen = leading_status(&body[..cut]);
            if cut < r#"{"responseStatus":"SUCCESS""#.len() {
                assert_eq!(seen, None, "{cut}");
            } else {
                assert_eq!(seen, Some(&b"SUCCESS"[..]), "{cut}");
            }
        }
        assert_eq!(
            leading_status(b"\xEF\xBB\xBF { \"responseStatus\" :\n \"FAILURE\""),
            Some(&b"FAILURE"[..])
        );
    }

    #[test]
    fn anything_else_reads_on() {
        for prefix in [
            &br#"{"data":{},"responseStatus":"SUCCESS"}"#[..],
            br#"[{"responseStatus":"SUCCESS"}]"#,
            br#"{"responseStatus":"SUCC\u0045SS"}"#,
            br#"{"responseStatus":SUCCESS}"#,
            b"",
        ] {
            assert_eq!(leading_status(prefix), None);
        }
    }
}
