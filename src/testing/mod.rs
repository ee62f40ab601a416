//! A Veeva Vault stand-in for tests and examples.
//!
//! [`VaultStandIn`] is a small HTTP/1 server on `127.0.0.1` (random port) that authenticates
//! requests the way Veeva Vault does:
//!
//! * the credential is `Authorization: Bearer <token or session id>` (a raw one without
//!   `Bearer ` is accepted too);
//! * a missing, unknown, revoked or expired credential is answered with **HTTP 200**,
//!   `X-VaultAPI-Status: FAILURE` and the body
//!   `{"responseStatus":"FAILURE","errors":[{"type":"INVALID_SESSION_ID","message":"Invalid or expired session ID."}]}`
//!   (or HTTP 401 with the same body, see [`VaultStandIn::set_unauthorized_mode`]);
//! * every answer carries `Content-Type: application/json;charset=UTF-8`, `X-VaultAPI-Status`,
//!   `X-VaultAPI-ExecutionId`, a `Date` from the stand-in's clock (and echoes
//!   `X-VaultAPI-ReferenceId` when the request has one), except redirects (see below).
//!
//! It has users (one, `integration@example.com`, to begin with; more with
//! [`VaultStandIn::add_user`]), each holding at most 25 active tokens of their own and logging in
//! with a password. Endpoints, under `/api/{version}` for any version string such as `v26.2`:
//!
//! | method and path | behaviour |
//! |---|---|
//! | `POST /auth` (no credential) | logs in (`username`, `password`, optional `vaultDNS`): a session with an idle timeout, or `AUTHENTICATION_FAILED`; per-minute login limit (`API_LIMIT_EXCEEDED`); authentication defaulting to the user's other Vault |
//! | `POST /auth/oauth/session/{profile_id}` (no `/api/{version}`) | exchanges an identity provider's access token (see [`VaultStandIn::accept_oauth`]) for a session, as `/auth` |
//! | `DELETE /session` | ends the caller's session |
//! | `POST /objects/users/me/api_access_token__sys` | creates a token (`name__v` required, at most 128 characters; `expiry_date__v` optional, honoured; form or JSON body); at most 25 active tokens per user |
//! | `POST /objects/sandbox/{name}/users/me/api_access_token__sys` | creates the token in a sandbox (another stand-in, see [`VaultStandIn::add_sandbox`]) |
//! | `DELETE /vobjects/api_access_token__sys` | deletes tokens by record id (JSON `[{"id":"…"}]` or CSV with an `id` column, at most 500; one's own, or anyone's for an admin), answering per record; `POST …?_method=DELETE` too |
//! | `GET /vobjects/api_access_token__sys/{id}` | token metadata, never the token value |
//! | `GET /objects/users/me` | the caller |
//! | `POST /query` | VQL (`q` in a form body): on `api_access_token__sys`, fields `id`, `name__v`, `status__v` (a picklist, as an array by default), `user__sys`, `expiry_date__sys`, `last_used_date__sys`, `WHERE` with `=`, `!=`, `LIKE 'x%'` and `AND`; the caller's own tokens (an admin's: everyone's); other objects give an empty result |
//! | `GET /objects/documents` | a small fixed list of documents |
//! | `POST /keep-alive` | SUCCESS |
//! | `GET /api/` (no version, no credential needed) | map of API versions to URLs |
//!
//! Any other method and path is answered with HTTP 404 and a `MALFORMED_URL` FAILURE body.
//!
//! [`VaultStandIn::redirect`] makes paths answer with a redirection instead (`3xx` and a
//! `Location` header, whatever the credential), to test what a client stack does with the
//! credential when it follows a redirect, to the same Vault or to another origin.
//!
//! Time: the stand-in's clock ([`VaultStandIn::now`]) starts at the real time and moves with
//! [`tokio::time::Instant`], plus an offset ([`VaultStandIn::set_clock_offset`]) to play a Vault
//! whose clock disagrees with the client's. Token expiry, the login limit's minutes and the `Date`
//! header read it; session idle timeouts are measured on Tokio's clock. Serving requests sets no
//! timers (hyper's header-read timeout is off), so tests can run with paused time
//! (`#[tokio::test(start_paused = true)]`) and drive a simulated week with `tokio::time::advance`
//! (Tokio's `test-util` feature).
//!
//! The stand-in keeps everything in memory and never panics on malformed input: bodies that are
//! not UTF-8, not JSON or larger than 1 MiB are answered with a FAILURE body.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{
    HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, DATE, LOCATION, WWW_AUTHENTICATE,
};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;

/// The API version used by [`VaultStandIn::api_url`]. The server accepts any version string.
pub const API_VERSION: &str = "v26.2";

/// The most active tokens one user may hold, as in Vault.
pub const MAX_ACTIVE_TOKENS: usize = 25;

/// The largest request body the stand-in reads (1 MiB); larger bodies get a FAILURE answer.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// How much of an oversized body is still read (and discarded) so the client sees the answer.
const MAX_DRAINED_BYTES: usize = 16 * MAX_BODY_BYTES;

/// Most token ids one revoke request may name, as in Vault.
const MAX_REVOKE_IDS: usize = 500;

/// How long a session may sit unused before the stand-in ends it, unless set with
/// [`VaultStandIn::set_session_idle_timeout`] (Vault's setting ranges from 10 minutes to 8 hours).
pub const DEFAULT_SESSION_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Logins one user may make per minute before `/auth` answers `API_LIMIT_EXCEEDED`, unless set
/// with [`VaultStandIn::set_login_limit`]. Vault's own figure is not documented.
pub const DEFAULT_LOGINS_PER_MINUTE: u32 = 10;

/// The longest `name__v` the stand-in accepts for a token, in characters.
pub const MAX_TOKEN_NAME_CHARS: usize = 128;

/// A session ends after 48 hours however much it is used, as in Vault.
const MAX_SESSION_AGE: Duration = Duration::from_secs(48 * 3600);

/// The user's other Vault, where authentication defaulting lands them.
const OTHER_VAULT_ID: u64 = 99_001;
const OTHER_VAULT_URL: &str = "https://othervault.veevavault.com/api";

const USER_ID: u64 = 61_234;
const USER_NAME: &str = "integration@example.com";
const TOKEN_PREFIX: &str = "veeva-vault-";
const TOKEN_RANDOM_CHARS: usize = 32;
const FIRST_RECORD_ID: u64 = 2_001;
const SUPPORTED_VERSIONS: [&str; 5] = ["v25.1", "v25.2", "v25.3", "v26.1", API_VERSION];

const INVALID_SESSION_ID: &str = "INVALID_SESSION_ID";
const INVALID_SESSION_MESSAGE: &str = "Invalid or expired session ID.";

const JSON_CONTENT_TYPE: HeaderValue = HeaderValue::from_static("application/json;charset=UTF-8");
const STATUS_HEADER: HeaderName = HeaderName::from_static("x-vaultapi-status");
const EXECUTION_ID_HEADER: HeaderName = HeaderName::from_static("x-vaultapi-executionid");
const REFERENCE_ID_HEADER: HeaderName = HeaderName::from_static("x-vaultapi-referenceid");
const USER_ID_HEADER: HeaderName = HeaderName::from_static("x-vaultapi-userid");

mod accounts;
mod clock;
mod dates;
mod endpoints;
mod entropy;
#[cfg(feature = "__fuzz")]
pub(crate) mod fuzz;
mod handle;
mod recorded;
mod redact;
mod reply;
mod routes;
mod server;
mod state;
mod tokens;
mod users;
mod vql;
mod wire;

use clock::*;
use dates::*;
use endpoints::*;
use entropy::*;
pub use handle::{TokenInfo, VaultStandIn};
pub use recorded::{Outcome, RecordedRequest};
use redact::*;
use reply::*;
use routes::*;
use server::*;
use state::*;
pub use users::UserState;
use users::{Session, User, VaultIdentity};
use wire::*;
