//! Origin matching against a small reference model: random Vault URLs and requests (scheme and
//! host in any case, default and explicit ports, user info, trailing dots, `Host` headers, a
//! caller's own `Authorization`) through the public layer, in front of a service that records
//! what it is handed. The model says, for each request, whether the token is attached, the request
//! is refused as one for another host, or passed through without a Vault token.
//!
//! Deterministic: a fixed seed, no persistence files.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::header::{AUTHORIZATION, HOST};
use http::{HeaderValue, Request, Response};
use http_body_util::Full;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use veeva_vault_auth::source::StaticToken;
use veeva_vault_auth::{BoxError, NotForVault, VaultAuthLayer};

/// A Vault the layer is set up for, and what the model knows of it.
#[derive(Clone, Debug)]
struct Vault {
    url: &'static str,
    https: bool,
    host: &'static str,
    port: u16,
}

const VAULTS: [Vault; 5] = [
    Vault {
        url: "https://myvault.veevavault.com",
        https: true,
        host: "myvault.veevavault.com",
        port: 443,
    },
    Vault {
        url: "HTTPS://MyVault.VeevaVault.com:443/",
        https: true,
        host: "myvault.veevavault.com",
        port: 443,
    },
    Vault {
        url: "myvault.veevavault.com:8443",
        https: true,
        host: "myvault.veevavault.com",
        port: 8443,
    },
    Vault {
        url: "http://127.0.0.1:8080",
        https: false,
        host: "127.0.0.1",
        port: 8080,
    },
    Vault {
        url: "http://localhost",
        https: false,
        host: "localhost",
        port: 80,
    },
];

/// An authority as a request (its URI or its `Host` header) may name one.
#[derive(Clone, Debug)]
struct Authority {
    userinfo: &'static str,
    host: String,
    port: Option<u16>,
}

impl Authority {
    fn text(&self) -> String {
        match self.port {
            Some(port) => format!("{}{}:{port}", self.userinfo, self.host),
            None => format!("{}{}", self.userinfo, self.host),
        }
    }
}

#[derive(Clone, Debug)]
enum HostHeader {
    Names(Authority),
    Garbage(&'static str),
}

#[derive(Clone, Debug)]
struct Case {
    vault: usize,
    scheme: &'static str,
    target: Authority,
    hosts: Vec<HostHeader>,
    /// A caller's own `Authorization`: none, one holding a Vault token, another credential.
    callers: u8,
    pass_through: bool,
}

/// A host related to the Vault's: itself in several cases, with trailing dots, other Vaults on
/// its domain, look-alikes, loopback names.
fn host(vault: &'static Vault) -> impl Strategy<Value = String> {
    let own = vault.host;
    prop_oneof![
        12 => Just(own.to_owned()),
        3 => Just(own.to_ascii_uppercase()),
        2 => Just(
            own.chars()
                .enumerate()
                .map(|(i, c)| if i % 2 == 0 {
                    c.to_ascii_uppercase()
                } else {
                    c
                })
                .collect::<String>()
        ),
        1 => Just(format!("{own}.")),
        1 => Just(format!("{own}..")),
        1 => Just(format!("{own}.evil.example")),
        1 => Just(format!("x{own}")),
        1 => Just("othervault.veevavault.com".to_owned()),
        1 => Just("127.0.0.1".to_owned()),
        1 => Just("localhost".to_owned()),
        1 => Just("[::1]".to_owned()),
    ]
}

fn authority(vault: &'static Vault) -> impl Strategy<Value = Authority> {
    (
        prop_oneof![6 => Just(""), 1 => Just("user@"), 1 => Just("user:pw@")],
        host(vault),
        prop_oneof![
            8 => Just(None),
            3 => Just(Some(vault.port)),
            1 => Just(Some(443)),
            1 => Just(Some(80)),
            1 => Just(Some(8443)),
            1 => Just(Some(8080)),
            1 => Just(Some(444)),
        ],
    )
        .prop_map(|(userinfo, host, port)| Authority {
            userinfo,
            host,
            port,
        })
}

fn case() -> impl Strategy<Value = Case> {
    (0..VAULTS.len()).prop_flat_map(|vault| {
        let v = &VAULTS[vault];
        (
            Just(vault),
            prop_oneof![
                8 => Just(if v.https { "https" } else { "http" }),
                1 => Just("https"),
                1 => Just("http"),
                1 => Just(if v.https { "HTTPS" } else { "HTTP" }),
                1 => Just("Http"),
                1 => Just("ftp"),
            ],
            authority(v),
            prop::collection::vec(
                prop_oneof![
                    6 => authority(v).prop_map(HostHeader::Names),
                    1 => prop_oneof![Just(""), Just("not a host"), Just("a/b"), Just("h:p")]
                        .prop_map(HostHeader::Garbage),
                ],
                0..3,
            ),
            0u8..3,
            any::<bool>(),
        )
            .prop_map(
                |(vault, scheme, target, hosts, callers, pass_through)| Case {
                    vault,
                    scheme,
                    target,
                    hosts,
                    callers,
                    pass_through,
                },
            )
    })
}

/// What the layer must do with a request.
#[derive(Debug, PartialEq)]
enum Expected {
    /// Sent with the layer's token.
    Token,
    /// For the Vault, with the caller's own `Authorization` left as it was.
    CallersOwn,
    /// Refused with `NotForVault`.
    Refused,
    /// Sent on without any Vault token (the caller's other credential kept).
    Passed,
}

fn default_port(https: bool) -> u16 {
    if https {
        443
    } else {
        80
    }
}

/// The reference model.
fn model(case: &Case) -> Expected {
    let vault = &VAULTS[case.vault];
    let scheme_https = if case.scheme.eq_ignore_ascii_case("https") {
        Some(true)
    } else if case.scheme.eq_ignore_ascii_case("http") {
        Some(false)
    } else {
        None
    };
    // The URI: scheme and port as the Vault's (the scheme's default when absent), host in any
    // case. User info does not change where a request goes. A trailing dot is another name.
    let uri_is_vault = scheme_https.is_some_and(|https| {
        https == vault.https
            && case.target.host.eq_ignore_ascii_case(vault.host)
            && case.target.port.unwrap_or(default_port(https)) == vault.port
    });
    // Every `Host` header must name the Vault: no user info, the host in any case with one
    // trailing dot ignored (more name nothing), the port the Vault's (its scheme's default when
    // absent).
    let hosts_are_vault = case.hosts.iter().all(|host| match host {
        HostHeader::Garbage(_) => false,
        HostHeader::Names(authority) => {
            authority.userinfo.is_empty()
                && authority
                    .host
                    .strip_suffix('.')
                    .unwrap_or(&authority.host)
                    .eq_ignore_ascii_case(vault.host)
                && authority.port.unwrap_or(default_port(vault.https)) == vault.port
        }
    });
    if uri_is_vault && hosts_are_vault {
        if case.callers == 0 {
            Expected::Token
        } else {
            Expected::CallersOwn
        }
    } else if case.pass_through {
        Expected::Passed
    } else {
        Expected::Refused
    }
}

/// What the inner service was handed: the `Authorization` values of each request.
type Seen = Arc<Mutex<Vec<Vec<HeaderValue>>>>;

fn check(rt: &tokio::runtime::Runtime, token: &str, case: &Case) -> Result<(), TestCaseError> {
    let vault = &VAULTS[case.vault];
    let uri = format!(
        "{}://{}/api/v26.2/objects/documents",
        case.scheme,
        case.target.text()
    );
    let Ok(uri) = uri.parse::<http::Uri>() else {
        // Not every combination is a URI (`[::1]` with user info and so on): nothing to send.
        return Ok(());
    };
    let mut builder = Request::get(uri);
    for host in &case.hosts {
        builder = match host {
            HostHeader::Names(authority) => builder.header(HOST, authority.text()),
            HostHeader::Garbage(text) => builder.header(HOST, *text),
        };
    }
    let callers = match case.callers {
        1 => Some(format!("Bearer veeva-vault-{}", "c".repeat(6))),
        2 => Some("Basic dXNlcjpwdw==".to_owned()),
        _ => None,
    };
    if let Some(value) = &callers {
        builder = builder.header(AUTHORIZATION, value.as_str());
    }
    let request = builder.body(Full::new(Bytes::new())).unwrap();

    let seen: Seen = Arc::default();
    let record = Arc::clone(&seen);
    let inner = tower::service_fn(move |req: Request<Full<Bytes>>| {
        let record = Arc::clone(&record);
        async move {
            let values = req
                .headers()
                .get_all(AUTHORIZATION)
                .iter()
                .cloned()
                .collect();
            record.lock().unwrap().push(values);
            Ok::<_, BoxError>(Response::new(Full::new(Bytes::from_static(b"{}"))))
        }
    });
    let layer = VaultAuthLayer::builder(vault.url, StaticToken::new(token).unwrap())
        .pass_through_other_hosts(case.pass_through)
        .build()
        .unwrap();
    let service = tower::Layer::layer(&layer, inner);
    let result = rt.block_on(async {
        use tower::ServiceExt;
        service.oneshot(request).await
    });
    let seen = seen.lock().unwrap().clone();
    let bearer = format!("Bearer {token}");
    match model(case) {
        Expected::Token => {
            prop_assert!(result.is_ok(), "sent: {:?}", result.err());
            prop_assert_eq!(seen.len(), 1);
            prop_assert_eq!(&seen[0], &vec![HeaderValue::from_str(&bearer).unwrap()]);
            prop_assert!(seen[0][0].is_sensitive(), "the token's header is sensitive");
        }
        Expected::CallersOwn => {
            prop_assert!(result.is_ok(), "sent: {:?}", result.err());
            prop_assert_eq!(seen.len(), 1);
            let own = HeaderValue::from_str(callers.as_deref().unwrap()).unwrap();
            prop_assert_eq!(&seen[0], &vec![own]);
        }
        Expected::Refused => {
            let Err(err) = result else {
                return Err(TestCaseError::fail("sent, where the model refuses it"));
            };
            prop_assert!(err.downcast_ref::<NotForVault>().is_some(), "{err}");
            prop_assert!(!err.to_string().contains(token));
            prop_assert!(seen.is_empty(), "a refused request is not sent");
        }
        Expected::Passed => {
            prop_assert!(result.is_ok(), "sent: {:?}", result.err());
            prop_assert_eq!(seen.len(), 1);
            let kept: Vec<HeaderValue> = match case.callers {
                2 => vec![HeaderValue::from_static("Basic dXNlcjpwdw==")],
                _ => Vec::new(),
            };
            prop_assert_eq!(&seen[0], &kept, "no Vault token goes to another host");
        }
    }
    Ok(())
}

#[test]
fn the_token_goes_where_the_model_says_and_nowhere_else() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let token = format!("veeva-vault-{}", "p".repeat(8));
    let config = Config {
        cases: 512,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    let outcomes = std::cell::RefCell::new(std::collections::HashMap::<String, usize>::new());
    runner
        .run(&case(), |case| {
            *outcomes
                .borrow_mut()
                .entry(format!("{:?}", model(&case)))
                .or_default() += 1;
            check(&rt, &token, &case)
        })
        .unwrap();
    // The generator reaches every outcome (a model that always says "refused" would pass
    // otherwise).
    let outcomes = outcomes.into_inner();
    for outcome in ["Token", "CallersOwn", "Refused", "Passed"] {
        assert!(
            outcomes.get(outcome).copied().unwrap_or(0) >= 10,
            "{outcome} reached only {outcomes:?}"
        );
    }
}
