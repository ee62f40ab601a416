//! The issuer over https against [hostile servers](super::hostile_tls): every attack ends in a
//! typed error within the issuer's own bound on a call (30 s by default, on paused time), and no
//! password, token or session id shows in the error's `Display` or `Debug`, nor in the layer's
//! `status()`.

use std::time::Duration;

use secrecy::SecretString;
use veeva_vault_auth::source::{
    IssuerError, IssuerErrorKind, SourceError, StaticToken, TokenSource, VaultIssuer,
};
use veeva_vault_auth::{TokenUnavailable, VaultAuthLayer};

use super::hostile_tls::{After, Ca, Cert, Conduct, Hostile};
use crate::common::settle;
use crate::common::{get, hold_clock, send};

const PASSWORD: &str = "round2-hostile-password";
const BOOTSTRAP: &str = "veeva-vault-round2-hostile-bootstrap";
const SESSION: &str = "ROUND2SESSIONIDMARKER";

/// A JSON login answer cut short inside its session id (the head promises 400 bytes).
const CUT_IN_SESSION: &str = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 400\r\n\r\n{\"responseStatus\":\"SUCCESS\",\"sessionId\":\"ROUND2SESSIONIDMARKER";
/// A whole answer that is not JSON, with a session id in it.
const NOT_JSON: &str = "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: 44\r\n\r\n<html>sessionId=ROUND2SESSIONIDMARKER</html>";

/// How an attack must end.
struct Expect {
    kind: IssuerErrorKind,
    /// Words the error's message must hold.
    says: &'static str,
    /// How long (paused time) it may take: a few seconds for an attack that fails at once, the
    /// issuer's bounds for one that must be waited out.
    within: Duration,
}

/// The first fetch's calls: the `Date` probe (`GET /api/`, bounded at 5 s and made once), then
/// the login or the create, bounded by `request_timeout` (30 s).
const PROBE_AND_ONE_CALL: Duration = Duration::from_secs(36);
/// No wait at all: the attack fails at once.
const AT_ONCE: Duration = Duration::from_secs(2);

fn issuers(url: &str, ca: &Ca) -> Vec<VaultIssuer> {
    let by_password = VaultIssuer::builder(url)
        .password("svc@example.com", SecretString::from(PASSWORD))
        .tls_root_certificates_pem(ca.pem().as_bytes())
        .build()
        .unwrap();
    let by_token = VaultIssuer::builder(url)
        .bootstrap_token(StaticToken::new(BOOTSTRAP).unwrap())
        .tls_root_certificates_pem(ca.pem().as_bytes())
        .build()
        .unwrap();
    vec![by_password, by_token]
}

fn assert_no_secret(shown: &str) {
    for secret in [PASSWORD, BOOTSTRAP, SESSION, "veeva-vault-"] {
        assert!(!shown.contains(secret), "a secret shown: {shown}");
    }
}

/// Runs `fetch` on paused time, moving the clock a second at a time while letting the sockets
/// work: its result, and how much paused time it took.
async fn paced<T: Send + 'static>(
    fetch: impl std::future::Future<Output = T> + Send + 'static,
) -> (T, Duration) {
    let start = tokio::time::Instant::now();
    let task = tokio::spawn(fetch);
    for _ in 0..120 {
        // Let the sockets (loopback, served on this same runtime) work before the clock moves.
        for _ in 0..20 {
            settle().await;
            if task.is_finished() {
                break;
            }
            std::thread::yield_now();
        }
        if task.is_finished() {
            break;
        }
        tokio::time::advance(Duration::from_secs(1)).await;
    }
    assert!(
        task.is_finished(),
        "still waiting after 120 s of paused time"
    );
    (task.await.unwrap(), start.elapsed())
}

fn typed(err: &SourceError) -> IssuerError {
    IssuerError::from_source(err)
        .expect("the issuer's error")
        .clone()
}

async fn attack(conduct: Conduct, expect: Expect) {
    let _clock = hold_clock();
    let ca = Ca::new();
    let server = Hostile::start(&ca, conduct).await;
    for issuer in issuers(&server.url(), &ca) {
        let fetching = issuer.clone();
        let (result, took) = paced(async move { fetching.fetch().await }).await;
        let err = result.expect_err("no token from a hostile server");
        let typed = typed(&err);
        assert_eq!(typed.kind(), expect.kind, "{conduct:?}: {typed}");
        assert!(
            typed.to_string().contains(expect.says),
            "{conduct:?}: {typed}"
        );
        assert!(
            took <= expect.within,
            "{conduct:?}: ended after {took:?}, not within {:?}",
            expect.within
        );
        for shown in [
            typed.to_string(),
            format!("{typed:?}"),
            err.to_string(),
            format!("{err:?}"),
            format!("{issuer:?}"),
        ] {
            assert_no_secret(&shown);
        }
        let _ = paced(async move { issuer.shutdown().await }).await;
    }

    // Through the layer: the request fails for want of a token, and the status says why, without
    // a secret.
    let issuer = issuers(&server.url(), &ca).remove(0);
    let layer = VaultAuthLayer::new(&server.url(), issuer).unwrap();
    let handle = layer.handle();
    let client = crate::common::authed(&layer);
    let url = format!("{}/api/v26.2/objects/users/me", server.url());
    let (result, _) = paced(async move { send(&client, get(&url)).await }).await;
    let err = result.expect_err("no token");
    let unavailable = err.downcast_ref::<TokenUnavailable>().expect("no token");
    let status = handle.status();
    let last = status
        .last_error
        .clone()
        .expect("the status keeps the error");
    for shown in [
        err.to_string(),
        format!("{err:?}"),
        format!("{unavailable:?}"),
        last.to_string(),
        format!("{last:?}"),
        format!("{status:?}"),
    ] {
        assert_no_secret(&shown);
    }
}

#[tokio::test(start_paused = true)]
async fn held_a_server_that_never_answers_the_handshake_times_out_at_the_bound() {
    attack(
        Conduct::Silent,
        Expect {
            kind: IssuerErrorKind::Transport,
            says: "did not answer within",
            within: PROBE_AND_ONE_CALL,
        },
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn held_a_server_that_answers_the_handshake_with_garbage_is_a_tls_error() {
    attack(
        Conduct::Garbage,
        Expect {
            kind: IssuerErrorKind::Tls,
            says: "TLS handshake",
            within: AT_ONCE,
        },
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn held_a_server_that_closes_during_the_handshake_is_a_transport_error() {
    attack(
        Conduct::CloseAtHello,
        Expect {
            kind: IssuerErrorKind::Transport,
            says: "could not reach Vault",
            within: AT_ONCE,
        },
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn held_an_expired_certificate_is_a_tls_error() {
    attack(
        Conduct::Tls(Cert::Expired, After::Stall),
        Expect {
            kind: IssuerErrorKind::Tls,
            says: "certificate",
            within: AT_ONCE,
        },
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn held_a_certificate_for_another_host_is_a_tls_error() {
    attack(
        Conduct::Tls(Cert::OtherHost, After::Stall),
        Expect {
            kind: IssuerErrorKind::Tls,
            says: "certificate",
            within: AT_ONCE,
        },
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn held_a_server_silent_after_the_handshake_times_out_at_the_bound() {
    attack(
        Conduct::Tls(Cert::Good, After::Stall),
        Expect {
            kind: IssuerErrorKind::Transport,
            says: "did not answer within",
            within: PROBE_AND_ONE_CALL,
        },
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn held_an_answer_cut_inside_the_session_id_shows_none_of_it() {
    attack(
        Conduct::Tls(Cert::Good, After::Cut(CUT_IN_SESSION)),
        Expect {
            kind: IssuerErrorKind::Transport,
            says: "could not be read",
            within: AT_ONCE,
        },
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn held_an_answer_stalled_inside_the_session_id_times_out_at_the_bound() {
    attack(
        Conduct::Tls(Cert::Good, After::StallMidBody(CUT_IN_SESSION)),
        Expect {
            kind: IssuerErrorKind::Transport,
            says: "did not answer within",
            within: PROBE_AND_ONE_CALL,
        },
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn held_an_answer_that_is_not_json_shows_none_of_it() {
    attack(
        Conduct::Tls(Cert::Good, After::Whole(NOT_JSON)),
        Expect {
            kind: IssuerErrorKind::Transport,
            says: "without JSON",
            within: AT_ONCE,
        },
    )
    .await;
}

/// Found, and fixed (the probe now has a bound of its own, 5 s, and is made once): a server
/// that accepts TCP and never answered made the first fetch wait 60 s, twice
/// `request_timeout`: `Core::issue` first probes `GET /api/` for Vault's `Date`, drops that
/// call's timeout (`let _ =`), and then waits out the login (or create) as long again. A password
/// issuer behind a proxy whose `/api/` hangs waits 30 s more on every fetch (the probe is retried
/// while no `Date` was seen), and the layer's own 30 s `fetch_timeout` (the default) runs out
/// during the probe, so the real call is never even made.
#[tokio::test(start_paused = true)]
async fn fixed_a_silent_server_made_a_fetch_wait_twice_the_request_timeout() {
    attack(
        Conduct::Silent,
        Expect {
            kind: IssuerErrorKind::Transport,
            says: "did not answer within",
            within: PROBE_AND_ONE_CALL,
        },
    )
    .await;
}

/// Found, and fixed as above: a Vault (or a proxy before it) that never answers the
/// unauthenticated `GET /api/` but would answer the login: through the layer with its defaults
/// no fetch ever logged in. The
/// issuer's `Date` probe takes the whole of the layer's 30 s `fetch_timeout`, and, no `Date`
/// having been seen, the next fetch probes again. The same over https; plain http to loopback
/// here, so a [`RawServer`](super::raw::RawServer) can tell the requests apart.
#[tokio::test(start_paused = true)]
async fn fixed_a_hanging_date_probe_kept_every_fetch_from_logging_in() {
    let _clock = hold_clock();
    // `GET /api/` is never answered; anything else is, with a 503 (what matters is whether it
    // is asked; a refused password would not be tried again).
    let server = super::raw::RawServer::start("127.0.0.1:0", |_, raw| {
        if raw.starts_with(b"GET /api/ ") {
            Vec::new()
        } else {
            super::raw::answer("503 Service Unavailable", &[], "")
        }
    })
    .await;
    let url = format!("http://{}", server.addr());
    let issuer = VaultIssuer::builder(&url)
        .password("svc@example.com", SecretString::from(PASSWORD))
        .build()
        .unwrap();
    let layer = VaultAuthLayer::new(&url, issuer).unwrap();
    let client = crate::common::authed(&layer);
    for attempt in 1..=2 {
        if attempt > 1 {
            // Past the backoff and the issuer's one login a minute, so that this fetch logs in.
            tokio::time::advance(Duration::from_secs(61)).await;
        }
        let client = client.clone();
        let target = format!("{url}/api/v26.2/objects/users/me");
        let (result, _) = paced(async move { send(&client, get(&target)).await }).await;
        let err = result.expect_err("no token");
        assert!(err.downcast_ref::<TokenUnavailable>().is_some(), "{err}");
        let lines: Vec<String> = server
            .requests()
            .iter()
            .map(|raw| {
                String::from_utf8_lossy(&raw[..super::raw::find(raw, b"\r\n").unwrap()])
                    .into_owned()
            })
            .collect();
        let logins = lines
            .iter()
            .filter(|line| line.starts_with("POST ") && line.contains("/auth"))
            .count();
        assert_eq!(logins, attempt, "fetch {attempt}: the logins, of {lines:?}");
        let probes = lines
            .iter()
            .filter(|line| line.starts_with("GET /api/ "))
            .count();
        assert_eq!(probes, 1, "fetch {attempt}: the Date probe asked again");
    }
}

/// A token issuer against a server whose create answer is `size` bytes of JSON (padded with
/// spaces); everything else gets a plain success.
async fn create_answer_of(size: usize) -> Result<(), IssuerError> {
    let _clock = hold_clock();
    let created = r#"{"responseStatus":"SUCCESS","data":{"id":"V8T000000009001","token__sys":"veeva-vault-round2-sized-answer"}}"#;
    let body = format!("{created}{}", " ".repeat(size - created.len()));
    let server = super::raw::RawServer::start("127.0.0.1:0", move |_, raw| {
        if raw.starts_with(b"POST ") {
            super::raw::answer(
                "200 OK",
                &[("content-type", "application/json;charset=UTF-8")],
                &body,
            )
        } else {
            super::raw::vault_success()
        }
    })
    .await;
    let issuer = VaultIssuer::builder(&format!("http://{}", server.addr()))
        .bootstrap_token(StaticToken::new(BOOTSTRAP).unwrap())
        .build()
        .unwrap();
    let fetching = issuer.clone();
    let (result, _) = paced(async move { fetching.fetch().await }).await;
    let _ = paced(async move { issuer.shutdown().await }).await;
    match result {
        Ok(token) => {
            assert!(token.expose_secret().ends_with("round2-sized-answer"));
            Ok(())
        }
        Err(err) => Err(typed(&err)),
    }
}

/// An answer is read up to 1 MiB and no further: one of exactly 1 MiB is taken, one a byte
/// longer (or four times as long) is a transport error, not an unbounded buffer.
#[tokio::test(start_paused = true)]
async fn held_an_answer_over_one_mebibyte_is_refused_and_one_of_exactly_that_is_read() {
    const MIB: usize = 1024 * 1024;
    create_answer_of(MIB).await.expect("an answer of 1 MiB");
    for size in [MIB + 1, 4 * MIB] {
        let err = create_answer_of(size)
            .await
            .expect_err("an answer over 1 MiB was read");
        assert_eq!(err.kind(), IssuerErrorKind::Transport, "{size}: {err}");
        assert!(err.to_string().contains("over 1 MiB"), "{size}: {err}");
    }
}
