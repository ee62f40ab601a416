//! The stand-in's side of issuance, driven over real HTTP: what it records and how it redacts it.

mod common;

use common::*;
use veeva_vault_auth::testing::VaultStandIn;

/// A token value built at run time, holding every kind of visible ASCII Vault may put in one.
fn odd_token() -> String {
    let secret: String = ["abc", ".DEF", "-ghi", "_JKL", "~mno", "!$'()*+,;=:@/?#[]"].concat();
    format!("veeva-vault-{secret}")
}

/// Percent-encodes every byte but letters and digits, as a strict form encoder may.
fn percent_encoded(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Issue 11, bug 8: the whole token is masked whatever visible ASCII it holds, and a
/// percent-encoded token is masked too, in the path, query, headers and body.
#[tokio::test]
async fn recorded_requests_never_show_any_part_of_a_token() {
    let vault = VaultStandIn::start().await.unwrap();
    let token = odd_token();
    let encoded = percent_encoded(&token);
    let body: &'static str = Box::leak(format!("a={encoded}&b={token}").into_boxed_str());
    let url = vault.api_url(&format!("/objects/documents/{encoded}?echo={encoded}"));
    let mut request = post_form(&url, body);
    request
        .headers_mut()
        .insert("x-echo", token.parse().unwrap());
    request
        .headers_mut()
        .insert("x-echo-encoded", encoded.parse().unwrap());
    send_plain(request).await;

    let recorded = vault.requests();
    assert_eq!(recorded.len(), 1);
    let debug = format!("{:?}", recorded[0]);
    // Every piece of the secret part, literal or encoded, is gone.
    for piece in [
        ".DEF", "-ghi", "_JKL", "~mno", "%2EDEF", "DEF", "ghi", "JKL", "mno",
    ] {
        assert!(!debug.contains(piece), "{piece} in {debug}");
    }
    assert!(debug.contains("[REDACTED]"));
}

async fn send_plain(request: http::Request<http_body_util::Full<bytes::Bytes>>) {
    let response = http_client().request(request).await.unwrap();
    let _ = text(response).await;
}

// ---------------------------------------------------------------------------------------------
// The stand-in's issuance side, over real HTTP
// ---------------------------------------------------------------------------------------------

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, Method, Request};
use serde_json::Value;
use veeva_vault_auth::testing::UserState;

struct Answer {
    headers: HeaderMap,
    json: Value,
}

impl Answer {
    fn status(&self) -> &str {
        self.json["responseStatus"].as_str().unwrap_or("")
    }

    fn error_type(&self) -> &str {
        self.json["errors"][0]["type"].as_str().unwrap_or("")
    }
}

async fn call(method: Method, url: &str, credential: Option<&str>, form: &str) -> Answer {
    let mut request = Request::builder().method(method).uri(url);
    if let Some(credential) = credential {
        request = request.header("authorization", credential);
    }
    let request = request
        .header("content-type", "application/x-www-form-urlencoded")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            form.to_owned(),
        )))
        .unwrap();
    let response = http_client().request(request).await.unwrap();
    let headers = response.headers().clone();
    let body = text(response).await;
    Answer {
        headers,
        json: serde_json::from_str(&body).unwrap(),
    }
}

async fn login(vault: &VaultStandIn, user: &str, password: &str, dns: Option<&str>) -> Answer {
    let mut form = format!("username={user}&password={password}");
    if let Some(dns) = dns {
        form.push_str(&format!("&vaultDNS={dns}"));
    }
    call(Method::POST, &vault.api_url("/auth"), None, &form).await
}

async fn create(vault: &VaultStandIn, credential: &str, form: &str) -> Answer {
    let url = vault.api_url("/objects/users/me/api_access_token__sys");
    call(Method::POST, &url, Some(credential), form).await
}

async fn vql(vault: &VaultStandIn, credential: &str, q: &str) -> Answer {
    let form = format!("q={}", q.replace(' ', "+").replace('%', "%25"));
    call(
        Method::POST,
        &vault.api_url("/query"),
        Some(credential),
        &form,
    )
    .await
}

fn utc(at: SystemTime) -> String {
    let secs = at.duration_since(UNIX_EPOCH).unwrap().as_secs();
    let (days, of_day) = (secs / 86_400, secs % 86_400);
    // Civil from days (Howard Hinnant), enough for this test's dates.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

#[tokio::test]
async fn password_login_opens_a_session_that_works_until_it_is_ended() {
    let vault = VaultStandIn::start().await.unwrap();
    let user_id = vault.add_user("svc@example.com", "pw-1");
    let answer = login(
        &vault,
        "svc@example.com",
        "pw-1",
        Some(&vault.addr().to_string()),
    )
    .await;
    assert_eq!(answer.status(), "SUCCESS", "{}", answer.json);
    assert_eq!(answer.json["userId"], user_id);
    let vault_id = answer.json["vaultId"].clone();
    let entry = answer.json["vaultIds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["id"] == vault_id)
        .unwrap();
    assert_eq!(entry["url"], format!("{}/api", vault.base_url()));
    let session = answer.json["sessionId"].as_str().unwrap().to_owned();
    assert_eq!(vault.live_sessions_of("svc@example.com"), 1);

    // The session is a credential, raw or as a bearer.
    let created = create(&vault, &session, "name__v=from+a+session").await;
    assert_eq!(created.status(), "SUCCESS");
    assert_eq!(
        created.headers["x-vaultapi-userid"],
        user_id.to_string().as_str()
    );
    assert_eq!(vault.active_tokens_of("svc@example.com"), 1);
    assert_eq!(
        vault.active_token_count(),
        0,
        "the first user's tokens are their own"
    );

    let ended = call(
        Method::DELETE,
        &vault.api_url("/session"),
        Some(&session),
        "",
    )
    .await;
    assert_eq!(ended.status(), "SUCCESS");
    assert_eq!(vault.live_sessions_of("svc@example.com"), 0);
    let after = create(&vault, &format!("Bearer {session}"), "name__v=x").await;
    assert_eq!(after.error_type(), "INVALID_SESSION_ID");

    // Recorded logins never show the password.
    let debug = format!("{:?}", vault.requests());
    assert!(!debug.contains("pw-1"), "{debug}");
}

#[tokio::test]
async fn failed_logins_name_the_reason() {
    let vault = VaultStandIn::start().await.unwrap();
    vault.add_user("svc@example.com", "pw-1");
    let wrong = login(&vault, "svc@example.com", "nope", None).await;
    assert_eq!(wrong.error_type(), "USERNAME_OR_PASSWORD_INCORRECT");
    assert_eq!(wrong.json["errorType"], "AUTHENTICATION_FAILED");
    for (state, expected) in [
        (UserState::LockedOut, "USER_LOCKED_OUT"),
        (
            UserState::PasswordChangeRequired,
            "PASSWORD_CHANGE_REQUIRED",
        ),
        (UserState::Inactive, "INACTIVE_USER"),
    ] {
        vault.set_user_state("svc@example.com", state);
        let answer = login(&vault, "svc@example.com", "pw-1", None).await;
        assert_eq!(answer.error_type(), expected);
    }
    assert_eq!(vault.live_sessions_of("svc@example.com"), 0);
}

#[tokio::test(start_paused = true)]
async fn logins_past_the_limit_are_refused_until_the_next_minute() {
    let vault = VaultStandIn::start().await.unwrap();
    vault.add_user("svc@example.com", "pw-1");
    vault.set_login_limit(2);
    // Start at the beginning of a minute on the stand-in's clock.
    let into_minute = vault.now().duration_since(UNIX_EPOCH).unwrap().as_secs() % 60;
    vault.set_clock_offset(-(into_minute as i64));
    for _ in 0..2 {
        assert_eq!(
            login(&vault, "svc@example.com", "pw-1", None)
                .await
                .status(),
            "SUCCESS"
        );
    }
    let refused = login(&vault, "svc@example.com", "pw-1", None).await;
    assert_eq!(refused.error_type(), "API_LIMIT_EXCEEDED");
    tokio::time::advance(Duration::from_secs(59)).await;
    let still = login(&vault, "svc@example.com", "pw-1", None).await;
    assert_eq!(still.error_type(), "API_LIMIT_EXCEEDED");
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(
        login(&vault, "svc@example.com", "pw-1", None)
            .await
            .status(),
        "SUCCESS"
    );
}

#[tokio::test(start_paused = true)]
async fn idle_sessions_stop_working() {
    let vault = VaultStandIn::start().await.unwrap();
    vault.add_user("svc@example.com", "pw-1");
    vault.set_session_idle_timeout(Duration::from_secs(600));
    let session = login(&vault, "svc@example.com", "pw-1", None).await.json["sessionId"]
        .as_str()
        .unwrap()
        .to_owned();
    let keep_alive = vault.api_url("/keep-alive");
    tokio::time::advance(Duration::from_secs(599)).await;
    assert_eq!(
        call(Method::POST, &keep_alive, Some(&session), "")
            .await
            .status(),
        "SUCCESS"
    );
    tokio::time::advance(Duration::from_secs(599)).await;
    assert_eq!(
        call(Method::POST, &keep_alive, Some(&session), "")
            .await
            .status(),
        "SUCCESS"
    );
    tokio::time::advance(Duration::from_secs(600)).await;
    let late = call(Method::POST, &keep_alive, Some(&session), "").await;
    assert_eq!(late.error_type(), "INVALID_SESSION_ID");
}

#[tokio::test]
async fn authentication_defaulting_lands_in_the_other_vault() {
    let vault = VaultStandIn::start().await.unwrap();
    vault.add_user("svc@example.com", "pw-1");
    vault.default_logins_elsewhere("svc@example.com", true);
    let answer = login(
        &vault,
        "svc@example.com",
        "pw-1",
        Some(&vault.addr().to_string()),
    )
    .await;
    assert_eq!(answer.status(), "SUCCESS");
    let vault_id = answer.json["vaultId"].clone();
    let ids = answer.json["vaultIds"].as_array().unwrap();
    assert_eq!(ids.len(), 2, "a user with two Vaults");
    let landed = ids.iter().find(|v| v["id"] == vault_id).unwrap();
    assert_ne!(landed["url"], format!("{}/api", vault.base_url()));
    let session = answer.json["sessionId"].as_str().unwrap();
    assert_eq!(
        create(&vault, session, "name__v=x").await.error_type(),
        "INVALID_SESSION_ID"
    );

    // A vaultDNS naming another Vault lands there too.
    vault.default_logins_elsewhere("svc@example.com", false);
    let other = login(
        &vault,
        "svc@example.com",
        "pw-1",
        Some("othervault.veevavault.com"),
    )
    .await;
    let here = login(&vault, "svc@example.com", "pw-1", None).await;
    assert_ne!(other.json["vaultId"], here.json["vaultId"]);
    // The Vault a session landed in is listed first.
    assert_eq!(other.json["vaultId"], other.json["vaultIds"][0]["id"]);
    assert_eq!(here.json["vaultId"], here.json["vaultIds"][0]["id"]);
}

#[tokio::test]
async fn oauth_sessions_are_exchanged_for_an_identity_providers_token() {
    let vault = VaultStandIn::start().await.unwrap();
    vault.add_user("svc@example.com", "pw-1");
    assert!(vault.accept_oauth("0oa-profile", "idp-access-1", "svc@example.com"));
    let url = format!("{}/auth/oauth/session/0oa-profile", vault.base_url());
    let dns = format!("vaultDNS={}&client_id=my-idp-client", vault.addr());
    let answer = call(Method::POST, &url, Some("Bearer idp-access-1"), &dns).await;
    assert_eq!(answer.status(), "SUCCESS", "{}", answer.json);
    let session = answer.json["sessionId"].as_str().unwrap();
    assert_eq!(
        create(&vault, session, "name__v=x").await.status(),
        "SUCCESS"
    );
    let refused = call(Method::POST, &url, Some("Bearer idp-access-2"), &dns).await;
    assert_eq!(refused.json["errorType"], "AUTHENTICATION_FAILED");
}

#[tokio::test]
async fn sandbox_tokens_are_made_in_the_sandbox() {
    let production = VaultStandIn::start().await.unwrap();
    let sandbox = VaultStandIn::start().await.unwrap();
    production.add_sandbox("uat", &sandbox);
    let bootstrap = production.issue_token();
    let url = production.api_url("/objects/sandbox/uat/users/me/api_access_token__sys");
    let answer = call(
        Method::POST,
        &url,
        Some(&format!("Bearer {bootstrap}")),
        "name__v=s",
    )
    .await;
    assert_eq!(answer.status(), "SUCCESS", "{}", answer.json);
    let token = answer.json["data"]["token__sys"].as_str().unwrap();
    assert!(sandbox.is_active(token));
    assert!(!production.is_active(token));
    let url = production.api_url("/objects/sandbox/nope/users/me/api_access_token__sys");
    let missing = call(
        Method::POST,
        &url,
        Some(&format!("Bearer {bootstrap}")),
        "name__v=s",
    )
    .await;
    assert_eq!(missing.status(), "FAILURE");
}

#[tokio::test(start_paused = true)]
async fn expiry_dates_are_honoured_on_the_stand_ins_clock() {
    let vault = VaultStandIn::start().await.unwrap();
    let bootstrap = format!("Bearer {}", vault.issue_token());
    let expiry = vault.now() + Duration::from_secs(3600);
    let form = format!("name__v=hour&expiry_date__v={}", utc(expiry));
    let answer = create(&vault, &bootstrap, &form).await;
    let token = answer.json["data"]["token__sys"]
        .as_str()
        .unwrap()
        .to_owned();
    let me = vault.api_url("/objects/users/me");
    let bearer = format!("Bearer {token}");
    tokio::time::advance(Duration::from_secs(3590)).await;
    assert_eq!(
        call(Method::GET, &me, Some(&bearer), "").await.status(),
        "SUCCESS"
    );
    tokio::time::advance(Duration::from_secs(10)).await;
    let expired = call(Method::GET, &me, Some(&bearer), "").await;
    assert_eq!(expired.error_type(), "INVALID_SESSION_ID");

    // A profile that allows at most a day refuses longer lifetimes and no expiry at all.
    vault.set_max_token_lifetime(Some(Duration::from_secs(86_400)));
    let long = format!(
        "name__v=long&expiry_date__v={}",
        utc(vault.now() + Duration::from_secs(90_000))
    );
    assert_eq!(
        create(&vault, &bootstrap, &long).await.error_type(),
        "INVALID_DATA"
    );
    assert_eq!(
        create(&vault, &bootstrap, "name__v=forever")
            .await
            .error_type(),
        "INVALID_DATA"
    );
    let day = format!(
        "name__v=day&expiry_date__v={}",
        utc(vault.now() + Duration::from_secs(86_000))
    );
    assert_eq!(create(&vault, &bootstrap, &day).await.status(), "SUCCESS");
}

#[tokio::test(start_paused = true)]
async fn the_date_header_follows_the_skewed_clock() {
    let vault = VaultStandIn::start().await.unwrap();
    let parse = |answer: &Answer| {
        let date = answer.headers["date"].to_str().unwrap().to_owned();
        date
    };
    let url = format!("{}/api/", vault.base_url());
    let first = parse(&call(Method::GET, &url, None, "").await);
    vault.set_clock_offset(-420);
    tokio::time::advance(Duration::from_secs(3600)).await;
    let second = parse(&call(Method::GET, &url, None, "").await);
    assert!(first.ends_with(" GMT") && second.ends_with(" GMT"));
    let expected = vault.now();
    let text = format!("{expected:?}");
    assert_ne!(first, second, "{text}");
    // The header names the stand-in's time to the second.
    let secs = expected.duration_since(UNIX_EPOCH).unwrap().as_secs();
    let hms = format!(
        "{:02}:{:02}:{:02}",
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60
    );
    assert!(second.contains(&hms), "{second} vs {hms}");
}

#[tokio::test]
async fn each_user_has_their_own_25_and_sees_only_their_own_tokens() {
    let vault = VaultStandIn::start().await.unwrap();
    vault.add_user("a@example.com", "pa");
    vault.add_user("b@example.com", "pb");
    let a = vault
        .issue_token_for("a@example.com", Some("a bootstrap"), None)
        .unwrap();
    let b = vault
        .issue_token_for("b@example.com", Some("b bootstrap"), None)
        .unwrap();
    for n in 1..25 {
        let answer = create(&vault, &a, &format!("name__v=app+a+{n}")).await;
        assert_eq!(answer.status(), "SUCCESS");
    }
    let full = create(&vault, &a, "name__v=app+a+25").await;
    assert_eq!(full.status(), "FAILURE");
    assert_eq!(
        create(&vault, &b, "name__v=app+b+1").await.status(),
        "SUCCESS"
    );

    let q = "SELECT id, name__v, status__v, expiry_date__sys, last_used_date__sys \
             FROM api_access_token__sys WHERE status__v = 'active__v'";
    let seen_by_b = vql(&vault, &b, q).await;
    assert_eq!(seen_by_b.json["responseDetails"]["total"], 2);
    let rows = seen_by_b.json["data"].as_array().unwrap();
    assert!(rows.iter().all(
        |row| row["name__v"].as_str().unwrap().starts_with('b') || row["name__v"] == "app b 1"
    ));
    assert_eq!(rows[0]["status__v"], serde_json::json!(["active__v"]));
    assert!(
        rows[0]["last_used_date__sys"].is_string(),
        "the bootstrap was used"
    );
    let seen_by_a = vql(
        &vault,
        &a,
        "SELECT id FROM api_access_token__sys WHERE name__v LIKE 'app a%'",
    )
    .await;
    assert_eq!(seen_by_a.json["responseDetails"]["total"], 24);

    vault.set_picklists_as_arrays(false);
    let plain = vql(&vault, &b, q).await;
    assert_eq!(plain.json["data"][0]["status__v"], "active__v");

    // Deleting: a user's own tokens only, unless an admin.
    let a_id = seen_by_a.json["data"][0]["id"].as_str().unwrap().to_owned();
    let url = vault.api_url("/vobjects/api_access_token__sys");
    let body = format!(r#"[{{"id":"{a_id}"}}]"#);
    let by_b = call_json(Method::DELETE, &url, &b, &body).await;
    assert_eq!(by_b.json["data"][0]["responseStatus"], "FAILURE");
    vault.set_admin("b@example.com", true);
    let by_admin = call_json(Method::DELETE, &url, &b, &body).await;
    assert_eq!(by_admin.json["data"][0]["responseStatus"], "SUCCESS");
    assert_eq!(vault.active_tokens_of("a@example.com"), 24);
    let bad = vql(&vault, &b, "SELECT secret__v FROM api_access_token__sys").await;
    assert_eq!(bad.status(), "FAILURE");
    let bad = vql(&vault, &b, "SELECT id FROM api_access_token__sys WHERE").await;
    assert_eq!(bad.error_type(), "MALFORMED_QUERY");
    let other = vql(&vault, &b, "anything at all").await;
    assert_eq!(other.json["responseDetails"]["total"], 0);
}

async fn call_json(method: Method, url: &str, credential: &str, body: &str) -> Answer {
    let request = Request::builder()
        .method(method)
        .uri(url)
        .header("authorization", credential)
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_owned(),
        )))
        .unwrap();
    let response = http_client().request(request).await.unwrap();
    let headers = response.headers().clone();
    Answer {
        headers,
        json: serde_json::from_str(&text(response).await).unwrap(),
    }
}
