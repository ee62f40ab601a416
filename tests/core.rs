//! The core promises, through real HTTP: hyper-util client → VaultAuth → the Vault stand-in.

mod common;

use std::time::Duration;

use common::*;
use http::header::AUTHORIZATION;
use veeva_vault_auth::source::{EnvToken, FileToken, SourceErrorKind, StaticToken};
use veeva_vault_auth::testing::{Outcome, VaultStandIn};
use veeva_vault_auth::{
    AccessToken, AuthHandle, BoxError, ConfigError, NotForVault, ResponseBody, ResponseFuture,
    TokenUnavailable, UnavailableKind, VaultAuth, VaultAuthLayer,
};

fn auth_header(vault: &VaultStandIn, index: usize) -> Option<String> {
    vault.requests()[index]
        .headers
        .get(AUTHORIZATION)
        .map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn attaches_the_exact_bearer_header_over_real_http() {
    let vault = VaultStandIn::start().await.unwrap();
    let token = vault.issue_token();
    let layer =
        VaultAuthLayer::new(&vault.base_url(), StaticToken::new(token.clone()).unwrap()).unwrap();
    let client = authed(&layer);

    let response = send(&client, get(&vault.api_url("/objects/users/me")))
        .await
        .unwrap();
    assert_eq!(response.headers()["x-vaultapi-status"], "SUCCESS");
    assert!(text(response).await.contains("SUCCESS"));

    let response = send(
        &client,
        post_form(&vault.api_url("/query"), "q=SELECT+id+FROM+documents"),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);

    let seen = vault.requests();
    assert_eq!(seen.len(), 2);
    for request in &seen {
        assert_eq!(request.outcome, Outcome::Accepted);
        assert_eq!(request.headers.get_all(AUTHORIZATION).iter().count(), 1);
    }
    assert_eq!(auth_header(&vault, 0).unwrap(), format!("Bearer {token}"));
    assert_eq!(auth_header(&vault, 1).unwrap(), format!("Bearer {token}"));
    assert_eq!(&seen[1].body[..], b"q=SELECT+id+FROM+documents");
    assert_eq!(layer.handle().status().fetches, 1);
}

#[tokio::test]
async fn another_host_never_sees_the_token() {
    let vault = VaultStandIn::start().await.unwrap();
    let other = VaultStandIn::start().await.unwrap();
    let token = vault.issue_token();
    let layer = VaultAuthLayer::new(&vault.base_url(), StaticToken::new(token).unwrap()).unwrap();
    let client = authed(&layer);

    let err = send(&client, get(&other.api_url("/objects/users/me")))
        .await
        .unwrap_err();
    let refused = err.downcast_ref::<NotForVault>().expect("typed error");
    assert_eq!(refused.origin(), Some(other.base_url().as_str()));
    assert_eq!(refused.vault(), vault.base_url());
    assert_eq!(
        other.request_count(),
        0,
        "a refused request is not sent at all"
    );

    // Same host, other scheme or port, or no host at all: also refused.
    let port = vault.addr().port();
    for url in [
        format!("http://localhost:{port}/api/v26.2/objects/users/me"),
        "/api/v26.2/objects/users/me".to_owned(),
    ] {
        let err = send(&client, get(&url)).await.unwrap_err();
        assert!(err.is::<NotForVault>(), "{url}: {err}");
    }
    assert_eq!(vault.request_count(), 0);

    let passing = VaultAuthLayer::builder(
        &vault.base_url(),
        StaticToken::new(vault.issue_token()).unwrap(),
    )
    .pass_through_other_hosts(true)
    .build()
    .unwrap();
    let response = send(&authed(&passing), get(&other.api_url("/objects/users/me")))
        .await
        .unwrap();
    assert_eq!(other.requests()[0].outcome, Outcome::InvalidSession);
    assert!(other.requests()[0].headers.get(AUTHORIZATION).is_none());
    assert!(text(response).await.contains("INVALID_SESSION_ID"));
}

#[test]
fn the_vault_url_must_be_https_unless_loopback() {
    let source = || StaticToken::new("veeva-vault-abc").unwrap();
    for url in ["http://myvault.veevavault.com", "http://192.168.1.10:8080"] {
        let err = VaultAuthLayer::new(url, source()).unwrap_err();
        assert!(matches!(err, ConfigError::InsecureScheme { .. }), "{url}");
    }
    assert!(VaultAuthLayer::new("https://myvault.veevavault.com", source()).is_ok());
    assert!(VaultAuthLayer::new("http://127.0.0.1:9", source()).is_ok());
    assert!(
        VaultAuthLayer::new("myvault.veevavault.com", source()).is_ok(),
        "a bare DNS name is read as https://"
    );
    for bad in [
        "not a url",
        "ftp://myvault.veevavault.com",
        "https://",
        "https://me@myvault.veevavault.com",
        "https://myvault.veevavault.com/api",
    ] {
        assert!(
            matches!(
                VaultAuthLayer::new(bad, source()).unwrap_err(),
                ConfigError::InvalidVaultUrl { .. }
            ),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn the_callers_own_authorization_is_left_alone_unless_overridden() {
    let vault = VaultStandIn::start().await.unwrap();
    let layer_token = vault.issue_token();
    let own_token = vault.issue_token();
    let own = |url: &str| {
        let mut request = get(url);
        request.headers_mut().insert(
            AUTHORIZATION,
            format!("Bearer {own_token}").parse().unwrap(),
        );
        request
    };

    let layer = VaultAuthLayer::new(
        &vault.base_url(),
        StaticToken::new(layer_token.clone()).unwrap(),
    )
    .unwrap();
    send(&authed(&layer), own(&vault.api_url("/objects/users/me")))
        .await
        .unwrap();
    assert_eq!(
        auth_header(&vault, 0).unwrap(),
        format!("Bearer {own_token}")
    );
    assert_eq!(layer.handle().status().fetches, 0, "no token was needed");

    let overriding = VaultAuthLayer::builder(
        &vault.base_url(),
        StaticToken::new(layer_token.clone()).unwrap(),
    )
    .override_authorization(true)
    .build()
    .unwrap();
    send(
        &authed(&overriding),
        own(&vault.api_url("/objects/users/me")),
    )
    .await
    .unwrap();
    assert_eq!(
        auth_header(&vault, 1).unwrap(),
        format!("Bearer {layer_token}")
    );
}

#[tokio::test(start_paused = true)]
async fn the_first_requests_share_one_fetch() {
    let vault = VaultStandIn::start().await.unwrap();
    let token = vault.issue_token();
    let source = ScriptedSource::fixed(&token);
    source.close_gate();
    let layer = VaultAuthLayer::new(&vault.base_url(), source.clone()).unwrap();
    let client = authed(&layer);

    let url = vault.api_url("/objects/users/me");
    let tasks = spawn_many(50, |_| {
        let (client, url) = (client.clone(), url.clone());
        async move { send(&client, get(&url)).await.map(|r| r.status()) }
    });
    eventually("all 50 requests wait on the fetch", || {
        source.fetches() == 1
    })
    .await;
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        vault.request_count(),
        0,
        "nothing is sent before the token is known"
    );
    source.open(1);
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), 200);
    }
    assert_eq!(source.fetches(), 1);
    assert_eq!(vault.request_count(), 50);
    assert!(vault
        .requests()
        .iter()
        .all(|r| r.outcome == Outcome::Accepted));
}

#[tokio::test(start_paused = true)]
async fn a_new_env_value_reaches_the_next_requests() {
    let _clock = hold_clock();
    let var = "VVA_TEST_ENV_ROTATION";
    let vault = VaultStandIn::start().await.unwrap();
    let (first, second) = (vault.issue_token(), vault.issue_token());
    std::env::set_var(var, format!("  {first}\n"));
    let layer = VaultAuthLayer::new(
        &vault.base_url(),
        EnvToken::from_var(var).with_poll_interval(Duration::from_secs(5)),
    )
    .unwrap();
    let client = authed(&layer);
    let url = vault.api_url("/objects/users/me");

    send(&client, get(&url)).await.unwrap();
    std::env::set_var(var, &second);
    send(&client, get(&url)).await.unwrap();
    assert_eq!(
        auth_header(&vault, 1).unwrap(),
        format!("Bearer {first}"),
        "not polled yet"
    );

    tokio::time::advance(Duration::from_secs(5)).await;
    let handle = layer.handle();
    eventually("the poll installs the new token", || {
        handle.status().generation == Some(2)
    })
    .await;
    send(&client, get(&url)).await.unwrap();
    assert_eq!(auth_header(&vault, 2).unwrap(), format!("Bearer {second}"));

    // A broken value never replaces the working token.
    std::env::set_var(var, "not-a-token");
    tokio::time::advance(Duration::from_secs(5)).await;
    eventually("the poll fails", || handle.status().fetch_failures == 1).await;
    send(&client, get(&url)).await.unwrap();
    assert_eq!(auth_header(&vault, 3).unwrap(), format!("Bearer {second}"));
    assert!(vault
        .requests()
        .iter()
        .all(|r| r.outcome == Outcome::Accepted));
    std::env::remove_var(var);
}

#[tokio::test(start_paused = true)]
async fn a_rewritten_token_file_reaches_the_next_requests() {
    let _clock = hold_clock();
    let dir = temp_dir("rotation");
    let path = dir.join("token");
    let vault = VaultStandIn::start().await.unwrap();
    let tokens: Vec<String> = (0..4).map(|_| vault.issue_token()).collect();
    std::fs::write(&path, format!("{}\n", tokens[0])).unwrap();

    let layer = VaultAuthLayer::new(&vault.base_url(), FileToken::new(&path)).unwrap();
    let handle = layer.handle();
    let client = authed(&layer);
    let url = vault.api_url("/objects/users/me");
    send(&client, get(&url)).await.unwrap();

    let poll = |generation: u64| {
        let handle = handle.clone();
        async move {
            tokio::time::advance(Duration::from_secs(5)).await;
            eventually("the poll installs the new token", || {
                handle.status().generation.is_some_and(|g| g >= generation)
            })
            .await;
        }
    };

    // 1. Atomic rename over the file.
    let next = dir.join("next");
    std::fs::write(&next, format!("{}\n", tokens[1])).unwrap();
    std::fs::rename(&next, &path).unwrap();
    poll(2).await;
    send(&client, get(&url)).await.unwrap();
    assert_eq!(
        auth_header(&vault, 1).unwrap(),
        format!("Bearer {}", tokens[1])
    );

    // 2. Rewrite in place.
    std::fs::write(&path, tokens[2].as_bytes()).unwrap();
    poll(3).await;
    send(&client, get(&url)).await.unwrap();
    assert_eq!(
        auth_header(&vault, 2).unwrap(),
        format!("Bearer {}", tokens[2])
    );

    // 3. The Kubernetes secret-volume swap: `token -> ..data/token`, `..data -> ..v2`.
    let kube = dir.join("kube");
    std::fs::create_dir_all(kube.join("..v1")).unwrap();
    std::fs::create_dir_all(kube.join("..v2")).unwrap();
    std::fs::write(kube.join("..v1/token"), &tokens[0]).unwrap();
    std::fs::write(kube.join("..v2/token"), &tokens[3]).unwrap();
    std::os::unix::fs::symlink("..v1", kube.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/token", kube.join("token")).unwrap();
    let kube_layer =
        VaultAuthLayer::new(&vault.base_url(), FileToken::new(kube.join("token"))).unwrap();
    let kube_client = authed(&kube_layer);
    send(&kube_client, get(&url)).await.unwrap();
    assert_eq!(
        auth_header(&vault, 3).unwrap(),
        format!("Bearer {}", tokens[0])
    );
    std::os::unix::fs::symlink("..v2", kube.join("..data_tmp")).unwrap();
    std::fs::rename(kube.join("..data_tmp"), kube.join("..data")).unwrap();
    let kube_handle = kube_layer.handle();
    tokio::time::advance(Duration::from_secs(5)).await;
    eventually("the swap is seen", || {
        kube_handle.status().generation == Some(2)
    })
    .await;
    send(&kube_client, get(&url)).await.unwrap();
    assert_eq!(
        auth_header(&vault, 4).unwrap(),
        format!("Bearer {}", tokens[3])
    );

    // 4. Missing, empty, newline only, garbage: the last good token stays.
    for bad in [
        None,
        Some(""),
        Some("\n"),
        Some("garbage\n"),
        Some("veeva-vault-a b\n"),
    ] {
        match bad {
            None => std::fs::remove_file(&path).unwrap(),
            Some(content) => std::fs::write(&path, content).unwrap(),
        }
        let failures = handle.status().fetch_failures;
        tokio::time::advance(Duration::from_secs(60)).await;
        eventually("the poll fails", || {
            handle.status().fetch_failures > failures
        })
        .await;
        let before = vault.request_count();
        send(&client, get(&url)).await.unwrap();
        assert_eq!(
            auth_header(&vault, before).unwrap(),
            format!("Bearer {}", tokens[2]),
            "{bad:?} must not replace the token"
        );
    }
    let status = handle.status();
    assert!(status.last_error.is_some());
    assert!(!format!("{status:?}").contains("veeva-vault-"));
    assert!(vault
        .requests()
        .iter()
        .all(|r| r.outcome == Outcome::Accepted));
}

#[tokio::test]
async fn an_unusable_source_is_a_typed_error_and_nothing_is_sent() {
    let vault = VaultStandIn::start().await.unwrap();
    std::env::remove_var("VVA_TEST_ENV_UNSET");
    let layer =
        VaultAuthLayer::new(&vault.base_url(), EnvToken::from_var("VVA_TEST_ENV_UNSET")).unwrap();
    let err = send(&authed(&layer), get(&vault.api_url("/objects/users/me")))
        .await
        .unwrap_err();
    let err = err.downcast_ref::<TokenUnavailable>().expect("typed error");
    assert_eq!(err.kind(), UnavailableKind::Source);
    assert_eq!(
        err.source_error().unwrap().kind(),
        SourceErrorKind::NotFound
    );
    assert!(err.to_string().contains("VVA_TEST_ENV_UNSET"), "{err}");
    // The source's error is the error's `source()` too, for error reporters that walk the chain.
    let cause = std::error::Error::source(err).expect("a cause");
    let cause = cause
        .downcast_ref::<veeva_vault_auth::source::SourceError>()
        .expect("the source's error");
    assert_eq!(cause.kind(), SourceErrorKind::NotFound);
    assert_eq!(vault.request_count(), 0);

    // Backing off: the next request fails at once without asking the source again.
    let err = send(&authed(&layer), get(&vault.api_url("/objects/users/me")))
        .await
        .unwrap_err();
    let err = err.downcast_ref::<TokenUnavailable>().unwrap();
    assert!(err.retry_in().is_some());
    assert_eq!(layer.handle().status().fetches, 1);
}

#[tokio::test]
async fn env_values_that_are_not_tokens_are_distinct_errors() {
    use std::os::unix::ffi::OsStringExt;
    let cases: [(&str, std::ffi::OsString, SourceErrorKind); 5] = [
        ("VVA_ENV_EMPTY", "".into(), SourceErrorKind::Empty),
        ("VVA_ENV_BLANK", " \t\n".into(), SourceErrorKind::Empty),
        (
            "VVA_ENV_BYTES",
            std::ffi::OsString::from_vec(b"veeva-vault-\xff".to_vec()),
            SourceErrorKind::NotUnicode,
        ),
        (
            "VVA_ENV_PREFIX",
            "vault-abc".into(),
            SourceErrorKind::InvalidToken,
        ),
        (
            "VVA_ENV_INNER",
            "veeva-vault-a b".into(),
            SourceErrorKind::InvalidToken,
        ),
    ];
    for (var, value, kind) in cases {
        std::env::set_var(var, &value);
        let err = EnvToken::from_var(var).read().unwrap_err();
        assert_eq!(err.kind(), kind, "{var}");
        assert!(err.to_string().contains(var));
        let shown = value.to_string_lossy().trim().to_owned();
        assert!(
            shown.is_empty() || !err.to_string().contains(&shown),
            "{err}"
        );
        std::env::remove_var(var);
    }
    std::env::remove_var("VVA_ENV_UNSET");
    assert_eq!(
        EnvToken::from_var("VVA_ENV_UNSET")
            .read()
            .unwrap_err()
            .kind(),
        SourceErrorKind::NotFound
    );
}

#[tokio::test]
async fn token_files_that_are_not_tokens_are_distinct_errors() {
    let dir = temp_dir("bad-files");
    let write = |name: &str, content: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        path
    };
    let cases = [
        (dir.join("missing"), SourceErrorKind::NotFound),
        (write("empty", b""), SourceErrorKind::Empty),
        (write("newline", b"\n"), SourceErrorKind::Empty),
        (
            write("bytes", b"veeva-vault-\xff\n"),
            SourceErrorKind::NotUnicode,
        ),
        (
            write("big", &vec![b'a'; 70 * 1024]),
            SourceErrorKind::TooLarge,
        ),
        (
            write("nul", b"veeva-vault-a\0b"),
            SourceErrorKind::InvalidToken,
        ),
        (dir.clone(), SourceErrorKind::Io),
    ];
    for (path, kind) in cases {
        let err = FileToken::new(&path).read().await.unwrap_err();
        assert_eq!(err.kind(), kind, "{}", path.display());
        assert!(!err.to_string().contains("veeva-vault-"), "{err}");
    }
    let ok = write("ok", b"veeva-vault-fine\r\n");
    assert_eq!(
        FileToken::new(&ok).read().await.unwrap().expose_secret(),
        "veeva-vault-fine"
    );
    let small = write("small-cap", &vec![b'a'; 2000]);
    let err = FileToken::new(&small)
        .with_max_size(1500)
        .read()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), SourceErrorKind::TooLarge);
}

#[tokio::test]
async fn no_output_ever_contains_the_token() {
    let vault = VaultStandIn::start().await.unwrap();
    let token = vault.issue_token();
    let secret = token.trim_start_matches("veeva-vault-").to_owned();
    let layer =
        VaultAuthLayer::new(&vault.base_url(), StaticToken::new(token.clone()).unwrap()).unwrap();
    let client = authed(&layer);
    let response = send(&client, get(&vault.api_url("/objects/users/me")))
        .await
        .unwrap();

    let mut outputs = vec![
        format!("{:?}", AccessToken::new(token.clone()).unwrap()),
        format!("{:?}", StaticToken::new(token.clone()).unwrap()),
        format!("{layer:?}"),
        format!("{client:?}"),
        format!("{:?}", layer.handle()),
        format!("{:?}", layer.handle().status()),
        format!("{response:?}"),
        format!("{:?}", vault.requests()),
        format!("{vault:?}"),
    ];
    let with_token_inside = [
        format!("{token}\r\nX-Evil: 1"),
        format!("{token} x"),
        format!("{token}\0"),
        format!("{token}é"),
        format!("{token}{}", "a".repeat(2000)),
        format!("Veeva-Vault-{secret}"),
    ];
    for bad in with_token_inside {
        let err = AccessToken::new(bad.clone()).unwrap_err();
        outputs.push(format!("{err} {err:?}"));
        let source_err = veeva_vault_auth::source::SourceError::from(err);
        outputs.push(format!("{source_err} {source_err:?}"));
        if !bad.contains('\0') {
            // (An environment variable cannot hold NUL.)
            std::env::set_var("VVA_TEST_SECRET_ENV", &bad);
            let env_err = EnvToken::from_var("VVA_TEST_SECRET_ENV")
                .read()
                .unwrap_err();
            outputs.push(format!("{env_err} {env_err:?}"));
        }
        let dir = temp_dir("secret");
        std::fs::write(dir.join("t"), &bad).unwrap();
        let file_err = FileToken::new(dir.join("t")).read().await.unwrap_err();
        outputs.push(format!("{file_err} {file_err:?}"));
    }
    std::env::remove_var("VVA_TEST_SECRET_ENV");
    let refused: BoxError = send(&client, get("http://127.0.0.1:9/x"))
        .await
        .unwrap_err();
    outputs.push(format!("{refused} {refused:?}"));

    for output in outputs {
        assert!(!output.contains(&secret), "token leaked into: {output}");
    }
}

#[test]
fn public_types_are_send_sync_and_clone() {
    fn send_sync<T: Send + Sync>() {}
    fn clone<T: Clone>() {}
    fn send<T: Send>() {}
    send_sync::<VaultAuthLayer>();
    send_sync::<AuthClient>();
    send_sync::<AuthHandle>();
    send_sync::<AccessToken>();
    send_sync::<TokenUnavailable>();
    send_sync::<NotForVault>();
    send_sync::<ConfigError>();
    send_sync::<StaticToken>();
    send_sync::<EnvToken>();
    send_sync::<FileToken>();
    send_sync::<std::sync::Arc<dyn veeva_vault_auth::source::TokenSource>>();
    clone::<VaultAuthLayer>();
    clone::<AuthClient>();
    clone::<AuthHandle>();
    clone::<AccessToken>();
    send::<
        ResponseFuture<
            HttpClient,
            http_body_util::Full<bytes::Bytes>,
            hyper::body::Incoming,
            veeva_vault_auth::detect::VaultRule,
        >,
    >();
    send::<ResponseBody<hyper::body::Incoming>>();
    fn service<S: tower::Service<http::Request<http_body_util::Full<bytes::Bytes>>>>() {}
    service::<VaultAuth<HttpClient>>();
}

#[tokio::test]
async fn the_client_id_goes_to_the_vault_with_every_request() {
    let vault = VaultStandIn::start().await.unwrap();
    let layer = VaultAuthLayer::builder(
        &vault.base_url(),
        StaticToken::new(vault.issue_token()).unwrap(),
    )
    .client_id("acme-clinical-data-server-loader_v1.2")
    .build()
    .unwrap();
    let client = authed(&layer);
    send(&client, get(&vault.api_url("/objects/users/me")))
        .await
        .unwrap();
    let mut own = get(&vault.api_url("/objects/users/me"));
    own.headers_mut()
        .insert("x-vaultapi-clientid", "acme-other".parse().unwrap());
    send(&client, own).await.unwrap();

    let seen = vault.requests();
    assert_eq!(
        seen[0].headers["x-vaultapi-clientid"],
        "acme-clinical-data-server-loader_v1.2"
    );
    assert_eq!(
        seen[1].headers["x-vaultapi-clientid"], "acme-other",
        "the caller's own wins"
    );
}

#[test]
fn client_ids_outside_vaults_rule_are_refused() {
    let build = |id: &str| {
        VaultAuthLayer::builder(
            "https://myvault.veevavault.com",
            StaticToken::new("veeva-vault-a").unwrap(),
        )
        .client_id(id)
        .build()
    };
    assert!(build(&"a".repeat(100)).is_ok());
    for bad in [
        "",
        "has space",
        "slash/1",
        "tab\t",
        "é",
        "crlf\r\nX: 1",
        &"a".repeat(101),
    ] {
        let err = build(bad).unwrap_err();
        assert!(
            matches!(err, ConfigError::InvalidClientId { .. }),
            "{bad:?}"
        );
        assert!(
            err.to_string().starts_with("invalid vault client id"),
            "{err}"
        );
    }
}

/// A token shows as `AccessToken([REDACTED])`; a refused value says why, without showing it.
#[test]
fn a_token_is_shown_redacted_and_a_refused_value_says_why() {
    let token = AccessToken::new("veeva-vault-neverShownInDebug").unwrap();
    assert_eq!(format!("{token:?}"), "AccessToken([REDACTED])");
    let too_long = format!(
        "veeva-vault-{}",
        "x".repeat(veeva_vault_auth::MAX_TOKEN_LEN)
    );
    let cases = [
        (
            "bearer-secretValue",
            "invalid access token: it does not start with `veeva-vault-`".to_owned(),
        ),
        (
            "veeva-vault-",
            "invalid access token: it is empty after the prefix".to_owned(),
        ),
        (
            "veeva-vault-secret Value",
            "invalid access token: illegal character at byte 18".to_owned(),
        ),
        (
            too_long.as_str(),
            format!(
                "invalid access token: {} bytes is over the limit of 1024",
                too_long.len()
            ),
        ),
    ];
    for (value, said) in cases {
        let err = AccessToken::new(value).unwrap_err();
        assert_eq!(err.to_string(), said);
        assert!(!format!("{err:?}").contains("ecret"), "{err:?}");
    }
}
