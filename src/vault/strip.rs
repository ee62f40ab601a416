//! Keeping Vault tokens off requests for other hosts.

use http::header::AUTHORIZATION;

use crate::trace::event;

/// Removes every `Authorization` header that carries a Vault token (`veeva-vault-…`, with or
/// without `Bearer `): a request for another host must not carry one, whoever put it there.
pub(crate) fn strip_vault_tokens(headers: &mut http::HeaderMap) {
    let carries_token = headers.get_all(AUTHORIZATION).iter().any(|value| {
        let bytes = value.as_bytes();
        let bytes = match bytes.get(..7) {
            Some(scheme) if scheme.eq_ignore_ascii_case(b"bearer ") => &bytes[7..],
            _ => bytes,
        };
        let bytes = bytes.trim_ascii_start();
        bytes.len() >= crate::TOKEN_PREFIX.len()
            && bytes[..crate::TOKEN_PREFIX.len()]
                .eq_ignore_ascii_case(crate::TOKEN_PREFIX.as_bytes())
    });
    if carries_token {
        headers.remove(AUTHORIZATION);
        event!(
            warn,
            "removed a vault token from a request for another host"
        );
    }
}
