//! [`VaultStandIn`]: the handle tests hold, and what it lets them set and see.

use super::*;

/// A running Vault stand-in: an HTTP/1 server on `127.0.0.1` that authenticates like Veeva Vault.
///
/// The handle is cheap to clone; every clone controls the same server. The server task is
/// aborted when the last handle is dropped, or at once by [`VaultStandIn::shutdown`].
///
/// The stand-in has one user (`integration@example.com`). Tokens are made with
/// [`issue_token`](VaultStandIn::issue_token) (as if created in Vault's UI) or through the
/// `POST /objects/users/me/api_access_token__sys` endpoint.
///
/// `Debug` shows only the address, never a token.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use veeva_vault_auth::testing::{Outcome, VaultStandIn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let vault = VaultStandIn::start().await?;
/// assert_eq!(
///     vault.api_url("/objects/documents"),
///     format!("{}/api/v26.2/objects/documents", vault.base_url()),
/// );
///
/// // A token, as if an administrator created it in Vault's UI.
/// let token = vault.issue_token();
/// assert!(token.starts_with("veeva-vault-"));
/// assert!(vault.is_active(&token));
///
/// // Send requests to `vault.api_url(..)` with `Authorization: Bearer {token}`;
/// // afterwards, inspect what the stand-in received.
/// assert_eq!(vault.request_count(), 0);
///
/// // Revoking makes every later request with this token fail with INVALID_SESSION_ID.
/// assert!(vault.revoke(&token));
/// assert!(!vault.is_active(&token));
///
/// // Tokens can expire (measured with `tokio::time::Instant`, so paused time works).
/// let short = vault.issue_token_expiring_in(Duration::from_secs(60));
/// assert_eq!(vault.active_token_count(), 1);
/// # let _ = (short, Outcome::Accepted);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct VaultStandIn {
    pub(super) inner: Arc<Inner>,
}

impl VaultStandIn {
    /// Binds `127.0.0.1:0` and starts serving on the current Tokio runtime (with `tokio::spawn`).
    ///
    /// # Errors
    ///
    /// Returns the error if the listening socket cannot be bound.
    pub async fn start() -> std::io::Result<VaultStandIn> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(addr));
        let server = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        Ok(VaultStandIn {
            inner: Arc::new(Inner {
                addr,
                shared,
                server: server.abort_handle(),
            }),
        })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// The server's base URL, `http://127.0.0.1:PORT` (no trailing slash).
    pub fn base_url(&self) -> String {
        self.inner.shared.base_url.clone()
    }

    /// The URL of an API endpoint: base URL + `/api/v26.2` + `path`.
    ///
    /// `path` should start with `/` (one is inserted if it does not), e.g.
    /// `vault.api_url("/objects/documents")`.
    pub fn api_url(&self, path: &str) -> String {
        let separator = if path.starts_with('/') { "" } else { "/" };
        format!(
            "{}/api/{API_VERSION}{separator}{path}",
            self.inner.shared.base_url
        )
    }

    /// Creates a new active, never-expiring token for the stand-in's first user
    /// (`integration@example.com`), as if it had been created in Vault's UI, and returns its
    /// value (`veeva-vault-` + 32 letters and digits).
    ///
    /// Unlike the HTTP endpoint this is not limited by the 25-token cap, so tests can set up any
    /// state; the tokens do count towards the cap seen by the endpoint.
    pub fn issue_token(&self) -> String {
        self.issue_token_for(USER_NAME, None, None)
            .expect("the first user always exists")
    }

    /// Like [`issue_token`](Self::issue_token), but the token expires `lifetime` from now on the
    /// stand-in's clock (which paused Tokio time moves): from then on it is rejected.
    pub fn issue_token_expiring_in(&self, lifetime: Duration) -> String {
        self.issue_token_for(USER_NAME, None, Some(lifetime))
            .expect("the first user always exists")
    }

    /// A token for the user named `user` (see [`add_user`](Self::add_user)), with `name__v`
    /// `name` (or a made-up one) and an optional lifetime, not limited by the cap. `None` if
    /// there is no such user.
    pub fn issue_token_for(
        &self,
        user: &str,
        name: Option<&str>,
        lifetime: Option<Duration>,
    ) -> Option<String> {
        self.inner.shared.issue(user, name, lifetime)
    }

    /// Deactivates a token. Returns `true` if it was active (known, not revoked, not expired).
    pub fn revoke(&self, token: &str) -> bool {
        self.inner.shared.lock().revoke_value(token)
    }

    /// Makes every revocation call that names the token `token` (by its record id) fail for that
    /// record alone: its entry in the answer's `data` is a `FAILURE` with `errors[0].type`
    /// `INSUFFICIENT_ACCESS`, the token stays active, and the other records of the same call are
    /// deleted as usual. Returns `false` if the stand-in never issued `token`.
    ///
    /// ```
    /// use veeva_vault_auth::testing::VaultStandIn;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let vault = VaultStandIn::start().await?;
    /// let kept = vault.issue_token();
    /// assert!(vault.refuse_revocation_of(&kept));
    /// assert!(!vault.refuse_revocation_of("veeva-vault-never-issued"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn refuse_revocation_of(&self, token: &str) -> bool {
        let mut state = self.inner.shared.lock();
        let Some(record) = state.tokens.iter_mut().find(|t| t.value == token) else {
            return false;
        };
        record.undeletable = true;
        true
    }

    /// Deactivates the token with record id `id` (see [`tokens`](Self::tokens)), as an admin
    /// deleting it in Vault's UI would. Returns `true` if it was active.
    pub fn revoke_id(&self, id: &str) -> bool {
        let mut state = self.inner.shared.lock();
        let now = state.clock.now();
        let Some(token) = state.tokens.iter_mut().find(|t| t.id == id) else {
            return false;
        };
        let was_active = token.is_active(now);
        token.revoked = true;
        was_active
    }

    /// Deactivates every token.
    pub fn revoke_all(&self) {
        for token in &mut self.inner.shared.lock().tokens {
            token.revoked = true;
        }
    }

    /// Whether `token` would be accepted now: known, not revoked and not expired.
    pub fn is_active(&self, token: &str) -> bool {
        let state = self.inner.shared.lock();
        let now = state.clock.now();
        state
            .tokens
            .iter()
            .any(|record| record.value == token && record.is_active(now))
    }

    /// How many active tokens the stand-in's first user holds now.
    pub fn active_token_count(&self) -> usize {
        self.active_tokens_of(USER_NAME)
    }

    /// How many active tokens the user named `user` holds now (0 for an unknown user).
    pub fn active_tokens_of(&self, user: &str) -> usize {
        let state = self.inner.shared.lock();
        state
            .user_named(user)
            .map_or(0, |user| state.active_count(user.id))
    }

    /// Every token the stand-in knows, revoked and expired ones included, in the order they were
    /// made, without their values.
    pub fn tokens(&self) -> Vec<TokenInfo> {
        let state = self.inner.shared.lock();
        let now = state.clock.now();
        state
            .tokens
            .iter()
            .map(|token| TokenInfo {
                id: token.id.clone(),
                name: token.name.clone(),
                user: state
                    .user(token.user)
                    .map(|user| user.name.clone())
                    .unwrap_or_default(),
                active: token.is_active(now),
                revoked: token.revoked,
                expiry: token.expiry,
            })
            .collect()
    }

    /// When on, a bad or missing credential is answered with HTTP 401 (as a gateway or proxy in
    /// front of Vault might), carrying the same `INVALID_SESSION_ID` JSON body,
    /// `X-VaultAPI-Status: FAILURE` and `WWW-Authenticate: Bearer`. When off (the default), it
    /// is answered like Vault: HTTP 200 and no `WWW-Authenticate`.
    pub fn set_unauthorized_mode(&self, on: bool) {
        self.inner.shared.lock().unauthorized_mode = on;
    }

    /// Makes every authenticated request to an existing endpoint whose path ends with
    /// `path_suffix` answer HTTP 200 with a FAILURE body whose `errors[0].type` is `error_type`
    /// (e.g. `"INSUFFICIENT_ACCESS"`). Setting the same suffix again replaces its error type;
    /// when several suffixes match, the first one set wins. Undo with
    /// [`clear_failures`](Self::clear_failures).
    ///
    /// Bad credentials are still answered with `INVALID_SESSION_ID`, and unknown paths with 404.
    pub fn fail_path_with(&self, path_suffix: &str, error_type: &str) {
        let mut state = self.inner.shared.lock();
        let error_type = error_type.to_owned();
        match state
            .failures
            .iter_mut()
            .find(|(suffix, _)| suffix == path_suffix)
        {
            Some((_, existing)) => *existing = error_type,
            None => state.failures.push((path_suffix.to_owned(), error_type)),
        }
    }

    /// Removes every failure set with [`fail_path_with`](Self::fail_path_with).
    pub fn clear_failures(&self) {
        self.inner.shared.lock().failures.clear();
    }

    /// Makes every request whose path ends with `path_suffix` answer with `status` and
    /// `Location: location`, whatever its method and credential, and whether or not the path is
    /// an endpoint (so a made-up path such as `/moved` works too). The request is recorded like
    /// any other, with [`Outcome::Redirected`]; a held request is redirected when it is released.
    ///
    /// `location` is sent as it is: an absolute URL (such as another stand-in's
    /// [`api_url`](Self::api_url)) or a reference resolved against the request's URL (such as
    /// `/api/v26.2/objects/documents`). The answer has an empty body, `X-VaultAPI-ExecutionId`
    /// and no `Content-Type` or `X-VaultAPI-Status`.
    ///
    /// Setting the same suffix again replaces its redirection; when several suffixes match, the
    /// first one set wins. Redirections come before injected failures
    /// ([`fail_path_with`](Self::fail_path_with)). Undo with
    /// [`clear_redirects`](Self::clear_redirects).
    ///
    /// ```
    /// use http::StatusCode;
    /// use veeva_vault_auth::testing::VaultStandIn;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let vault = VaultStandIn::start().await?;
    /// let elsewhere = VaultStandIn::start().await?;
    /// // Same Vault, another path:
    /// vault.redirect("/objects/moved", StatusCode::FOUND, "/api/v26.2/objects/documents");
    /// // Another origin:
    /// vault.redirect(
    ///     "/objects/documents",
    ///     StatusCode::TEMPORARY_REDIRECT,
    ///     &elsewhere.api_url("/objects/documents"),
    /// );
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// If `status` is not a redirection (`3xx`) or `location` is not a valid header value.
    pub fn redirect(&self, path_suffix: &str, status: StatusCode, location: &str) {
        assert!(
            status.is_redirection(),
            "VaultStandIn::redirect needs a 3xx status, not {status}"
        );
        let location = HeaderValue::from_str(location).unwrap_or_else(|_| {
            panic!("VaultStandIn::redirect: {location:?} is not a header value")
        });
        let mut state = self.inner.shared.lock();
        let redirect = Redirect { status, location };
        match state
            .redirects
            .iter_mut()
            .find(|(suffix, _)| suffix == path_suffix)
        {
            Some((_, existing)) => *existing = redirect,
            None => state.redirects.push((path_suffix.to_owned(), redirect)),
        }
    }

    /// Removes every redirection set with [`redirect`](Self::redirect).
    pub fn clear_redirects(&self) {
        self.inner.shared.lock().redirects.clear();
    }

    /// When on, each incoming request is recorded and then held (not answered) until
    /// [`release`](Self::release) or `hold_requests(false)`. Turning it off releases every held
    /// request. Credentials are checked when the hold ends, so a token revoked during the hold is
    /// rejected.
    pub fn hold_requests(&self, on: bool) {
        self.inner.shared.hold.send_modify(|hold| {
            hold.holding = on;
            if !on {
                hold.release_all();
            }
        });
    }

    /// Stops holding new requests, but keeps the ones held now until [`release`](Self::release):
    /// lets a test answer later requests while earlier ones wait.
    pub fn stop_holding(&self) {
        self.inner
            .shared
            .hold
            .send_modify(|hold| hold.holding = false);
    }

    /// Resolves once at least `n` requests are being held (immediately if they already are).
    ///
    /// Released requests no longer count. If fewer than `n` requests ever arrive while
    /// [`hold_requests`](Self::hold_requests) is on, this never resolves; wrap it in a timeout if
    /// that can happen.
    pub async fn wait_for_held(&self, n: usize) {
        let mut hold = self.inner.shared.hold.subscribe();
        // The sender lives in `Shared`, which `self` keeps alive, so this cannot fail.
        let _ = hold.wait_for(|hold| hold.held >= n).await;
    }

    /// Answers every request held now. Requests arriving later are held again while
    /// [`hold_requests`](Self::hold_requests) is on.
    pub fn release(&self) {
        self.inner.shared.hold.send_modify(HoldState::release_all);
    }

    /// Every request received so far (since the last [`clear_requests`](Self::clear_requests)),
    /// in arrival order, including held ones.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        let state = self.inner.shared.lock();
        state
            .requests
            .iter()
            .map(|(_, request)| request.clone())
            .collect()
    }

    /// How many of the requests received so far (since the last
    /// [`clear_requests`](Self::clear_requests)) `matches` says yes to, counted in place: unlike
    /// [`requests`](Self::requests) it copies nothing, so a test that asks often under load does
    /// not make the memory it measures.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use veeva_vault_auth::testing::VaultStandIn;
    ///
    /// let vault = VaultStandIn::start().await.unwrap();
    /// assert_eq!(vault.count_requests(|request| request.path.ends_with("/users/me")), 0);
    /// # }
    /// ```
    pub fn count_requests(&self, matches: impl Fn(&RecordedRequest) -> bool) -> usize {
        let state = self.inner.shared.lock();
        state
            .requests
            .iter()
            .filter(|(_, request)| matches(request))
            .count()
    }

    /// How many requests were received (since the last [`clear_requests`](Self::clear_requests)).
    pub fn request_count(&self) -> usize {
        self.inner.shared.lock().requests.len()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.inner.shared.lock().requests.clear();
    }

    /// Stops the server now: the listener is closed and open connections, including held
    /// requests, are dropped. Recorded requests and tokens stay readable. Dropping the last
    /// handle does the same.
    pub fn shutdown(&self) {
        self.inner.server.abort();
    }
}

impl fmt::Debug for VaultStandIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultStandIn")
            .field("addr", &self.inner.addr)
            .finish_non_exhaustive()
    }
}

/// A token as [`VaultStandIn::tokens`] shows it: everything but its value.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenInfo {
    /// The record id (`V8T…`).
    pub id: String,
    /// `name__v`.
    pub name: String,
    /// The user name of its holder.
    pub user: String,
    /// Not revoked and not expired.
    pub active: bool,
    /// Revoked (deleted).
    pub revoked: bool,
    /// `expiry_date__v` on the stand-in's clock, if it has one.
    pub expiry: Option<SystemTime>,
}
