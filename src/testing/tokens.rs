//! The token endpoints: create (for me, or for me in a sandbox), revoke, read metadata.

use super::*;

impl State {
    /// `POST /objects/users/me/api_access_token__sys`, for `user`: `name__v` required,
    /// `expiry_date__v` optional; refused past the user's 25 active tokens.
    pub(super) fn create_token(
        &mut self,
        entropy: &Entropy,
        user: u64,
        content_type: Option<&HeaderValue>,
        body: &[u8],
    ) -> Reply {
        let fields = match parse_fields(content_type, body) {
            Ok(fields) => fields,
            Err(reply) => return reply,
        };
        let Some(name) = fields.get("name__v").filter(|name| !name.trim().is_empty()) else {
            return Reply::failure(
                "PARAMETER_REQUIRED",
                "Missing required parameter [name__v].",
            );
        };
        if name.chars().count() > MAX_TOKEN_NAME_CHARS {
            return Reply::failure(
                "INVALID_DATA",
                "Invalid value for [name__v]: at most 128 characters.",
            );
        }
        let now = self.clock.now();
        let expiry = match fields
            .get("expiry_date__v")
            .map(|date| parse_expiry(date, now))
        {
            None => None,
            Some(Ok(expiry)) => Some(expiry),
            Some(Err(reply)) => return reply,
        };
        if let Some(max) = self.settings.max_token_lifetime {
            let allowed = expiry.is_some_and(|at| at <= now + max);
            if !allowed {
                return Reply::failure(
                    "INVALID_DATA",
                    "Invalid value for [expiry_date__v]: beyond the longest lifetime the security profile allows.",
                );
            }
        }
        if self.active_count(user) >= MAX_ACTIVE_TOKENS {
            return Reply::failure(
                "OPERATION_NOT_ALLOWED",
                "A user may have at most 25 active API access tokens; delete one first.",
            );
        }
        let (id, value) = self.add_token(entropy, user, name.clone(), expiry);
        Reply::success(vec![(
            "data",
            Json::object([
                ("id", Json::string(&id)),
                ("token__sys", Json::string(&value)),
            ]),
        )])
    }

    /// `DELETE /vobjects/api_access_token__sys`: a user deletes their own tokens, an admin
    /// anyone's. Answers per record.
    pub(super) fn revoke_tokens(
        &mut self,
        caller: Caller,
        content_type: Option<&HeaderValue>,
        body: &[u8],
    ) -> Reply {
        let ids = match revoke_ids(content_type, body) {
            Ok(ids) => ids,
            Err(reply) => return reply,
        };
        let admin = self.is_admin(caller.user);
        let results: Vec<Json> = ids
            .iter()
            .map(|id| self.revoke_id(id, caller.user, admin))
            .collect();
        Reply::success(vec![("data", Json::array(results))])
    }

    fn revoke_id(&mut self, id: &str, user: u64, admin: bool) -> Json {
        let token = self
            .tokens
            .iter_mut()
            .find(|token| token.id == id && !token.revoked && (admin || token.user == user));
        match token {
            Some(token) if token.undeletable => Json::object([
                ("responseStatus", Json::string("FAILURE")),
                ("id", Json::string(id)),
                (
                    "errors",
                    Json::errors("INSUFFICIENT_ACCESS", "This token may not be deleted."),
                ),
            ]),
            Some(token) => {
                token.revoked = true;
                Json::object([
                    ("responseStatus", Json::string("SUCCESS")),
                    ("id", Json::string(id)),
                ])
            }
            None => Json::object([
                ("responseStatus", Json::string("FAILURE")),
                ("id", Json::string(id)),
                (
                    "errors",
                    Json::errors("INVALID_DATA", "No token with this record id."),
                ),
            ]),
        }
    }

    /// `GET /vobjects/api_access_token__sys/{id}`
    pub(super) fn token_metadata(&self, caller: Caller, id: &str) -> Reply {
        let admin = self.is_admin(caller.user);
        let now = self.clock.now();
        let token = self
            .tokens
            .iter()
            .find(|token| token.id == id && (admin || token.user == caller.user));
        match token {
            Some(token) => Reply::success(vec![("data", token.metadata(now))]),
            None => Reply::failure("INVALID_DATA", "No token with this record id."),
        }
    }
}

impl Shared {
    /// `POST /objects/sandbox/{name}/users/me/api_access_token__sys`: a token made in the
    /// sandbox (another stand-in) for the user of the same name, who is added there if missing.
    pub(super) fn create_sandbox_token(
        &self,
        caller: Caller,
        sandbox: &str,
        content_type: Option<&HeaderValue>,
        body: &[u8],
    ) -> Reply {
        let (target, user_name) = {
            let state = self.lock();
            let target = state
                .sandboxes
                .iter()
                .find(|(name, _)| name == sandbox)
                .map(|(_, shared)| Arc::clone(shared));
            let user_name = state.user(caller.user).map(|user| user.name.clone());
            (target, user_name)
        };
        let (Some(target), Some(user_name)) = (target, user_name) else {
            return Reply::failure("INVALID_DATA", "No sandbox with this name.");
        };
        let mut state = target.lock();
        let user = match state.user_named(&user_name) {
            Some(user) => user.id,
            None => state.add_user(&user_name, None),
        };
        state.create_token(&target.entropy, user, content_type, body)
    }
}

pub(super) fn parse_expiry(date: &str, now: SystemTime) -> Result<SystemTime, Reply> {
    let seconds = parse_utc(date).ok_or_else(|| {
        Reply::failure(
            "INVALID_DATA",
            "Invalid value for [expiry_date__v]: expected YYYY-MM-DDTHH:MM:SSZ (UTC).",
        )
    })?;
    u64::try_from(seconds)
        .ok()
        .and_then(|seconds| UNIX_EPOCH.checked_add(Duration::from_secs(seconds)))
        .filter(|at| *at > now)
        .ok_or_else(|| {
            Reply::failure(
                "INVALID_DATA",
                "Invalid value for [expiry_date__v]: the date must be in the future.",
            )
        })
}
