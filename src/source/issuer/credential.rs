//! The bootstrap credential: a token from any source, or a session opened with a password or an
//! identity provider's token, kept while it works and checked against authentication defaulting.

use std::time::Duration;

use http::Method;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::client::{form, Answer, Auth, Http};
use super::config::{Bootstrap, Config};
use super::error::{IssuerError, IssuerErrorKind};
use crate::trace::event;

/// After Vault refuses a login (wrong password, user locked out, …), no login is tried again for
/// this long: trying once a minute would lock the account out.
pub(super) const REFUSED_LOGIN_PAUSE: Duration = Duration::from_secs(15 * 60);

/// Sessions are opened again after this long, before Vault's 48-hour maximum ends them.
const SESSION_MAX_AGE: Duration = Duration::from_secs(47 * 3600);

/// A credential for the issuing calls.
pub(super) enum Credential {
    Token(crate::AccessToken),
    Session(SecretString),
}

impl Credential {
    pub(super) fn auth(&self) -> Auth<'_> {
        match self {
            Credential::Token(token) => Auth::Bearer(token.expose_secret()),
            Credential::Session(id) => Auth::Session(id.expose_secret()),
        }
    }

    pub(super) fn is_session(&self) -> bool {
        matches!(self, Credential::Session(_))
    }
}

struct Session {
    id: SecretString,
    opened: Instant,
}

#[derive(Default)]
struct Logins {
    session: Option<Session>,
    last_login: Option<Instant>,
    /// Vault said `API_LIMIT_EXCEEDED`: no login before this.
    not_before: Option<Instant>,
    /// Vault refused the credential: the error, repeated without a login until the instant.
    refused: Option<(Instant, IssuerError)>,
}

/// Hands out the bootstrap credential, logging in when it must.
pub(super) struct Credentials {
    logins: Mutex<Logins>,
    count: super::Counter,
}

impl Credentials {
    pub(super) fn new() -> Self {
        Self {
            logins: Mutex::new(Logins::default()),
            count: super::Counter::default(),
        }
    }

    /// How many logins (password or OAuth) the issuer has made.
    pub(super) fn login_count(&self) -> u64 {
        self.count.get()
    }

    /// The credential to issue with now.
    pub(super) async fn get(
        &self,
        config: &Config,
        http: &Http,
    ) -> Result<Credential, IssuerError> {
        if let Bootstrap::Token(source) = &config.bootstrap {
            return source.fetch().await.map(Credential::Token).map_err(|err| {
                IssuerError::new(
                    IssuerErrorKind::BootstrapUnavailable,
                    format!("the bootstrap token source failed: {err}"),
                )
                .retryable(err.is_retryable())
            });
        }
        let mut logins = self.logins.lock().await;
        if let Some(session) = &logins.session {
            if session.opened.elapsed() < SESSION_MAX_AGE {
                return Ok(Credential::Session(session.id.clone()));
            }
            let old = logins.session.take().expect("checked above");
            end(config, http, &old.id).await;
        }
        let id = self.log_in(&mut logins, config, http).await?;
        Ok(Credential::Session(id))
    }

    /// Vault said the session is invalid: forget it (the next [`get`](Self::get) logs in).
    pub(super) async fn drop_session(&self) {
        self.logins.lock().await.session = None;
    }

    /// Ends the session, if there is one (`DELETE /session`).
    pub(super) async fn end_session(&self, config: &Config, http: &Http) {
        let session = self.logins.lock().await.session.take();
        if let Some(session) = session {
            end(config, http, &session.id).await;
        }
    }

    async fn log_in(
        &self,
        logins: &mut Logins,
        config: &Config,
        http: &Http,
    ) -> Result<SecretString, IssuerError> {
        let now = Instant::now();
        if let Some((until, err)) = &logins.refused {
            if *until > now {
                return Err(err.clone());
            }
            logins.refused = None;
        }
        let paced = logins
            .last_login
            .map(|at| at + config.min_login_interval)
            .into_iter()
            .chain(logins.not_before)
            .max()
            .filter(|at| *at > now);
        if let Some(at) = paced {
            return Err(IssuerError::new(
                IssuerErrorKind::LoginLimited,
                "not logging in again yet: logins are kept to one a minute",
            )
            .retry_in(at - now));
        }
        logins.last_login = Some(now);
        self.count.add();
        let answer = match &config.bootstrap {
            Bootstrap::Token(_) => {
                return Err(IssuerError::new(
                    IssuerErrorKind::BadCredential,
                    "a bootstrap token needs no login",
                ))
            }
            Bootstrap::Password { username, password } => {
                let body = form(&[
                    ("username", username),
                    ("password", password.expose_secret()),
                    ("vaultDNS", &config.authority),
                ]);
                let url = config.api("/auth");
                event!(debug, user = %username, "logging in to vault with a password");
                http.call(Method::POST, &url, Auth::None, Some(form_body(body)))
                    .await?
            }
            Bootstrap::OAuth {
                profile_id,
                client_id,
                identity,
            } => {
                let idp = identity().await.map_err(|err| {
                    IssuerError::new(
                        IssuerErrorKind::BootstrapUnavailable,
                        format!("the identity provider's token could not be had: {err}"),
                    )
                    .retryable(err.is_retryable())
                })?;
                let mut fields = vec![("vaultDNS", config.authority.as_str())];
                if let Some(client_id) = client_id {
                    fields.push(("client_id", client_id));
                }
                let url = format!("{}/auth/oauth/session/{profile_id}", config.login_base);
                event!(debug, profile = %profile_id, "exchanging an identity provider's token for a vault session");
                http.call(
                    Method::POST,
                    &url,
                    Auth::Bearer(idp.expose_secret()),
                    Some(form_body(form(&fields))),
                )
                .await?
            }
        };
        let session = match self.accept(logins, config, http, &answer) {
            Ok(session) => session,
            Err(err) => {
                if err.kind() == IssuerErrorKind::BadCredential {
                    logins.refused = Some((Instant::now() + REFUSED_LOGIN_PAUSE, err.clone()));
                }
                return Err(err);
            }
        };
        logins.session = Some(Session {
            id: session.clone(),
            opened: Instant::now(),
        });
        event!(info, "opened a vault session for issuing tokens");
        Ok(session)
    }

    /// A login's answer: its session, if it is for the Vault asked for.
    fn accept(
        &self,
        logins: &mut Logins,
        config: &Config,
        http: &Http,
        answer: &Answer,
    ) -> Result<SecretString, IssuerError> {
        if !answer.is_success() {
            let (error_type, message) = answer.error();
            if error_type == "API_LIMIT_EXCEEDED" {
                // Until the next minute on Vault's clock.
                let into_minute = http
                    .vault_now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() % 60);
                let wait = Duration::from_secs(60 - into_minute);
                logins.not_before = Some(Instant::now() + wait);
                return Err(IssuerError::from_vault(
                    IssuerErrorKind::LoginLimited,
                    "Vault refused the login",
                    error_type,
                    message,
                )
                .retry_in(wait));
            }
            let error_type = if error_type.is_empty() {
                "an unknown error"
            } else {
                error_type
            };
            return Err(IssuerError::from_vault(
                IssuerErrorKind::BadCredential,
                "Vault refused the login",
                error_type,
                message,
            ));
        }
        let json = &answer.json;
        let session = json["sessionId"].as_str().filter(|s| !s.is_empty());
        let Some(session) = session else {
            return Err(IssuerError::new(
                IssuerErrorKind::Transport,
                "Vault's login answer has no session id",
            ));
        };
        let landed = &json["vaultId"];
        let asked = json["vaultIds"].as_array().and_then(|vaults| {
            vaults.iter().find(|vault| {
                vault["url"]
                    .as_str()
                    .is_some_and(|url| names(url, &config.authority))
            })
        });
        let here = asked.is_some_and(|vault| !landed.is_null() && vault["id"] == *landed);
        if !here {
            event!(
                warn,
                landed = %landed,
                "vault logged the user into another vault than the one asked for; refusing the session"
            );
            return Err(IssuerError::new(
                IssuerErrorKind::WrongVault,
                format!(
                    "Vault logged the user into another Vault (id {landed}) than {} (authentication defaulting): is the user active there?",
                    config.authority
                ),
            ));
        }
        Ok(SecretString::from(session.to_owned()))
    }
}

fn form_body(body: bytes::Bytes) -> (&'static str, bytes::Bytes) {
    ("application/x-www-form-urlencoded", body)
}

/// Whether a `vaultIds[].url` such as `https://myvault.veevavault.com/api` names `authority`.
fn names(url: &str, authority: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .unwrap_or(url);
    let host = rest.split('/').next().unwrap_or("");
    host.eq_ignore_ascii_case(authority)
}

async fn end(config: &Config, http: &Http, session: &SecretString) {
    let url = config.api("/session");
    match http
        .call(
            Method::DELETE,
            &url,
            Auth::Session(session.expose_secret()),
            None,
        )
        .await
    {
        Ok(answer) if answer.is_success() => event!(info, "ended the vault session"),
        Ok(answer) => {
            let (_error_type, _) = answer.error();
            event!(
                warn,
                error_type = _error_type,
                "vault did not end the session"
            );
        }
        Err(_err) => event!(warn, error = %_err, "could not end the vault session"),
    }
}
