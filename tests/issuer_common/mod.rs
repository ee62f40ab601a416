//! Helpers for the issuer's tests: a wall clock that paused Tokio time drives, and counts of what
//! the stand-in received.
#![allow(dead_code, unreachable_pub)]

pub mod tls;

use std::time::{Duration, SystemTime};

use http::Method;
use veeva_vault_auth::testing::{RecordedRequest, VaultStandIn};

/// The issuer's wall clock for tests: the real time at the start, moved on by Tokio's (paused)
/// clock, `offset_secs` off (negative: behind).
pub fn wall_clock(offset_secs: i64) -> impl Fn() -> SystemTime + Send + Sync + 'static {
    let start = SystemTime::now();
    let started = tokio::time::Instant::now();
    move || {
        let now = start + started.elapsed();
        let by = Duration::from_secs(offset_secs.unsigned_abs());
        if offset_secs >= 0 {
            now + by
        } else {
            now - by
        }
    }
}

/// The call made only to read Vault's `Date`: `GET /api/`.
pub fn is_date_probe(r: &RecordedRequest) -> bool {
    r.method == Method::GET && r.path == "/api/"
}

pub fn is_create(r: &RecordedRequest) -> bool {
    r.method == Method::POST && r.path.ends_with("/users/me/api_access_token__sys")
}

pub fn is_revoke(r: &RecordedRequest) -> bool {
    r.path.ends_with("/vobjects/api_access_token__sys")
        && (r.method == Method::DELETE || r.query.as_deref() == Some("_method=DELETE"))
}

pub fn is_login(r: &RecordedRequest) -> bool {
    r.method == Method::POST && r.path.ends_with("/auth")
}

pub fn is_end_session(r: &RecordedRequest) -> bool {
    r.method == Method::DELETE && r.path.ends_with("/session")
}

pub fn count(vault: &VaultStandIn, what: fn(&RecordedRequest) -> bool) -> usize {
    vault.requests().iter().filter(|r| what(r)).count()
}

/// Active tokens whose name starts with `prefix:`.
pub fn own_active(vault: &VaultStandIn, prefix: &str) -> usize {
    let own = format!("{prefix}:");
    vault
        .tokens()
        .iter()
        .filter(|t| t.active && t.name.starts_with(&own))
        .count()
}

/// Every credential the stand-in was sent (tokens and session ids), for leak checks.
pub fn credentials_seen(vault: &VaultStandIn) -> Vec<String> {
    let mut seen: Vec<String> = vault
        .requests()
        .iter()
        .filter_map(|r| r.headers.get("authorization"))
        .filter_map(|v| v.to_str().ok())
        .map(|v| v.trim_start_matches("Bearer ").to_owned())
        .collect();
    seen.sort();
    seen.dedup();
    seen
}

/// Lets the layer behind `handle` finish the fetch it has under way (a renewal the clock just
/// made due, say), so that the next advance of the clock cannot time it out half-way.
pub async fn settle_layer(handle: &veeva_vault_auth::AuthHandle) {
    crate::common::settle().await;
    crate::common::eventually("the fetch under way to end", || !handle.status().fetching).await;
    crate::common::settle().await;
}
