//! `VaultAuthLayer` among tower-http's client middleware, over real HTTP on loopback: redirects
//! (`FollowRedirectLayer`), tracing (`TraceLayer`) and timeouts (`TimeoutLayer`), plus the Vault
//! stand-in's redirects these tests rely on.
//!
//! Every test asserts on what each server actually received. A redirect target on "another
//! origin" is a second stand-in on another port of 127.0.0.1: a different origin for the layer and
//! for tower-http alike, and one that records every header it is sent.
//!
//! # Findings: the recommended order
//!
//! From the outside in:
//!
//! ```text
//! TraceLayer → TimeoutLayer → FollowRedirectLayer → VaultAuthLayer → client
//! ```
//!
//! - **`FollowRedirectLayer` outside `VaultAuthLayer`.** Each hop is then a new request through
//!   the layer, which attaches the token only when that hop's origin is the Vault's: a same-origin
//!   redirect carries the (current) token, a cross-origin hop is refused with `NotForVault` (or,
//!   with `pass_through_other_hosts(true)`, sent without the token). The token never enters the
//!   headers tower-http copies from hop to hop, so it cannot leak whatever the redirect policy.
//! - The other order (`VaultAuthLayer` outside) puts the token in the first request, and
//!   tower-http copies that request's headers into every hop: only the redirect policy stands
//!   between the token and the redirect target. tower-http 0.6.11's `Standard` policy
//!   (`FilterCredentials`) removes `Authorization` only on a hop whose origin differs from the
//!   *previous hop's*, so Vault → other/a → other/b sends the token to other/b
//!   (`auth_outside_a_second_hop_on_the_other_origin_gets_the_token_back`); a policy without
//!   `FilterCredentials` (e.g. `Limited` alone) sends it on the first cross-origin hop. Only a
//!   policy that follows no cross-origin redirect at all (`SameOrigin`) is safe there. The layer
//!   also takes the other origin's answer for Vault's: an `INVALID_SESSION_ID` (or 401) from it
//!   counts as a rejection of the Vault token and makes the layer ask its source again.
//! - **`TraceLayer` outermost.** It sees the request before the token is attached, so even
//!   `include_headers(true)` cannot log it; one span covers the whole call (every hop, the token
//!   fetch, a replay), and its failure event shows the final error, which never contains a token.
//! - **`TimeoutLayer` outside the redirects and the layer**, so that its deadline covers the whole
//!   call: waiting for a token, every redirect hop and a replay. tower-http's `TimeoutLayer` is a
//!   server middleware: on timeout it answers a made-up response (408 unless
//!   `with_status_code`) rather than an error, and it needs a response body that is `Default`,
//!   which neither hyper's `Incoming` nor the layer's `ResponseBody` is; box the body
//!   (`BodyExt::boxed_unsync`) beneath it. `tower::timeout::TimeoutLayer` is the client-side
//!   alternative: it fails the call with `Elapsed` and needs no body mapping.

mod common;

use common::{get, hold_clock, http_client, text, Captured};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, LOCATION};
use http::{Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::Full;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_http::follow_redirect::policy::{self, PolicyExt};
use tower_http::follow_redirect::{FollowRedirectLayer, RequestUri};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};
use veeva_vault_auth::source::{RotatingToken, SourceError, StaticToken};
use veeva_vault_auth::testing::{Outcome, VaultStandIn};
use veeva_vault_auth::{AccessToken, BoxError, NotForVault, VaultAuthLayer};

fn bearer(request: &mut Request<Full<Bytes>>, token: &str) {
    let value = format!("Bearer {token}").parse().unwrap();
    request.headers_mut().insert(AUTHORIZATION, value);
}

/// A stand-in Vault with one token, and a layer holding that token.
async fn vault_and_layer(pass_through_other_hosts: bool) -> (VaultStandIn, String, VaultAuthLayer) {
    let vault = VaultStandIn::start().await.unwrap();
    let token = vault.issue_token();
    let layer =
        VaultAuthLayer::builder(&vault.base_url(), StaticToken::new(token.clone()).unwrap())
            .pass_through_other_hosts(pass_through_other_hosts)
            .build()
            .unwrap();
    (vault, token, layer)
}

/// What `server` received in `Authorization`, request by request: `"token"` for exactly
/// `Bearer {token}`, `"none"` for no header, `"other"` for anything else.
fn authorizations(server: &VaultStandIn, token: &str) -> Vec<&'static str> {
    let expected = format!("Bearer {token}");
    server
        .requests()
        .iter()
        .map(|request| {
            let mut values = request.headers.get_all(AUTHORIZATION).iter();
            match (values.next(), values.next()) {
                (None, _) => "none",
                (Some(value), None) if value == expected.as_str() => "token",
                _ => "other",
            }
        })
        .collect()
}

/// Whether the token appears anywhere in what `server` received: headers, path, query or body.
fn received_token(server: &VaultStandIn, token: &str) -> bool {
    server.requests().iter().any(|request| {
        request
            .headers
            .values()
            .any(|value| String::from_utf8_lossy(value.as_bytes()).contains(token))
            || request.path.contains(token)
            || request.query.as_deref().is_some_and(|q| q.contains(token))
            || String::from_utf8_lossy(&request.body).contains(token)
    })
}

fn paths(server: &VaultStandIn) -> Vec<String> {
    server.requests().iter().map(|r| r.path.clone()).collect()
}

fn outcomes(server: &VaultStandIn) -> Vec<Outcome> {
    server.requests().iter().map(|r| r.outcome).collect()
}

// ---------------------------------------------------------------------------------------------
// The stand-in's redirects
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_stand_in_redirects_whatever_the_credential_and_records_it() {
    let vault = VaultStandIn::start().await.unwrap();
    let other = VaultStandIn::start().await.unwrap();
    let token = vault.issue_token();
    let client = http_client();
    let target = other.api_url("/objects/documents");
    vault.redirect(
        "/objects/documents",
        StatusCode::TEMPORARY_REDIRECT,
        &target,
    );
    vault.redirect("/moved", StatusCode::FOUND, "/api/v26.2/objects/users/me");
    // Redirections come before injected failures.
    vault.fail_path_with("/objects/documents", "INSUFFICIENT_ACCESS");

    let mut with_token = get(&vault.api_url("/objects/documents"));
    bearer(&mut with_token, &token);
    for request in [with_token, get(&vault.api_url("/objects/documents"))] {
        let response = client.request(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::TEMPORARY_REDIRECT);
        assert_eq!(response.headers()[LOCATION], target.as_str());
        assert!(response.headers().contains_key("x-vaultapi-executionid"));
        assert!(!response.headers().contains_key(CONTENT_TYPE));
        assert!(!response.headers().contains_key("x-vaultapi-status"));
        assert_eq!(text(response).await, "");
    }
    // Not an endpoint, and still redirected.
    let response = client.request(get(&vault.api_url("/moved"))).await.unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(response.headers()[LOCATION], "/api/v26.2/objects/users/me");

    assert_eq!(
        outcomes(&vault),
        [
            Outcome::Redirected,
            Outcome::Redirected,
            Outcome::Redirected
        ]
    );
    assert_eq!(authorizations(&vault, &token), ["token", "none", "none"]);
    assert_eq!(other.request_count(), 0, "the plain client follows nothing");

    // Setting a suffix again replaces its redirection.
    vault.redirect("/moved", StatusCode::PERMANENT_REDIRECT, "/elsewhere");
    let response = client.request(get(&vault.api_url("/moved"))).await.unwrap();
    assert_eq!(response.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(response.headers()[LOCATION], "/elsewhere");

    vault.clear_redirects();
    let mut request = get(&vault.api_url("/objects/documents"));
    bearer(&mut request, &token);
    let response = client.request(request).await.unwrap();
    assert_eq!(response.headers()["x-vaultapi-status"], "FAILURE");
    assert!(text(response).await.contains("INSUFFICIENT_ACCESS"));
    let response = client.request(get(&vault.api_url("/moved"))).await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_held_request_is_redirected_when_released() {
    let vault = VaultStandIn::start().await.unwrap();
    vault.redirect("/moved", StatusCode::SEE_OTHER, "/api/");
    vault.hold_requests(true);
    let url = vault.api_url("/moved");
    let held = tokio::spawn(async move { http_client().request(get(&url)).await });
    vault.wait_for_held(1).await;
    assert_eq!(outcomes(&vault), [Outcome::Pending]);
    vault.hold_requests(false);
    assert_eq!(held.await.unwrap().unwrap().status(), StatusCode::SEE_OTHER);
    assert_eq!(outcomes(&vault), [Outcome::Redirected]);
}

#[tokio::test]
#[should_panic(expected = "needs a 3xx status")]
async fn a_redirect_needs_a_3xx_status() {
    let vault = VaultStandIn::start().await.unwrap();
    vault.redirect("/moved", StatusCode::OK, "/api/");
}

// ---------------------------------------------------------------------------------------------
// Order 1 (recommended): FollowRedirect outside VaultAuth
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn follow_outside_a_same_origin_redirect_carries_the_token_on_each_hop() {
    let (vault, token, layer) = vault_and_layer(false).await;
    let client = ServiceBuilder::new()
        .layer(FollowRedirectLayer::new())
        .layer(layer.clone())
        .service(http_client());
    // A relative Location and an absolute one, chained: /moved → /moved-again → /objects/documents.
    vault.redirect("/moved", StatusCode::FOUND, "/api/v26.2/moved-again");
    vault.redirect(
        "/moved-again",
        StatusCode::TEMPORARY_REDIRECT,
        &vault.api_url("/objects/documents"),
    );

    let response = client.oneshot(get(&vault.api_url("/moved"))).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.extensions().get::<RequestUri>().unwrap().0,
        vault.api_url("/objects/documents").as_str()
    );
    assert_eq!(response.headers()["x-vaultapi-status"], "SUCCESS");
    assert_eq!(
        paths(&vault),
        [
            "/api/v26.2/moved",
            "/api/v26.2/moved-again",
            "/api/v26.2/objects/documents"
        ]
    );
    assert_eq!(
        outcomes(&vault),
        [Outcome::Redirected, Outcome::Redirected, Outcome::Accepted]
    );
    assert_eq!(authorizations(&vault, &token), ["token", "token", "token"]);
    assert_eq!(layer.handle().status().fetches, 1);
}

#[tokio::test]
async fn follow_outside_a_cross_origin_hop_is_refused_and_never_sent() {
    let (vault, token, layer) = vault_and_layer(false).await;
    let other = VaultStandIn::start().await.unwrap();
    let client = ServiceBuilder::new()
        .layer(FollowRedirectLayer::new())
        .layer(layer.clone())
        .service(http_client());
    vault.redirect(
        "/objects/documents",
        StatusCode::FOUND,
        &other.api_url("/objects/documents"),
    );

    let err = client
        .oneshot(get(&vault.api_url("/objects/documents")))
        .await
        .unwrap_err();
    let refused = err.downcast_ref::<NotForVault>().expect("NotForVault");
    assert_eq!(refused.origin(), Some(other.base_url().as_str()));
    assert!(!err.to_string().contains(&token));
    assert!(!format!("{err:?}").contains(&token));

    assert_eq!(
        other.request_count(),
        0,
        "the refused hop is not sent at all"
    );
    assert_eq!(authorizations(&vault, &token), ["token"]);
    assert_eq!(outcomes(&vault), [Outcome::Redirected]);
}

#[tokio::test]
async fn follow_outside_with_pass_through_every_foreign_hop_goes_without_the_token() {
    let (vault, token, layer) = vault_and_layer(true).await;
    let other = VaultStandIn::start().await.unwrap();
    let client = ServiceBuilder::new()
        .layer(FollowRedirectLayer::new())
        .layer(layer.clone())
        .service(http_client());
    // Vault → other → other (same origin there) → back to the Vault.
    vault.redirect("/start", StatusCode::FOUND, &other.api_url("/first"));
    other.redirect("/first", StatusCode::FOUND, "/api/v26.2/second");
    other.redirect(
        "/second",
        StatusCode::TEMPORARY_REDIRECT,
        &vault.api_url("/objects/documents"),
    );

    let response = client.oneshot(get(&vault.api_url("/start"))).await.unwrap();
    assert_eq!(response.headers()["x-vaultapi-status"], "SUCCESS");

    assert_eq!(paths(&other), ["/api/v26.2/first", "/api/v26.2/second"]);
    assert_eq!(authorizations(&other, &token), ["none", "none"]);
    assert!(!received_token(&other, &token));
    // Back at the Vault, the layer attaches the token again.
    assert_eq!(
        paths(&vault),
        ["/api/v26.2/start", "/api/v26.2/objects/documents"]
    );
    assert_eq!(authorizations(&vault, &token), ["token", "token"]);
    let status = layer.handle().status();
    assert_eq!((status.fetches, status.reacquisitions), (1, 0));
}

#[tokio::test]
async fn follow_outside_is_safe_even_with_a_policy_that_keeps_every_header() {
    // `Limited` alone does not filter credentials at all; the layer still never lets the token
    // out, because it is not in the headers FollowRedirect copies.
    let (vault, token, layer) = vault_and_layer(true).await;
    let other = VaultStandIn::start().await.unwrap();
    let client = ServiceBuilder::new()
        .layer(FollowRedirectLayer::with_policy(policy::Limited::new(5)))
        .layer(layer.clone())
        .service(http_client());
    vault.redirect("/start", StatusCode::FOUND, &other.api_url("/first"));
    other.redirect("/first", StatusCode::FOUND, "/api/v26.2/objects/documents");

    let response = client.oneshot(get(&vault.api_url("/start"))).await.unwrap();
    assert!(text(response).await.contains("INVALID_SESSION_ID"));
    assert_eq!(authorizations(&other, &token), ["none", "none"]);
    assert!(!received_token(&other, &token));
    assert_eq!(authorizations(&vault, &token), ["token"]);
    // The other origin's INVALID_SESSION_ID was passed through, not taken for Vault's verdict.
    assert_eq!(layer.handle().status().reacquisitions, 0);
}

// ---------------------------------------------------------------------------------------------
// Order 2: VaultAuth outside FollowRedirect
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn auth_outside_the_standard_policy_strips_the_token_on_a_cross_origin_hop() {
    let (vault, token, layer) = vault_and_layer(false).await;
    let other = VaultStandIn::start().await.unwrap();
    let client = ServiceBuilder::new()
        .layer(layer.clone())
        .layer(FollowRedirectLayer::new())
        .service(http_client());
    vault.redirect(
        "/objects/documents",
        StatusCode::FOUND,
        &other.api_url("/objects/documents"),
    );
    vault.redirect("/moved", StatusCode::FOUND, "/api/v26.2/objects/users/me");

    // Same origin first: the token stays, as it was inserted before the redirects.
    let response = client
        .clone()
        .oneshot(get(&vault.api_url("/moved")))
        .await
        .unwrap();
    assert_eq!(response.headers()["x-vaultapi-status"], "SUCCESS");
    assert_eq!(authorizations(&vault, &token), ["token", "token"]);

    // Cross origin: tower-http's FilterCredentials removes Authorization on that hop.
    let response = client
        .oneshot(get(&vault.api_url("/objects/documents")))
        .await
        .unwrap();
    assert!(text(response).await.contains("INVALID_SESSION_ID"));
    assert_eq!(authorizations(&other, &token)[0], "none");
    assert!(!received_token(&other, &token));
}

#[tokio::test]
async fn auth_outside_a_second_hop_on_the_other_origin_gets_the_token_back() {
    // tower-http 0.6.11 copies the ORIGINAL request's headers into every hop and removes
    // credentials only on a hop whose origin differs from the previous one. Vault → other/first
    // (stripped) → other/second (same origin as the previous hop: Authorization restored).
    let (vault, token, layer) = vault_and_layer(false).await;
    let other = VaultStandIn::start().await.unwrap();
    let client = ServiceBuilder::new()
        .layer(layer.clone())
        .layer(FollowRedirectLayer::new())
        .service(http_client());
    vault.redirect("/start", StatusCode::FOUND, &other.api_url("/first"));
    other.redirect("/first", StatusCode::FOUND, "/api/v26.2/objects/documents");

    let response = client.oneshot(get(&vault.api_url("/start"))).await.unwrap();
    let _ = text(response).await;

    assert_eq!(
        paths(&other),
        ["/api/v26.2/first", "/api/v26.2/objects/documents"]
    );
    assert_eq!(
        authorizations(&other, &token),
        ["none", "token"],
        "the Vault token reached the other origin on the second hop"
    );
    // And the other origin's INVALID_SESSION_ID answer was taken for Vault's: the layer counted
    // it as a rejection of its token and asked the source again.
    assert_eq!(layer.handle().status().reacquisitions, 1);
}

#[tokio::test]
async fn auth_outside_the_other_origins_rejection_burns_and_leaks_a_fresh_token() {
    // Same chain, with a source that issues a new token on each fetch. The other origin answers
    // the leaked token with INVALID_SESSION_ID; the layer takes that for Vault's verdict, gets a
    // fresh token and replays the whole call, which follows the same redirects: the fresh token
    // goes to the other origin as well.
    let vault = VaultStandIn::start().await.unwrap();
    let other = VaultStandIn::start().await.unwrap();
    let issued = Arc::new(Mutex::new(Vec::<String>::new()));
    let source = {
        let (vault, issued) = (vault.clone(), Arc::clone(&issued));
        RotatingToken::new(move || {
            let token = vault.issue_token();
            issued.lock().unwrap().push(token.clone());
            async move { Ok::<_, SourceError>(AccessToken::new(token)?) }
        })
    };
    let layer = VaultAuthLayer::new(&vault.base_url(), source).unwrap();
    let client = ServiceBuilder::new()
        .layer(layer.clone())
        .layer(FollowRedirectLayer::new())
        .service(http_client());
    vault.redirect("/start", StatusCode::FOUND, &other.api_url("/first"));
    other.redirect("/first", StatusCode::FOUND, "/api/v26.2/objects/documents");

    let response = client.oneshot(get(&vault.api_url("/start"))).await.unwrap();
    assert!(text(response).await.contains("INVALID_SESSION_ID"));

    // (The layer may be fetching a third token in the background by now: count what leaked.)
    let issued = issued.lock().unwrap().clone();
    let leaked = issued
        .iter()
        .filter(|token| authorizations(&other, token).contains(&"token"))
        .count();
    assert_eq!(
        leaked, 2,
        "the first and the fresh token reached the other origin"
    );
    assert_eq!(layer.handle().status().replays, 1);
}

#[tokio::test]
async fn auth_outside_a_policy_without_filter_credentials_leaks_on_the_first_hop() {
    let (vault, token, layer) = vault_and_layer(false).await;
    let other = VaultStandIn::start().await.unwrap();
    let client = ServiceBuilder::new()
        .layer(layer.clone())
        .layer(FollowRedirectLayer::with_policy(policy::Limited::new(5)))
        .service(http_client());
    vault.redirect("/start", StatusCode::FOUND, &other.api_url("/first"));

    let response = client.oneshot(get(&vault.api_url("/start"))).await.unwrap();
    let _ = text(response).await;
    assert_eq!(authorizations(&other, &token), ["token"]);
}

#[tokio::test]
async fn auth_outside_a_same_origin_policy_keeps_the_token_home() {
    // What makes order 2 safe: follow no cross-origin redirect at all. tower-http's `SameOrigin`
    // compares each hop with the previous one; stopping at the first cross-origin hop means every
    // hop followed is the Vault's. The caller gets the redirection itself.
    let (vault, token, layer) = vault_and_layer(false).await;
    let other = VaultStandIn::start().await.unwrap();
    let same_origin = policy::Limited::default().and::<_, (), ()>(policy::SameOrigin::new());
    let client = ServiceBuilder::new()
        .layer(layer.clone())
        .layer(FollowRedirectLayer::with_policy(same_origin))
        .service(http_client());
    vault.redirect("/start", StatusCode::FOUND, "/api/v26.2/next");
    vault.redirect("/next", StatusCode::FOUND, &other.api_url("/first"));

    let response = client.oneshot(get(&vault.api_url("/start"))).await.unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(
        response.headers()[LOCATION],
        other.api_url("/first").as_str()
    );
    assert_eq!(other.request_count(), 0);
    assert_eq!(authorizations(&vault, &token), ["token", "token"]);
}

// ---------------------------------------------------------------------------------------------
// Trace and Timeout around the layer
// ---------------------------------------------------------------------------------------------

/// The recommended stack, with tower-http's `TimeoutLayer` (which needs a `Default` body).
fn recommended_stack(
    layer: &VaultAuthLayer,
    timeout: Duration,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<impl http_body::Body<Data = Bytes, Error = impl std::fmt::Debug>>,
    Error = BoxError,
> + Clone {
    ServiceBuilder::new()
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().include_headers(true))
                .on_response(DefaultOnResponse::new().include_headers(true)),
        )
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            timeout,
        ))
        .map_response(|response: Response<_>| {
            response.map(
                |body: veeva_vault_auth::ResponseBody<hyper::body::Incoming>| {
                    UnsyncBoxBody::new(body)
                },
            )
        })
        .layer(FollowRedirectLayer::new())
        .layer(layer.clone())
        .service(http_client())
}

#[tokio::test(start_paused = true)]
async fn trace_timeout_follow_and_auth_work_end_to_end() {
    let _clock = hold_clock();
    let (captured, _guard) = Captured::start();
    let (vault, token, layer) = vault_and_layer(false).await;
    let client = recommended_stack(&layer, Duration::from_secs(10));
    vault.redirect("/moved", StatusCode::FOUND, "/api/v26.2/objects/users/me");

    let response = client
        .clone()
        .oneshot(get(&vault.api_url("/moved")))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(text(response).await.contains("integration@example.com"));
    assert_eq!(authorizations(&vault, &token), ["token", "token"]);

    let logs = captured.text();
    assert!(logs.contains("finished processing request"), "{logs}");
    assert!(logs.contains("/api/v26.2/moved"), "{logs}");
    assert!(!logs.contains(&token), "{logs}");
    assert!(
        !logs.to_ascii_lowercase().contains("authorization"),
        "{logs}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_timeout_answers_504_and_nothing_shows_the_token() {
    let _clock = hold_clock();
    let (captured, _guard) = Captured::start();
    let (vault, token, layer) = vault_and_layer(false).await;
    let client = recommended_stack(&layer, Duration::from_secs(10));
    vault.hold_requests(true);

    let call = client.oneshot(get(&vault.api_url("/objects/documents")));
    tokio::pin!(call);
    tokio::select! {
        _ = &mut call => panic!("answered while held"),
        () = vault.wait_for_held(1) => {}
    }
    tokio::time::advance(Duration::from_millis(9_999)).await;
    // Polled once more: still waiting for Vault.
    assert!(tokio::time::timeout(Duration::ZERO, &mut call)
        .await
        .is_err());
    tokio::time::advance(Duration::from_millis(1)).await;
    let response = call.await.unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(text(response).await, "");

    // Vault did get the request, with the token; the caller got the made-up 504.
    assert_eq!(authorizations(&vault, &token), ["token"]);
    vault.hold_requests(false);
    let logs = captured.text();
    assert!(logs.contains("504"), "{logs}");
    assert!(!logs.contains(&token), "{logs}");
}

#[tokio::test(start_paused = true)]
async fn tower_timeout_fails_the_call_without_showing_the_token() {
    let _clock = hold_clock();
    let (captured, _guard) = Captured::start();
    let (vault, token, layer) = vault_and_layer(false).await;
    let client = ServiceBuilder::new()
        .layer(TraceLayer::new_for_http())
        .layer(tower::timeout::TimeoutLayer::new(Duration::from_secs(10)))
        .layer(FollowRedirectLayer::new())
        .layer(layer.clone())
        .service(http_client());
    vault.hold_requests(true);

    let call = tokio::spawn(client.oneshot(get(&vault.api_url("/objects/documents"))));
    vault.wait_for_held(1).await;
    tokio::time::advance(Duration::from_secs(10)).await;
    let Err(err) = call.await.unwrap() else {
        panic!("the call did not time out")
    };
    assert!(err.is::<tower::timeout::error::Elapsed>(), "{err}");
    assert!(!err.to_string().contains(&token));
    assert!(!format!("{err:?}").contains(&token));

    assert_eq!(authorizations(&vault, &token), ["token"]);
    vault.hold_requests(false);
    let logs = captured.text();
    assert!(logs.contains("request timed out"), "{logs}");
    assert!(!logs.contains(&token), "{logs}");
}

#[tokio::test]
async fn a_trace_inside_the_layer_sees_the_header_but_not_the_token() {
    // Not recommended, but not a leak either: the layer marks its header sensitive, and `http`
    // prints sensitive values as `Sensitive`.
    let (captured, _guard) = Captured::start();
    let (vault, token, layer) = vault_and_layer(false).await;
    let client = ServiceBuilder::new()
        .layer(layer.clone())
        .layer(
            TraceLayer::new_for_http().make_span_with(DefaultMakeSpan::new().include_headers(true)),
        )
        .service(http_client());

    let response = client
        .oneshot(get(&vault.api_url("/objects/documents")))
        .await
        .unwrap();
    assert_eq!(response.headers()["x-vaultapi-status"], "SUCCESS");
    let logs = captured.text();
    assert!(logs.contains("\"authorization\": Sensitive"), "{logs}");
    assert!(!logs.contains(&token), "{logs}");
}

#[tokio::test]
async fn auth_outside_with_the_token_guard_beneath_the_follower_never_leaks() {
    // The same chains that leak above, with `token_guard()` beneath the redirect follower.
    for policy_keeps_every_header in [false, true] {
        let (vault, token, layer) = vault_and_layer(false).await;
        let other = VaultStandIn::start().await.unwrap();
        vault.redirect("/start", StatusCode::FOUND, &other.api_url("/first"));
        other.redirect("/first", StatusCode::FOUND, "/api/v26.2/objects/documents");
        let url = vault.api_url("/start");
        let response = if policy_keeps_every_header {
            ServiceBuilder::new()
                .layer(layer.clone())
                .layer(FollowRedirectLayer::with_policy(policy::Limited::new(5)))
                .layer(layer.token_guard())
                .service(http_client())
                .oneshot(get(&url))
                .await
                .unwrap()
        } else {
            ServiceBuilder::new()
                .layer(layer.clone())
                .layer(FollowRedirectLayer::new())
                .layer(layer.token_guard())
                .service(http_client())
                .oneshot(get(&url))
                .await
                .unwrap()
        };
        assert!(text(response).await.contains("INVALID_SESSION_ID"));
        assert_eq!(
            paths(&other),
            ["/api/v26.2/first", "/api/v26.2/objects/documents"]
        );
        assert_eq!(authorizations(&other, &token), ["none", "none"]);
        assert!(!received_token(&other, &token));
        assert_eq!(authorizations(&vault, &token), ["token"]);
        // The other host's INVALID_SESSION_ID is not taken for Vault's verdict.
        let status = layer.handle().status();
        assert_eq!((status.reacquisitions, status.replays), (0, 0));
    }
}

#[tokio::test]
async fn a_vault_token_set_by_the_caller_is_removed_from_a_foreign_request() {
    let (vault, token, layer) = vault_and_layer(true).await;
    let other = VaultStandIn::start().await.unwrap();
    let client = tower::Layer::layer(&layer, http_client());
    for header in [
        format!("Bearer {token}"),
        token.clone(),
        format!("bearer  {token}"),
    ] {
        let mut request = get(&other.api_url("/objects/users/me"));
        request
            .headers_mut()
            .insert(AUTHORIZATION, header.parse().unwrap());
        let _ = text(client.clone().oneshot(request).await.unwrap()).await;
    }
    let mut request = get(&other.api_url("/objects/users/me"));
    request
        .headers_mut()
        .insert(AUTHORIZATION, "Basic dXNlcjpwYXNz".parse().unwrap());
    let _ = text(client.clone().oneshot(request).await.unwrap()).await;
    assert_eq!(
        authorizations(&other, &token),
        ["none", "none", "none", "other"]
    );
    assert_eq!(vault.request_count(), 0);
}

#[tokio::test]
async fn an_invalid_redirect_target_is_handed_back_and_nothing_else_is_sent() {
    for follow_outside in [true, false] {
        let (vault, token, layer) = vault_and_layer(false).await;
        let targets = [
            "http://[::1",
            "ftp://127.0.0.1:9/file",
            "mailto:x@example.com",
        ];
        for (i, target) in targets.iter().enumerate() {
            vault.redirect(&format!("/bad{i}"), StatusCode::FOUND, target);
            let request = get(&vault.api_url(&format!("/bad{i}")));
            let response = if follow_outside {
                ServiceBuilder::new()
                    .layer(FollowRedirectLayer::new())
                    .layer(layer.clone())
                    .service(http_client())
                    .oneshot(request)
                    .await
            } else {
                ServiceBuilder::new()
                    .layer(layer.clone())
                    .layer(FollowRedirectLayer::new())
                    .layer(layer.token_guard())
                    .service(http_client())
                    .oneshot(request)
                    .await
            };
            // Handed back as it is, or refused with an error (an `ftp:` target, say): never a
            // panic, and never a token in what the caller sees.
            match response {
                Ok(response) => {
                    assert_eq!(response.status(), StatusCode::FOUND, "{target}");
                    assert_eq!(response.headers()[LOCATION], *target);
                }
                Err(err) => {
                    if follow_outside {
                        assert!(err.is::<NotForVault>(), "{target}: {err}");
                    }
                    assert!(!format!("{err} {err:?}").contains(&token), "{target}");
                }
            }
        }
        // Each bad redirect was answered by the Vault once, with the token, and never followed.
        assert_eq!(authorizations(&vault, &token), ["token"; 3]);
        assert_eq!(layer.handle().status().reacquisitions, 0);
    }
}
