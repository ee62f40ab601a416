//! What the stand-in remembers: tokens, recorded requests, injected failures and redirections.

use super::*;

#[derive(Default)]
pub(super) struct State {
    pub(super) tokens: Vec<TokenRecord>,
    pub(super) next_record_id: u64,
    pub(super) unauthorized_mode: bool,
    /// `(path suffix, error type)`, in the order they were set.
    pub(super) failures: Vec<(String, String)>,
    /// `(path suffix, redirection)`, in the order they were set.
    pub(super) redirects: Vec<(String, Redirect)>,
    /// `(sequence number, request)`, in arrival order.
    pub(super) requests: Vec<(u64, RecordedRequest)>,
    pub(super) next_request_seq: u64,
}

/// A redirection set with [`VaultStandIn::redirect`].
#[derive(Clone, Debug)]
pub(super) struct Redirect {
    pub(super) status: StatusCode,
    pub(super) location: HeaderValue,
}

pub(super) struct TokenRecord {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) value: String,
    pub(super) revoked: bool,
    pub(super) expiry: Option<Expiry>,
    pub(super) last_used: Option<SystemTime>,
}

/// When a token expires: the deadline that counts (test time) and, for metadata, the wall clock.
#[derive(Clone, Copy, Debug)]
pub(super) struct Expiry {
    /// `None` when the deadline is too far away to represent.
    pub(super) deadline: Option<Instant>,
    pub(super) wall: Option<SystemTime>,
}

impl Expiry {
    pub(super) fn after(lifetime: Duration) -> Expiry {
        Expiry {
            deadline: Instant::now().checked_add(lifetime),
            wall: SystemTime::now().checked_add(lifetime),
        }
    }

    /// An expiry at a wall-clock time, which must be in the future.
    pub(super) fn at(wall: SystemTime) -> Option<Expiry> {
        let lifetime = wall.duration_since(SystemTime::now()).ok()?;
        Some(Expiry {
            deadline: Instant::now().checked_add(lifetime),
            wall: Some(wall),
        })
    }
}

impl TokenRecord {
    pub(super) fn is_active(&self, now: Instant) -> bool {
        let expired = self
            .expiry
            .and_then(|expiry| expiry.deadline)
            .is_some_and(|deadline| now >= deadline);
        !self.revoked && !expired
    }

    pub(super) fn metadata(&self, now: Instant) -> Json {
        let status = if self.is_active(now) {
            "active__v"
        } else {
            "inactive__v"
        };
        let expiry = self.expiry.and_then(|expiry| expiry.wall);
        Json::object([
            ("id", Json::string(&self.id)),
            ("name__v", Json::string(&self.name)),
            ("user__sys", Json::string(&USER_ID.to_string())),
            ("status__v", Json::string(status)),
            ("expiry_date__sys", Json::optional_date(expiry)),
            ("last_used_date__sys", Json::optional_date(self.last_used)),
        ])
    }
}

impl State {
    /// Adds an active token and returns its record id and value.
    pub(super) fn add_token(
        &mut self,
        entropy: &Entropy,
        name: String,
        expiry: Option<Expiry>,
    ) -> (String, String) {
        let value = loop {
            let candidate = entropy.token_value();
            if self.tokens.iter().all(|token| token.value != candidate) {
                break candidate;
            }
        };
        let id = format!("V8T{:012}", FIRST_RECORD_ID + self.next_record_id);
        self.next_record_id += 1;
        self.tokens.push(TokenRecord {
            id: id.clone(),
            name,
            value: value.clone(),
            revoked: false,
            expiry,
            last_used: None,
        });
        (id, value)
    }

    pub(super) fn active_count(&self, now: Instant) -> usize {
        self.tokens.iter().filter(|t| t.is_active(now)).count()
    }

    pub(super) fn revoke_value(&mut self, value: &str) -> bool {
        let now = Instant::now();
        let Some(token) = self.tokens.iter_mut().find(|t| t.value == value) else {
            return false;
        };
        let was_active = token.is_active(now);
        token.revoked = true;
        was_active
    }

    /// Checks the request's credential; a good one is marked as used.
    pub(super) fn authenticate(&mut self, headers: &HeaderMap) -> bool {
        let Some(credential) = credential(headers) else {
            return false;
        };
        let now = Instant::now();
        let token = self.tokens.iter_mut().find(|t| t.value == credential);
        match token {
            Some(token) if token.is_active(now) => {
                token.last_used = Some(SystemTime::now());
                true
            }
            _ => false,
        }
    }

    pub(super) fn redirect_for(&self, path: &str) -> Option<Redirect> {
        self.redirects
            .iter()
            .find(|(suffix, _)| path.ends_with(suffix.as_str()))
            .map(|(_, redirect)| redirect.clone())
    }

    pub(super) fn injected_failure(&self, path: &str) -> Option<String> {
        self.failures
            .iter()
            .find(|(suffix, _)| path.ends_with(suffix.as_str()))
            .map(|(_, error_type)| error_type.clone())
    }

    pub(super) fn record(&mut self, parts: &http::request::Parts, body: Bytes) -> u64 {
        let seq = self.next_request_seq;
        self.next_request_seq += 1;
        let request = RecordedRequest {
            method: parts.method.clone(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().map(str::to_owned),
            headers: parts.headers.clone(),
            body,
            outcome: Outcome::Pending,
        };
        self.requests.push((seq, request));
        seq
    }

    pub(super) fn set_outcome(&mut self, seq: u64, outcome: Outcome) {
        if let Ok(index) = self.requests.binary_search_by_key(&seq, |(s, _)| *s) {
            self.requests[index].1.outcome = outcome;
        }
    }

    /// `POST /objects/users/me/api_access_token__sys`
    pub(super) fn create_token(
        &mut self,
        entropy: &Entropy,
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
        let expiry = match fields.get("expiry_date__v").map(|date| parse_expiry(date)) {
            None => None,
            Some(Ok(expiry)) => Some(expiry),
            Some(Err(reply)) => return reply,
        };
        if self.active_count(Instant::now()) >= MAX_ACTIVE_TOKENS {
            return Reply::failure(
                "OPERATION_NOT_ALLOWED",
                "A user may have at most 25 active API access tokens; delete one first.",
            );
        }
        let (id, value) = self.add_token(entropy, name.clone(), expiry);
        Reply::success(vec![(
            "data",
            Json::object([
                ("id", Json::string(&id)),
                ("token__sys", Json::string(&value)),
            ]),
        )])
    }

    /// `DELETE /vobjects/api_access_token__sys`
    pub(super) fn revoke_tokens(
        &mut self,
        content_type: Option<&HeaderValue>,
        body: &[u8],
    ) -> Reply {
        let ids = match revoke_ids(content_type, body) {
            Ok(ids) => ids,
            Err(reply) => return reply,
        };
        let results = ids.iter().map(|id| self.revoke_id(id));
        Reply::success(vec![("data", Json::array(results))])
    }

    pub(super) fn revoke_id(&mut self, id: &str) -> Json {
        match self.tokens.iter_mut().find(|token| token.id == id) {
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
    pub(super) fn token_metadata(&self, id: &str) -> Reply {
        match self.tokens.iter().find(|token| token.id == id) {
            Some(token) => Reply::success(vec![("data", token.metadata(Instant::now()))]),
            None => Reply::failure("INVALID_DATA", "No token with this record id."),
        }
    }
}

/// The credential in `Authorization`: `Bearer <token>` or a raw token.
pub(super) fn credential(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let bearer = value
        .get(..7)
        .filter(|scheme| scheme.eq_ignore_ascii_case("bearer "));
    match bearer {
        Some(_) => value.get(7..).map(str::trim),
        None => Some(value),
    }
}

pub(super) fn parse_expiry(date: &str) -> Result<Expiry, Reply> {
    let seconds = parse_utc(date).ok_or_else(|| {
        Reply::failure(
            "INVALID_DATA",
            "Invalid value for [expiry_date__v]: expected YYYY-MM-DDTHH:MM:SSZ (UTC).",
        )
    })?;
    u64::try_from(seconds)
        .ok()
        .and_then(|seconds| UNIX_EPOCH.checked_add(Duration::from_secs(seconds)))
        .and_then(Expiry::at)
        .ok_or_else(|| {
            Reply::failure(
                "INVALID_DATA",
                "Invalid value for [expiry_date__v]: the date must be in the future.",
            )
        })
}

pub(super) fn injected_message(error_type: &str) -> &'static str {
    match error_type {
        "INSUFFICIENT_ACCESS" => "User does not have sufficient privileges to perform the action.",
        "API_LIMIT_EXCEEDED" => "API limit exceeded.",
        "INACTIVE_USER" => "User is inactive or not found.",
        _ => "Failure injected by the Vault stand-in.",
    }
}
