//! [`VaultAuthLayer`](crate::VaultAuthLayer): the tower layer, bound to one Vault.

use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use super::builder::VaultAuthLayerBuilder;
use super::service::VaultAuth;
use crate::cache::CacheConfig;
use crate::error::ConfigError;
use crate::exchange::{DEFAULT_INSPECT_LIMIT, DEFAULT_INSPECT_WAIT, DEFAULT_REPLAY_LIMIT};
use crate::handle::AuthHandle;
use crate::source::TokenSource;
use crate::vault::binding::Binding;
use crate::vault::detect::VaultRule;

/// A [`Layer`] that attaches `Authorization: Bearer veeva-vault-…` to every request for one Vault.
///
/// - **One Vault only.** The token is attached only to requests whose scheme, host and port are
///   the Vault's. Any other request fails with [`NotForVault`](crate::NotForVault) (or, if
///   [`pass_through_other_hosts`](VaultAuthLayerBuilder::pass_through_other_hosts) is set, goes
///   through without a token). The Vault URL must be `https://`, except for loopback addresses.
/// - **The caller's own header wins.** A request that already has an `Authorization` header is
///   sent as it is, without re-acquisition or replay, unless
///   [`override_authorization`](VaultAuthLayerBuilder::override_authorization) is set. This lets a
///   program make the odd call with another credential through the same stack.
/// - **Rejections are handled.** When Vault rejects the token (see [`detect`](crate::detect)) the
///   layer gets a new one, once for everyone whose request it failed, and replays the request if
///   its body can be reproduced (see [`DEFAULT_REPLAY_LIMIT`](crate::DEFAULT_REPLAY_LIMIT)).
///
/// Clones share one token cache. The layer needs a Tokio runtime for its fetches.
///
/// ```
/// use tower::ServiceBuilder;
/// use veeva_vault_auth::{source::EnvToken, VaultAuthLayer};
///
/// # fn main() -> Result<(), veeva_vault_auth::ConfigError> {
/// let auth = VaultAuthLayer::new("https://myvault.veevavault.com", EnvToken::new())?;
/// let handle = auth.handle();
/// let service = ServiceBuilder::new()
///     .layer(auth)
///     .service(tower::service_fn(|_req: http::Request<String>| async move {
///         Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
///     }));
/// # let _ = (service, handle);
/// # Ok(())
/// # }
/// ```
pub struct VaultAuthLayer<R = VaultRule> {
    pub(crate) binding: Arc<Binding>,
    pub(crate) rule: R,
}

impl<R: Clone> Clone for VaultAuthLayer<R> {
    fn clone(&self) -> Self {
        Self {
            binding: Arc::clone(&self.binding),
            rule: self.rule.clone(),
        }
    }
}

impl<R: fmt::Debug> fmt::Debug for VaultAuthLayer<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultAuthLayer")
            .field("vault", &self.binding.origin.shown)
            .field("rule", &self.rule)
            .finish_non_exhaustive()
    }
}

impl VaultAuthLayer {
    /// A layer for the Vault at `vault_url` (such as `https://myvault.veevavault.com`) with the
    /// default settings.
    pub fn new(vault_url: &str, source: impl TokenSource) -> Result<Self, ConfigError> {
        Self::builder(vault_url, source).build()
    }

    /// Starts configuring a layer for the Vault at `vault_url`.
    pub fn builder(vault_url: &str, source: impl TokenSource) -> VaultAuthLayerBuilder {
        VaultAuthLayerBuilder {
            url: vault_url.to_owned(),
            source: Arc::new(source),
            config: CacheConfig::default(),
            pass_through_other_hosts: false,
            override_authorization: false,
            replay_limit: Some(DEFAULT_REPLAY_LIMIT),
            inspect_limit: DEFAULT_INSPECT_LIMIT,
            inspect_wait: DEFAULT_INSPECT_WAIT,
            client_id: None,
            rule: VaultRule,
        }
    }
}

impl<R> VaultAuthLayer<R> {
    #[cfg_attr(not(feature = "reqwest"), allow(dead_code))]
    pub(crate) fn binding(&self) -> &Arc<Binding> {
        &self.binding
    }

    #[cfg_attr(not(feature = "reqwest"), allow(dead_code))]
    pub(crate) fn rule(&self) -> &R {
        &self.rule
    }

    /// A handle to this layer's token cache: force a refresh, drop the token, read its status.
    pub fn handle(&self) -> AuthHandle {
        AuthHandle {
            cache: Arc::clone(&self.binding.cache),
        }
    }
}

impl<S, R: Clone> Layer<S> for VaultAuthLayer<R> {
    type Service = VaultAuth<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        VaultAuth {
            inner,
            binding: Arc::clone(&self.binding),
            rule: self.rule.clone(),
        }
    }
}
