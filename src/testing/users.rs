//! Users, logins and sessions: `POST /auth`, the OAuth 2.0 / OpenID Connect session exchange,
//! authentication defaulting, the per-minute login limit, idle timeouts and `DELETE /session`.

use super::*;

/// Whether a user may log in, set with [`VaultStandIn::set_user_state`].
///
/// Each refusal is answered as Vault does: `"errorType":"AUTHENTICATION_FAILED"` with an
/// `errors[0].type` naming the reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UserState {
    /// Logs in; tokens and sessions work.
    Active,
    /// `INACTIVE_USER`; the user's tokens and sessions stop working too.
    Inactive,
    /// `USER_LOCKED_OUT` at login (tokens and sessions keep working).
    LockedOut,
    /// `PASSWORD_CHANGE_REQUIRED` at login (tokens and sessions keep working).
    PasswordChangeRequired,
}

pub(super) struct User {
    pub(super) id: u64,
    pub(super) name: String,
    pub(super) password: Option<String>,
    pub(super) state: UserState,
    pub(super) admin: bool,
    /// Logins land in the user's other Vault (authentication defaulting).
    pub(super) defaults_elsewhere: bool,
    /// `(minute since the epoch, logins counted in it)`.
    pub(super) logins: (i64, u32),
}

pub(super) struct Session {
    pub(super) id: String,
    pub(super) user: u64,
    /// For this Vault (not the user's other one).
    pub(super) here: bool,
    pub(super) started: Instant,
    pub(super) last_used: Instant,
    pub(super) ended: bool,
}

impl Session {
    pub(super) fn is_alive(&self, idle_timeout: Duration) -> bool {
        let now = Instant::now();
        !self.ended
            && now.duration_since(self.last_used) < idle_timeout
            && now.duration_since(self.started) < MAX_SESSION_AGE
    }
}

impl State {
    pub(super) fn add_user(&mut self, name: &str, password: Option<&str>) -> u64 {
        let id = self.next_user_id;
        self.next_user_id += 1;
        self.users.push(User {
            id,
            name: name.to_owned(),
            password: password.map(str::to_owned),
            state: UserState::Active,
            admin: false,
            defaults_elsewhere: false,
            logins: (0, 0),
        });
        id
    }

    pub(super) fn user(&self, id: u64) -> Option<&User> {
        self.users.iter().find(|user| user.id == id)
    }

    pub(super) fn user_named(&self, name: &str) -> Option<&User> {
        self.users
            .iter()
            .find(|user| user.name.eq_ignore_ascii_case(name))
    }

    pub(super) fn user_named_mut(&mut self, name: &str) -> Option<&mut User> {
        self.users
            .iter_mut()
            .find(|user| user.name.eq_ignore_ascii_case(name))
    }

    pub(super) fn is_admin(&self, user: u64) -> bool {
        self.user(user).is_some_and(|user| user.admin)
    }

    pub(super) fn live_sessions(&self, user: u64) -> usize {
        let idle = self.settings.session_idle_timeout;
        self.sessions
            .iter()
            .filter(|s| s.user == user && s.is_alive(idle))
            .count()
    }

    /// `POST /auth` with `username`, `password` and optional `vaultDNS`.
    pub(super) fn log_in(
        &mut self,
        entropy: &Entropy,
        this_vault: &VaultIdentity,
        content_type: Option<&HeaderValue>,
        body: &[u8],
    ) -> Reply {
        let fields = match parse_fields(content_type, body) {
            Ok(fields) => fields,
            Err(reply) => return reply,
        };
        let (Some(name), Some(password)) = (fields.get("username"), fields.get("password")) else {
            return Reply::login_failure(
                "USERNAME_OR_PASSWORD_INCORRECT",
                "Authentication failed for user: missing user name or password.",
            );
        };
        let minute = self.clock.unix_seconds().div_euclid(60);
        let limit = self.settings.logins_per_minute;
        let Some(user) = self.user_named_mut(name) else {
            return Reply::login_failure(
                "USERNAME_OR_PASSWORD_INCORRECT",
                "Authentication failed: user name or password incorrect.",
            );
        };
        if user.logins.0 != minute {
            user.logins = (minute, 0);
        }
        if user.logins.1 >= limit {
            return Reply::login_failure(
                "API_LIMIT_EXCEEDED",
                "Login API limit exceeded; try again in the next minute.",
            );
        }
        user.logins.1 += 1;
        if user.password.as_deref() != Some(password.as_str()) {
            return Reply::login_failure(
                "USERNAME_OR_PASSWORD_INCORRECT",
                "Authentication failed: user name or password incorrect.",
            );
        }
        let refusal = match user.state {
            UserState::Active => None,
            UserState::Inactive => Some(("INACTIVE_USER", "User is inactive or not found.")),
            UserState::LockedOut => Some(("USER_LOCKED_OUT", "The user is locked out.")),
            UserState::PasswordChangeRequired => Some((
                "PASSWORD_CHANGE_REQUIRED",
                "The user must change their password.",
            )),
        };
        if let Some((error_type, message)) = refusal {
            return Reply::login_failure(error_type, message);
        }
        let user = user.id;
        self.open_session(entropy, this_vault, user, fields.get("vaultDNS"))
    }

    /// `POST /auth/oauth/session/{profile_id}` with `Authorization: Bearer {IdP token}` and an
    /// optional `vaultDNS` form field. Exempt from the login limit, as in Vault.
    pub(super) fn oauth_session(
        &mut self,
        entropy: &Entropy,
        this_vault: &VaultIdentity,
        profile: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Reply {
        let fields = match parse_fields(headers.get(CONTENT_TYPE), body) {
            Ok(fields) => fields,
            Err(reply) => return reply,
        };
        let presented = credential(headers).unwrap_or("");
        let grant = self
            .oauth_grants
            .iter()
            .find(|(p, token, _)| p == profile && token == presented)
            .map(|(_, _, user)| *user);
        let user = grant.filter(|user| {
            self.user(*user)
                .is_some_and(|user| user.state == UserState::Active)
        });
        let Some(user) = user else {
            return Reply::login_failure(
                "AUTHENTICATION_FAILED",
                "The identity provider's access token was not accepted for this profile.",
            );
        };
        self.open_session(entropy, this_vault, user, fields.get("vaultDNS"))
    }

    /// A new session for `user`, in this Vault or, by authentication defaulting, in their other
    /// one; answered like Vault's `/auth`.
    fn open_session(
        &mut self,
        entropy: &Entropy,
        this_vault: &VaultIdentity,
        user: u64,
        vault_dns: Option<&String>,
    ) -> Reply {
        let asked_here = vault_dns.is_none_or(|dns| this_vault.is_named(dns));
        let elsewhere = self.user(user).is_some_and(|u| u.defaults_elsewhere);
        let here = asked_here && !elsewhere;
        let id = entropy.session_id();
        let now = Instant::now();
        self.sessions.push(Session {
            id: id.clone(),
            user,
            here,
            started: now,
            last_used: now,
            ended: false,
        });
        let vault = |id: u64, name: &str, url: &str| {
            Json::object([
                ("id", Json::number(id)),
                ("name", Json::string(name)),
                ("url", Json::string(url)),
            ])
        };
        let vault_id = if here { this_vault.id } else { OTHER_VAULT_ID };
        let this = vault(this_vault.id, "Stand-in Vault", &this_vault.api_url);
        let other = vault(OTHER_VAULT_ID, "Other Vault", OTHER_VAULT_URL);
        // The Vault the session landed in comes first: a client must find the one it asked for
        // by its URL, not by its place in the list.
        let vaults = if here { [this, other] } else { [other, this] };
        Reply::success(vec![
            ("sessionId", Json::string(&id)),
            ("userId", Json::number(user)),
            ("vaultIds", Json::array(vaults)),
            ("vaultId", Json::number(vault_id)),
        ])
    }

    /// `DELETE /session`: ends the caller's session (a token caller has none to end).
    pub(super) fn end_session(&mut self, caller: Caller) -> Reply {
        if let Some(session) = caller.session.and_then(|i| self.sessions.get_mut(i)) {
            session.ended = true;
        }
        Reply::success(Vec::new())
    }
}

/// This Vault's id and the URL `/auth` answers name it by.
pub(super) struct VaultIdentity {
    pub(super) id: u64,
    /// `http://127.0.0.1:PORT/api`
    pub(super) api_url: String,
    /// `127.0.0.1:PORT`
    pub(super) dns: String,
}

impl VaultIdentity {
    pub(super) fn new(addr: SocketAddr) -> VaultIdentity {
        VaultIdentity {
            id: 100_000 + u64::from(addr.port()),
            api_url: format!("http://{addr}/api"),
            dns: addr.to_string(),
        }
    }

    /// Whether `dns` (with or without a scheme or port) names this Vault.
    fn is_named(&self, dns: &str) -> bool {
        let dns = dns.trim().trim_end_matches('/');
        let dns = dns
            .strip_prefix("http://")
            .or_else(|| dns.strip_prefix("https://"))
            .unwrap_or(dns);
        dns.eq_ignore_ascii_case(&self.dns)
    }
}
