//! Recognising that Vault rejected the credential.
//!
//! Vault answers a processed request with HTTP 200 even when it fails: an invalid, expired or
//! revoked token gets `X-VaultAPI-Status: FAILURE` and a JSON body whose `errors[].type` is
//! `INVALID_SESSION_ID`. A gateway in front of Vault may answer 401 instead. [`VaultRule`](crate::detect::VaultRule)
//! recognises both and nothing else; other error types (`INSUFFICIENT_ACCESS`,
//! `API_LIMIT_EXCEEDED`, `INACTIVE_USER`, …) are the caller's business and never trigger a new
//! token.
//!
//! Reading a body costs something, so a rule first looks at the status and headers only:
//! [`Verdict::Pass`] lets the response through untouched, and only [`Verdict::InspectBody`] makes
//! the layer read the body (up to a bound) and ask again with its bytes.

use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderName, StatusCode};

/// The response header that carries Vault's `responseStatus` (API v23.2 and later).
pub const VAULT_STATUS: HeaderName = HeaderName::from_static("x-vaultapi-status");

/// The Vault error type that means "this credential is no good".
pub const INVALID_SESSION_ID: &str = "INVALID_SESSION_ID";

/// What a [`FailureRule`] makes of a response's status and headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not an authentication failure: hand the response over untouched.
    Pass,
    /// An authentication failure: get a new token.
    AuthFailure,
    /// It depends on the body: read it and call [`FailureRule::check_body`].
    InspectBody,
}

/// Decides whether a response means the credential was rejected.
///
/// [`VaultRule`](crate::detect::VaultRule) is the default. Implement this trait for gateways that signal a bad credential
/// differently; the rule is cloned into each response future, so keep it cheap to clone.
///
/// ```
/// use http::{HeaderMap, StatusCode};
/// use veeva_vault_auth::detect::{FailureRule, Verdict};
///
/// /// Our gateway answers 419 when the token is stale.
/// #[derive(Clone, Debug)]
/// struct Gateway419;
///
/// impl FailureRule for Gateway419 {
///     fn check_head(&self, status: StatusCode, _headers: &HeaderMap) -> Verdict {
///         if status.as_u16() == 419 { Verdict::AuthFailure } else { Verdict::Pass }
///     }
/// }
/// ```
pub trait FailureRule: Clone + Send + Sync + 'static {
    /// Looks at the status and headers only.
    fn check_head(&self, status: StatusCode, headers: &HeaderMap) -> Verdict;

    /// Called after [`Verdict::InspectBody`] with the whole body, when it fits the inspection
    /// bound. Returns whether it is an authentication failure.
    fn check_body(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> bool {
        let _ = (status, headers, body);
        false
    }
}

/// Vault's own signals: HTTP 401, or a JSON failure body with an `INVALID_SESSION_ID` error.
///
/// - 401: a failure, whatever the body.
/// - `X-VaultAPI-Status: SUCCESS`, or a body that is not JSON: passed through unread.
/// - A JSON response whose `X-VaultAPI-Status` is anything else or missing: the body is read and
///   it is a failure when `errors[].type` contains `INVALID_SESSION_ID`.
///
/// ```
/// use http::{HeaderMap, StatusCode};
/// use veeva_vault_auth::detect::{FailureRule, VaultRule, Verdict};
///
/// let mut headers = HeaderMap::new();
/// headers.insert("content-type", "application/json;charset=UTF-8".parse().unwrap());
/// headers.insert("x-vaultapi-status", "FAILURE".parse().unwrap());
/// assert_eq!(VaultRule.check_head(StatusCode::OK, &headers), Verdict::InspectBody);
///
/// let body = br#"{"responseStatus":"FAILURE","errors":[{"type":"INVALID_SESSION_ID","message":"Invalid or expired session ID."}]}"#;
/// assert!(VaultRule.check_body(StatusCode::OK, &headers, body));
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct VaultRule;

impl FailureRule for VaultRule {
    #[inline]
    fn check_head(&self, status: StatusCode, headers: &HeaderMap) -> Verdict {
        if status == StatusCode::UNAUTHORIZED {
            return Verdict::AuthFailure;
        }
        if headers.is_empty() {
            return Verdict::Pass;
        }
        if let Some(vault_status) = headers.get(VAULT_STATUS) {
            if vault_status.as_bytes().eq_ignore_ascii_case(b"SUCCESS") {
                return Verdict::Pass;
            }
        }
        if is_json(headers) {
            Verdict::InspectBody
        } else {
            Verdict::Pass
        }
    }

    fn check_body(&self, _status: StatusCode, _headers: &HeaderMap, body: &[u8]) -> bool {
        has_invalid_session_error(body)
    }
}

/// Only HTTP 401 counts; bodies are never read. For gateways that always translate Vault's
/// answer into a status code.
#[derive(Clone, Copy, Debug, Default)]
pub struct UnauthorizedOnly;

impl FailureRule for UnauthorizedOnly {
    #[inline]
    fn check_head(&self, status: StatusCode, _headers: &HeaderMap) -> Verdict {
        if status == StatusCode::UNAUTHORIZED {
            Verdict::AuthFailure
        } else {
            Verdict::Pass
        }
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return false;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json")
            || subtype.len() > 5 && subtype[subtype.len() - 5..].eq_ignore_ascii_case("+json"))
}

/// Whether a Vault JSON body lists an `INVALID_SESSION_ID` error.
pub fn has_invalid_session_error(body: &[u8]) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap()))
            .collect()
    }

    #[test]
    fn success_header_is_never_read() {
        let h = headers(&[
            ("content-type", "application/json"),
            ("x-vaultapi-status", "SUCCESS"),
        ]);
        assert_eq!(VaultRule.check_head(StatusCode::OK, &h), Verdict::Pass);
    }

    #[test]
    fn non_json_is_never_read() {
        let h = headers(&[("content-type", "application/pdf")]);
        assert_eq!(VaultRule.check_head(StatusCode::OK, &h), Verdict::Pass);
        assert_eq!(
            VaultRule.check_head(StatusCode::OK, &HeaderMap::new()),
            Verdict::Pass
        );
    }

    #[test]
    fn json_without_status_header_is_read() {
        let h = headers(&[("content-type", "application/problem+json")]);
        assert_eq!(
            VaultRule.check_head(StatusCode::OK, &h),
            Verdict::InspectBody
        );
        let h = headers(&[("content-type", "Application/JSON; charset=utf-8")]);
        assert_eq!(
            VaultRule.check_head(StatusCode::OK, &h),
            Verdict::InspectBody
        );
    }

    #[test]
    fn unauthorized_is_a_failure_without_reading() {
        assert_eq!(
            VaultRule.check_head(StatusCode::UNAUTHORIZED, &HeaderMap::new()),
            Verdict::AuthFailure
        );
        assert_eq!(
            UnauthorizedOnly.check_head(StatusCode::OK, &HeaderMap::new()),
            Verdict::Pass
        );
    }

    #[test]
    fn only_invalid_session_id_counts() {
        let body = |t: &str| {
            format!(r#"{{"responseStatus":"FAILURE","errors":[{{"type":"{t}","message":"x"}}]}}"#)
        };
        assert!(has_invalid_session_error(
            body("INVALID_SESSION_ID").as_bytes()
        ));
        for other in [
            "INSUFFICIENT_ACCESS",
            "API_LIMIT_EXCEEDED",
            "INACTIVE_USER",
            "USERNAME_OR_PASSWORD_INCORRECT",
            "invalid_session_id",
        ] {
            assert!(
                !has_invalid_session_error(body(other).as_bytes()),
                "{other}"
            );
        }
        let two = r#"{"responseStatus":"FAILURE","errors":[{"type":"OTHER"},{"type":"INVALID_SESSION_ID"}]}"#;
        assert!(has_invalid_session_error(two.as_bytes()));
        assert!(!has_invalid_session_error(b"not json"));
        assert!(!has_invalid_session_error(
            br#"{"errors":"INVALID_SESSION_ID"}"#
        ));
        assert!(!has_invalid_session_error(
            br#"{"message":"INVALID_SESSION_ID"}"#
        ));
    }
}
