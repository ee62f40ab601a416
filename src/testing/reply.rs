//! Answers before they become HTTP responses, and the JSON they carry.

use super::*;

/// An answer before it becomes an HTTP response.
#[derive(Debug)]
pub(super) struct Reply {
    pub(super) status: StatusCode,
    pub(super) success: bool,
    /// The user an authenticated request came from (`X-VaultAPI-UserId`).
    pub(super) user: Option<u64>,
    pub(super) outcome: Outcome,
    pub(super) body: Json,
    /// Set for redirections only: then the answer has no JSON headers and an empty body.
    pub(super) location: Option<HeaderValue>,
}

impl Reply {
    pub(super) fn success(members: Vec<(&str, Json)>) -> Reply {
        Reply {
            status: StatusCode::OK,
            success: true,
            user: None,
            outcome: Outcome::Accepted,
            body: Json::response("SUCCESS", members),
            location: None,
        }
    }

    /// The same answer, sent to `caller`.
    pub(super) fn by(mut self, caller: Caller) -> Reply {
        self.user = Some(caller.user);
        self
    }

    /// A failed login: HTTP 200, `"errorType":"AUTHENTICATION_FAILED"` and the reason's type.
    pub(super) fn login_failure(error_type: &str, message: &str) -> Reply {
        let mut reply = Reply::failure(error_type, message);
        reply.body = Json::response(
            "FAILURE",
            vec![
                ("errorType", Json::string("AUTHENTICATION_FAILED")),
                ("errors", Json::errors(error_type, message)),
            ],
        );
        reply
    }

    /// HTTP 200 with a FAILURE body.
    pub(super) fn failure(error_type: &str, message: &str) -> Reply {
        Reply {
            status: StatusCode::OK,
            success: false,
            user: None,
            outcome: Outcome::Failed,
            body: Json::failure(error_type, message),
            location: None,
        }
    }

    pub(super) fn invalid_session(unauthorized_mode: bool) -> Reply {
        let (status, outcome) = if unauthorized_mode {
            (StatusCode::UNAUTHORIZED, Outcome::Unauthorized)
        } else {
            (StatusCode::OK, Outcome::InvalidSession)
        };
        Reply {
            status,
            success: false,
            user: None,
            outcome,
            body: Json::failure(INVALID_SESSION_ID, INVALID_SESSION_MESSAGE),
            location: None,
        }
    }

    pub(super) fn redirect(redirect: Redirect) -> Reply {
        Reply {
            status: redirect.status,
            success: true,
            user: None,
            outcome: Outcome::Redirected,
            body: Json(String::new()),
            location: Some(redirect.location),
        }
    }

    pub(super) fn not_found() -> Reply {
        Reply {
            status: StatusCode::NOT_FOUND,
            success: false,
            user: None,
            outcome: Outcome::NotFound,
            body: Json::failure("MALFORMED_URL", "The requested resource does not exist."),
            location: None,
        }
    }
}

/// Rendered JSON text.
///
/// Responses are rendered by hand so that members keep Vault's order (`responseStatus` first,
/// `type` before `message`), making the `INVALID_SESSION_ID` body identical to Vault's byte for
/// byte; `serde_json::Value` would sort object keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Json(pub(super) String);

impl Json {
    pub(super) fn string(text: &str) -> Json {
        Json(serde_json::Value::from(text).to_string())
    }

    pub(super) fn number(n: u64) -> Json {
        Json(n.to_string())
    }

    pub(super) fn bool(b: bool) -> Json {
        Json(b.to_string())
    }

    pub(super) fn optional_date(time: Option<SystemTime>) -> Json {
        match time {
            Some(time) => Json::string(&format_utc(time)),
            None => Json("null".to_owned()),
        }
    }

    pub(super) fn object<'a>(members: impl IntoIterator<Item = (&'a str, Json)>) -> Json {
        let members: Vec<String> = members
            .into_iter()
            .map(|(key, value)| format!("{}:{}", Json::string(key).0, value.0))
            .collect();
        Json(format!("{{{}}}", members.join(",")))
    }

    pub(super) fn array(items: impl IntoIterator<Item = Json>) -> Json {
        let items: Vec<String> = items.into_iter().map(|item| item.0).collect();
        Json(format!("[{}]", items.join(",")))
    }

    pub(super) fn errors(error_type: &str, message: &str) -> Json {
        Json::array([Json::object([
            ("type", Json::string(error_type)),
            ("message", Json::string(message)),
        ])])
    }

    /// A top-level response: `responseStatus` first, then `members`.
    pub(super) fn response(status: &str, members: Vec<(&str, Json)>) -> Json {
        let status = ("responseStatus", Json::string(status));
        Json::object(std::iter::once(status).chain(members))
    }

    pub(super) fn failure(error_type: &str, message: &str) -> Json {
        Json::response(
            "FAILURE",
            vec![("errors", Json::errors(error_type, message))],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_session_body_matches_vault_byte_for_byte() {
        assert_eq!(
            Json::failure(INVALID_SESSION_ID, INVALID_SESSION_MESSAGE).0,
            r#"{"responseStatus":"FAILURE","errors":[{"type":"INVALID_SESSION_ID","message":"Invalid or expired session ID."}]}"#
        );
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(Json::string("a\"b\\c\n").0, r#""a\"b\\c\n""#);
    }
}
