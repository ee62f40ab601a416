//! [`VaultIssuer`]: issuing, renewing and revoking tokens through Vault's own API; its guide is
//! `guide.md`, shown on [`VaultIssuer`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use secrecy::SecretString;
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::{BoxFuture, SourceError, TokenSource};
use crate::trace::event;
use crate::AccessToken;

mod client;
mod config;
mod credential;
mod dates;
mod error;
mod fleet;
mod issue;
mod revoke;
#[cfg(feature = "rustls")]
mod tls;
mod transport;

pub use config::{
    IssuerConfigError, VaultIssuerBuilder, DEFAULT_GRACE_PERIOD, DEFAULT_LIFETIME,
    DEFAULT_LOGIN_URL, DEFAULT_NAME_PREFIX,
};
pub use error::{IssuerError, IssuerErrorKind};

/// The most active tokens one user may hold, as in Vault.
pub const MAX_ACTIVE_TOKENS: usize = 25;

/// The user's function returning their identity provider's access token.
pub(super) type IdentityToken = Arc<
    dyn Fn() -> Pin<Box<dyn Future<Output = Result<SecretString, SourceError>> + Send>>
        + Send
        + Sync,
>;

/// Issues, renews and revokes Vault API access tokens through Vault's own API; a
/// [`TokenSource`] for [`VaultAuthLayer`](crate::VaultAuthLayer).
///
/// Each [`fetch`](TokenSource::fetch) issues a new token (the layer fetches at the first
/// request, ahead of expiry and after a rejection) and supersedes the previous one. Clones share
/// one issuer. [`shutdown`](Self::shutdown) revokes what the issuer holds and ends its session;
/// when the last clone is dropped inside a Tokio runtime the same is done in the background,
/// best effort.
///
/// `Debug` shows counts, never a token, session id or password.
///
/// ```
/// # #[cfg(feature = "test-util")]
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// use veeva_vault_auth::source::{StaticToken, TokenSource, VaultIssuer};
/// use veeva_vault_auth::testing::VaultStandIn;
///
/// let vault = VaultStandIn::start().await?;
/// let bootstrap = StaticToken::new(vault.issue_token())?;
/// let issuer = VaultIssuer::builder(&vault.base_url())
///     .bootstrap_token(bootstrap)
///     .name_prefix("docs-example")
///     .build()?;
/// let token = issuer.fetch().await?; // what the layer does when it needs a token
/// assert!(vault.is_active(token.expose_secret()));
/// assert!(token.expires_at().is_some());
/// issuer.shutdown().await?;
/// assert!(!vault.is_active(token.expose_secret()));
/// # Ok(())
/// # }
/// # #[cfg(not(feature = "test-util"))]
/// # fn main() {}
/// ```
///
#[doc = include_str!("guide.md")]
#[derive(Clone)]
pub struct VaultIssuer {
    core: Arc<Core>,
    _guard: Arc<Guard>,
}

/// What the issuer has done so far, from [`VaultIssuer::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct IssuerStats {
    /// Tokens issued.
    pub issued: u64,
    /// Tokens revoked (confirmed by Vault, or already gone), superseded ones and at shutdown.
    pub revoked: u64,
    /// Of those, tokens of the issuer's own revoked to make room under the cap.
    pub cap_revocations: u64,
    /// Revocation attempts that failed (each is retried).
    pub revocation_failures: u64,
    /// Superseded tokens waiting for revocation now.
    pub pending_revocations: usize,
    /// Logins made (password or OAuth).
    pub logins: u64,
    /// Fleet file writes that failed.
    pub fleet_write_failures: u64,
}

pub(super) struct Core {
    config: config::Config,
    http: client::Http,
    credentials: credential::Credentials,
    ledger: Mutex<Ledger>,
    wake: Notify,
    host: String,
}

#[derive(Default)]
pub(super) struct Ledger {
    current: Option<Held>,
    /// The value of the newest token, kept only in sandbox mode (it revokes its predecessors).
    newest: Option<AccessToken>,
    pending: Vec<Pending>,
    stats: IssuerStats,
    shut_down: bool,
    worker: Option<AbortHandle>,
}

/// The token in use.
pub(super) struct Held {
    id: String,
    expires: Instant,
}

/// A superseded token waiting for revocation.
pub(super) struct Pending {
    id: String,
    due: Instant,
    attempts: u32,
    expires: Instant,
}

/// Dropped with the last clone of a [`VaultIssuer`]: shuts the issuer down, best effort.
struct Guard(Arc<Core>);

impl Drop for Guard {
    fn drop(&mut self) {
        let core = Arc::clone(&self.0);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(_err) = core.shutdown().await {
                        event!(warn, error = %_err, "the dropped issuer could not clean up");
                    }
                });
            }
            Err(_) => {
                let mut ledger = core.ledger();
                ledger.shut_down = true;
                if let Some(worker) = ledger.worker.take() {
                    worker.abort();
                }
            }
        }
    }
}

impl VaultIssuer {
    /// Starts building an issuer for the Vault at `vault_url` (`https://myvault.veevavault.com`;
    /// plain `http://` only to a loopback address, such as the stand-in).
    pub fn builder(vault_url: &str) -> VaultIssuerBuilder {
        VaultIssuerBuilder::new(vault_url)
    }

    fn from_config(config: config::Config) -> Self {
        let transport = match &config.transport {
            Some(transport) => transport.clone(),
            None => transport::Transport::hyper(config.tls.clone()),
        };
        let http = client::Http::new(
            transport,
            config.timeout,
            config.client_id.clone(),
            Arc::clone(&config.clock),
        );
        let core = Arc::new(Core {
            config,
            http,
            credentials: credential::Credentials::new(),
            ledger: Mutex::new(Ledger::default()),
            wake: Notify::new(),
            host: host_name(),
        });
        Self {
            _guard: Arc::new(Guard(Arc::clone(&core))),
            core,
        }
    }

    /// Revokes the current token and every superseded one now, and ends the session (if the
    /// bootstrap is a password or OAuth). Later fetches fail with
    /// [`ShutDown`](IssuerErrorKind::ShutDown). Calling it again retries what failed.
    ///
    /// # Errors
    ///
    /// When Vault could not be reached or did not confirm every revocation; the tokens it did not
    /// confirm are kept, for a later call.
    pub async fn shutdown(&self) -> Result<(), IssuerError> {
        self.core.shutdown().await
    }

    /// What the issuer has done so far.
    pub fn stats(&self) -> IssuerStats {
        let ledger = self.core.ledger();
        IssuerStats {
            pending_revocations: ledger.pending.len(),
            logins: self.core.credentials.login_count(),
            ..ledger.stats
        }
    }

    /// The skew between Vault's clock and the issuer's wall clock, in seconds (positive: Vault is
    /// ahead), as the last `Date` header showed; `None` before Vault first answered.
    pub fn clock_skew(&self) -> Option<i64> {
        self.core.http.skew()
    }

    /// The `name__v` the next token would get if issued at `at` (on Vault's clock).
    pub fn token_name_at(&self, at: std::time::SystemTime) -> String {
        self.core.token_name(at)
    }
}

impl fmt::Debug for VaultIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultIssuer")
            .field("vault", &self.core.config.base)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl TokenSource for VaultIssuer {
    fn fetch(&self) -> BoxFuture<'_, Result<AccessToken, SourceError>> {
        Box::pin(async move { self.core.issue().await.map_err(SourceError::from) })
    }
}

impl Core {
    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn newest_token(&self) -> Option<AccessToken> {
        self.ledger().newest.clone()
    }

    async fn shutdown(&self) -> Result<(), IssuerError> {
        let ids: Vec<String> = {
            let mut ledger = self.ledger();
            ledger.shut_down = true;
            let now = Instant::now();
            let mut ids: Vec<String> = ledger
                .pending
                .iter()
                .filter(|p| p.expires > now)
                .map(|p| p.id.clone())
                .collect();
            if let Some(current) = ledger.current.take() {
                if current.expires > now {
                    ids.push(current.id.clone());
                }
                ledger.pending.push(Pending {
                    id: current.id,
                    due: now,
                    attempts: 0,
                    expires: current.expires,
                });
            }
            ids
        };
        self.wake.notify_one();
        let mut result = Ok(());
        if !ids.is_empty() {
            let outcome = match self.revocation_credential().await {
                Ok(credential) => self.revoke_now(&credential, &ids).await,
                Err(err) => Err(err),
            };
            let failed = match outcome {
                Ok(failed) => failed,
                Err(err) => {
                    result = Err(err);
                    ids.clone()
                }
            };
            let mut ledger = self.ledger();
            ledger.pending.retain(|p| failed.contains(&p.id));
            let confirmed = ids.len() - failed.len();
            ledger.stats.revoked += confirmed as u64;
            ledger.stats.revocation_failures += failed.len() as u64;
            event!(
                info,
                revoked = confirmed,
                failed = failed.len(),
                "the issuer shut down"
            );
            if result.is_ok() && !failed.is_empty() {
                result = Err(IssuerError::new(
                    IssuerErrorKind::Transport,
                    format!("Vault did not confirm {} revocations", failed.len()),
                ));
            }
        }
        self.credentials.end_session(&self.config, &self.http).await;
        result
    }
}

/// The host name for token names: the first of `HOSTNAME` and `/etc/hostname` that still holds
/// something once cut to visible ASCII without `:`, else `host`.
fn host_name() -> String {
    let clean = |name: String| -> Option<String> {
        let name: String = name
            .chars()
            .filter(|c| c.is_ascii_graphic() && *c != ':')
            .collect();
        (!name.is_empty()).then_some(name)
    };
    std::env::var("HOSTNAME")
        .ok()
        .and_then(clean)
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .and_then(clean)
        })
        .unwrap_or_else(|| "host".to_owned())
}

/// Logins counted without the async lock.
#[derive(Debug, Default)]
pub(super) struct Counter(AtomicU64);

impl Counter {
    pub(super) fn add(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}
