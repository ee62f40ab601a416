//! The handle's controls over users, logins, sessions, the clock, OAuth and sandboxes.

use super::*;

impl VaultStandIn {
    /// Adds a user who logs in with `password` (`POST /auth`) and holds their own 25 tokens.
    /// Returns their user id. The stand-in starts with one user, `integration@example.com`,
    /// who has no password until [`set_password`](Self::set_password) gives one.
    ///
    /// ```
    /// use std::time::Duration;
    /// use veeva_vault_auth::testing::{UserState, VaultStandIn};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let vault = VaultStandIn::start().await?;
    /// vault.add_user("svc@example.com", "a password");
    /// // Tokens as if made in Vault's UI, each user with their own 25.
    /// let token = vault
    ///     .issue_token_for("svc@example.com", Some("made in the UI"), Some(Duration::from_secs(60)))
    ///     .unwrap();
    /// assert!(vault.is_active(&token));
    /// assert_eq!(vault.active_tokens_of("svc@example.com"), 1);
    /// assert_eq!(vault.active_token_count(), 0, "the first user holds none");
    /// // `POST /api/v26.2/auth` with username=svc@example.com&password=… now opens a session;
    /// // a locked-out user is refused with USER_LOCKED_OUT.
    /// vault.set_user_state("svc@example.com", UserState::LockedOut);
    /// // A Vault whose clock is five minutes ahead of the client's.
    /// let before = vault.now();
    /// vault.set_clock_offset(300);
    /// assert!(vault.now().duration_since(before).unwrap() >= Duration::from_secs(300));
    /// # Ok(())
    /// # }
    /// ```
    pub fn add_user(&self, name: &str, password: &str) -> u64 {
        self.inner.shared.lock().add_user(name, Some(password))
    }

    /// Sets (or changes) a user's password. A change ends their sessions, as in Vault.
    /// Returns `false` for an unknown user.
    pub fn set_password(&self, user: &str, password: &str) -> bool {
        let mut state = self.inner.shared.lock();
        let Some(found) = state.user_named_mut(user) else {
            return false;
        };
        found.password = Some(password.to_owned());
        let id = found.id;
        end_sessions_of(&mut state, id);
        true
    }

    /// Whether a user may log in (see [`UserState`]); returns `false` for an unknown user.
    /// Making a user [`Inactive`](UserState::Inactive) also ends their sessions.
    pub fn set_user_state(&self, user: &str, user_state: UserState) -> bool {
        let mut state = self.inner.shared.lock();
        let Some(found) = state.user_named_mut(user) else {
            return false;
        };
        found.state = user_state;
        let id = found.id;
        if user_state == UserState::Inactive {
            end_sessions_of(&mut state, id);
        }
        true
    }

    /// Makes a user an admin, who sees and may delete everyone's tokens.
    pub fn set_admin(&self, user: &str, admin: bool) -> bool {
        let mut state = self.inner.shared.lock();
        state
            .user_named_mut(user)
            .map(|user| user.admin = admin)
            .is_some()
    }

    /// Authentication defaulting: while on, every login of this user lands in their other Vault
    /// (`vaultId` in the answer is the other Vault's, whose `vaultIds[]` entry has another
    /// URL), as Vault does when the Vault asked for is not active for them. Such sessions are
    /// rejected here. A login whose `vaultDNS` names another Vault lands there too.
    pub fn default_logins_elsewhere(&self, user: &str, on: bool) -> bool {
        let mut state = self.inner.shared.lock();
        state
            .user_named_mut(user)
            .map(|user| user.defaults_elsewhere = on)
            .is_some()
    }

    /// How many logins one user may make per minute (on the stand-in's clock, counted per
    /// calendar minute, failed ones included) before `/auth` answers `API_LIMIT_EXCEEDED`.
    pub fn set_login_limit(&self, per_minute: u32) {
        self.inner.shared.lock().settings.logins_per_minute = per_minute;
    }

    /// How long a session may sit unused before it stops working (measured on Tokio's clock).
    pub fn set_session_idle_timeout(&self, idle: Duration) {
        self.inner.shared.lock().settings.session_idle_timeout = idle;
    }

    /// How many of the user's sessions work now (not ended, not idle too long, not older than
    /// 48 hours), in this Vault or their other one.
    pub fn live_sessions_of(&self, user: &str) -> usize {
        let state = self.inner.shared.lock();
        state
            .user_named(user)
            .map_or(0, |user| state.live_sessions(user.id))
    }

    /// Ends every session now, as a Vault restart or an admin would.
    pub fn end_all_sessions(&self) {
        for session in &mut self.inner.shared.lock().sessions {
            session.ended = true;
        }
    }

    /// Lets `POST /auth/oauth/session/{profile_id}` with `Authorization: Bearer {idp_token}`
    /// open a session for `user`. Returns `false` for an unknown user.
    pub fn accept_oauth(&self, profile_id: &str, idp_token: &str, user: &str) -> bool {
        let mut state = self.inner.shared.lock();
        let Some(id) = state.user_named(user).map(|user| user.id) else {
            return false;
        };
        let grant = (profile_id.to_owned(), idp_token.to_owned(), id);
        state.oauth_grants.push(grant);
        true
    }

    /// Makes `sandbox` this Vault's sandbox called `name`: `POST
    /// /objects/sandbox/{name}/users/me/api_access_token__sys` here creates the token there,
    /// for the user of the same name (added there if missing).
    pub fn add_sandbox(&self, name: &str, sandbox: &VaultStandIn) {
        let shared = Arc::clone(&sandbox.inner.shared);
        let mut state = self.inner.shared.lock();
        state.sandboxes.retain(|(existing, _)| existing != name);
        state.sandboxes.push((name.to_owned(), shared));
    }

    /// The stand-in's clock: the real time when it started, moved on by Tokio's clock (so paused
    /// time drives it), plus the offset set with [`set_clock_offset`](Self::set_clock_offset).
    /// Token expiry, `last_used_date__sys`, the login limit's minutes and the `Date` header
    /// of every answer read it.
    pub fn now(&self) -> SystemTime {
        self.inner.shared.lock().clock.now()
    }

    /// Puts the stand-in's clock `seconds` ahead (negative: behind) of where it would be, to
    /// play a Vault whose clock and the client's disagree.
    pub fn set_clock_offset(&self, seconds: i64) {
        self.inner.shared.lock().clock.set_offset(seconds);
    }

    /// The longest lifetime the security profile allows: a create whose `expiry_date__v` is
    /// later, or missing, is refused (`INVALID_DATA`). `None` (the default) allows any.
    pub fn set_max_token_lifetime(&self, max: Option<Duration>) {
        self.inner.shared.lock().settings.max_token_lifetime = max;
    }

    /// Whether VQL answers picklist fields (`status__v`) as arrays (`["active__v"]`, the
    /// default, as Vault usually does) or as plain strings.
    pub fn set_picklists_as_arrays(&self, arrays: bool) {
        self.inner.shared.lock().settings.picklists_as_arrays = arrays;
    }
}

fn end_sessions_of(state: &mut State, user: u64) {
    for session in state.sessions.iter_mut().filter(|s| s.user == user) {
        session.ended = true;
    }
}
