//! What the stand-in remembers: users, tokens, sessions, recorded requests, injected failures and
//! redirections; and how a request's credential is checked.

use super::*;

pub(super) struct State {
    pub(super) clock: Clock,
    pub(super) users: Vec<User>,
    pub(super) tokens: Vec<TokenRecord>,
    pub(super) sessions: Vec<Session>,
    pub(super) next_record_id: u64,
    pub(super) next_user_id: u64,
    pub(super) unauthorized_mode: bool,
    /// `(path suffix, error type)`, in the order they were set.
    pub(super) failures: Vec<(String, String)>,
    /// `(path suffix, redirection)`, in the order they were set.
    pub(super) redirects: Vec<(String, Redirect)>,
    /// `(sequence number, request)`, in arrival order.
    pub(super) requests: Vec<(u64, RecordedRequest)>,
    pub(super) next_request_seq: u64,
    pub(super) settings: Settings,
    /// `(OAuth/OIDC profile id, identity provider's access token, user id)`.
    pub(super) oauth_grants: Vec<(String, String, u64)>,
    /// Sandboxes of this Vault by name, each another stand-in.
    pub(super) sandboxes: Vec<(String, Arc<Shared>)>,
}

/// What a test can tune.
pub(super) struct Settings {
    pub(super) session_idle_timeout: Duration,
    pub(super) logins_per_minute: u32,
    pub(super) max_token_lifetime: Option<Duration>,
    pub(super) picklists_as_arrays: bool,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            session_idle_timeout: DEFAULT_SESSION_IDLE_TIMEOUT,
            logins_per_minute: DEFAULT_LOGINS_PER_MINUTE,
            max_token_lifetime: None,
            picklists_as_arrays: true,
        }
    }
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
    pub(super) user: u64,
    pub(super) value: String,
    /// Deleted (revoked): gone from VQL, rejected, no longer counted.
    pub(super) revoked: bool,
    /// A revocation naming it is refused for this record (see
    /// [`VaultStandIn::refuse_revocation_of`]).
    pub(super) undeletable: bool,
    /// `expiry_date__v` on the stand-in's clock; `None` never expires.
    pub(super) expiry: Option<SystemTime>,
    pub(super) last_used: Option<SystemTime>,
}

impl TokenRecord {
    pub(super) fn is_expired(&self, now: SystemTime) -> bool {
        self.expiry.is_some_and(|expiry| now >= expiry)
    }

    pub(super) fn is_active(&self, now: SystemTime) -> bool {
        !self.revoked && !self.is_expired(now)
    }

    pub(super) fn status(&self, now: SystemTime) -> &'static str {
        if self.is_active(now) {
            "active__v"
        } else {
            "inactive__v"
        }
    }

    pub(super) fn metadata(&self, now: SystemTime) -> Json {
        Json::object([
            ("id", Json::string(&self.id)),
            ("name__v", Json::string(&self.name)),
            ("user__sys", Json::string(&self.user.to_string())),
            ("status__v", Json::string(self.status(now))),
            ("expiry_date__sys", Json::optional_date(self.expiry)),
            ("last_used_date__sys", Json::optional_date(self.last_used)),
        ])
    }
}

/// Who sent an authenticated request, and with which session if it was one.
#[derive(Clone, Copy, Debug)]
pub(super) struct Caller {
    pub(super) user: u64,
    pub(super) session: Option<usize>,
}

impl State {
    pub(super) fn new() -> State {
        let mut state = State {
            clock: Clock::new(),
            users: Vec::new(),
            tokens: Vec::new(),
            sessions: Vec::new(),
            next_record_id: 0,
            next_user_id: USER_ID,
            unauthorized_mode: false,
            failures: Vec::new(),
            redirects: Vec::new(),
            requests: Vec::new(),
            next_request_seq: 0,
            settings: Settings::default(),
            oauth_grants: Vec::new(),
            sandboxes: Vec::new(),
        };
        state.add_user(USER_NAME, None);
        state
    }

    /// Adds an active token for `user` and returns its record id and value.
    pub(super) fn add_token(
        &mut self,
        entropy: &Entropy,
        user: u64,
        name: String,
        expiry: Option<SystemTime>,
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
            user,
            value: value.clone(),
            revoked: false,
            undeletable: false,
            expiry,
            last_used: None,
        });
        (id, value)
    }

    pub(super) fn active_count(&self, user: u64) -> usize {
        let now = self.clock.now();
        self.tokens
            .iter()
            .filter(|t| t.user == user && t.is_active(now))
            .count()
    }

    pub(super) fn revoke_value(&mut self, value: &str) -> bool {
        let now = self.clock.now();
        let Some(token) = self.tokens.iter_mut().find(|t| t.value == value) else {
            return false;
        };
        let was_active = token.is_active(now);
        token.revoked = true;
        was_active
    }

    /// Checks the request's credential (a token or a session of an active user, for this Vault);
    /// a good one is marked as used.
    pub(super) fn authenticate(&mut self, headers: &HeaderMap) -> Option<Caller> {
        let credential = credential(headers)?;
        let now = self.clock.now();
        let caller = if let Some(token) = self.tokens.iter_mut().find(|t| t.value == credential) {
            if !token.is_active(now) {
                return None;
            }
            token.last_used = Some(now);
            Caller {
                user: token.user,
                session: None,
            }
        } else {
            let idle = self.settings.session_idle_timeout;
            let index = self.sessions.iter().position(|s| s.id == credential)?;
            let session = &mut self.sessions[index];
            if !session.is_alive(idle) || !session.here {
                return None;
            }
            session.last_used = Instant::now();
            Caller {
                user: session.user,
                session: Some(index),
            }
        };
        let active = self
            .user(caller.user)
            .is_some_and(|user| user.state != UserState::Inactive);
        active.then_some(caller)
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
}

/// The credential in `Authorization`: `Bearer <token or session id>` or a raw one.
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

pub(super) fn injected_message(error_type: &str) -> &'static str {
    match error_type {
        "INSUFFICIENT_ACCESS" => "User does not have sufficient privileges to perform the action.",
        "API_LIMIT_EXCEEDED" => "API limit exceeded.",
        "INACTIVE_USER" => "User is inactive or not found.",
        _ => "Failure injected by the Vault stand-in.",
    }
}
