//! Revoking: superseded tokens after their grace period, in one call for all that are due, by a
//! task that retries failures (doubling, at most 15 minutes) until Vault confirms or the token
//! has expired anyway.

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use tokio::time::Instant;

use super::client::{Auth, Http};
use super::credential::Credential;
use super::error::{IssuerError, IssuerErrorKind};
use super::{Core, Pending};
use crate::trace::event;

/// Most ids one revoke call may carry, as in Vault.
const MAX_IDS_PER_CALL: usize = 500;

/// The longest wait between two attempts at a failing revocation.
const MAX_RETRY: Duration = Duration::from_secs(15 * 60);

impl Core {
    /// Starts the revocation task on the current runtime unless it runs.
    pub(super) fn ensure_worker(self: &Arc<Self>) {
        let mut ledger = self.ledger();
        if ledger
            .worker
            .as_ref()
            .is_some_and(|task| !task.is_finished())
        {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let task = runtime.spawn(revoke_when_due(Arc::clone(self)));
            ledger.worker = Some(task.abort_handle());
        }
    }

    /// Revokes `ids` now with `credential`; returns the ids Vault did not confirm. An id Vault
    /// does not know (deleted already, or expired and gone) counts as revoked.
    pub(super) async fn revoke_now(
        &self,
        credential: &Credential,
        ids: &[String],
    ) -> Result<Vec<String>, IssuerError> {
        let url = self.tokens_api("/vobjects/api_access_token__sys");
        revoke_ids(&self.http, &url, credential.auth(), ids).await
    }

    /// `path` under `/api/{version}` of the Vault where the issued tokens live: this one, or
    /// the sandbox (whose tokens are revoked and listed there, with the newest one issued for
    /// it).
    pub(super) fn tokens_api(&self, path: &str) -> String {
        match &self.config.sandbox {
            Some((_, sandbox_base)) => {
                format!("{sandbox_base}/api/{}{path}", self.config.api_version)
            }
            None => self.config.api(path),
        }
    }

    /// One round: revoke what is due, reschedule what failed.
    async fn revoke_due(&self) {
        let now = Instant::now();
        let due: Vec<String> = {
            let mut ledger = self.ledger();
            // A token past its expiry is inactive anyway: nothing is left to revoke.
            ledger.pending.retain(|p| p.expires > now);
            ledger
                .pending
                .iter()
                .filter(|p| p.due <= now)
                .take(MAX_IDS_PER_CALL)
                .map(|p| p.id.clone())
                .collect()
        };
        if due.is_empty() {
            return;
        }
        let outcome = match self.revocation_credential().await {
            Ok(credential) => self.revoke_now(&credential, &due).await,
            Err(err) => Err(err),
        };
        let failed = match outcome {
            Ok(failed) => failed,
            Err(_err) => {
                event!(warn, error = %_err, count = due.len(), "could not revoke superseded tokens; will retry");
                due.clone()
            }
        };
        let mut ledger = self.ledger();
        let first_retry = self.config.revoke_retry;
        let mut confirmed = 0u64;
        ledger.pending.retain_mut(|p| {
            if !due.contains(&p.id) {
                return true;
            }
            if !failed.contains(&p.id) {
                confirmed += 1;
                return false;
            }
            p.attempts = p.attempts.saturating_add(1);
            let wait = first_retry
                .saturating_mul(1 << p.attempts.saturating_sub(1).min(16))
                .min(MAX_RETRY);
            p.due = now + wait;
            true
        });
        ledger.stats.revoked += confirmed;
        ledger.stats.revocation_failures += failed.len() as u64;
        if confirmed > 0 {
            event!(
                info,
                count = confirmed,
                "revoked superseded vault access tokens"
            );
        }
    }

    /// The credential revocations are made with: the bootstrap one, or in a sandbox the newest
    /// token issued there.
    pub(super) async fn revocation_credential(&self) -> Result<Credential, IssuerError> {
        if self.config.sandbox.is_some() {
            return self.newest_token().map(Credential::Token).ok_or_else(|| {
                IssuerError::new(
                    IssuerErrorKind::BadCredential,
                    "no token for the sandbox to revoke with",
                )
            });
        }
        self.credentials.get(&self.config, &self.http).await
    }
}

/// The revocation task: sleeps until the next revocation is due (or until woken), then revokes.
async fn revoke_when_due(core: Arc<Core>) {
    loop {
        let notified = core.wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let next = {
            let ledger = core.ledger();
            if ledger.shut_down {
                return;
            }
            ledger.pending.iter().map(|p: &Pending| p.due).min()
        };
        match next {
            Some(at) if at <= Instant::now() => core.revoke_due().await,
            Some(at) => {
                let _ = tokio::time::timeout_at(at, notified).await;
            }
            None => notified.await,
        }
    }
}

/// `DELETE /vobjects/api_access_token__sys` with `[{"id":…},…]`; the ids not confirmed.
async fn revoke_ids(
    http: &Http,
    url: &str,
    auth: Auth<'_>,
    ids: &[String],
) -> Result<Vec<String>, IssuerError> {
    let body: Vec<serde_json::Value> = ids
        .iter()
        .map(|id| serde_json::json!({ "id": id }))
        .collect();
    let body = bytes::Bytes::from(serde_json::Value::from(body).to_string());
    let answer = http
        .call(Method::DELETE, url, auth, Some(("application/json", body)))
        .await?;
    if !answer.is_success() {
        let (error_type, message) = answer.error();
        return Err(IssuerError::from_vault(
            IssuerErrorKind::Transport,
            "Vault refused the revocation",
            error_type,
            message,
        ));
    }
    let results = answer.json["data"].as_array().cloned().unwrap_or_default();
    let failed = ids
        .iter()
        .filter(|id| {
            let result = results
                .iter()
                .find(|r| r["id"].as_str() == Some(id.as_str()));
            match result {
                Some(result) if result["responseStatus"] == "SUCCESS" => false,
                // Unknown to Vault: deleted already, or expired.
                Some(result) => result["errors"][0]["type"] != "INVALID_DATA",
                None => true,
            }
        })
        .cloned()
        .collect();
    Ok(failed)
}
