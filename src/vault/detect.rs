//! Recognising that Vault rejected the credential.
//!
//! Vault answers a processed request with HTTP 200 even when it fails: an invalid, expired or
//! revoked token gets `X-VaultAPI-Status: FAILURE` and a body whose `errors[].type` is
//! `INVALID_SESSION_ID`, in JSON, or in XML when the caller asked for it with
//! `Accept: application/xml`. A gateway in front of Vault may answer 401 instead.
//! [`VaultRule`](crate::detect::VaultRule) recognises these and nothing else; other error types
//! (`INSUFFICIENT_ACCESS`, `API_LIMIT_EXCEEDED`, `INACTIVE_USER`, …) are the caller's business and
//! never trigger a new token.
//!
//! Reading a body costs something, so a rule first looks at the status and headers only:
//! [`Verdict::Pass`] lets the response through untouched, and only [`Verdict::InspectBody`] makes
//! the layer read the body, within bounds of size ([`max_inspect_body`]) and of time
//! ([`max_inspect_wait`]). While the body arrives the rule may decide from its first bytes
//! ([`FailureRule::check_prefix`]); once it is all there, [`FailureRule::check_body`] decides.
//! A body sent with `Content-Encoding: gzip`, `deflate` or `br` is judged on its decoded content
//! (decoded from a copy, within the bound: the caller still gets the bytes as sent).
//! [`judge_body`] is that whole judgement of some bytes, for tests and fuzzing.
//!
//! [`max_inspect_body`]: crate::VaultAuthLayerBuilder::max_inspect_body
//! [`max_inspect_wait`]: crate::VaultAuthLayerBuilder

use std::borrow::Cow;

use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderName, StatusCode};

use self::coding::Coding;

mod coding;
mod json;
mod xml;

/// The response header that carries Vault's `responseStatus` (API v23.2 and later).
pub const VAULT_STATUS: HeaderName = HeaderName::from_static("x-vaultapi-status");

/// The Vault error type that means "this credential is no good".
pub const INVALID_SESSION_ID: &str = "INVALID_SESSION_ID";

/// What a [`FailureRule`] makes of a response's status and headers, or of the first bytes of its
/// body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not an authentication failure: hand the response over untouched.
    Pass,
    /// An authentication failure: get a new token.
    AuthFailure,
    /// It depends on the body: read it (on) and ask again.
    InspectBody,
}

/// Decides whether a response means the credential was rejected.
///
/// [`VaultRule`](crate::detect::VaultRule) is the default. Implement this trait for gateways that
/// signal a bad credential differently; the rule is cloned into each response future, so keep it
/// cheap to clone.
///
/// The layer asks [`check_head`](Self::check_head) first. On [`Verdict::InspectBody`] it reads the
/// body, asking [`check_prefix`](Self::check_prefix) about the bytes read so far while more are
/// awaited, and [`check_body`](Self::check_body) once the body has ended within the size bound.
/// Both see the content: a body sent with `Content-Encoding: gzip`, `deflate` or `br` is decoded
/// (from a copy, within the bound) before the rule sees it; one with another coding is never
/// judged.
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

    /// Called after [`Verdict::InspectBody`] with the whole body (its content, decoded), when it
    /// fits the inspection bound. Returns whether it is an authentication failure.
    fn check_body(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> bool {
        let _ = (status, headers, body);
        false
    }

    /// Called after [`Verdict::InspectBody`] with the first bytes of the body (its content,
    /// decoded) while the rest is still to come, or will not come: the body failed, passed the
    /// size bound, or did not end within the time bound. [`Verdict::Pass`] or
    /// [`Verdict::AuthFailure`] decides at once (the caller gets the response without waiting for
    /// the rest); [`Verdict::InspectBody`] reads on, and where there is nothing more to read means
    /// "not a rejection".
    ///
    /// The default decides nothing, so a rule that only implements `check_body` judges whole
    /// bodies only, as before this method existed. Deciding early pays off for large answers:
    /// [`VaultRule`] passes a body that starts with `{"responseStatus":"SUCCESS"`.
    ///
    /// ```
    /// use http::{HeaderMap, StatusCode};
    /// use veeva_vault_auth::detect::{FailureRule, Verdict};
    ///
    /// /// Our gateway answers JSON bodies that start with `{"ok":true` or `{"ok":false`, and
    /// /// `{"ok":false,"reason":"stale-token"}` when the token is stale.
    /// #[derive(Clone, Debug)]
    /// struct OkFlag;
    ///
    /// impl FailureRule for OkFlag {
    ///     fn check_head(&self, _: StatusCode, _: &HeaderMap) -> Verdict {
    ///         Verdict::InspectBody
    ///     }
    ///
    ///     fn check_body(&self, _: StatusCode, _: &HeaderMap, body: &[u8]) -> bool {
    ///         body == br#"{"ok":false,"reason":"stale-token"}"#
    ///     }
    ///
    ///     fn check_prefix(&self, _: StatusCode, _: &HeaderMap, prefix: &[u8]) -> Verdict {
    ///         if prefix.starts_with(br#"{"ok":true"#) {
    ///             Verdict::Pass
    ///         } else {
    ///             Verdict::InspectBody
    ///         }
    ///     }
    /// }
    ///
    /// let headers = HeaderMap::new();
    /// assert_eq!(
    ///     OkFlag.check_prefix(StatusCode::OK, &headers, br#"{"ok":true,"items":["#),
    ///     Verdict::Pass
    /// );
    /// assert_eq!(
    ///     OkFlag.check_prefix(StatusCode::OK, &headers, br#"{"ok":fal"#),
    ///     Verdict::InspectBody
    /// );
    /// ```
    fn check_prefix(&self, status: StatusCode, headers: &HeaderMap, prefix: &[u8]) -> Verdict {
        let _ = (status, headers, prefix);
        Verdict::InspectBody
    }
}

/// Vault's own signals: HTTP 401, or a JSON or XML failure body with an `INVALID_SESSION_ID`
/// error.
///
/// - 401: a failure, whatever the body.
/// - A single `X-VaultAPI-Status: SUCCESS`, a body that is neither JSON nor XML, or a body in a
///   content coding other than gzip, deflate and br: passed through unread.
/// - A JSON or XML response whose `X-VaultAPI-Status` is anything else, missing or repeated (a
///   proxy may append one): the body is read. It is a failure when its `errors` list an error of
///   type `INVALID_SESSION_ID` (`errors[].type` in JSON; `errors/error/type` under the root in
///   XML, whatever the item element is called). A body whose first member (first element in
///   XML) is a `responseStatus` of `SUCCESS` or `WARNING` is passed on as soon as that much has
///   arrived.
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
///
/// // A success is known from its first bytes.
/// let prefix = br#"{"responseStatus":"SUCCESS","data":[{"id":"#;
/// assert_eq!(VaultRule.check_prefix(StatusCode::OK, &headers, prefix), Verdict::Pass);
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
        if let Some(status) = headers.get(&STATUS_NAME) {
            // `len() == keys_len()`: no name is repeated, so neither is this one (two field reads;
            // the walk over the values is for answers that repeat some header).
            if is_success(status.as_bytes())
                && (headers.len() == headers.keys_len() || only_one(headers))
            {
                return Verdict::Pass;
            }
        }
        suspect_content(headers)
    }

    fn check_body(&self, _status: StatusCode, headers: &HeaderMap, body: &[u8]) -> bool {
        if is_xml(headers) {
            xml::lists_invalid_session(body)
        } else {
            json::lists_invalid_session(body)
        }
    }

    fn check_prefix(&self, _status: StatusCode, headers: &HeaderMap, prefix: &[u8]) -> Verdict {
        let status = if is_xml(headers) {
            xml::leading_status(prefix).map(Cow::Owned)
        } else {
            json::leading_status(prefix).map(Cow::Borrowed)
        };
        match status.as_deref() {
            Some(b"SUCCESS" | b"WARNING") => Verdict::Pass,
            _ => Verdict::InspectBody,
        }
    }
}

/// [`VAULT_STATUS`] by reference: a look-up by a constant would drop a copy of the name after
/// each call.
static STATUS_NAME: HeaderName = VAULT_STATUS;

/// `SUCCESS` in any case; the exact spelling, which Vault writes, is one comparison of seven
/// bytes (the case-folding one is a step per byte: scripts/hot_path_instructions.sh counted 43
/// instructions more per answer).
#[inline]
fn is_success(status: &[u8]) -> bool {
    status == b"SUCCESS" || status.eq_ignore_ascii_case(b"SUCCESS")
}

/// Whether the answer carries `X-VaultAPI-Status` once only.
#[inline(never)]
fn only_one(headers: &HeaderMap) -> bool {
    headers.get_all(VAULT_STATUS).iter().nth(1).is_none()
}

/// Whether a response that is not a plain success is worth reading: JSON or XML, in a coding
/// this crate can undo.
#[inline(never)]
fn suspect_content(headers: &HeaderMap) -> Verdict {
    if (is_json(headers) || is_xml(headers)) && Coding::of(headers) != Coding::Unsupported {
        Verdict::InspectBody
    } else {
        Verdict::Pass
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

/// Judges the bytes read of a body the way the layer does after [`Verdict::InspectBody`]: undoes
/// the `Content-Encoding` (gzip, deflate, br) into at most `max_content` bytes, then asks `rule`:
/// [`check_body`](FailureRule::check_body) if `complete` says `body` is the whole body and it
/// decoded whole within the bound, else [`check_prefix`](FailureRule::check_prefix).
///
/// Returns [`Verdict::InspectBody`] when the bytes do not decide (for a body that will not grow,
/// that means "not a rejection"), and [`Verdict::Pass`] for a coding it cannot undo. Never panics,
/// whatever the bytes, headers and coding; a corrupt or cut-off stream is judged on what decoded
/// before the fault, and at most `max_content` bytes are ever produced, however well the input
/// compresses.
///
/// ```
/// use http::{HeaderMap, StatusCode};
/// use veeva_vault_auth::detect::{judge_body, VaultRule, Verdict};
///
/// let mut headers = HeaderMap::new();
/// headers.insert("content-type", "application/xml;charset=UTF-8".parse().unwrap());
/// let body = b"<VaultResponse><responseStatus>FAILURE</responseStatus><errors><error>\
///     <type>INVALID_SESSION_ID</type></error></errors></VaultResponse>";
/// let verdict = judge_body(&VaultRule, StatusCode::OK, &headers, body, true, 64 * 1024);
/// assert_eq!(verdict, Verdict::AuthFailure);
///
/// // Its first bytes only: undecided.
/// let verdict = judge_body(&VaultRule, StatusCode::OK, &headers, &body[..60], false, 64 * 1024);
/// assert_eq!(verdict, Verdict::InspectBody);
/// ```
pub fn judge_body<R: FailureRule>(
    rule: &R,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    complete: bool,
    max_content: usize,
) -> Verdict {
    let coding = Coding::of(headers);
    let decoded;
    let (content, whole) = match coding {
        Coding::Unsupported => return Verdict::Pass,
        Coding::Identity => (body, complete),
        _ => {
            decoded = coding::decode(coding, body, max_content);
            (&decoded.content[..], complete && decoded.whole)
        }
    };
    if whole {
        if rule.check_body(status, headers, content) {
            Verdict::AuthFailure
        } else {
            Verdict::Pass
        }
    } else {
        rule.check_prefix(status, headers, content)
    }
}

/// The media type's essence, `type/subtype`, if the header is text.
fn media_type(headers: &HeaderMap) -> Option<(&str, &str)> {
    let value = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next().unwrap_or("").trim();
    essence.split_once('/')
}

fn has_suffix(subtype: &str, suffix: &str) -> bool {
    subtype.len() > suffix.len()
        && subtype.is_char_boundary(subtype.len() - suffix.len())
        && subtype[subtype.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
}

fn is_json(headers: &HeaderMap) -> bool {
    media_type(headers).is_some_and(|(kind, subtype)| {
        kind.eq_ignore_ascii_case("application")
            && (subtype.eq_ignore_ascii_case("json") || has_suffix(subtype, "+json"))
    })
}

fn is_xml(headers: &HeaderMap) -> bool {
    media_type(headers).is_some_and(|(kind, subtype)| {
        (kind.eq_ignore_ascii_case("application") || kind.eq_ignore_ascii_case("text"))
            && (subtype.eq_ignore_ascii_case("xml") || has_suffix(subtype, "+xml"))
    })
}

/// Whether a whole Vault JSON body lists an `INVALID_SESSION_ID` error (in its top-level
/// `errors`, as `type`).
///
/// ```
/// use veeva_vault_auth::detect::has_invalid_session_error;
///
/// assert!(has_invalid_session_error(br#"{"responseStatus":"FAILURE","errors":[{"type":"INVALID_SESSION_ID"}]}"#));
/// assert!(!has_invalid_session_error(br#"{"responseStatus":"FAILURE","errors":[{"type":"INSUFFICIENT_ACCESS"}]}"#));
/// ```
pub fn has_invalid_session_error(body: &[u8]) -> bool {
    json::lists_invalid_session(body)
}

/// Whether a whole Vault XML body (the answer to `Accept: application/xml`) is well formed and
/// lists an `INVALID_SESSION_ID` error: the `type` of an item of `errors` under the root
/// (`errors/error/type`, whatever the item element is called) with that text. Namespace prefixes
/// are ignored; CDATA, character references and the predefined entities are read as XML reads
/// them.
///
/// ```
/// use veeva_vault_auth::detect::has_invalid_session_error_xml;
///
/// let body = br#"<?xml version="1.0" encoding="UTF-8"?>
/// <VaultResponse>
///   <responseStatus>FAILURE</responseStatus>
///   <errors><error><type>INVALID_SESSION_ID</type><message>Invalid or expired session ID.</message></error></errors>
/// </VaultResponse>"#;
/// assert!(has_invalid_session_error_xml(body));
/// assert!(!has_invalid_session_error_xml(&body[..body.len() - 3]));
/// ```
pub fn has_invalid_session_error_xml(body: &[u8]) -> bool {
    xml::lists_invalid_session(body)
}

#[cfg(test)]
mod tests;
