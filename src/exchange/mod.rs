//! The exchange of one request with Vault, shared by both front doors: the copy kept for a
//! replay, the inspection of an answer, and the body handed back.

use std::time::Duration;

pub(crate) mod body;
pub(crate) mod flow;
pub(crate) mod inspect;
pub(crate) mod replay;

/// The largest request body replayed after a rejection unless configured: 64 KiB.
pub const DEFAULT_REPLAY_LIMIT: u64 = 64 * 1024;

/// The largest response body read to look for a rejection unless configured: 64 KiB. Vault's
/// error bodies are a few hundred bytes.
pub const DEFAULT_INSPECT_LIMIT: usize = 64 * 1024;

/// How long a response head waits for its body to be judged unless configured: 5 s. Vault writes
/// its error bodies, a few hundred bytes, at once with the head; a body that takes longer is
/// handed over unjudged.
pub const DEFAULT_INSPECT_WAIT: Duration = Duration::from_secs(5);
