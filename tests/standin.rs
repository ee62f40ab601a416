//! Drives the Vault stand-in with a real HTTP client over loopback.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use veeva_vault_auth::testing::{Outcome, VaultStandIn};

const INVALID_SESSION_BODY: &str = r#"{"responseStatus":"FAILURE","errors":[{"type":"INVALID_SESSION_ID","message":"Invalid or expired session ID."}]}"#;

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
    json: Value,
}

impl Answer {
    fn vault_status(&self) -> &str {
        self.headers["x-vaultapi-status"].to_str().unwrap()
    }

    fn error_type(&self) -> &str {
        self.json["errors"][0]["type"].as_str().unwrap_or("")
    }
}

/// A tiny client: method, URL, optional bearer token, optional content type, body.
struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Http {
    fn new() -> Http {
        Http {
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: impl Into<Bytes>,
    ) -> Answer {
        let mut request = Request::builder().method(method).uri(url);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let request = request.body(Full::new(body.into())).unwrap();
        let response = self.client.request(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        let json = serde_json::from_str(&text).unwrap();
        Answer {
            status,
            headers,
            text,
            json,
        }
    }

    async fn get(&self, url: &str, token: Option<&str>) -> Answer {
        self.send(Method::GET, url, token, None, "").await
    }

    async fn create_token(&self, vault: &VaultStandIn, token: &str, form: &str) -> Answer {
        let url = vault.api_url("/objects/users/me/api_access_token__sys");
        let form_type = Some("application/x-www-form-urlencoded");
        self.send(Method::POST, &url, Some(token), form_type, form.to_owned())
            .await
    }
}

fn assert_vault_headers(answer: &Answer, status: &str) {
    assert_eq!(
        answer.headers["content-type"],
        "application/json;charset=UTF-8"
    );
    assert_eq!(answer.vault_status(), status);
    assert!(!answer.headers["x-vaultapi-executionid"].is_empty());
    assert_eq!(answer.json["responseStatus"], status);
}

fn assert_invalid_session(answer: &Answer) {
    assert_eq!(answer.status, StatusCode::OK);
    assert_vault_headers(answer, "FAILURE");
    assert_eq!(answer.text, INVALID_SESSION_BODY);
    assert!(!answer.headers.contains_key("www-authenticate"));
}

fn utc_in(seconds_from_now: u64) -> String {
    let at = SystemTime::now() + Duration::from_secs(seconds_from_now);
    let seconds = at.duration_since(UNIX_EPOCH).unwrap().as_secs();
    // Days to a civil date, inverse of the stand-in's parser, via a known anchor (1970-01-01).
    let (days, of_day) = (seconds / 86_400, seconds % 86_400);
    let (mut year, mut day_of_year) = (1970, days);
    loop {
        let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
        let len = if leap { 366 } else { 365 };
        if day_of_year < len {
            let months = [
                31,
                if leap { 29 } else { 28 },
                31,
                30,
                31,
                30,
                31,
                31,
                30,
                31,
                30,
                31,
            ];
            let mut month = 0;
            while day_of_year >= months[month] {
                day_of_year -= months[month];
                month += 1;
            }
            return format!(
                "{year:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
                month + 1,
                day_of_year + 1,
                of_day / 3600,
                of_day % 3600 / 60,
                of_day % 60
            );
        }
        day_of_year -= len;
        year += 1;
    }
}

#[tokio::test]
async fn valid_token_gets_success() {
    let vault = VaultStandIn::start().await.unwrap();
    let http = Http::new();
    let token = vault.issue_token();

    let answer = http
        .get(&vault.api_url("/objects/documents"), Some(&token))
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_vault_headers(&answer, "SUCCESS");
    assert_eq!(answer.json["documents"].as_array().unwrap().len(), 2);

    let me = http
        .get(&vault.api_url("/objects/users/me"), Some(&token))
        .await;
    assert_eq!(
        me.json["users"][0]["user"]["user_name__v"],
        "integration@example.com"
    );

    let requests = vault.requests();
    assert_eq!(vault.request_count(), 2);
    assert_eq!(requests[0].path, "/api/v26.2/objects/documents");
    assert_eq!(requests[0].outcome, Outcome::Accepted);
    assert_eq!(requests[1].path, "/api/v26.2/objects/users/me");
    vault.clear_requests();
    assert_eq!(vault.request_count(), 0);
}

#[tokio::test]
async fn raw_token_without_bearer_is_accepted() {
    let vault = VaultStandIn::start().await.unwrap();
    let token = vault.issue_token();
    let request = Request::post(vault.api_url("/keep-alive"))
        .header("authorization", token)
        .header("x-vaultapi-referenceid", "ref-1")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let client = Http::new().client;
    let response = client.request(request).await.unwrap();
    assert_eq!(response.headers()["x-vaultapi-status"], "SUCCESS");
    assert_eq!(response.headers()["x-vaultapi-referenceid"], "ref-1");
}

#[tokio::test]
async fn revoked_unknown_or_missing_credentials_get_invalid_session_id() {
    let vault = VaultStandIn::start().await.unwrap();
    let http = Http::new();
    let token = vault.issue_token();
    assert!(vault.revoke(&token));
    assert!(!vault.revoke(&token));
    assert!(!vault.is_active(&token));

    let url = vault.api_url("/objects/documents");
    assert_invalid_session(&http.get(&url, Some(&token)).await);
    assert_invalid_session(&http.get(&url, Some("veeva-vault-unknown")).await);
    assert_invalid_session(&http.get(&url, None).await);

    let outcomes: Vec<Outcome> = vault.requests().iter().map(|r| r.outcome).collect();
    assert_eq!(outcomes, [Outcome::InvalidSession; 3]);
}

#[tokio::test]
async fn unauthorized_mode_answers_401_with_the_same_body() {
    let vault = VaultStandIn::start().await.unwrap();
    let http = Http::new();
    vault.set_unauthorized_mode(true);
    let url = vault.api_url("/objects/documents");

    let answer = http.get(&url, Some("veeva-vault-nope")).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_vault_headers(&answer, "FAILURE");
    assert_eq!(answer.text, INVALID_SESSION_BODY);
    assert_eq!(vault.requests()[0].outcome, Outcome::Unauthorized);

    let token = vault.issue_token();
    assert_eq!(http.get(&url, Some(&token)).await.status, StatusCode::OK);

    vault.set_unauthorized_mode(false);
    assert_invalid_session(&http.get(&url, None).await);
}

#[tokio::test]
async fn tokens_are_created_with_form_and_json_bodies() {
    let vault = VaultStandIn::start().await.unwrap();
    let http = Http::new();
    let token = vault.issue_token();

    let form = http.create_token(&vault, &token, "name__v=From+form").await;
    assert_vault_headers(&form, "SUCCESS");
    let id = form.json["data"]["id"].as_str().unwrap().to_owned();
    let created = form.json["data"]["token__sys"].as_str().unwrap().to_owned();
    assert!(id.starts_with("V8T") && id.len() == 15, "{id}");
    assert!(created.starts_with("veeva-vault-") && created.len() == 44);
    assert!(vault.is_active(&created));

    let expiry = utc_in(3_600);
    let body = format!(r#"{{"name__v":"From JSON","expiry_date__v":"{expiry}"}}"#);
    let url = vault.api_url("/objects/users/me/api_access_token__sys");
    let json = http
        .send(
            Method::POST,
            &url,
            Some(&created),
            Some("application/json"),
            body,
        )
        .await;
    assert_vault_headers(&json, "SUCCESS");
    let json_id = json.json["data"]["id"].as_str().unwrap().to_owned();
    assert_ne!(json_id, id);
    assert_eq!(vault.active_token_count(), 3);

    // Metadata never shows the value.
    let meta_url = vault.api_url(&format!("/vobjects/api_access_token__sys/{json_id}"));
    let meta = http.get(&meta_url, Some(&token)).await;
    assert_vault_headers(&meta, "SUCCESS");
    let data = &meta.json["data"];
    assert_eq!(data["id"], json_id.as_str());
    assert_eq!(data["name__v"], "From JSON");
    assert_eq!(data["status__v"], "active__v");
    assert_eq!(data["user__sys"], "61234");
    assert_eq!(data["last_used_date__sys"], Value::Null);
    let expected_expiry = expiry.replace('Z', ".000Z");
    assert_eq!(data["expiry_date__sys"], expected_expiry.as_str());
    assert!(!meta.text.contains("veeva-vault-"));
}

#[tokio::test]
async fn token_creation_rejects_bad_input() {
    let vault = VaultStandIn::start().await.unwrap();
    let http = Http::new();
    let token = vault.issue_token();

    let cases = [
        ("expiry_date__v=2030-01-01T00:00:00Z", "PARAMETER_REQUIRED"),
        ("name__v=", "PARAMETER_REQUIRED"),
        ("name__v=x&expiry_date__v=2030-01-01", "INVALID_DATA"),
        (
            "name__v=x&expiry_date__v=2030-02-30T00:00:00Z",
            "INVALID_DATA",
        ),
        (
            "name__v=x&expiry_date__v=2001-01-01T00:00:00Z",
            "INVALID_DATA",
        ),
    ];
    for (form, error_type) in cases {
        let answer = http.create_token(&vault, &token, form).await;
        assert_eq!(answer.status, StatusCode::OK, "{form}");
        assert_vault_headers(&answer, "FAILURE");
        assert_eq!(answer.error_type(), error_type, "{form}");
    }
    let url = vault.api_url("/objects/users/me/api_access_token__sys");
    let json_type = Some("application/json");
    for body in [&b"{not json"[..], b"[]", b"\xff\xfe"] {
        let answer = http
            .send(Method::POST, &url, Some(&token), json_type, body)
            .await;
        assert_eq!(answer.error_type(), "INVALID_DATA");
    }
    assert_eq!(vault.active_token_count(), 1);
    assert!(vault
        .requests()
        .iter()
        .all(|r| r.outcome == Outcome::Failed));
}

#[tokio::test]
async fn at_most_25_active_tokens() {
    let vault = VaultStandIn::start().await.unwrap();
    let http = Http::new();
    let token = vault.issue_token();
    let mut last_id = String::new();
    for n in 2..=25 {
        let answer = http
            .create_token(&vault, &token, &format!("name__v=t{n}"))
            .await;
        assert_eq!(answer.vault_status(), "SUCCESS", "token {n}");
        last_id = answer.json["data"]["id"].as_str().unwrap().to_owned();
    }
    assert_eq!(vault.active_token_count(), 25);

    let refused = http.create_token(&vault, &token, "name__v=t26").await;
    assert_eq!(refused.status, StatusCode::OK);
    assert_vault_headers(&refused, "FAILURE");
    assert_eq!(refused.error_type(), "OPERATION_NOT_ALLOWED");
    assert!(!refused.json["errors"][0]["message"]
        .as_str()
        .unwrap()
        .is_empty());

    // Deleting one makes room again.
    let revoke_url = vault.api_url("/vobjects/api_access_token__sys");
    let body = format!(r#"[{{"id":"{last_id}"}}]"#);
    let json_type = Some("application/json");
    let revoked = http
        .send(Method::DELETE, &revoke_url, Some(&token), json_type, body)
        .await;
    assert_eq!(revoked.vault_status(), "SUCCESS");
    assert_eq!(vault.active_token_count(), 24);
    let again = http.create_token(&vault, &token, "name__v=t26").await;
    assert_eq!(again.vault_status(), "SUCCESS");
}

#[tokio::test]
async fn tokens_are_revoked_by_delete_and_by_method_override() {
    let vault = VaultStandIn::start().await.unwrap();
    let http = Http::new();
    let admin = vault.issue_token();
    let mut created = Vec::new();
    for n in 0..2 {
        let answer = http
            .create_token(&vault, &admin, &format!("name__v=t{n}"))
            .await;
        let data = &answer.json["data"];
        created.push((
            data["id"].as_str().unwrap().to_owned(),
            data["token__sys"].as_str().unwrap().to_owned(),
        ));
    }
    let url = vault.api_url("/vobjects/api_access_token__sys");
    let json_type = Some("application/json");

    let body = format!(
        r#"[{{"id":"{}"}},{{"id":"V8T999999999999"}}]"#,
        created[0].0
    );
    let answer = http
        .send(Method::DELETE, &url, Some(&admin), json_type, body)
        .await;
    assert_vault_headers(&answer, "SUCCESS");
    let items = answer.json["data"].as_array().unwrap();
    assert_eq!(items[0]["responseStatus"], "SUCCESS");
    assert_eq!(items[0]["id"], created[0].0.as_str());
    assert_eq!(items[1]["responseStatus"], "FAILURE");
    assert!(!vault.is_active(&created[0].1));
    assert!(vault.is_active(&created[1].1));

    let override_url = format!("{url}?_method=DELETE");
    let body = format!(r#"[{{"id":"{}"}}]"#, created[1].0);
    let answer = http
        .send(Method::POST, &override_url, Some(&admin), json_type, body)
        .await;
    assert_vault_headers(&answer, "SUCCESS");
    assert!(!vault.is_active(&created[1].1));
    assert_invalid_session(
        &http
            .get(&vault.api_url("/objects/documents"), Some(&created[1].1))
            .await,
    );

    let meta_url = vault.api_url(&format!("/vobjects/api_access_token__sys/{}", created[1].0));
    let meta = http.get(&meta_url, Some(&admin)).await;
    assert_eq!(meta.json["data"]["status__v"], "inactive__v");
    assert_eq!(vault.active_token_count(), 1);
    vault.revoke_all();
    assert_eq!(vault.active_token_count(), 0);
}

#[tokio::test]
async fn a_token_revoked_while_a_request_is_held_is_rejected() {
    let vault = VaultStandIn::start().await.unwrap();
    let token = vault.issue_token();
    let other = vault.issue_token();
    vault.hold_requests(true);

    let send = |token: String| {
        let url = vault.api_url("/objects/documents");
        tokio::spawn(async move { Http::new().get(&url, Some(&token)).await })
    };
    let revoked_request = send(token.clone());
    let kept_request = send(other.clone());
    vault.wait_for_held(2).await;

    // Both are recorded before they are answered.
    let requests = vault.requests();
    assert_eq!(requests.len(), 2);
    assert!(requests.iter().all(|r| r.outcome == Outcome::Pending));

    assert!(vault.revoke(&token));
    vault.release();
    assert_invalid_session(&revoked_request.await.unwrap());
    assert_eq!(kept_request.await.unwrap().vault_status(), "SUCCESS");

    // Still holding: the next request waits again until hold_requests(false).
    let third = send(other.clone());
    vault.wait_for_held(1).await;
    assert_eq!(vault.request_count(), 3);
    vault.hold_requests(false);
    assert_eq!(third.await.unwrap().vault_status(), "SUCCESS");

    let mut outcomes: Vec<Outcome> = vault.requests().iter().map(|r| r.outcome).collect();
    outcomes.sort_by_key(|o| *o == Outcome::Accepted);
    assert_eq!(
        outcomes,
        [
            Outcome::InvalidSession,
            Outcome::Accepted,
            Outcome::Accepted
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn tokens_expire_with_paused_time() {
    let vault = VaultStandIn::start().await.unwrap();
    let http = Http::new();
    let short = vault.issue_token_expiring_in(Duration::from_secs(60));
    let forever = vault.issue_token();
    let url = vault.api_url("/objects/documents");

    assert_eq!(http.get(&url, Some(&short)).await.vault_status(), "SUCCESS");
    tokio::time::advance(Duration::from_secs(59)).await;
    assert!(vault.is_active(&short));
    assert_eq!(http.get(&url, Some(&short)).await.vault_status(), "SUCCESS");

    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(!vault.is_active(&short));
    assert_eq!(vault.active_token_count(), 1);
    assert_invalid_session(&http.get(&url, Some(&short)).await);

    // A token created through the API with an expiry date one hour ahead.
    let form = format!("name__v=hourly&expiry_date__v={}", utc_in(3_600));
    let created = http.create_token(&vault, &forever, &form).await;
    let hourly = created.json["data"]["token__sys"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        http.get(&url, Some(&hourly)).await.vault_status(),
        "SUCCESS"
    );
    tokio::time::advance(Duration::from_secs(3_601)).await;
    assert_invalid_session(&http.get(&url, Some(&hourly)).await);
    assert_eq!(
        http.get(&url, Some(&forever)).await.vault_status(),
        "SUCCESS"
    );
}

#[tokio::test]
async fn injected_failures_answer_failure_until_cleared() {
    let vault = VaultStandIn::start().await.unwrap();
    let http = Http::new();
    let token = vault.issue_token();
    vault.fail_path_with("/objects/documents", "INSUFFICIENT_ACCESS");
    let url = vault.api_url("/objects/documents");

    let answer = http.get(&url, Some(&token)).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_vault_headers(&answer, "FAILURE");
    assert_eq!(answer.error_type(), "INSUFFICIENT_ACCESS");
    // A bad credential still gets INVALID_SESSION_ID.
    assert_invalid_session(&http.get(&url, None).await);
    // Other paths are unaffected.
    let me = http
        .get(&vault.api_url("/objects/users/me"), Some(&token))
        .await;
    assert_eq!(me.vault_status(), "SUCCESS");

    vault.clear_failures();
    assert_eq!(http.get(&url, Some(&token)).await.vault_status(), "SUCCESS");
    let outcomes: Vec<Outcome> = vault.requests().iter().map(|r| r.outcome).collect();
    assert_eq!(
        outcomes,
        [
            Outcome::Failed,
            Outcome::InvalidSession,
            Outcome::Accepted,
            Outcome::Accepted
        ]
    );
}

#[tokio::test]
async fn unknown_paths_get_404_and_versions_need_no_credential() {
    let vault = VaultStandIn::start().await.unwrap();
    let http = Http::new();
    let token = vault.issue_token();

    for url in [
        vault.api_url("/no/such/thing"),
        format!("{}/elsewhere", vault.base_url()),
        format!("{}/api/latest/objects/documents", vault.base_url()),
    ] {
        let answer = http.get(&url, Some(&token)).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{url}");
        assert_vault_headers(&answer, "FAILURE");
        assert_eq!(answer.error_type(), "MALFORMED_URL");
    }
    assert!(vault
        .requests()
        .iter()
        .all(|r| r.outcome == Outcome::NotFound));

    let versions = http.get(&format!("{}/api/", vault.base_url()), None).await;
    assert_vault_headers(&versions, "SUCCESS");
    assert_eq!(
        versions.json["values"]["v26.2"],
        format!("{}/api/v26.2", vault.base_url()).as_str()
    );
}

#[tokio::test]
async fn query_records_the_post_body() {
    let vault = VaultStandIn::start().await.unwrap();
    let http = Http::new();
    let token = vault.issue_token();
    let url = vault.api_url("/query");
    let form = "application/x-www-form-urlencoded";
    let form_type = Some(form);
    let body = "q=SELECT+id+FROM+documents";

    let answer = http
        .send(Method::POST, &url, Some(&token), form_type, body)
        .await;
    assert_vault_headers(&answer, "SUCCESS");
    assert_eq!(answer.json["responseDetails"]["size"], 0);
    assert_eq!(answer.json["data"], Value::Array(Vec::new()));

    let missing = http
        .send(Method::POST, &url, Some(&token), form_type, "")
        .await;
    assert_eq!(missing.error_type(), "PARAMETER_REQUIRED");

    let recorded = &vault.requests()[0];
    assert_eq!(recorded.method, Method::POST);
    assert_eq!(recorded.body, body);
    assert_eq!(recorded.headers["content-type"], form);
}

#[tokio::test]
async fn oversized_bodies_are_refused_without_panicking() {
    let vault = VaultStandIn::start().await.unwrap();
    let http = Http::new();
    let token = vault.issue_token();
    let url = vault.api_url("/query");
    let body = vec![b'q'; 1024 * 1024 + 1];

    let answer = http
        .send(Method::POST, &url, Some(&token), None, body)
        .await;
    assert_vault_headers(&answer, "FAILURE");
    assert_eq!(answer.error_type(), "INVALID_DATA");
    let recorded = &vault.requests()[0];
    assert_eq!(recorded.body.len(), 1024 * 1024);
    assert_eq!(recorded.outcome, Outcome::Failed);

    // The server still works.
    let ok = http
        .get(&vault.api_url("/objects/documents"), Some(&token))
        .await;
    assert_eq!(ok.vault_status(), "SUCCESS");
}

#[tokio::test]
async fn debug_output_never_shows_the_token() {
    let vault = VaultStandIn::start().await.unwrap();
    let http = Http::new();
    let token = vault.issue_token();
    let url = vault.api_url(&format!("/objects/documents?echo={token}"));
    http.get(&url, Some(&token)).await;

    let recorded = vault.requests();
    assert_eq!(
        recorded[0].headers["authorization"],
        format!("Bearer {token}").as_str()
    );
    for debug in [
        format!("{:?}", recorded[0]),
        format!("{:#?}", recorded),
        format!("{vault:?}"),
    ] {
        assert!(!debug.contains(&token), "{debug}");
        assert!(!debug.contains(&token["veeva-vault-".len()..]), "{debug}");
    }
    assert!(format!("{:?}", recorded[0]).contains("[REDACTED]"));
}

#[tokio::test]
async fn dropping_the_last_handle_stops_the_server() {
    let vault = VaultStandIn::start().await.unwrap();
    let token = vault.issue_token();
    let clone = vault.clone();
    let url = vault.api_url("/objects/documents");
    drop(vault);
    let ok = Http::new().get(&url, Some(&token)).await;
    assert_eq!(ok.vault_status(), "SUCCESS");

    drop(clone);
    let request = Request::get(&url).body(Full::new(Bytes::new())).unwrap();
    assert!(Http::new().client.request(request).await.is_err());
}

#[tokio::test]
async fn shutdown_drops_held_requests() {
    let vault = VaultStandIn::start().await.unwrap();
    let url = vault.api_url("/objects/documents");
    vault.hold_requests(true);
    let held = tokio::spawn(async move {
        let request = Request::get(&url).body(Full::new(Bytes::new())).unwrap();
        Http::new().client.request(request).await
    });
    vault.wait_for_held(1).await;
    vault.shutdown();
    assert!(held.await.unwrap().is_err());
    assert_eq!(vault.requests()[0].outcome, Outcome::Pending);
}
