//! The request path's checks of where a request goes (today's `surely_matches` /
//! `same_authority` / `usual_authority`, and the walk over at most 8 header names for `Host` and
//! `Authorization`): URIs that differ from the Vault's authority by case, default port, user info,
//! IPv6 spelling or a trailing dot; `Host` headers naming another host among 8, 9 or 30 header
//! names, repeated; the caller's own `Authorization` among many. Every request goes over real
//! HTTP to a [`RawServer`] (through a [pinned](super::pinned) client, so that `localhost` on port
//! 80 and made-up names reach it), which shows exactly what the layer let out.

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request};
use http_body_util::Full;
use veeva_vault_auth::source::StaticToken;
use veeva_vault_auth::{BoxError, NotForVault, VaultAuthLayer};

use super::pinned::pinned;
use super::raw::{header_values, vault_success, RawServer};
use crate::common::send;

const TOKEN: &str = "veeva-vault-round2-origin-token";
const BEARER: &str = "Bearer veeva-vault-round2-origin-token";

fn layer(vault: &str, pass_through: bool, override_authorization: bool) -> VaultAuthLayer {
    VaultAuthLayer::builder(vault, StaticToken::new(TOKEN).unwrap())
        .pass_through_other_hosts(pass_through)
        .override_authorization(override_authorization)
        .build()
        .unwrap()
}

/// What became of one request: refused by the layer (nothing sent), or the `Authorization`
/// values the server saw.
#[derive(Debug, PartialEq, Eq)]
enum Fate {
    Refused,
    Sent(Vec<String>),
}

async fn fate(
    server: &RawServer,
    client: &veeva_vault_auth::VaultAuth<super::pinned::PinnedClient>,
    request: Request<Full<Bytes>>,
) -> Fate {
    let before = server.requests().len();
    let result: Result<_, BoxError> = send(client, request).await;
    match result {
        Err(err) if err.downcast_ref::<NotForVault>().is_some() => {
            assert_eq!(server.requests().len(), before, "refused, yet sent");
            Fate::Refused
        }
        Err(err) => panic!("the request failed otherwise: {err}"),
        Ok(response) => {
            assert_eq!(response.status(), 200);
            let seen = server.requests();
            assert_eq!(seen.len(), before + 1, "one request on the wire");
            Fate::Sent(header_values(&seen[before], "authorization"))
        }
    }
}

fn expected(vault: bool, pass_through: bool) -> Fate {
    match (vault, pass_through) {
        (true, _) => Fate::Sent(vec![BEARER.to_owned()]),
        (false, true) => Fate::Sent(vec![]),
        (false, false) => Fate::Refused,
    }
}

/// The Vault's authority spelled every way a URI can, and near misses: only a URI naming the
/// Vault's host (any case, any spelling of the same IP) and port (the default written or not)
/// gets the token; a near miss is refused, or let through bare when other hosts pass through.
#[tokio::test]
async fn held_only_the_vaults_own_authority_gets_the_token() {
    let server = RawServer::start("127.0.0.1:0", |_, _| vault_success()).await;
    let by_name: &[(&str, bool)] = &[
        ("http://localhost/a", true),
        ("http://LOCALHOST/b", true),
        ("http://LocalHost:80/c", true),
        ("HTTP://localhost:80/d", true),
        ("http://localhost:080/e", true),
        ("http://evil.example@localhost/f", true),
        ("http://localhost:8080/g", false),
        ("http://localhost:8/h", false),
        ("http://127.0.0.1/i", false),
        ("http://localhost./j", false),
        ("http://localhost.evil.example/k", false),
        ("http://localhost@evil.example/l", false),
        ("http://localhost:80@evil.example:80/m", false),
        ("http://[::1]/n", false),
        ("https://localhost/o", false),
        ("http://xlocalhost/p", false),
    ];
    let by_ipv6: &[(&str, bool)] = &[
        ("http://[::1]/a", true),
        ("http://[0:0:0:0:0:0:0:1]:80/b", true),
        ("http://[::0:1]/c", true),
        ("http://[::1]:81/d", false),
        ("http://[::ffff:127.0.0.1]/e", false),
        ("http://[::2]/f", false),
        ("http://127.0.0.1/g", false),
        ("http://localhost/h", false),
    ];
    for (vault, cases) in [("http://localhost", by_name), ("http://[::1]", by_ipv6)] {
        for pass_through in [true, false] {
            let client = pinned(&layer(vault, pass_through, false), server.addr());
            for &(uri, is_vault) in cases {
                let request = Request::get(uri).body(Full::new(Bytes::new())).unwrap();
                assert_eq!(
                    fate(&server, &client, request).await,
                    expected(is_vault, pass_through),
                    "vault {vault}, pass through {pass_through}: {uri}"
                );
            }
        }
    }
}

/// A request whose headers, `count` names in all, include `hosts` as `Host` lines.
fn with_hosts(count: usize, hosts: &[&str]) -> Request<Full<Bytes>> {
    let mut builder = Request::get("http://localhost/api/v26.2/objects/users/me");
    for host in hosts {
        builder = builder.header("host", *host);
    }
    let padding = count - usize::from(!hosts.is_empty());
    for i in 0..padding {
        builder = builder.header(format!("x-pad-{i}").as_str(), "padding");
    }
    let request = builder.body(Full::new(Bytes::new())).unwrap();
    assert_eq!(request.headers().keys_len(), count);
    request
}

/// `Host` headers naming another host (or another port, or nothing readable), alone or beside
/// the Vault's own, first or last, among 1, 7, 8, 9 and 30 header names (today's walk covers up
/// to 8, look-ups the rest): never the token.
#[tokio::test]
async fn held_a_host_header_naming_another_host_never_gets_the_token() {
    let server = RawServer::start("127.0.0.1:0", |_, _| vault_success()).await;
    let cases: &[(&[&str], bool)] = &[
        (&["localhost"], true),
        (&["LOCALHOST:80"], true),
        (&["localhost."], true),
        (&["localhost", "LocalHost"], true),
        (&["localhost:8080"], false),
        (&["127.0.0.1"], false),
        (&["other.veevavault.com"], false),
        (&["localhost@evil.example"], false),
        (&["evil.example, localhost"], false),
        (&["localhost.."], false),
        (&[""], false),
        (&["localhost", "evil.example"], false),
        (&["evil.example", "localhost"], false),
        (&["localhost", "localhost", "localhost:81"], false),
    ];
    for pass_through in [true, false] {
        let client = pinned(
            &layer("http://localhost", pass_through, false),
            server.addr(),
        );
        for &(hosts, is_vault) in cases {
            for count in [1, 7, 8, 9, 30] {
                assert_eq!(
                    fate(&server, &client, with_hosts(count, hosts)).await,
                    expected(is_vault, pass_through),
                    "pass through {pass_through}, Host {hosts:?} among {count} names"
                );
            }
        }
    }
}

/// The caller's own `Authorization` (one value or two), among 1, 8, 9 and 30 header names, with
/// or without a `Host` of the Vault's: sent untouched, in order; with `override_authorization`
/// replaced by the token alone.
#[tokio::test]
async fn held_the_callers_authorization_passes_untouched_unless_overridden() {
    let server = RawServer::start("127.0.0.1:0", |_, _| vault_success()).await;
    let own: &[&[&str]] = &[&["Basic Y2FsbGVyOm93bg=="], &["caller-one", "caller-two"]];
    for override_authorization in [false, true] {
        let client = pinned(
            &layer("http://localhost", false, override_authorization),
            server.addr(),
        );
        for values in own {
            for host in [false, true] {
                for count in [1, 8, 9, 30] {
                    let mut request = Request::get("http://localhost/api/v26.2/objects/users/me")
                        .body(Full::new(Bytes::new()))
                        .unwrap();
                    let headers = request.headers_mut();
                    for value in *values {
                        headers.append("authorization", HeaderValue::from_static(value));
                    }
                    if host {
                        headers.insert("host", HeaderValue::from_static("localhost"));
                    }
                    let mut i = 0;
                    while headers.keys_len() < count {
                        headers.insert(
                            HeaderName::try_from(format!("x-pad-{i}")).unwrap(),
                            HeaderValue::from_static("padding"),
                        );
                        i += 1;
                    }
                    let want = if override_authorization {
                        vec![BEARER.to_owned()]
                    } else {
                        values.iter().map(|v| (*v).to_owned()).collect()
                    };
                    assert_eq!(
                        fate(&server, &client, request).await,
                        Fate::Sent(want),
                        "override {override_authorization}, {values:?}, host {host}, {count} names"
                    );
                }
            }
        }
    }
}

/// An https Vault on the default port (`https://localhost`, that is 443): every spelling of its
/// authority gets the token, and near misses are refused. The pinned client speaks TLS (rustls,
/// trusting the test's CA) to a TLS listener in front of the stand-in, whatever port the URI
/// names.
#[tokio::test]
async fn held_an_https_vault_on_the_default_port_gets_the_token_by_any_spelling() {
    use crate::issuer_common::tls::{client_config_trusting, TestCa, TlsFront};
    use veeva_vault_auth::testing::VaultStandIn;

    let vault = VaultStandIn::start().await.unwrap();
    let ca = TestCa::new("round2 origin");
    let front = TlsFront::start(&vault, &ca).await;
    let addr: std::net::SocketAddr = front.url().trim_start_matches("https://").parse().unwrap();
    let token = vault.issue_token();
    let layer =
        VaultAuthLayer::new("https://localhost", StaticToken::new(&token).unwrap()).unwrap();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(client_config_trusting(&ca))
        .https_only()
        .enable_http1()
        .wrap_connector(super::pinned::PinnedConnector::to(addr));
    let client: hyper_util::client::legacy::Client<_, Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(https);
    let client = tower::Layer::layer(&layer, client);
    let cases = [
        ("https://localhost/api/v26.2/objects/users/me", true),
        ("https://LOCALHOST:443/api/v26.2/objects/users/me", true),
        ("HTTPS://LocalHost:0443/api/v26.2/objects/users/me", true),
        ("https://localhost:8443/api/v26.2/objects/users/me", false),
        ("https://127.0.0.1/api/v26.2/objects/users/me", false),
        (
            "https://localhost:443@127.0.0.1/api/v26.2/objects/users/me",
            false,
        ),
    ];
    for (uri, is_vault) in cases {
        let before = vault.requests().len();
        let result = send(
            &client,
            Request::get(uri).body(Full::new(Bytes::new())).unwrap(),
        )
        .await;
        let seen = vault.requests();
        if is_vault {
            let response = result.unwrap_or_else(|err| panic!("{uri}: {err}"));
            assert_eq!(response.headers()["x-vaultapi-status"], "SUCCESS", "{uri}");
            assert_eq!(seen.len(), before + 1, "{uri}");
            assert_eq!(
                seen[before].headers.get("authorization").unwrap(),
                &format!("Bearer {token}"),
                "{uri}"
            );
        } else {
            let err = result.err().unwrap_or_else(|| panic!("{uri}: sent"));
            assert!(err.downcast_ref::<NotForVault>().is_some(), "{uri}: {err}");
            assert_eq!(seen.len(), before, "{uri}: refused, yet sent");
        }
    }
}
