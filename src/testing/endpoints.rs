//! Endpoints whose answers are fixed.

use super::*;

impl State {
    /// `GET /objects/users/me`
    pub(super) fn me(&self, caller: Caller) -> Reply {
        let name = self
            .user(caller.user)
            .map_or(USER_NAME, |user| user.name.as_str());
        let user = Json::object([
            ("id", Json::number(caller.user)),
            ("user_name__v", Json::string(name)),
            ("user_first_name__v", Json::string("Integration")),
            ("user_last_name__v", Json::string("User")),
            ("user_email__v", Json::string(name)),
            ("active__v", Json::bool(true)),
        ]);
        let users = Json::array([Json::object([("user", user)])]);
        Reply::success(vec![("users", users)])
    }
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
