//! The main job, end to end: a hyper-util client with `VaultAuthLayer` talks to a Vault.
//!
//! With no setup it starts the crate's Vault stand-in on 127.0.0.1 and talks to that (no network
//! needed): the layer issues its token through Vault's own API, attaches it to every request,
//! survives a revocation without the caller noticing, and refuses to send the token elsewhere.
//!
//! With `VEEVA_VAULT_DNS` (such as `myvault.veevavault.com`) and `VEEVA_VAULT_TOKEN` set, it talks
//! to that real Vault over https instead, with the token from the environment.
//!
//! ```sh
//! cargo run --example quickstart
//! ```

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{Service, ServiceBuilder, ServiceExt};
use veeva_vault_auth::source::{EnvToken, RotatingToken, SourceError, TokenSource};
use veeva_vault_auth::testing::VaultStandIn;
use veeva_vault_auth::{AccessToken, BoxError, VaultAuthLayer};

type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

const API: &str = "/api/v26.2";

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
    println!("Talking to the real Vault at {base} with the token in VEEVA_VAULT_TOKEN");
    let layer = VaultAuthLayer::builder(&base, EnvToken::new())
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
    Ok(())
}

async fn stand_in(client: HttpClient) -> Result<(), BoxError> {
    let stand_in = VaultStandIn::start().await?;
    let base = stand_in.base_url();
    println!("Started the Vault stand-in at {base}");

    // A token made in Vault's UI, used only to issue the tokens the layer works with.
    let bootstrap = stand_in.issue_token();
    let issued = Arc::new(Mutex::new(Vec::<String>::new()));
    let source = issuer(
        client.clone(),
        format!("{base}{API}"),
        bootstrap,
        Arc::clone(&issued),
    );

    let layer = VaultAuthLayer::builder(&base, source)
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

    println!("\n1. Two requests; the first makes the layer issue a token through Vault's API.");
    for (what, request) in [("who am I", who_am_i()?), ("a VQL query", query()?)] {
        let response = vault.ready().await?.call(request).await?;
        println!(
            "   {what}: HTTP {}, X-VaultAPI-Status {}",
            response.status(),
            header(response.headers(), "x-vaultapi-status")
        );
    }

    println!("\n2. Vault revokes the token behind the layer's back.");
    let current = issued
        .lock()
        .unwrap()
        .last()
        .cloned()
        .expect("a token was issued");
    stand_in.revoke(&current);
    let response = vault.ready().await?.call(query()?).await?;
    println!(
        "   a VQL query: HTTP {}, X-VaultAPI-Status {} (Vault said INVALID_SESSION_ID with HTTP 200; \
         the layer issued a new token and replayed the request once)",
        response.status(),
        header(response.headers(), "x-vaultapi-status")
    );

    println!("\n3. A request for another host never gets the token.");
    let elsewhere =
        Request::get("http://127.0.0.1:9/api/v26.2/objects/users/me").body(Full::default())?;
    match vault.ready().await?.call(elsewhere).await {
        Ok(response) => println!("   unexpected answer: HTTP {}", response.status()),
        Err(err) => println!("   refused: {err}"),
    }

    println!("\nWhat the stand-in received (token values are never printed):");
    for request in stand_in.requests() {
        let credential = match request.headers.get(AUTHORIZATION) {
            Some(_) if request.path.ends_with("api_access_token__sys") => "bootstrap token",
            Some(_) => "layer's token",
            None => "none",
        };
        println!(
            "   {:<4} {:<48} -> {:?} ({credential}, client id {})",
            request.method,
            request.path,
            request.outcome,
            header(&request.headers, "x-vaultapi-clientid")
        );
    }
    let status = handle.status();
    println!(
        "\nLayer status: token generation {:?}, fetches {}, re-acquisitions {}, replays {}",
        status.generation, status.fetches, status.reacquisitions, status.replays
    );
    Ok(())
}

/// A source that issues a one-hour token through Vault's API with the bootstrap credential, and
/// remembers what it issued (so that this example can have Vault revoke it).
fn issuer(
    client: HttpClient,
    api: String,
    bootstrap: String,
    issued: Arc<Mutex<Vec<String>>>,
) -> impl TokenSource {
    RotatingToken::new(move || {
        let (client, api, bootstrap, issued) = (
            client.clone(),
            api.clone(),
            bootstrap.clone(),
            Arc::clone(&issued),
        );
        async move {
            let request = Request::post(format!("{api}/objects/users/me/api_access_token__sys"))
                .header(AUTHORIZATION, format!("Bearer {bootstrap}"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Full::new(Bytes::from_static(b"name__v=quickstart")))
                .map_err(|e| SourceError::permanent(e.to_string()))?;
            let response = client
                .request(request)
                .await
                .map_err(|e| SourceError::retryable(format!("could not reach Vault: {e}")))?;
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| SourceError::retryable(e.to_string()))?
                .to_bytes();
            let json: serde_json::Value = serde_json::from_slice(&body)
                .map_err(|e| SourceError::retryable(format!("not JSON: {e}")))?;
            let value = json["data"]["token__sys"].as_str().ok_or_else(|| {
                SourceError::retryable(format!("Vault issued no token: {}", json["errors"]))
            })?;
            issued.lock().unwrap().push(value.to_owned());
            Ok(AccessToken::new(value.to_owned())?.with_expires_in(Duration::from_secs(3600)))
        }
    })
}

fn header(headers: &http::HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned()
}
