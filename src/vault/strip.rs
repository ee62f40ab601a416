//! Keeping Vault tokens off requests for other hosts.

use http::header::AUTHORIZATION;
use http::HeaderMap;

use crate::trace::event;
use crate::TOKEN_PREFIX;

/// Whether an `Authorization` value may carry a Vault token to whoever reads it.
///
/// Servers differ in how they parse the header (leading spaces or tabs, the scheme's case, the
/// whitespace after it, a raw token as for session ids), so this does not parse: any value that
/// holds `veeva-vault-` anywhere, in any case, counts.
pub(crate) fn holds_vault_token(value: &[u8]) -> bool {
    let prefix = TOKEN_PREFIX.as_bytes();
    value
        .windows(prefix.len())
        .any(|window| window.eq_ignore_ascii_case(prefix))
}

/// Whether the request's headers carry a Vault token in `Authorization`.
pub(crate) fn carries_vault_token(headers: &HeaderMap) -> bool {
    !headers.is_empty()
        && headers
            .get_all(AUTHORIZATION)
            .iter()
            .any(|value| holds_vault_token(value.as_bytes()))
}

/// Removes every `Authorization` header when any of them carries a Vault token (see
/// [`holds_vault_token`]): a request for another host must not carry one, whoever put it there.
pub(crate) fn strip_vault_tokens(headers: &mut HeaderMap) {
    if carries_vault_token(headers) {
        headers.remove(AUTHORIZATION);
        event!(
            warn,
            "removed a vault token from a request for another host"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_found_however_a_server_might_read_the_header() {
        for value in [
            "Bearer veeva-vault-abc",
            "bearer veeva-vault-abc",
            "Bearer\tveeva-vault-abc",
            " Bearer veeva-vault-abc",
            "\tBearer veeva-vault-abc",
            "Bearer   veeva-vault-abc",
            "veeva-vault-abc",
            "  VEEVA-VAULT-abc",
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(AUTHORIZATION, value.parse().unwrap());
            headers.insert("x-other", "kept".parse().unwrap());
            strip_vault_tokens(&mut headers);
            assert!(
                headers.get(AUTHORIZATION).is_none(),
                "{value:?} was not stripped"
            );
            assert_eq!(headers["x-other"], "kept");
        }
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, "Basic dXNlcjpwdw==".parse().unwrap());
        strip_vault_tokens(&mut headers);
        assert!(
            headers.get(AUTHORIZATION).is_some(),
            "another credential is left alone"
        );
    }
}
