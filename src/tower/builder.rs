//! [`VaultAuthLayerBuilder`](crate::VaultAuthLayerBuilder): how a layer is configured.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;

use super::layer::VaultAuthLayer;
use crate::cache::{Backoff, Cache, CacheConfig, RefreshPolicy};
use crate::error::ConfigError;
use crate::source::TokenSource;
use crate::vault::binding::{encode_client_id, Binding, Judging};
use crate::vault::detect::{FailureRule, VaultRule};
use crate::vault::origin::VaultOrigin;

/// Configures a [`VaultAuthLayer`](crate::VaultAuthLayer).
///
/// ```
/// use std::time::Duration;
/// use veeva_vault_auth::{source::StaticToken, VaultAuthLayer};
///
/// let layer = VaultAuthLayer::builder(
///     "https://myvault.veevavault.com",
///     StaticToken::new("veeva-vault-abc").unwrap(),
/// )
/// .fetch_timeout(Duration::from_secs(5))
/// .max_replay_body(16 * 1024)
/// .build()
/// .unwrap();
/// # let _ = layer;
/// ```
pub struct VaultAuthLayerBuilder<R = VaultRule> {
    pub(crate) url: String,
    pub(crate) source: Arc<dyn TokenSource>,
    pub(crate) config: CacheConfig,
    pub(crate) pass_through_other_hosts: bool,
    pub(crate) override_authorization: bool,
    pub(crate) replay_limit: Option<u64>,
    pub(crate) inspect_limit: usize,
    pub(crate) inspect_wait: Duration,
    pub(crate) client_id: Option<Result<HeaderValue, ConfigError>>,
    pub(crate) rule: R,
}

impl<R: fmt::Debug> fmt::Debug for VaultAuthLayerBuilder<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultAuthLayerBuilder")
            .field("url", &self.url)
            .field("config", &self.config)
            .field("rule", &self.rule)
            .finish_non_exhaustive()
    }
}

impl<R: FailureRule> VaultAuthLayerBuilder<R> {
    /// How long one fetch from the source may take before it fails (30 s by default). Requests
    /// waiting for it then fail with [`TokenUnavailable`](crate::TokenUnavailable).
    #[must_use]
    pub fn fetch_timeout(mut self, timeout: Duration) -> Self {
        self.config.fetch_timeout = timeout;
        self
    }

    /// When to renew tokens that carry an expiry.
    #[must_use]
    pub fn refresh_policy(mut self, policy: RefreshPolicy) -> Self {
        self.config.refresh = policy;
        self
    }

    /// How long to wait before asking a failing source again.
    #[must_use]
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.config.backoff = backoff;
        self
    }

    /// Lets requests for other hosts through without a token, instead of failing them with
    /// [`NotForVault`](crate::NotForVault). Off by default.
    #[must_use]
    pub fn pass_through_other_hosts(mut self, yes: bool) -> Self {
        self.pass_through_other_hosts = yes;
        self
    }

    /// Replaces an `Authorization` header the caller set. Off by default: such requests are sent
    /// as they are.
    #[must_use]
    pub fn override_authorization(mut self, yes: bool) -> Self {
        self.override_authorization = yes;
        self
    }

    /// Replays rejected requests whose body is at most `bytes` long (64 KiB by default).
    #[must_use]
    pub fn max_replay_body(mut self, bytes: u64) -> Self {
        self.replay_limit = Some(bytes);
        self
    }

    /// Never replays: a rejected request reaches the caller and the next request carries the new
    /// token. Saves the copy of each request that replay needs (its head and in-memory body,
    /// written into a pooled per-thread buffer: no allocation, a few hundred instructions).
    #[must_use]
    pub fn no_replay(mut self) -> Self {
        self.replay_limit = None;
        self
    }

    /// Reads at most `bytes` of a response body when looking for a rejection (64 KiB by default).
    /// Larger bodies are passed through as they are. A bound above 4 GiB counts as 4 GiB.
    #[must_use]
    pub fn max_inspect_body(mut self, bytes: usize) -> Self {
        self.inspect_limit = bytes;
        self
    }

    /// How long a response head may wait for its body to be judged (5 s by default). The layer
    /// hands the response over as soon as the body ends, the rule decides from its first bytes,
    /// the size bound is reached, or this much time has passed since the head arrived; then the
    /// caller gets the bytes read followed by the rest of the body, and a response not judged in
    /// time is not taken for a rejection. `Duration::ZERO` judges only what arrived with the head.
    #[must_use]
    pub fn max_inspect_wait(mut self, wait: Duration) -> Self {
        self.inspect_wait = wait;
        self
    }

    /// Sends `X-VaultAPI-ClientID: {client_id}` with every request to the Vault, identifying your
    /// program in Vault's logs (Veeva recommends `{company}-{organization}-{team}-{server|client}-{program}`).
    ///
    /// Vault allows at most 100 characters of `A-Z a-z 0-9 . _ -`; anything else makes
    /// [`build`](Self::build) fail with [`ConfigError::InvalidClientId`]. The value is encoded
    /// once. A request that already carries the header keeps its own.
    ///
    /// ```
    /// use veeva_vault_auth::{source::EnvToken, ConfigError, VaultAuthLayer};
    ///
    /// let ok = VaultAuthLayer::builder("https://myvault.veevavault.com", EnvToken::new())
    ///     .client_id("acme-clinical-data-server-loader")
    ///     .build();
    /// assert!(ok.is_ok());
    ///
    /// let bad = VaultAuthLayer::builder("https://myvault.veevavault.com", EnvToken::new())
    ///     .client_id("acme loader/1.0")
    ///     .build();
    /// assert!(matches!(bad, Err(ConfigError::InvalidClientId { .. })));
    /// ```
    #[must_use]
    pub fn client_id(mut self, client_id: &str) -> Self {
        self.client_id = Some(encode_client_id(client_id));
        self
    }

    /// Uses `rule` to recognise rejections instead of [`VaultRule`](crate::detect::VaultRule).
    pub fn failure_rule<R2: FailureRule>(self, rule: R2) -> VaultAuthLayerBuilder<R2> {
        VaultAuthLayerBuilder {
            url: self.url,
            source: self.source,
            config: self.config,
            pass_through_other_hosts: self.pass_through_other_hosts,
            override_authorization: self.override_authorization,
            replay_limit: self.replay_limit,
            inspect_limit: self.inspect_limit,
            inspect_wait: self.inspect_wait,
            client_id: self.client_id,
            rule,
        }
    }

    /// Builds the layer. Fails if the Vault URL cannot be parsed or is not `https://` (plain
    /// `http://` is allowed only for loopback addresses).
    pub fn build(self) -> Result<VaultAuthLayer<R>, ConfigError> {
        let origin = VaultOrigin::parse(&self.url)?;
        let client_id = self.client_id.transpose()?;
        Ok(VaultAuthLayer {
            binding: Arc::new(Binding {
                cache: Cache::new(self.source, self.config),
                origin,
                pass_through_other_hosts: self.pass_through_other_hosts,
                override_authorization: self.override_authorization,
                replay_limit: self.replay_limit,
                inspect_limit: self.inspect_limit,
                inspect_wait: self.inspect_wait,
                judging: Judging::new(self.inspect_limit, self.inspect_wait),
                client_id,
            }),
            rule: self.rule,
        })
    }
}
