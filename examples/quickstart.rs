//! The main job, end to end: a hyper-util client with `VaultAuthLayer` talks to a Vault.
//!
//! With no setup it starts the crate's Vault stand-in on 127.0.0.1 and talks to that (no network
//! needed). With `VEEVA_VAULT_DNS` (such as `myvault.veevavault.com`) and `VEEVA_VAULT_TOKEN` set,
//! it talks to that real Vault over https instead.
//!
//! ```sh
//! cargo run --example quickstart
//! ```

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{Service, ServiceBuilder, ServiceExt};
use veeva_vault_auth::source::{EnvToken, StaticToken, TokenSource};
use veeva_vault_auth::testing::VaultStandIn;
use veeva_vault_auth::{BoxError, VaultAuthLayer};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let (base_url, source, stand_in): (String, Box<dyn TokenSource>, _) =
        match std::env::var("VEEVA_VAULT_DNS") {
            Ok(dns) => {
                println!("Talking to the real Vault at https://{dns}");
                (format!("https://{dns}"), Box::new(EnvToken::new()), None)
            }
            Err(_) => {
                let vault = VaultStandIn::start().await?;
                println!("Started the Vault stand-in at {}", vault.base_url());
                let token = StaticToken::new(vault.issue_token())?;
                (vault.base_url(), Box::new(token), Some(vault))
            }
        };

    // The layer goes around any client; here hyper-util's. For a real Vault it needs TLS.
    let layer = VaultAuthLayer::new(&base_url, source)?;
    let handle = layer.handle();
    let client = client_for(&base_url)?;
    let mut vault = ServiceBuilder::new().layer(layer).service(client);

    let api = |path: &str| format!("{base_url}/api/v26.2{path}");
    for (what, request) in [
        (
            "who am I",
            Request::get(api("/objects/users/me")).body(Full::new(Bytes::new()))?,
        ),
        (
            "a VQL query",
            Request::post(api("/query"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Full::new(Bytes::from_static(
                    b"q=SELECT id, name__v FROM documents",
                )))?,
        ),
    ] {
        let response = vault.ready().await?.call(request).await?;
        let status = response.status();
        let vault_status = response
            .headers()
            .get("x-vaultapi-status")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned();
        let body = response.into_body().collect().await?.to_bytes();
        println!(
            "{what}: HTTP {status}, X-VaultAPI-Status {vault_status}, {} bytes",
            body.len()
        );
    }

    if let Some(stand_in) = &stand_in {
        // Revoke the token behind the layer's back: Vault answers HTTP 200 with
        // INVALID_SESSION_ID, the layer asks its source again and replays once. A static source
        // has nothing newer, so the caller sees Vault's answer, and the source is not hammered.
        stand_in.revoke_all();
        let request = Request::get(api("/objects/users/me")).body(Full::new(Bytes::new()))?;
        let response = vault.ready().await?.call(request).await?;
        let body = response.into_body().collect().await?.to_bytes();
        println!(
            "after revoking the token: {}",
            String::from_utf8_lossy(&body)
        );
        let seen = stand_in.requests();
        println!("the stand-in received {} requests:", seen.len());
        for request in seen {
            println!(
                "  {} {} -> {:?} (authorization: {})",
                request.method,
                request.path,
                request.outcome,
                if request.headers.contains_key("authorization") {
                    "Bearer [REDACTED]"
                } else {
                    "none"
                }
            );
        }
    }

    let status = handle.status();
    println!(
        "layer status: generation {:?}, fetches {}, re-acquisitions {}, replays {}",
        status.generation, status.fetches, status.reacquisitions, status.replays
    );
    Ok(())
}

fn client_for(base_url: &str) -> Result<Client<HttpConnector, Full<Bytes>>, BoxError> {
    if base_url.starts_with("https://") {
        // This example ships without a TLS stack to keep its dependencies small; plug in
        // hyper-rustls or hyper-tls here to talk to a real Vault.
        return Err(
            "talking to a real Vault needs an https connector (hyper-rustls or hyper-tls); \
                    see the comment in examples/quickstart.rs"
                .into(),
        );
    }
    Ok(Client::builder(TokioExecutor::new()).build(HttpConnector::new()))
}
