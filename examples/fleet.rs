//! One process issues, many read: a fleet sharing one Vault user's 25 tokens.
//!
//! The parent process starts the Vault stand-in and a `VaultIssuer` that writes each token it
//! issues to a file (atomically, mode 0600). It then starts three reader processes (this same
//! program, with `reader` as its first argument); each reads the token with `FileToken` and sends
//! requests through its own `VaultAuthLayer`. The parent rotates the token every second (as
//! renewal ahead of expiry would, only faster), and the issuer revokes each superseded token after
//! a grace period longer than the readers' poll interval. All along, the parent watches Vault's
//! view of the user's tokens and reports the most of the issuer's it ever saw active at once:
//! never more than two, however many processes run.
//!
//! No setup and no network beyond loopback; the run takes about eight seconds. Token values are
//! never printed.
//!
//! ```sh
//! cargo run --example fleet
//! ```

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{Service, ServiceExt};
use veeva_vault_auth::source::{FileToken, StaticToken, VaultIssuer};
use veeva_vault_auth::testing::VaultStandIn;
use veeva_vault_auth::{BoxError, VaultAuthLayer};

const PREFIX: &str = "fleet-example";
const READERS: usize = 3;
const RUN: Duration = Duration::from_secs(6);
const READER_POLL: Duration = Duration::from_millis(200);

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("reader") {
        return reader(&args[2], Path::new(&args[3]), &args[4]).await;
    }
    issuer_process().await
}

async fn issuer_process() -> Result<(), BoxError> {
    let vault = VaultStandIn::start().await?;
    let base = vault.base_url();
    let dir = std::env::temp_dir().join(format!("veeva-vault-fleet-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("token");
    println!(
        "Vault stand-in at {base}; the fleet's token file is {}",
        file.display()
    );

    let issuer = VaultIssuer::builder(&base)
        .bootstrap_token(StaticToken::new(vault.issue_token())?)
        .name_prefix(PREFIX)
        .lifetime(Duration::from_secs(3600))
        .grace_period(READER_POLL * 4)
        .fleet_file(&file)
        .build()?;
    // The issuing process has a layer too (it may send requests of its own); its fetches are
    // what issue tokens.
    let layer = VaultAuthLayer::new(&base, issuer.clone())?;
    let handle = layer.handle();
    handle.force_refresh().await?;
    println!("Issued the first token and wrote it to the file.");

    let readers: Vec<Child> = (0..READERS)
        .map(|n| spawn_reader(n, &base, &file))
        .collect::<Result<_, _>>()?;
    println!("Started {READERS} reader processes.");

    let started = Instant::now();
    let mut next_rotation = started + Duration::from_secs(1);
    let mut most_active = 0;
    while started.elapsed() < RUN + Duration::from_secs(1) {
        most_active = most_active.max(own_active(&vault));
        if Instant::now() >= next_rotation && started.elapsed() < RUN {
            handle.force_refresh().await?;
            next_rotation += Duration::from_secs(1);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut failed_readers = 0;
    for (n, child) in readers.into_iter().enumerate() {
        let output = child.wait_with_output()?;
        let text = String::from_utf8_lossy(&output.stdout);
        print!("reader {n}: {text}");
        if !output.status.success() {
            failed_readers += 1;
        }
    }
    issuer.shutdown().await?;
    let stats = issuer.stats();
    println!(
        "\nIssued {} tokens, revoked {}; at most {most_active} of the issuer's tokens were active at once; \
         {} active after shutdown.",
        stats.issued,
        stats.revoked,
        own_active(&vault)
    );
    std::fs::remove_dir_all(&dir)?;
    if most_active > 2 || failed_readers > 0 {
        return Err(format!(
            "the fleet held {most_active} tokens at once; {failed_readers} readers failed"
        )
        .into());
    }
    Ok(())
}

fn spawn_reader(n: usize, base: &str, file: &Path) -> std::io::Result<Child> {
    Command::new(std::env::current_exe()?)
        .arg("reader")
        .arg(base)
        .arg(file)
        .arg(n.to_string())
        .stdout(Stdio::piped())
        .spawn()
}

fn own_active(vault: &VaultStandIn) -> usize {
    vault
        .tokens()
        .iter()
        .filter(|t| t.active && t.name.starts_with(PREFIX))
        .count()
}

/// A reader process: requests through its own layer for the run's length, with the token from
/// the fleet file.
async fn reader(base: &str, file: &Path, name: &str) -> Result<(), BoxError> {
    let source = FileToken::new(PathBuf::from(file)).with_poll_interval(READER_POLL);
    let layer = VaultAuthLayer::new(base, source)?;
    let handle = layer.handle();
    let client = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let mut service = tower::Layer::layer(&layer, client);
    let url = format!("{base}/api/v26.2/objects/users/me");
    let started = Instant::now();
    let (mut ok, mut failed) = (0u32, 0u32);
    while started.elapsed() < RUN {
        let request = Request::get(&url).body(Full::new(Bytes::new()))?;
        match service.ready().await?.call(request).await {
            Ok(response) if response.headers()["x-vaultapi-status"] == "SUCCESS" => ok += 1,
            _ => failed += 1,
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let status = handle.status();
    println!(
        "{ok} requests succeeded, {failed} failed; read {} tokens, {} replays (process {name})",
        status.generation.unwrap_or(0),
        status.replays
    );
    if failed > 0 {
        return Err("a request failed".into());
    }
    Ok(())
}
