//! Tower middleware that lets any HTTP client talk to Veeva Vault with API access tokens.
//!
//! [`VaultAuthLayer`] wraps any `Service<http::Request<B>>` and attaches
//! `Authorization: Bearer veeva-vault-…` to every request for one Vault. The token comes from a
//! [`TokenSource`](source::TokenSource): a static value, an environment variable, a file that is
//! reloaded when it changes, or your own function that issues tokens before they expire.
//!
//! ```no_run
//! use http_body_util::Empty;
//! use hyper_util::client::legacy::Client;
//! use hyper_util::rt::TokioExecutor;
//! use tower::{Service, ServiceBuilder, ServiceExt};
//! use veeva_vault_auth::{source::EnvToken, VaultAuthLayer};
//!
//! # async fn demo() -> Result<(), veeva_vault_auth::BoxError> {
//! # let connector = hyper_util::client::legacy::connect::HttpConnector::new();
//! // Any connector; use an https one (hyper-rustls, hyper-tls) for a real Vault.
//! let client = Client::builder(TokioExecutor::new()).build::<_, Empty<bytes::Bytes>>(connector);
//! let mut vault = ServiceBuilder::new()
//!     .layer(VaultAuthLayer::new("https://myvault.veevavault.com", EnvToken::new())?)
//!     .service(client);
//!
//! let request = http::Request::get("https://myvault.veevavault.com/api/v26.2/objects/users/me")
//!     .body(Empty::new())?;
//! let response = vault.ready().await?.call(request).await?;
//! println!("{}", response.status());
//! # Ok(())
//! # }
//! ```
//!
//! # What the layer promises
//! - **A cheap request path.** The current token lives in an `arc-swap`; each thread keeps its own
//!   copy of the pre-built, sensitive header value. A request takes no lock and allocates nothing
//!   to get its header: one atomic load, one clone that no other core contends for, one insert.
//!   The copy of the request kept for a replay is written into a per-thread pooled buffer, so it
//!   allocates nothing either in steady state.
//! - **Validated secrets.** A token is checked ([`AccessToken`]) before it is ever used. It is
//!   redacted in `Debug`, wiped from memory on drop, and the header is marked sensitive.
//! - **One Vault.** The token is only ever attached to requests for the Vault the layer was built
//!   for; other requests are refused with [`NotForVault`] (or let through without it).
//! - **Rejections handled once.** Vault answers a bad token with HTTP 200 and
//!   `INVALID_SESSION_ID` in the body (see [`detect`]). The layer then drops that token (only if it
//!   is still the current one), asks the source once for everybody rejected with it, and replays
//!   each request whose body can be reproduced, at most once.
//! - **Rotation ahead of expiry.** A token that carries its expiry is renewed before it expires,
//!   off the request path; a failed renewal never takes away a token that still works.
//!
//! The [`guide`] tells which source to pick, where the layer goes among other middleware, how
//! re-acquisition and replay behave, what happens under concurrency and failure, and how a fleet
//! of processes shares one user's 25 tokens.
//!
//! # Feature flags
//! - `tracing`: events and spans for fetches, renewals, re-acquisitions, replays and failures,
//!   never with a token's value.
//! - `reqwest`: `VaultAuthMiddleware`, the same cache and rules for reqwest-middleware chains.
//! - `test-util`: `testing::VaultStandIn`, a Vault stand-in on loopback for your own tests.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]
#![doc(test(no_crate_inject, attr(deny(warnings), allow(dead_code))))]

#[cfg(feature = "__fuzz")]
#[doc(hidden)]
#[path = "fuzzing.rs"]
pub mod __fuzz;
mod cache;
mod error;
mod exchange;
pub mod guide;
mod handle;
pub mod source;
mod token;
mod tower;
mod trace;
mod vault;

#[doc(inline)]
pub use crate::tower::guard;
#[doc(inline)]
pub use crate::vault::detect;

#[cfg(feature = "reqwest")]
mod reqwest;
#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
pub use crate::reqwest::VaultAuthMiddleware;

#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod testing;

pub use crate::cache::{AuthStatus, Backoff, RefreshPolicy};
pub use crate::error::{ConfigError, NotForVault, TokenUnavailable, UnavailableKind};
pub use crate::exchange::body::ResponseBody;
pub use crate::exchange::{DEFAULT_INSPECT_LIMIT, DEFAULT_INSPECT_WAIT, DEFAULT_REPLAY_LIMIT};
pub use crate::handle::AuthHandle;
pub use crate::token::{AccessToken, InvalidToken, InvalidTokenKind, MAX_TOKEN_LEN, TOKEN_PREFIX};
pub use crate::tower::builder::VaultAuthLayerBuilder;
pub use crate::tower::future::ResponseFuture;
pub use crate::tower::guard::{TokenGuard, TokenGuardLayer};
pub use crate::tower::layer::VaultAuthLayer;
pub use crate::tower::service::VaultAuth;
pub use crate::vault::binding::VAULT_CLIENT_ID;

/// The error type of [`VaultAuth`]: the inner service's errors, or this crate's own
/// ([`TokenUnavailable`], [`NotForVault`]), boxed. Downcast to tell them apart.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
