//! A long-running service's way of using the layer: one `VaultAuthLayer` shared by many Tokio
//! tasks, its token read from a file that another process rotates.
//!
//! - The token lives in a file, as a mounted secret would. [`FileToken`] reads it, re-reads it
//!   every 100 ms (`with_poll_interval`), and at once when Vault rejects the token.
//! - A separate process (`sh -c`, writing a temporary file and renaming it over the old one, so
//!   the file is never seen half-written) puts a new token in the file three times while the
//!   tasks run. Right after each rotation the Vault stand-in revokes the old token, as a rotator
//!   would; a request that still carries it is rejected, the layer reads the file again and
//!   replays the request with the new token, so the tasks never see the rejection.
//! - The run is bounded (a few seconds) and ends by itself with a summary. Token values are never
//!   printed: tokens are shown by their number in the rotation (#1, #2, …).
//!
//! Where `sh` cannot be started, the example writes the file itself, the same way.
//!
//! ```sh
//! cargo run --example long_running
//! ```

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{Layer, ServiceExt};
use veeva_vault_auth::source::FileToken;
use veeva_vault_auth::testing::{Outcome, VaultStandIn};
use veeva_vault_auth::{BoxError, VaultAuthLayer};

/// How many tasks share the layer.
const TASKS: usize = 16;
/// How many times the other process puts a new token in the file.
const ROTATIONS: usize = 3;
/// Time between rotations; the whole run takes about `(ROTATIONS + 1) * ROTATE_EVERY`.
const ROTATE_EVERY: Duration = Duration::from_millis(700);
/// How often the layer reads the file again.
const POLL: Duration = Duration::from_millis(100);
/// Pause between two requests of one task.
const PACE: Duration = Duration::from_millis(10);

/// Replaces the token file atomically: a temporary file in the same directory, then a rename.
/// The token is handed over in the environment, never on a command line.
const ROTATE_SCRIPT: &str = r#"umask 077 && printf '%s\n' "$NEW_TOKEN" > "$TOKEN_FILE.tmp" && mv -f "$TOKEN_FILE.tmp" "$TOKEN_FILE""#;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let vault = VaultStandIn::start().await?;
    let dir = std::env::temp_dir().join(format!(
        "veeva-vault-auth-long-running-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir)?;
    let token_file = dir.join("token");
    let result = run(&vault, &token_file).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run(vault: &VaultStandIn, token_file: &Path) -> Result<(), BoxError> {
    println!("Vault stand-in at {}", vault.base_url());
    println!("token file {}", token_file.display());

    // Token #1, before the service starts.
    let mut tokens = vec![vault.issue_token()];
    let writer = rotate(token_file, &tokens[0]).await?;
    println!("token #1 written by {writer}");

    // One layer, one client; every task gets a clone of the service (they share the token cache
    // and the connection pool).
    let layer = VaultAuthLayer::new(
        &vault.base_url(),
        FileToken::new(token_file).with_poll_interval(POLL),
    )?;
    let handle = layer.handle();
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let service = layer.layer(client);

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let url = vault.api_url("/objects/documents");
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let (service, stop, ok, url) = (service.clone(), stop.clone(), ok.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let request = Request::get(&url).body(Full::new(Bytes::new()))?;
                let response = service.clone().oneshot(request).await?;
                let vault_status = response.headers().get("x-vaultapi-status").cloned();
                let body = response.into_body().collect().await?.to_bytes();
                if vault_status.as_ref().and_then(|v| v.to_str().ok()) != Some("SUCCESS") {
                    return Err::<(), BoxError>(
                        format!("request failed: {}", String::from_utf8_lossy(&body)).into(),
                    );
                }
                ok.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(PACE).await;
            }
            Ok(())
        }));
    }

    let started = Instant::now();
    for n in 2..=ROTATIONS + 1 {
        tokio::time::sleep(ROTATE_EVERY).await;
        let new = vault.issue_token();
        let writer = rotate(token_file, &new).await?;
        // The file now holds the new token: the rotator revokes the old one straight away.
        let old = tokens.last().expect("token #1 is there");
        vault.revoke(old);
        tokens.push(new);
        println!(
            "{:>5} ms: token #{n} written by {writer}, token #{} revoked; {} requests ok so far, \
             layer at token generation {:?}",
            started.elapsed().as_millis(),
            n - 1,
            ok.load(Ordering::Relaxed),
            handle.status().generation,
        );
    }
    tokio::time::sleep(ROTATE_EVERY).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await??;
    }

    // What Vault saw, by token number.
    let mut accepted = vec![0u64; tokens.len()];
    let mut rejected = vec![0u64; tokens.len()];
    for request in vault.requests() {
        let sent = request
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let Some(index) = sent.and_then(|sent| tokens.iter().position(|t| t == sent)) else {
            return Err("a request without one of the rotated tokens reached Vault".into());
        };
        match request.outcome {
            Outcome::Accepted => accepted[index] += 1,
            _ => rejected[index] += 1,
        }
    }

    let status = handle.status();
    println!("\nSummary after {} ms:", started.elapsed().as_millis());
    println!(
        "  {} requests ok from {TASKS} tasks, none failed",
        ok.load(Ordering::Relaxed)
    );
    for (i, (accepted, rejected)) in accepted.iter().zip(&rejected).enumerate() {
        let rejected = match rejected {
            0 => String::new(),
            n => format!(", {n} rejected after its revocation (each replayed with the next token)"),
        };
        println!("  token #{}: {accepted} accepted by Vault{rejected}", i + 1);
    }
    println!(
        "  layer: generation {:?}, fetches {}, re-acquisitions {}, replays {}",
        status.generation, status.fetches, status.reacquisitions, status.replays
    );
    let used_last = accepted.last().copied().unwrap_or(0) > 0;
    if !used_last {
        return Err("the last token was never used".into());
    }
    Ok(())
}

/// Puts `token` in `file` atomically, from another process when `sh` can be started. Returns
/// who wrote it.
async fn rotate(file: &Path, token: &str) -> Result<&'static str, BoxError> {
    let (file, token) = (PathBuf::from(file), token.to_owned());
    let writer = tokio::task::spawn_blocking(move || -> std::io::Result<&'static str> {
        let spawned = std::process::Command::new("sh")
            .arg("-c")
            .arg(ROTATE_SCRIPT)
            .env("TOKEN_FILE", &file)
            .env("NEW_TOKEN", &token)
            .status();
        match spawned {
            Ok(status) if status.success() => Ok("another process (sh)"),
            Ok(status) => Err(std::io::Error::other(format!("sh exited with {status}"))),
            Err(_) => {
                let temporary = file.with_extension("tmp");
                std::fs::write(&temporary, format!("{token}\n"))?;
                std::fs::rename(&temporary, &file)?;
                Ok("this process (sh unavailable)")
            }
        }
    })
    .await??;
    Ok(writer)
}
