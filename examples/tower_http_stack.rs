//! `VaultAuthLayer` in a client stack with tower-http's `TraceLayer`, `TimeoutLayer` and
//! `FollowRedirectLayer`, in the recommended order, against the crate's Vault stand-in (no
//! network needed):
//!
//! ```text
//! TraceLayer → TimeoutLayer → FollowRedirectLayer → VaultAuthLayer → hyper-util client
//! ```
//!
//! - `FollowRedirectLayer` goes *outside* `VaultAuthLayer`, so every redirect hop passes through
//!   the layer again: a hop to the Vault gets the token, a hop anywhere else is refused with
//!   `NotForVault` (or sent without a token, with `pass_through_other_hosts(true)`). Inside it,
//!   the token would be copied into every hop and only tower-http's redirect policy would stand
//!   between it and the redirect target.
//! - `TraceLayer` goes outermost: it sees each call before the token is attached (so it cannot
//!   log it, even with `include_headers(true)`) and spans the whole call, every hop included.
//! - `TimeoutLayer` goes outside the redirects and the layer, so its deadline covers the whole
//!   call. tower-http's timeout answers with a made-up response (here 504) instead of an error and
//!   needs a response body that is `Default`, hence the boxed body beneath it.
//!
//! ```sh
//! cargo run --example tower_http_stack
//! ```
//!
//! The tracing output (tower-http's spans and events, and the crate's own with its `tracing`
//! feature) goes to stderr; what happened is printed on stdout.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{ServiceBuilder, ServiceExt};
use tower_http::follow_redirect::{FollowRedirectLayer, RequestUri};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use veeva_vault_auth::source::StaticToken;
use veeva_vault_auth::testing::{Outcome, VaultStandIn};
use veeva_vault_auth::{BoxError, NotForVault, ResponseBody, VaultAuthLayer};

/// How long one call may take, redirects and token fetch included.
const CALL_TIMEOUT: Duration = Duration::from_millis(500);

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let filter: Targets = "tower_http=debug,veeva_vault_auth=debug".parse()?;
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(filter)
        .init();

    let vault = VaultStandIn::start().await?;
    let elsewhere = VaultStandIn::start().await?;
    println!("Vault stand-in at {}", vault.base_url());
    println!("another origin at {}", elsewhere.base_url());

    let layer = VaultAuthLayer::new(&vault.base_url(), StaticToken::new(vault.issue_token())?)?;
    let handle = layer.handle();
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());

    let stack = ServiceBuilder::new()
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().include_headers(true))
                .on_response(DefaultOnResponse::new().include_headers(true)),
        )
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            CALL_TIMEOUT,
        ))
        // tower-http's timeout makes up a response with `Default::default()` as its body.
        .map_response(|response: Response<ResponseBody<hyper::body::Incoming>>| {
            response.map(UnsyncBoxBody::new)
        })
        .layer(FollowRedirectLayer::new())
        .layer(layer)
        .service(client);

    // Same Vault, other path: followed, and the token goes along on each hop.
    vault.redirect(
        "/objects/moved",
        StatusCode::FOUND,
        "/api/v26.2/objects/documents",
    );
    // Another origin: the layer refuses the hop, and the other origin receives nothing.
    vault.redirect(
        "/objects/export",
        StatusCode::TEMPORARY_REDIRECT,
        &elsewhere.api_url("/objects/documents"),
    );

    let get = |path: &str| Request::get(vault.api_url(path)).body(Full::new(Bytes::new()));

    println!("\n1. GET /objects/users/me");
    let response = stack.clone().oneshot(get("/objects/users/me")?).await?;
    println!(
        "   -> HTTP {}, {}",
        response.status(),
        vault_status(&response)
    );
    let _ = response.into_body().collect().await?;

    println!("\n2. GET /objects/moved (redirected to /objects/documents on the same Vault)");
    let response = stack.clone().oneshot(get("/objects/moved")?).await?;
    let final_uri = response
        .extensions()
        .get::<RequestUri>()
        .map(|uri| uri.0.to_string())
        .unwrap_or_default();
    println!(
        "   -> HTTP {}, {}, final URI {final_uri}",
        response.status(),
        vault_status(&response)
    );
    let _ = response.into_body().collect().await?;

    println!("\n3. GET /objects/export (redirected to another origin)");
    match stack.clone().oneshot(get("/objects/export")?).await {
        Ok(response) => return Err(format!("followed to {}", response.status()).into()),
        Err(err) => match err.downcast_ref::<NotForVault>() {
            Some(refused) => println!("   -> refused: {refused}"),
            None => return Err(err),
        },
    }

    println!("\n4. GET /objects/documents while Vault does not answer (timeout {CALL_TIMEOUT:?})");
    vault.hold_requests(true);
    let response = stack.clone().oneshot(get("/objects/documents")?).await?;
    println!("   -> HTTP {} (made up by TimeoutLayer)", response.status());
    vault.hold_requests(false);

    println!("\nThe Vault received:");
    for request in vault.requests() {
        let credential = if request.headers.contains_key("authorization") {
            "Bearer [REDACTED]"
        } else {
            "none"
        };
        let note = if request.outcome == Outcome::Pending {
            ", never answered: the caller gave up"
        } else {
            ""
        };
        println!(
            "   {} {} -> {:?} (authorization: {credential}{note})",
            request.method, request.path, request.outcome
        );
    }
    println!(
        "The other origin received {} requests.",
        elsewhere.request_count()
    );
    let status = handle.status();
    println!(
        "Layer: token generation {:?}, fetches {}, re-acquisitions {}",
        status.generation, status.fetches, status.reacquisitions
    );

    if elsewhere.request_count() != 0 || vault.request_count() != 5 {
        return Err("unexpected traffic; see above".into());
    }
    Ok(())
}

fn vault_status<B>(response: &Response<B>) -> String {
    let status = response.headers().get("x-vaultapi-status");
    format!(
        "X-VaultAPI-Status {}",
        status.and_then(|v| v.to_str().ok()).unwrap_or("-")
    )
}
