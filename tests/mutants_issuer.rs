//! Tests that kill mutants of `src/source/issuer/` that the rest of the suite let live
//! (scripts/mutants.sh; mutants-report.md names each): the edges of the builder's checks, what
//! the builder shows in `Debug`, and the defaults as Vault sees them, over real HTTP to the
//! Vault stand-in on paused time.
#![cfg(feature = "issuer")]

mod common;
mod issuer_common;

use std::time::{Duration, SystemTime};

use common::*;
use issuer_common::*;
use veeva_vault_auth::source::{StaticToken, TokenSource, VaultIssuer, VaultIssuerBuilder};
use veeva_vault_auth::testing::VaultStandIn;

const TEN_YEARS: Duration = Duration::from_secs(10 * 366 * 24 * 3600);
const BOOTSTRAP: &str = "veeva-vault-bootstrapNeverShown";

fn builder() -> VaultIssuerBuilder {
    VaultIssuer::builder("http://127.0.0.1:9")
        .bootstrap_token(StaticToken::new(BOOTSTRAP).unwrap())
        .name_prefix("edge")
}

fn refusal(builder: VaultIssuerBuilder) -> String {
    match builder.build() {
        Ok(_) => panic!("the settings were accepted"),
        Err(err) => err.to_string(),
    }
}

#[test]
fn a_lifetime_of_two_minutes_is_the_shortest_taken() {
    assert!(builder().lifetime(Duration::from_secs(120)).build().is_ok());
    let said = refusal(builder().lifetime(Duration::from_secs(119)));
    assert!(said.contains("at least 2 minutes"), "{said}");
}

#[test]
fn a_lifetime_and_a_grace_period_of_ten_years_are_the_longest_taken() {
    // Five years: far under the cap, far over what a slip in computing it would allow.
    let five_years = Duration::from_secs(5 * 365 * 24 * 3600);
    assert!(builder().lifetime(five_years).build().is_ok());
    assert!(builder().grace_period(five_years).build().is_ok());
    assert!(builder().lifetime(TEN_YEARS).build().is_ok());
    assert!(builder().grace_period(TEN_YEARS).build().is_ok());
    let over = TEN_YEARS + Duration::from_secs(1);
    let said = refusal(builder().lifetime(over));
    assert!(said.contains("lifetime must be at most 10 years"), "{said}");
    let said = refusal(builder().grace_period(over));
    assert!(
        said.contains("grace period must be at most 10 years"),
        "{said}"
    );
}

#[test]
fn a_name_prefix_may_hold_spaces_but_no_control_characters() {
    assert!(builder().name_prefix("nightly sync job").build().is_ok());
    for bad in ["tab\there", "new\nline", "caf\u{e9}", ""] {
        let said = refusal(builder().name_prefix(bad));
        assert!(said.contains("1 to 40 visible ASCII"), "{bad:?}: {said}");
    }
    assert!(builder().name_prefix(&"p".repeat(40)).build().is_ok());
    assert!(builder().name_prefix(&"p".repeat(41)).build().is_err());
}

#[test]
fn the_builder_shows_its_settings_but_no_credential() {
    let shown = format!(
        "{:?}",
        builder()
            .lifetime(Duration::from_secs(7200))
            .grace_period(Duration::from_secs(30))
    );
    assert!(
        shown.starts_with("VaultIssuerBuilder { url: \"http://127.0.0.1:9\""),
        "{shown}"
    );
    for part in [
        "name_prefix: \"edge\"",
        "lifetime: 7200s",
        "grace: 30s",
        "..",
    ] {
        assert!(shown.contains(part), "{part} in {shown}");
    }
    assert!(!shown.contains("bootstrapNeverShown"), "{shown}");
}

/// Unless told otherwise, an issued token expires 24 hours after it was issued (by Vault's
/// clock), and is named with the default prefix.
#[tokio::test(start_paused = true)]
async fn an_issued_token_lives_a_day_by_default() {
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    let bootstrap = vault.issue_token();
    let issuer = VaultIssuer::builder(&vault.base_url())
        .bootstrap_token(StaticToken::new(&bootstrap).unwrap())
        .wall_clock(wall_clock(0))
        .build()
        .unwrap();
    let before = SystemTime::now();
    let token = issuer.fetch().await.unwrap();
    let info = vault
        .tokens()
        .into_iter()
        .find(|t| t.active && t.name.starts_with("veeva-vault-auth:"))
        .expect("the issued token, named with the default prefix");
    let expiry = info.expiry.expect("an expiry date");
    let day = Duration::from_secs(24 * 3600);
    // Paused time may move on while the issuer waits for Vault: a few minutes either way.
    let slack = Duration::from_secs(300);
    assert!(
        expiry >= before + day - slack && expiry <= SystemTime::now() + day + slack,
        "{expiry:?} is not a day after {before:?}"
    );
    assert!(token.expires_at().is_some());
    issuer.shutdown().await.unwrap();
}

#[test]
fn an_api_version_is_a_v_and_at_least_one_digit() {
    assert!(builder().api_version("v26.2").build().is_ok());
    assert!(builder().api_version("v9").build().is_ok());
    for bad in ["v", "26.2", "v26-2", ""] {
        let said = refusal(builder().api_version(bad));
        assert!(said.contains("looks like v26.2"), "{bad:?}: {said}");
    }
}

/// A password issuer whose stand-in keeps sessions up to 48 hours whatever their idle time, with
/// its user added.
async fn login_setup() -> (VaultStandIn, VaultIssuer) {
    let vault = VaultStandIn::start().await.unwrap();
    vault.add_user("svc@example.com", "pass word");
    vault.set_session_idle_timeout(Duration::from_secs(48 * 3600));
    let issuer = VaultIssuer::builder(&vault.base_url())
        .password("svc@example.com", secrecy::SecretString::from("pass word"))
        .name_prefix("session-age")
        .lifetime(Duration::from_secs(3600))
        .wall_clock(wall_clock(0))
        .build()
        .unwrap();
    (vault, issuer)
}

/// A session is used for all calls for 47 hours (Vault ends it at 48) and opened again from
/// then on: two hours in, no new login; 47 hours in to the nanosecond, a new one.
#[tokio::test(start_paused = true)]
async fn a_session_is_kept_for_47_hours_and_opened_again_then() {
    let _clock = hold_clock();
    let (vault, issuer) = login_setup().await;
    issuer.fetch().await.unwrap();
    assert_eq!(count(&vault, is_login), 1);
    tokio::time::advance(Duration::from_secs(2 * 3600)).await;
    issuer.fetch().await.unwrap();
    assert_eq!(count(&vault, is_login), 1, "the session was reused");
    tokio::time::advance(Duration::from_secs(45 * 3600)).await;
    issuer.fetch().await.unwrap();
    assert_eq!(
        count(&vault, is_login),
        2,
        "at 47 hours a new session was opened"
    );
    assert_eq!(count(&vault, is_end_session), 1, "and the old one ended");
    assert_eq!(issuer.stats().logins, 2);
    issuer.shutdown().await.unwrap();
}

/// The issuer's own token issuing setup: a bootstrap token, a short lifetime and grace.
async fn token_setup() -> (VaultStandIn, VaultIssuer) {
    let vault = VaultStandIn::start().await.unwrap();
    let bootstrap = vault.issue_token();
    let issuer = VaultIssuer::builder(&vault.base_url())
        .bootstrap_token(StaticToken::new(&bootstrap).unwrap())
        .name_prefix("stats")
        .lifetime(Duration::from_secs(3600))
        .grace_period(Duration::from_secs(600))
        .wall_clock(wall_clock(0))
        .build()
        .unwrap();
    (vault, issuer)
}

/// Shutdown when Vault refuses the revocations: both counted as failed, none as revoked, and
/// the error says so.
#[tokio::test(start_paused = true)]
async fn shutdown_counts_revocations_vault_refused() {
    let _clock = hold_clock();
    let (vault, issuer) = token_setup().await;
    let first = issuer.fetch().await.unwrap();
    let second = issuer.fetch().await.unwrap();
    assert_ne!(first.expose_secret(), second.expose_secret());
    let stats = issuer.stats();
    assert_eq!(
        (stats.revoked, stats.pending_revocations),
        (0, 1),
        "the first is in its grace period"
    );
    vault.fail_path_with("/vobjects/api_access_token__sys", "INSUFFICIENT_ACCESS");
    assert!(issuer.shutdown().await.is_err());
    assert!(vault.is_active(second.expose_secret()));
    let stats = issuer.stats();
    assert_eq!(
        (stats.revoked, stats.revocation_failures),
        (0, 2),
        "{stats:?}"
    );
}

/// Shutdown with both tokens still active: both revoked, both counted.
#[tokio::test(start_paused = true)]
async fn shutdown_revokes_and_counts_every_live_token() {
    let _clock = hold_clock();
    let (vault, issuer) = token_setup().await;
    let first = issuer.fetch().await.unwrap();
    let second = issuer.fetch().await.unwrap();
    issuer.shutdown().await.unwrap();
    assert!(!vault.is_active(first.expose_secret()));
    assert!(!vault.is_active(second.expose_secret()));
    let stats = issuer.stats();
    assert_eq!(
        (
            stats.revoked,
            stats.revocation_failures,
            stats.pending_revocations
        ),
        (2, 0, 0),
        "{stats:?}"
    );
}

/// Issued tokens are named `prefix:host:pid:time` (the host part's rules are tested in
/// tests/issuer_hostname.rs, which sets `HOSTNAME`).
#[tokio::test(start_paused = true)]
async fn token_names_hold_the_prefix_host_process_and_time() {
    let (_vault, issuer) = token_setup().await;
    let at = std::time::UNIX_EPOCH + Duration::from_secs(1_796_160_600);
    let name = issuer.token_name_at(at);
    let suffix = format!(":{}:2026-12-01T21:30:00Z", std::process::id());
    let host = name
        .strip_prefix("stats:")
        .and_then(|rest| rest.strip_suffix(&suffix))
        .unwrap_or_else(|| panic!("not prefix:host:pid:time: {name}"));
    assert!(!host.is_empty(), "{name}");
    assert!(
        host.chars().all(|c| c.is_ascii_graphic() && c != ':'),
        "{name}"
    );
    let shown = format!("{issuer:?}");
    assert!(
        shown.starts_with(&format!(
            "VaultIssuer {{ vault: \"{}\", stats: IssuerStats {{",
            _vault.base_url()
        )),
        "{shown}"
    );
    assert!(shown.ends_with(".. }"), "{shown}");
}

/// A fleet file that cannot be written is counted, and the token is handed over all the same.
#[tokio::test(start_paused = true)]
async fn a_fleet_file_that_cannot_be_written_is_counted() {
    let _clock = hold_clock();
    let vault = VaultStandIn::start().await.unwrap();
    let bootstrap = vault.issue_token();
    let issuer = VaultIssuer::builder(&vault.base_url())
        .bootstrap_token(StaticToken::new(&bootstrap).unwrap())
        .fleet_file("/nonexistent-directory-for-tests/fleet/token")
        .wall_clock(wall_clock(0))
        .build()
        .unwrap();
    let token = issuer.fetch().await.unwrap();
    assert!(vault.is_active(token.expose_secret()));
    assert_eq!(issuer.stats().fleet_write_failures, 1);
    issuer.fetch().await.unwrap();
    assert_eq!(issuer.stats().fleet_write_failures, 2);
    issuer.shutdown().await.unwrap();
}

/// TLS settings and an `http_service` of one's own do not go together: any one of the TLS
/// settings with a service is refused.
#[cfg(feature = "rustls")]
#[test]
fn tls_settings_with_an_http_service_are_refused() {
    let service = || {
        tower::service_fn(
            |_: http::Request<http_body_util::Full<bytes::Bytes>>| async {
                Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
                    bytes::Bytes::new(),
                )))
            },
        )
    };
    let said = refusal(
        builder()
            .http_service(service())
            .tls_root_certificates_pem(b"not a pem"),
    );
    assert!(said.contains("http_service"), "{said}");
    assert!(builder().http_service(service()).build().is_ok());
}

/// The issuer's calls say what their body is, and only when they have one.
#[tokio::test(start_paused = true)]
async fn calls_with_a_body_say_its_type_and_calls_without_one_do_not() {
    let _clock = hold_clock();
    let (vault, issuer) = login_setup().await;
    issuer.fetch().await.unwrap();
    let requests = vault.requests();
    let login = requests.iter().find(|r| is_login(r)).expect("a login");
    assert_eq!(
        login.headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    let bodiless: Vec<_> = requests.iter().filter(|r| r.body.is_empty()).collect();
    assert!(!bodiless.is_empty());
    for request in bodiless {
        assert!(
            !request.headers.contains_key("content-type"),
            "{} {}",
            request.method,
            request.path
        );
    }
    issuer.shutdown().await.unwrap();
}

/// A revocation that keeps failing is retried at doubling waits from 30 s, and never more than
/// 15 minutes apart.
#[tokio::test(start_paused = true)]
async fn failing_revocations_back_off_to_fifteen_minutes_at_most() {
    let _clock = hold_clock();
    let (vault, issuer) = token_setup().await;
    let first = issuer.fetch().await.unwrap();
    vault.fail_path_with("/vobjects/api_access_token__sys", "INSUFFICIENT_ACCESS");
    issuer.fetch().await.unwrap();
    // Due after the 600 s grace period, then 30, 60, 120, 240 and 480 s later, then 900 s.
    let steps = [
        (601, 1),
        (30, 2),
        (60, 3),
        (120, 4),
        (240, 5),
        (480, 6),
        (899, 6),
        (1, 7),
    ];
    for (wait, attempts) in steps {
        tokio::time::advance(Duration::from_secs(wait)).await;
        eventually("the revocation attempts so far", || {
            issuer.stats().revocation_failures == attempts
        })
        .await;
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            count(&vault, is_revoke) as u64,
            attempts,
            "after {wait} s more"
        );
    }
    assert!(vault.is_active(first.expose_secret()));
    vault.clear_failures();
    let _ = issuer.shutdown().await;
}

/// When the issuer takes `token` to expire: the expiry it handed out with it (Vault's expiry
/// date is whole seconds, so not exactly the lifetime after the fetch).
fn expiry_of(token: &veeva_vault_auth::AccessToken) -> tokio::time::Instant {
    token
        .expires_at()
        .expect("issued tokens carry their expiry")
}

/// A token whose expiry is this very instant is not revoked: shutdown at the expiry of the
/// token in use makes no revocation call.
#[tokio::test(start_paused = true)]
async fn shutdown_at_the_instant_a_token_expires_does_not_revoke_it() {
    let _clock = hold_clock();
    let (vault, issuer) = token_setup().await;
    let token = issuer.fetch().await.unwrap();
    advance_to(expiry_of(&token)).await;
    issuer.shutdown().await.unwrap();
    assert_eq!(count(&vault, is_revoke), 0, "an expired token was revoked");
    assert_eq!(issuer.stats().revoked, 0);
}

/// At shutdown, a superseded token in its grace period that expires this very instant is left
/// out; the one in use is revoked.
#[tokio::test(start_paused = true)]
async fn shutdown_leaves_out_a_superseded_token_at_its_expiry() {
    let _clock = hold_clock();
    let (vault, issuer) = token_setup().await;
    let first = issuer.fetch().await.unwrap();
    // Superseded 100 s before its expiry, so still in its 600 s grace period when it expires.
    advance_to(expiry_of(&first) - Duration::from_secs(100)).await;
    let second = issuer.fetch().await.unwrap();
    advance_to(expiry_of(&first)).await;
    issuer.shutdown().await.unwrap();
    assert!(!vault.is_active(second.expose_secret()));
    let stats = issuer.stats();
    assert_eq!(
        (stats.revoked, count(&vault, is_revoke)),
        (1, 1),
        "{stats:?}"
    );
}

/// A superseded token whose revocation is due at the very instant it expires is dropped from
/// the list by the revocation round of that instant, not revoked. (The round is started by the
/// next issue, which wakes the revocation task at once; its own timer would fire a little after
/// the instant.)
#[tokio::test(start_paused = true)]
async fn a_revocation_due_at_the_tokens_expiry_is_dropped() {
    let _clock = hold_clock();
    let (vault, issuer) = token_setup().await;
    let first = issuer.fetch().await.unwrap();
    // Superseded exactly one grace period (600 s) before its expiry.
    advance_to(expiry_of(&first) - Duration::from_secs(600)).await;
    issuer.fetch().await.unwrap();
    assert_eq!(issuer.stats().pending_revocations, 1);
    advance_to(expiry_of(&first)).await;
    issuer.fetch().await.unwrap();
    // A revocation leaves the list only once Vault answered it. (No `settle()`: the clock
    // stands between two milliseconds; see its doc.)
    eventually("the revocation round at the expiry", || {
        issuer.stats().pending_revocations == 1
    })
    .await;
    assert_eq!(count(&vault, is_revoke), 0, "an expired token was revoked");
    assert_eq!(issuer.stats().revoked, 0);
    let _ = issuer.shutdown().await;
}

/// The revocation task runs on the runtime of the fetch that started it. When that runtime
/// shuts down, the next fetch, on another runtime, starts it again there: a superseded token is
/// still revoked after its grace period (none here).
#[test]
fn the_revocation_task_starts_again_on_a_new_runtime() {
    let current_thread = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    // The stand-in on a runtime of its own that lives through the test.
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let vault = server.block_on(VaultStandIn::start()).unwrap();
    let bootstrap = vault.issue_token();
    let issuer = VaultIssuer::builder(&vault.base_url())
        .bootstrap_token(StaticToken::new(&bootstrap).unwrap())
        .name_prefix("runtimes")
        .grace_period(Duration::ZERO)
        .build()
        .unwrap();
    let first_runtime = current_thread();
    let first = first_runtime.block_on(issuer.fetch()).unwrap();
    drop(first_runtime);
    current_thread().block_on(async {
        let second = issuer.fetch().await.unwrap();
        eventually("the superseded token revoked", || {
            !vault.is_active(first.expose_secret())
        })
        .await;
        assert!(vault.is_active(second.expose_secret()));
        issuer.shutdown().await.unwrap();
    });
}

/// Vault's `Date` is asked for on its own once, before the first issue; later issues take it
/// from the answers they get (the stand-in dates every answer). (A Vault that never sends `Date`
/// is not asked again either: tests/round2/issuer_hostile.rs.)
#[tokio::test(start_paused = true)]
async fn the_date_is_probed_once_before_the_first_issue() {
    let _clock = hold_clock();
    let (vault, issuer) = token_setup().await;
    for _ in 0..3 {
        issuer.fetch().await.unwrap();
    }
    assert_eq!(
        (count(&vault, is_date_probe), count(&vault, is_create)),
        (1, 3)
    );
    let _ = issuer.shutdown().await;
}
