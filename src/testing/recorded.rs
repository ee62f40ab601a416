//! [`RecordedRequest`] and [`Outcome`]: what the stand-in received and how it answered.

use super::*;

/// One request the stand-in received, with the way it was answered.
///
/// The `Debug` output never shows credentials: the values of `Authorization`,
/// `Proxy-Authorization` and `Cookie` headers print as `[REDACTED]`, and anything looking like a
/// Vault token (`veeva-vault-…`, plain or percent-encoded) in the path, query, other headers or
/// body is masked too, as is the value of a `password` field in the query or body.
#[derive(Clone)]
pub struct RecordedRequest {
    /// The request method as sent (a `POST …?_method=DELETE` is recorded as `POST`).
    pub method: Method,
    /// The URI path, e.g. `/api/v26.2/objects/documents`.
    pub path: String,
    /// The URI query string without the `?`, if there was one.
    pub query: Option<String>,
    /// All request headers, including `Authorization`.
    pub headers: HeaderMap,
    /// The request body (only its first 1 MiB if it was larger).
    pub body: Bytes,
    /// How the stand-in answered, or [`Outcome::Pending`] while the request is held or in progress.
    pub outcome: Outcome,
}

/// How the stand-in answered a [`RecordedRequest`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Authenticated and answered with `responseStatus` `SUCCESS` (or an unauthenticated
    /// `GET /api/`).
    Accepted,
    /// Answered HTTP 200 with a FAILURE body of type `INVALID_SESSION_ID`: the credential was
    /// missing, unknown, revoked or expired.
    InvalidSession,
    /// Answered HTTP 401 (bad credential while [`VaultStandIn::set_unauthorized_mode`] is on).
    Unauthorized,
    /// Authenticated but answered with another FAILURE: an error injected with
    /// [`VaultStandIn::fail_path_with`], or a rejected input (missing `name__v`, malformed
    /// expiry date, the 25-token cap, unreadable or oversized body, …).
    Failed,
    /// Answered HTTP 404 (`MALFORMED_URL`): no such endpoint.
    NotFound,
    /// Answered with a redirection set by [`VaultStandIn::redirect`].
    Redirected,
    /// Recorded but not answered yet (held by [`VaultStandIn::hold_requests`], or in progress).
    Pending,
}

impl fmt::Debug for RecordedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordedRequest")
            .field("method", &self.method)
            .field("path", &redact_tokens(&self.path))
            .field(
                "query",
                &self
                    .query
                    .as_deref()
                    .map(|q| redact_passwords(&redact_tokens(q))),
            )
            .field("headers", &RedactedHeaders(&self.headers))
            .field(
                "body",
                &redact_passwords(&redact_tokens(&String::from_utf8_lossy(&self.body))),
            )
            .field("outcome", &self.outcome)
            .finish()
    }
}
