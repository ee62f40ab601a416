//! Issuing: a name that tells an admin whose token it is, an expiry on Vault's clock, one login
//! again on an invalid session, and making room under the cap by revoking the issuer's own oldest.

use std::sync::Arc;
use std::time::SystemTime;

use http::Method;
use serde_json::Value;
use tokio::time::Instant;

use super::client::{form, Auth};
use super::credential::Credential;
use super::dates::{format_utc, parse_vault_time};
use super::error::{IssuerError, IssuerErrorKind};
use super::{Core, Held, Pending, MAX_ACTIVE_TOKENS};
use crate::trace::event;
use crate::AccessToken;

/// The longest `name__v` sent (Vault's name fields hold 128 characters).
pub(super) const MAX_NAME_LEN: usize = 128;

/// What a create call gave.
enum Created {
    Token { id: String, token: AccessToken },
    Refused { error_type: String, message: String },
}

/// The longest the issuer waits for the answer that shows Vault's clock before its first issue
/// (at most the request timeout).
const DATE_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A token of the user's as VQL lists it.
#[derive(Debug)]
pub(super) struct Listed {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) expiry: Option<SystemTime>,
}

impl Core {
    /// Issues a new token, supersedes the current one (revoked after the grace period) and
    /// returns the new one with its expiry.
    pub(super) async fn issue(self: &Arc<Self>) -> Result<AccessToken, IssuerError> {
        if self.ledger().shut_down {
            return Err(IssuerError::new(
                IssuerErrorKind::ShutDown,
                "the issuer was shut down",
            ));
        }
        self.ensure_worker();
        if self.http.skew().is_none() && self.http.first_date_probe() {
            // Vault's `Date` before the first expiry is chosen; without it, the local clock. Asked
            // once, within a bound of its own: a Vault (or a proxy) that does not answer it must
            // not use up the fetch's time, nor be asked again on every fetch (any later answer's
            // `Date` sets the skew too).
            let url = format!("{}/api/", self.config.base);
            let bound = self.http.timeout().min(DATE_PROBE_TIMEOUT);
            let probe = self.http.call(Method::GET, &url, Auth::None, None);
            let _ = tokio::time::timeout(bound, probe).await;
        }
        let mut logged_in_again = false;
        let mut made_room = false;
        loop {
            let credential = self.credentials.get(&self.config, &self.http).await?;
            match self.create(&credential).await? {
                Created::Token { id, token } => return Ok(self.install(id, token).await),
                Created::Refused { error_type, .. }
                    if error_type == "INVALID_SESSION_ID" && credential.is_session() =>
                {
                    self.credentials.drop_session().await;
                    if logged_in_again {
                        return Err(IssuerError::from_vault(
                            IssuerErrorKind::BadCredential,
                            "Vault refused a session it had just opened",
                            &error_type,
                            "",
                        ));
                    }
                    logged_in_again = true;
                }
                Created::Refused {
                    error_type,
                    message,
                } if error_type == "INVALID_SESSION_ID" => {
                    event!(
                        warn,
                        "vault refused the bootstrap token (INVALID_SESSION_ID); nothing issued"
                    );
                    return Err(IssuerError::from_vault(
                        IssuerErrorKind::BadCredential,
                        "Vault refused the bootstrap token",
                        &error_type,
                        &message,
                    ));
                }
                Created::Refused {
                    error_type,
                    message,
                } => {
                    if made_room || !self.make_room(&credential, &error_type, &message).await? {
                        return Err(IssuerError::from_vault(
                            IssuerErrorKind::CreateRefused,
                            "Vault refused to create a token",
                            &error_type,
                            &message,
                        ));
                    }
                    made_room = true;
                }
            }
        }
    }

    /// `name__v`: the prefix, host, process id and Vault's time, within [`MAX_NAME_LEN`].
    pub(super) fn token_name(&self, at: SystemTime) -> String {
        let time = format_utc(at);
        let pid = std::process::id();
        let fixed = self.config.name_prefix.len() + time.len() + pid.to_string().len() + 3;
        let room = MAX_NAME_LEN.saturating_sub(fixed);
        let host: String = self.host.chars().take(room).collect();
        format!("{}:{host}:{pid}:{time}", self.config.name_prefix)
    }

    async fn create(&self, credential: &Credential) -> Result<Created, IssuerError> {
        let now = self.http.vault_now();
        let expiry = now.checked_add(self.config.lifetime).ok_or_else(|| {
            IssuerError::new(
                IssuerErrorKind::Transport,
                "the token's expiry date, on Vault's clock, is past what a date can hold",
            )
        })?;
        let expiry_text = format_utc(expiry);
        let lifetime = parse_vault_time(&expiry_text)
            .and_then(|at| at.duration_since(now).ok())
            .unwrap_or(self.config.lifetime);
        let name = self.token_name(now);
        let path = match &self.config.sandbox {
            Some((sandbox, _)) => {
                format!("/objects/sandbox/{sandbox}/users/me/api_access_token__sys")
            }
            None => "/objects/users/me/api_access_token__sys".to_owned(),
        };
        let body = form(&[("name__v", &name), ("expiry_date__v", &expiry_text)]);
        let answer = self
            .http
            .call(
                Method::POST,
                &self.config.api(&path),
                credential.auth(),
                Some(("application/x-www-form-urlencoded", body)),
            )
            .await?;
        if !answer.is_success() {
            let (error_type, message) = answer.error();
            event!(warn, error_type, "vault refused to create an access token");
            return Ok(Created::Refused {
                error_type: error_type.to_owned(),
                message: message.to_owned(),
            });
        }
        let data = &answer.json["data"];
        let (Some(id), Some(value)) = (data["id"].as_str(), data["token__sys"].as_str()) else {
            return Err(IssuerError::new(
                IssuerErrorKind::Transport,
                "Vault's create answer has no token id or value",
            ));
        };
        let token = AccessToken::new(value.to_owned()).map_err(|err| {
            IssuerError::new(
                IssuerErrorKind::Transport,
                format!("Vault issued something that is not a token: {err}"),
            )
        })?;
        event!(info, id, name = %name, expires = %expiry_text, "issued a vault access token");
        Ok(Created::Token {
            id: id.to_owned(),
            token: token.with_expires_in(lifetime),
        })
    }

    /// Records a new token: the old one is revoked after the grace period; the fleet file is
    /// written.
    async fn install(&self, id: String, token: AccessToken) -> AccessToken {
        let expires = token
            .expires_at()
            .unwrap_or_else(|| Instant::now() + self.config.lifetime);
        {
            let mut ledger = self.ledger();
            ledger.stats.issued += 1;
            if self.config.sandbox.is_some() {
                ledger.newest = Some(token.clone());
            }
            let old = ledger.current.replace(Held { id, expires });
            if let Some(old) = old {
                ledger.pending.push(Pending {
                    id: old.id,
                    due: crate::cache::later(Instant::now(), self.config.grace),
                    attempts: 0,
                    expires: old.expires,
                });
            }
        }
        self.wake.notify_one();
        if let Some(path) = &self.config.fleet_file {
            match super::fleet::write_token(path, &token).await {
                Ok(()) => event!(debug, "wrote the new token to the fleet file"),
                Err(_err) => {
                    self.ledger().stats.fleet_write_failures += 1;
                    event!(warn, error = %_err, "could not write the fleet file");
                }
            }
        }
        token
    }

    /// After a refused create: if the user holds 25 active tokens, revoke the issuer's own
    /// oldest (never the current one) and say `true`; `false` if the refusal was not the cap.
    ///
    /// For a sandbox the tokens live in the sandbox: they are listed and revoked there, with the
    /// newest token issued for it (`credential` is the production Vault's); before the issuer
    /// holds one, the cap cannot be looked at and the refusal is final.
    async fn make_room(
        &self,
        credential: &Credential,
        error_type: &str,
        message: &str,
    ) -> Result<bool, IssuerError> {
        let in_sandbox;
        let credential = match &self.config.sandbox {
            None => credential,
            Some(_) => {
                let Some(newest) = self.newest_token() else {
                    return Err(IssuerError::from_vault(
                        IssuerErrorKind::CreateRefused,
                        "Vault refused to create a token for the sandbox, and the issuer holds no token there yet to look at the sandbox's 25-token cap with",
                        error_type,
                        message,
                    ));
                };
                in_sandbox = Credential::Token(newest);
                &in_sandbox
            }
        };
        let active = self.list_active(credential).await?;
        if active.len() < MAX_ACTIVE_TOKENS {
            return Ok(false);
        }
        let own_prefix = format!("{}:", self.config.name_prefix);
        let current = self.ledger().current.as_ref().map(|held| held.id.clone());
        let mut own: Vec<&Listed> = active
            .iter()
            .filter(|t| t.name.starts_with(&own_prefix) && Some(&t.id) != current.as_ref())
            .collect();
        if own.is_empty() {
            event!(
                warn,
                active = active.len(),
                "the user's 25 tokens are full and none is the issuer's"
            );
            return Err(IssuerError::new(
                IssuerErrorKind::CapFullOfOthers,
                format!(
                    "the user holds {} active tokens, the most Vault allows, and none has a name starting with {own_prefix:?}: none is this issuer's to revoke",
                    active.len()
                ),
            ));
        }
        // Oldest first: the earliest expiry (a token without one last), then the name, which
        // carries the time it was issued.
        own.sort_by(|a, b| {
            let key = |t: &Listed| (t.expiry.is_none(), t.expiry, t.name.clone());
            key(a).cmp(&key(b))
        });
        let excess = active.len() + 1 - MAX_ACTIVE_TOKENS;
        let ids: Vec<String> = own.iter().take(excess).map(|t| t.id.clone()).collect();
        event!(
            info,
            count = ids.len(),
            "the cap is full; revoking the issuer's own oldest tokens"
        );
        let failed = self.revoke_now(credential, &ids).await?;
        let revoked = ids.len() - failed.len();
        self.ledger().stats.cap_revocations += revoked as u64;
        Ok(revoked > 0)
    }

    /// The user's active tokens, by VQL (in the sandbox, for a sandbox).
    async fn list_active(&self, credential: &Credential) -> Result<Vec<Listed>, IssuerError> {
        let q = "SELECT id, name__v, status__v, expiry_date__sys, last_used_date__sys \
                 FROM api_access_token__sys WHERE status__v = 'active__v'";
        let body = form(&[("q", q)]);
        let answer = self
            .http
            .call(
                Method::POST,
                &self.tokens_api("/query"),
                credential.auth(),
                Some(("application/x-www-form-urlencoded", body)),
            )
            .await?;
        if !answer.is_success() {
            let (error_type, message) = answer.error();
            return Err(IssuerError::from_vault(
                IssuerErrorKind::Transport,
                "could not list the user's tokens",
                error_type,
                message,
            ));
        }
        let rows = answer.json["data"].as_array().cloned().unwrap_or_default();
        Ok(rows.iter().filter_map(listed).collect())
    }
}

/// One VQL row, if it is an active token; `status__v` may be an array or a plain string.
fn listed(row: &Value) -> Option<Listed> {
    let status = &row["status__v"];
    let active = match status {
        Value::Array(values) => values.iter().any(|v| v == "active__v"),
        Value::String(value) => value == "active__v",
        _ => true,
    };
    if !active {
        return None;
    }
    Some(Listed {
        id: row["id"].as_str()?.to_owned(),
        name: row["name__v"].as_str().unwrap_or("").to_owned(),
        expiry: row["expiry_date__sys"].as_str().and_then(parse_vault_time),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vql_rows_take_picklists_as_arrays_or_strings() {
        let array = serde_json::json!({"id": "V1", "name__v": "a", "status__v": ["active__v"]});
        let plain = serde_json::json!({"id": "V2", "name__v": "b", "status__v": "active__v",
            "expiry_date__sys": "2026-12-01T21:30:00.000Z"});
        let inactive = serde_json::json!({"id": "V3", "status__v": ["inactive__v"]});
        assert_eq!(listed(&array).unwrap().id, "V1");
        assert!(listed(&plain).unwrap().expiry.is_some());
        assert!(listed(&inactive).is_none());
    }
}
