//! The reqwest middleware's door shares today's walk over at most 8 header names: a `Host`
//! naming another host among 1, 8, 9 and 30 names is refused (or let through bare), and the
//! caller's own `Authorization` passes untouched, over real HTTP to a [`RawServer`].

use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use veeva_vault_auth::source::StaticToken;
use veeva_vault_auth::{NotForVault, VaultAuthLayer};

use super::raw::{header_values, vault_success, RawServer};

const TOKEN: &str = "veeva-vault-round2-reqwest-token";

fn client(url: &str, pass_through: bool) -> ClientWithMiddleware {
    let layer = VaultAuthLayer::builder(url, StaticToken::new(TOKEN).unwrap())
        .pass_through_other_hosts(pass_through)
        .build()
        .unwrap();
    ClientBuilder::new(reqwest::Client::new())
        .with(layer.middleware())
        .build()
}

/// `extra` as headers (each a name of its own), padded to `count` names in all.
async fn send(
    client: &ClientWithMiddleware,
    url: &str,
    extra: &[(&str, String)],
    count: usize,
) -> Result<(), NotForVault> {
    let mut request = client.get(format!("{url}/api/v26.2/objects/users/me"));
    for (name, value) in extra {
        request = request.header(*name, value.as_str());
    }
    for i in extra.len()..count {
        request = request.header(format!("x-pad-{i}"), "padding");
    }
    match request.send().await {
        Ok(response) => {
            assert_eq!(response.status(), 200);
            Ok(())
        }
        Err(reqwest_middleware::Error::Middleware(err)) => Err(err
            .downcast_ref::<NotForVault>()
            .unwrap_or_else(|| panic!("another failure: {err}"))
            .clone()),
        Err(err) => panic!("the request failed: {err}"),
    }
}

#[tokio::test]
async fn held_the_reqwest_door_walks_host_and_authorization_as_the_tower_one() {
    let server = RawServer::start("127.0.0.1:0", |_, _| vault_success()).await;
    let own = server.addr().to_string();
    let url = format!("http://{own}");
    let other = format!("127.0.0.1:{}", server.addr().port() ^ 1);
    for pass_through in [false, true] {
        let client = client(&url, pass_through);
        for count in [1, 8, 9, 30] {
            let what = format!("pass through {pass_through}, {count} names");
            // Another host's Host: refused, or sent without the token.
            let before = server.requests().len();
            let result = send(&client, &url, &[("host", other.clone())], count).await;
            if pass_through {
                result.unwrap();
                let seen = server.requests();
                assert_eq!(seen.len(), before + 1, "{what}");
                assert!(
                    header_values(&seen[before], "authorization").is_empty(),
                    "{what}: the token went out under Host {other}"
                );
            } else {
                assert!(result.is_err(), "{what}: Host {other} not refused");
                assert_eq!(server.requests().len(), before, "{what}: refused, yet sent");
            }
            // The Vault's own Host and the caller's own credential: sent as they are.
            let extra = [
                ("host", own.clone()),
                ("authorization", "Basic b3duOmNyZWRlbnRpYWw=".to_owned()),
            ];
            send(&client, &url, &extra, count.max(2)).await.unwrap();
            let seen = server.requests();
            assert_eq!(
                header_values(seen.last().unwrap(), "authorization"),
                ["Basic b3duOmNyZWRlbnRpYWw="],
                "{what}"
            );
            // The Vault's own Host alone: the token.
            send(&client, &url, &[("host", own.clone())], count)
                .await
                .unwrap();
            assert_eq!(
                header_values(server.requests().last().unwrap(), "authorization"),
                [format!("Bearer {TOKEN}")],
                "{what}"
            );
        }
    }
}
