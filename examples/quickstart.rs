//! The main job, end to end: a hyper-util client with `VaultAuthLayer` talks to a Vault, on
//! tokens that `VaultIssuer` issues, renews and revokes through Vault's own API.
//!
//! With no setup it starts the crate's Vault stand-in on 127.0.0.1 and talks to that (no network
//! needed): the issuer issues a short-lived token with a bootstrap token (as if made in Vault's
//! UI), the layer attaches it to every request, survives a revocation without the caller
//! noticing (the issuer issues a new token and revokes the old one after a grace period), and
//! refuses to send the token elsewhere. At the end the issuer shuts down and revokes what it
//! holds. Token values are never printed, only their record ids and names.
//!
//! With `VEEVA_VAULT_DNS` (such as `myvault.veevavault.com`) and `VEEVA_VAULT_TOKEN` set, it talks
//! to that real Vault over https instead: the token in the environment is the bootstrap, the
//! issuer issues one short-lived token with it, uses it once and revokes it.
//!
//! ```sh
//! cargo run --example quickstart
//! ```

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{Service, ServiceBuilder, ServiceExt};
use veeva_vault_auth::source::{EnvToken, StaticToken, VaultIssuer};
use veeva_vault_auth::testing::VaultStandIn;
use veeva_vault_auth::{BoxError, VaultAuthLayer};

type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

const API: &str = "/api/v26.2";
const PREFIX: &str = "quickstart";

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let client = http_client();
    match std::env::var("VEEVA_VAULT_DNS") {
        Ok(dns) => real_vault(&dns, client).await,
        Err(_) => stand_in(client).await,
    }
}

/// An https client (plain http too, for the stand-in on loopback).
fn http_client() -> HttpClient {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .build();
    Client::builder(TokioExecutor::new()).build(connector)
}

async fn real_vault(dns: &str, client: HttpClient) -> Result<(), BoxError> {
    let base = format!("https://{dns}");
    println!("Talking to the real Vault at {base}, issuing with the token in VEEVA_VAULT_TOKEN");
    let issuer = VaultIssuer::builder(&base)
        .bootstrap_token(EnvToken::new())
        .name_prefix(PREFIX)
        .lifetime(Duration::from_secs(3600))
        .client_id("veeva-vault-auth-quickstart")
        .build()?;
    let layer = VaultAuthLayer::builder(&base, issuer.clone())
        .client_id("veeva-vault-auth-quickstart")
        .build()?;
    let mut vault = ServiceBuilder::new().layer(layer).service(client);
    let request = Request::get(format!("{base}{API}/objects/users/me")).body(Full::default())?;
    let response = vault.ready().await?.call(request).await?;
    let vault_status = header(response.headers(), "x-vaultapi-status");
    let body = response.into_body().collect().await?.to_bytes();
    println!(
        "who am I: X-VaultAPI-Status {vault_status}, {} bytes",
        body.len()
    );
    issuer.shutdown().await?;
    let stats = issuer.stats();
    println!(
        "issued {} token(s), revoked {} (the issued token is revoked again at shutdown)",
        stats.issued, stats.revoked
    );
    Ok(())
}

async fn stand_in(client: HttpClient) -> Result<(), BoxError> {
    let stand_in = VaultStandIn::start().await?;
    let base = stand_in.base_url();
    println!("Started the Vault stand-in at {base}");

    // A token made in Vault's UI, used only to issue the tokens the layer works with.
    let bootstrap = stand_in.issue_token();
    let issuer = VaultIssuer::builder(&base)
        .bootstrap_token(StaticToken::new(bootstrap)?)
        .name_prefix(PREFIX)
        .lifetime(Duration::from_secs(3600))
        // Short for the demo; the default (2 minutes) lets in-flight requests finish.
        .grace_period(Duration::from_secs(1))
        .client_id("veeva-vault-auth-quickstart")
        .build()?;

    let layer = VaultAuthLayer::builder(&base, issuer.clone())
        .client_id("veeva-vault-auth-quickstart")
        .build()?;
    let handle = layer.handle();
    let mut vault = ServiceBuilder::new().layer(layer).service(client);

    let who_am_i = || Request::get(format!("{base}{API}/objects/users/me")).body(Full::default());
    let query = || {
        Request::post(format!("{base}{API}/query"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from_static(
                b"q=SELECT id, name__v FROM documents",
            )))
    };

    println!("\n1. Two requests; the first makes the issuer issue a token through Vault's API.");
    for (what, request) in [("who am I", who_am_i()?), ("a VQL query", query()?)] {
        let response = vault.ready().await?.call(request).await?;
        println!(
            "   {what}: HTTP {}, X-VaultAPI-Status {}",
            response.status(),
            header(response.headers(), "x-vaultapi-status")
        );
    }
    show_tokens(&stand_in);

    println!("\n2. An admin revokes the layer's token behind its back.");
    let current = stand_in
        .tokens()
        .into_iter()
        .rfind(|t| t.active && t.name.starts_with(PREFIX))
        .expect("a token was issued");
    stand_in.revoke_id(&current.id);
    let response = vault.ready().await?.call(query()?).await?;
    println!(
        "   a VQL query: HTTP {}, X-VaultAPI-Status {} (Vault said INVALID_SESSION_ID with HTTP 200; \
         the layer had the issuer issue a new token and replayed the request once)",
        response.status(),
        header(response.headers(), "x-vaultapi-status")
    );
    // After the grace period the issuer revokes the token it replaced (here it is gone already,
    // which Vault's answer says and the issuer counts as done).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    show_tokens(&stand_in);

    println!("\n3. A request for another host never gets the token.");
    let elsewhere =
        Request::get("http://127.0.0.1:9/api/v26.2/objects/users/me").body(Full::default())?;
    match vault.ready().await?.call(elsewhere).await {
        Ok(response) => println!("   unexpected answer: HTTP {}", response.status()),
        Err(err) => println!("   refused: {err}"),
    }

    println!("\n4. Shutdown: the issuer revokes the token in use.");
    issuer.shutdown().await?;
    show_tokens(&stand_in);

    println!("\nWhat the stand-in received (token values are never printed):");
    for request in stand_in.requests() {
        println!(
            "   {:<6} {:<48} -> {:?} (client id {})",
            request.method.as_str(),
            request.path,
            request.outcome,
            header(&request.headers, "x-vaultapi-clientid")
        );
    }
    let status = handle.status();
    let stats = issuer.stats();
    println!(
        "\nLayer: token generation {:?}, fetches {}, re-acquisitions {}, replays {}",
        status.generation, status.fetches, status.reacquisitions, status.replays
    );
    println!(
        "Issuer: issued {}, revoked {}, revocations pending {}",
        stats.issued, stats.revoked, stats.pending_revocations
    );
    Ok(())
}

/// The issuer's tokens as Vault sees them: record id, name and state, never the value.
fn show_tokens(stand_in: &VaultStandIn) {
    println!("   the issuer's tokens in Vault:");
    for token in stand_in.tokens() {
        if token.name.starts_with(PREFIX) {
            let state = match (token.active, token.revoked) {
                (true, _) => "active",
                (false, true) => "revoked",
                (false, false) => "expired",
            };
            println!("     {} {:<60} {state}", token.id, token.name);
        }
    }
}

fn header(headers: &http::HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned()
}
