//! `VaultIssuer` for a sandbox and the sandbox's 25-token cap, over real HTTP against two
//! stand-ins (production and its sandbox) on paused time: the issuer's own stale tokens in the
//! sandbox are listed and revoked there, oldest first; 25 tokens of others are a typed error;
//! before the issuer holds a token in the sandbox, a refusal is final and says why.
#![cfg(feature = "issuer")]

mod common;
mod issuer_common;

use std::time::Duration;

use common::*;
use http::Method;
use issuer_common::*;
use veeva_vault_auth::source::{
    IssuerError, IssuerErrorKind, StaticToken, TokenSource, VaultIssuer,
};
use veeva_vault_auth::testing::{RecordedRequest, VaultStandIn};

const PREFIX: &str = "sandbox-cap";
/// The stand-ins' first user, the bootstrap token's holder (and so the sandbox tokens').
const USER: &str = "integration@example.com";

fn is_query(r: &RecordedRequest) -> bool {
    r.method == Method::POST && r.path.ends_with("/query")
}

struct Pair {
    production: VaultStandIn,
    sandbox: VaultStandIn,
    issuer: VaultIssuer,
}

async fn pair() -> Pair {
    let production = VaultStandIn::start().await.unwrap();
    let sandbox = VaultStandIn::start().await.unwrap();
    production.add_sandbox("uat", &sandbox);
    let bootstrap = production.issue_token();
    let issuer = VaultIssuer::builder(&production.base_url())
        .bootstrap_token(StaticToken::new(&bootstrap).unwrap())
        .sandbox("uat", &sandbox.base_url())
        .name_prefix(PREFIX)
        .lifetime(Duration::from_secs(3600))
        .wall_clock(wall_clock(0))
        .build()
        .unwrap();
    Pair {
        production,
        sandbox,
        issuer,
    }
}

fn typed(err: &veeva_vault_auth::source::SourceError) -> IssuerError {
    IssuerError::from_source(err)
        .expect("the issuer's own error")
        .clone()
}

/// The issuer holds one sandbox token; 23 stale ones of its own (oldest first) and one of
/// another program fill the sandbox's cap. Each issue revokes the oldest of its own, in the
/// sandbox, and succeeds; the current token and the other program's are never touched.
#[tokio::test(start_paused = true)]
async fn a_sandbox_cap_full_of_its_own_stale_tokens_is_cleared_oldest_first() {
    let _clock = hold_clock();
    let Pair {
        production,
        sandbox,
        issuer,
    } = pair().await;
    let first = issuer.fetch().await.unwrap();
    assert!(sandbox.is_active(first.expose_secret()));
    let stale: Vec<String> = (0..23)
        .map(|i| {
            let name = format!("{PREFIX}:old-host:7:2026-01-01T00:{i:02}:00Z");
            sandbox
                .issue_token_for(USER, Some(&name), Some(Duration::from_secs(3600 * (i + 2))))
                .unwrap()
        })
        .collect();
    let other = sandbox
        .issue_token_for(USER, Some("another program"), None)
        .unwrap();
    assert_eq!(sandbox.active_token_count(), 25);
    production.clear_requests();
    sandbox.clear_requests();

    let second = issuer.fetch().await.expect("room was made in the sandbox");
    assert!(sandbox.is_active(second.expose_secret()));
    assert!(!sandbox.is_active(&stale[0]), "the oldest went first");
    assert!(stale[1..].iter().all(|t| sandbox.is_active(t)));
    assert!(
        sandbox.is_active(first.expose_secret()),
        "the current one is never revoked to make room"
    );
    // Now the oldest of its own is the superseded first token (it expires first).
    let third = issuer.fetch().await.expect("room was made again");
    assert!(sandbox.is_active(third.expose_secret()));
    assert!(
        !sandbox.is_active(first.expose_secret()),
        "then the next oldest"
    );
    assert!(sandbox.is_active(second.expose_secret()));
    assert!(stale[1..].iter().all(|t| sandbox.is_active(t)));
    assert!(
        sandbox.is_active(&other),
        "another program's token is untouched"
    );
    assert_eq!(sandbox.active_token_count(), 25);
    // Listed and revoked in the sandbox; production only saw the create calls.
    assert_eq!(count(&sandbox, is_query), 2);
    assert_eq!(count(&sandbox, is_revoke), 2);
    assert_eq!(count(&production, is_query), 0);
    assert_eq!(count(&production, is_revoke), 0);
    assert_eq!(
        count(&production, is_create),
        4,
        "refused twice, issued twice"
    );
    let stats = issuer.stats();
    assert_eq!((stats.issued, stats.cap_revocations), (3, 2));
    issuer.shutdown().await.unwrap();
    assert_eq!(
        own_active(&sandbox, PREFIX),
        22,
        "only the stale ones are left"
    );
}

/// The issuer's current sandbox token and 24 of other programs fill the sandbox's cap: the typed
/// error that says so, and no token touched.
#[tokio::test(start_paused = true)]
async fn a_sandbox_cap_full_of_other_tokens_is_a_typed_error() {
    let _clock = hold_clock();
    let Pair {
        production,
        sandbox,
        issuer,
    } = pair().await;
    let first = issuer.fetch().await.unwrap();
    let others: Vec<String> = (0..24)
        .map(|i| {
            sandbox
                .issue_token_for(USER, Some(&format!("other-app {i}")), None)
                .unwrap()
        })
        .collect();
    let err = issuer.fetch().await.unwrap_err();
    let err = typed(&err);
    assert_eq!(err.kind(), IssuerErrorKind::CapFullOfOthers, "{err}");
    assert!(err.to_string().contains("25 active tokens"), "{err}");
    assert!(err.is_retryable());
    assert_eq!(count(&sandbox, is_query), 1);
    assert_eq!(
        count(&sandbox, is_revoke),
        0,
        "no token of anyone is touched"
    );
    assert_eq!(count(&production, is_revoke), 0);
    assert!(others.iter().all(|t| sandbox.is_active(t)));
    assert!(sandbox.is_active(first.expose_secret()));
    assert_eq!(issuer.stats().cap_revocations, 0);
}

/// At the first issue the issuer holds no token in the sandbox to list with: a refused create
/// is final ([`CreateRefused`]), carries Vault's type and says why the cap was not looked at;
/// nothing is listed or revoked anywhere, and no production credential reaches the sandbox.
#[tokio::test(start_paused = true)]
async fn before_its_first_sandbox_token_a_refusal_is_final_and_says_why() {
    let _clock = hold_clock();
    let Pair {
        production,
        sandbox,
        issuer,
    } = pair().await;
    for i in 0..25 {
        let name = format!("{PREFIX}:old-host:7:2026-01-01T00:{i:02}:00Z");
        sandbox
            .issue_token_for(USER, Some(&name), Some(Duration::from_secs(7200)))
            .unwrap();
    }
    let err = issuer.fetch().await.unwrap_err();
    let err = typed(&err);
    assert_eq!(err.kind(), IssuerErrorKind::CreateRefused, "{err}");
    assert_eq!(err.vault_error_type(), Some("OPERATION_NOT_ALLOWED"));
    assert!(
        err.to_string().contains("holds no token there yet"),
        "{err}"
    );
    assert!(!err.is_retryable());
    assert!(sandbox.requests().is_empty(), "nothing sent to the sandbox");
    assert_eq!(count(&production, is_query), 0);
    assert_eq!(own_active(&sandbox, PREFIX), 25);
}
