//! The tower front door: [`VaultAuthLayer`](crate::VaultAuthLayer), its builder, the
//! [`VaultAuth`](crate::VaultAuth) service and its response future, and the token guard.

pub(crate) mod bounds;
pub(crate) mod builder;
pub(crate) mod door;
pub(crate) mod future;
pub mod guard;
pub(crate) mod layer;
pub(crate) mod service;
