//! Endpoints whose answers are fixed.

use super::*;

/// `GET /objects/users/me`
pub(super) fn me() -> Reply {
    let user = Json::object([
        ("id", Json::number(USER_ID)),
        ("user_name__v", Json::string(USER_NAME)),
        ("user_first_name__v", Json::string("Integration")),
        ("user_last_name__v", Json::string("User")),
        ("user_email__v", Json::string(USER_NAME)),
        ("active__v", Json::bool(true)),
    ]);
    let users = Json::array([Json::object([("user", user)])]);
    Reply::success(vec![("users", users)])
}

/// `POST /query`
pub(super) fn query(content_type: Option<&HeaderValue>, body: &[u8]) -> Reply {
    let fields = match parse_fields(content_type, body) {
        Ok(fields) => fields,
        Err(reply) => return reply,
    };
    if fields.get("q").is_none_or(|q| q.trim().is_empty()) {
        return Reply::failure("PARAMETER_REQUIRED", "Missing required parameter [q].");
    }
    let details = Json::object([("size", Json::number(0)), ("total", Json::number(0))]);
    Reply::success(vec![
        ("responseDetails", details),
        ("data", Json::array([])),
    ])
}

/// `GET /objects/documents`
pub(super) fn documents() -> Reply {
    let document = |id: u64, name: &str| {
        Json::object([(
            "document",
            Json::object([
                ("id", Json::number(id)),
                ("name__v", Json::string(name)),
                ("type__v", Json::string("Reference Document")),
                ("status__v", Json::string("Approved")),
                ("major_version_number__v", Json::number(1)),
                ("minor_version_number__v", Json::number(0)),
            ]),
        )])
    };
    Reply::success(vec![
        ("size", Json::number(2)),
        ("start", Json::number(0)),
        ("limit", Json::number(200)),
        (
            "documents",
            Json::array([
                document(101, "Stand-in Protocol"),
                document(102, "Stand-in Label"),
            ]),
        ),
    ])
}
