//! [`AuthHandle`](crate::AuthHandle): the token cache seen from outside the request path.

use std::fmt;
use std::sync::Arc;

use crate::cache::{AuthStatus, Cache, Outcome};
use crate::error::TokenUnavailable;

/// Controls a layer's token cache from outside the request path, and reports on it.
///
/// Every clone of the layer and its services shares one cache; so do all handles.
///
/// ```
/// # async fn demo(layer: veeva_vault_auth::VaultAuthLayer) {
/// let handle = layer.handle();
/// let status = handle.status();
/// println!("token generation {:?}, expires {:?}", status.generation, status.expires_at);
/// handle.force_refresh().await.expect("the source answered");
/// # }
/// ```
#[derive(Clone)]
pub struct AuthHandle {
    pub(crate) cache: Arc<Cache>,
}

impl fmt::Debug for AuthHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthHandle")
            .field("cache", &self.cache)
            .finish()
    }
}

impl AuthHandle {
    /// Asks the source for a token now, even while backing off, and waits for the answer. The
    /// current token keeps being served meanwhile; on failure it stays in place.
    pub async fn force_refresh(&self) -> Result<(), TokenUnavailable> {
        match self.cache.force_refresh().await {
            Outcome::Failed(err) => Err(err),
            Outcome::Installed(_) | Outcome::Unchanged => Ok(()),
        }
    }

    /// Drops the current token: the next request waits for a fresh one.
    pub fn invalidate(&self) {
        self.cache.invalidate();
    }

    /// A snapshot of the cache's state and counters.
    pub fn status(&self) -> AuthStatus {
        self.cache.status()
    }
}
