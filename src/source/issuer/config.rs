//! [`VaultIssuerBuilder`]: where the issuer talks, with which bootstrap credential, and how it
//! names, times, revokes and shares the tokens it issues.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderValue, Uri};
use secrecy::SecretString;

use super::{IdentityToken, VaultIssuer};
use crate::source::TokenSource;

/// The longest lifetime or grace period the issuer takes: ten years.
const MAX_SETTING: Duration = Duration::from_secs(10 * 366 * 24 * 3600);

/// The wall clock the issuer dates things by (Vault's clock is this plus the skew Vault's `Date`
/// header shows).
pub(super) type WallClock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// How long an issued token lives unless told otherwise: 24 hours.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// How long a superseded token keeps working before it is revoked unless told otherwise:
/// 2 minutes.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(120);

/// The `name__v` prefix of issued tokens unless told otherwise.
pub const DEFAULT_NAME_PREFIX: &str = "veeva-vault-auth";

/// Where OAuth 2.0 / OpenID Connect sessions are exchanged unless told otherwise.
pub const DEFAULT_LOGIN_URL: &str = "https://login.veevavault.com";

/// A [`VaultIssuerBuilder`] setting that cannot work; the message says which and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuerConfigError {
    message: String,
}

impl IssuerConfigError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

impl fmt::Display for IssuerConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid vault issuer settings: {}", self.message)
    }
}

impl std::error::Error for IssuerConfigError {}

/// The credential the issuer issues with.
#[derive(Clone)]
pub(super) enum Bootstrap {
    /// A token made elsewhere (Vault's UI, a secret store), read from any source at each issue.
    Token(Arc<dyn TokenSource>),
    /// A user name and password, logged in with `POST /auth`; the session is the credential.
    Password {
        username: String,
        password: Arc<SecretString>,
    },
    /// An identity provider's access token, exchanged for a session.
    OAuth {
        profile_id: String,
        client_id: Option<String>,
        identity: IdentityToken,
    },
}

#[derive(Clone)]
pub(super) struct Config {
    /// `scheme://authority`, no trailing slash.
    pub(super) base: String,
    /// `authority` (for `vaultDNS` and the defaulting check).
    pub(super) authority: String,
    pub(super) login_base: String,
    pub(super) api_version: String,
    pub(super) bootstrap: Bootstrap,
    pub(super) name_prefix: String,
    pub(super) lifetime: Duration,
    pub(super) grace: Duration,
    pub(super) sandbox: Option<(String, String)>,
    pub(super) fleet_file: Option<PathBuf>,
    pub(super) clock: WallClock,
    pub(super) timeout: Duration,
    pub(super) client_id: Option<HeaderValue>,
    pub(super) min_login_interval: Duration,
    pub(super) revoke_retry: Duration,
    pub(super) transport: Option<super::transport::Transport>,
    pub(super) tls: super::transport::Tls,
}

impl Config {
    pub(super) fn api(&self, path: &str) -> String {
        format!("{}/api/{}{path}", self.base, self.api_version)
    }
}

/// Builds a [`VaultIssuer`]; start with [`VaultIssuer::builder`].
///
/// ```
/// use std::time::Duration;
/// use veeva_vault_auth::source::{EnvToken, VaultIssuer};
///
/// let issuer = VaultIssuer::builder("https://myvault.veevavault.com")
///     .bootstrap_token(EnvToken::from_var("VAULT_BOOTSTRAP_TOKEN"))
///     .name_prefix("acme-crm-sync")
///     .lifetime(Duration::from_secs(8 * 3600))
///     .grace_period(Duration::from_secs(300));
/// # let _ = issuer;
/// ```
pub struct VaultIssuerBuilder {
    url: String,
    login_url: String,
    api_version: String,
    bootstrap: Option<Bootstrap>,
    name_prefix: String,
    lifetime: Duration,
    grace: Duration,
    sandbox: Option<(String, String)>,
    fleet_file: Option<PathBuf>,
    clock: WallClock,
    timeout: Duration,
    client_id: Option<String>,
    min_login_interval: Duration,
    revoke_retry: Duration,
    transport: Option<super::transport::Transport>,
    any_scheme: bool,
    #[cfg(feature = "rustls")]
    tls: super::tls::TlsSettings,
}

impl fmt::Debug for VaultIssuerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultIssuerBuilder")
            .field("url", &self.url)
            .field("name_prefix", &self.name_prefix)
            .field("lifetime", &self.lifetime)
            .field("grace", &self.grace)
            .finish_non_exhaustive()
    }
}

impl VaultIssuerBuilder {
    pub(super) fn new(vault_url: &str) -> Self {
        Self {
            url: vault_url.to_owned(),
            login_url: DEFAULT_LOGIN_URL.to_owned(),
            api_version: "v26.2".to_owned(),
            bootstrap: None,
            name_prefix: DEFAULT_NAME_PREFIX.to_owned(),
            lifetime: DEFAULT_LIFETIME,
            grace: DEFAULT_GRACE_PERIOD,
            sandbox: None,
            fleet_file: None,
            clock: Arc::new(SystemTime::now),
            timeout: Duration::from_secs(30),
            client_id: None,
            min_login_interval: Duration::from_secs(60),
            revoke_retry: Duration::from_secs(30),
            transport: None,
            any_scheme: false,
            #[cfg(feature = "rustls")]
            tls: super::tls::TlsSettings::default(),
        }
    }

    /// Sends the issuer's calls through your tower service (a hyper-util client with your own
    /// connector, proxy or pool, with middleware of your own) instead of its own client. Each
    /// call clones the service and waits for it to be ready. Then `https` needs no feature of this
    /// crate: the service decides how to connect.
    ///
    /// Do not put the [`VaultAuthLayer`](crate::VaultAuthLayer) the issuer feeds in this service:
    /// the issuer's own calls carry their own credential.
    #[must_use]
    pub fn http_service<S, B>(mut self, service: S) -> Self
    where
        S: tower_service::Service<
                http::Request<http_body_util::Full<bytes::Bytes>>,
                Response = http::Response<B>,
            > + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
        S::Error: Into<crate::BoxError>,
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<crate::BoxError>,
    {
        self.transport = Some(super::transport::Transport::service(service));
        self.any_scheme = true;
        self
    }

    /// Trusts the root certificates in `pem` (every `CERTIFICATE` block of PEM text, such as a
    /// corporate proxy's private CA file) for the issuer's own https client, besides the bundled
    /// webpki roots. Can be called more than once. A text without a certificate, or with one
    /// that cannot be read, makes [`build`](Self::build) fail.
    ///
    /// Needed when something between the issuer and Vault (a TLS-inspecting proxy) presents a
    /// certificate of a private CA; tests use it to trust a certificate they made.
    ///
    /// ```
    /// # fn demo(ca_pem: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
    /// use veeva_vault_auth::source::{EnvToken, VaultIssuer};
    ///
    /// let issuer = VaultIssuer::builder("https://myvault.veevavault.com")
    ///     .bootstrap_token(EnvToken::from_var("VAULT_BOOTSTRAP_TOKEN"))
    ///     .tls_root_certificates_pem(ca_pem) // e.g. std::fs::read("/etc/ssl/acme-proxy-ca.pem")?
    ///     .build()?;
    /// # let _ = issuer;
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "rustls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
    #[must_use]
    pub fn tls_root_certificates_pem(mut self, pem: &[u8]) -> Self {
        self.tls.add_pem(pem);
        self
    }

    /// Trusts one DER-encoded root certificate for the issuer's own https client, besides the
    /// bundled webpki roots (as [`tls_root_certificates_pem`](Self::tls_root_certificates_pem)).
    /// One that is not a usable certificate makes [`build`](Self::build) fail.
    #[cfg(feature = "rustls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
    #[must_use]
    pub fn tls_root_certificate_der(mut self, der: &[u8]) -> Self {
        self.tls.add_der(der);
        self
    }

    /// Connects the issuer's own https client with your rustls 0.23 `ClientConfig` (its roots
    /// and verifier, client certificates, protocol versions), in place of the bundled webpki
    /// roots. Not together with the root certificate settings (then [`build`](Self::build)
    /// fails): put them in your configuration's root store.
    #[cfg(feature = "rustls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
    #[must_use]
    pub fn tls_client_config(mut self, config: rustls::ClientConfig) -> Self {
        self.tls.set_config(config);
        self
    }

    /// Issues with a token made elsewhere (in Vault's UI, kept in a secret store), read from
    /// `source` ([`StaticToken`](crate::source::StaticToken), [`EnvToken`](crate::source::EnvToken),
    /// [`FileToken`](crate::source::FileToken), …) at every issue, so a replaced bootstrap
    /// token is picked up without a restart.
    #[must_use]
    pub fn bootstrap_token(mut self, source: impl TokenSource) -> Self {
        self.bootstrap = Some(Bootstrap::Token(Arc::new(source)));
        self
    }

    /// Issues within a session opened with a user name and password (`POST /auth`). The
    /// session is kept while it works, opened again when Vault says it is invalid (at most one
    /// login a minute), and ended on [`shutdown`](VaultIssuer::shutdown). After Vault refuses the
    /// login, no login is tried for 15 minutes (the same error is returned), so that a wrong
    /// password does not lock the account out.
    #[must_use]
    pub fn password(mut self, username: &str, password: SecretString) -> Self {
        self.bootstrap = Some(Bootstrap::Password {
            username: username.to_owned(),
            password: Arc::new(password),
        });
        self
    }

    /// Issues within a session exchanged for an OAuth 2.0 / OpenID Connect access token from
    /// your identity provider: `identity` returns a current one each time a session is needed.
    /// `profile_id` is Vault's OAuth/OIDC profile; `client_id` the identity provider's client
    /// Vault should introspect with, if your profile needs one.
    #[must_use]
    pub fn oauth<F, Fut>(mut self, profile_id: &str, client_id: Option<&str>, identity: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<SecretString, crate::source::SourceError>>
            + Send
            + 'static,
    {
        let identity: IdentityToken = Arc::new(move || Box::pin(identity()));
        self.bootstrap = Some(Bootstrap::OAuth {
            profile_id: profile_id.to_owned(),
            client_id: client_id.map(str::to_owned),
            identity,
        });
        self
    }

    /// Where OAuth sessions are exchanged (default [`DEFAULT_LOGIN_URL`]); tests point it at
    /// the stand-in.
    #[must_use]
    pub fn login_url(mut self, url: &str) -> Self {
        self.login_url = url.to_owned();
        self
    }

    /// The API version in every path (default `v26.2`).
    #[must_use]
    pub fn api_version(mut self, version: &str) -> Self {
        self.api_version = version.to_owned();
        self
    }

    /// The start of every issued token's `name__v` (default [`DEFAULT_NAME_PREFIX`]); the rest is
    /// the host name, the process id and the time, as `prefix:host:pid:time`. The host is
    /// `HOSTNAME`, else `/etc/hostname`, else `host`, kept to visible ASCII without `:` and cut
    /// so that the name fits Vault's 128 characters. Tokens whose name starts with this prefix
    /// and a `:` are the issuer's own: the only ones it revokes to make room under the cap.
    #[must_use]
    pub fn name_prefix(mut self, prefix: &str) -> Self {
        self.name_prefix = prefix.to_owned();
        self
    }

    /// How long each issued token lives (default [`DEFAULT_LIFETIME`]); the layer renews it
    /// ahead of its expiry.
    #[must_use]
    pub fn lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// How long a superseded token keeps working before it is revoked (default
    /// [`DEFAULT_GRACE_PERIOD`]): long enough for requests already sent with it to finish.
    #[must_use]
    pub fn grace_period(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Issues tokens for the sandbox called `name` (as on the My Vaults page) through this
    /// (production) Vault; `sandbox_url` is the sandbox's own address, where its tokens are used
    /// and revoked (revocations there are made with the newest token issued for it). The cap is
    /// managed as for any Vault, in the sandbox: when a create is refused while the user holds
    /// 25 active tokens there, the issuer lists them (VQL, in the sandbox, with its newest token
    /// there) and revokes the oldest of its own. Before it holds a token in the sandbox (at its
    /// first issue) it cannot look, and a refused create is
    /// [`CreateRefused`](super::IssuerErrorKind::CreateRefused), saying so.
    #[must_use]
    pub fn sandbox(mut self, name: &str, sandbox_url: &str) -> Self {
        self.sandbox = Some((name.to_owned(), sandbox_url.to_owned()));
        self
    }

    /// Also writes each new token to `path`, atomically (a temporary file in the same
    /// directory, flushed to disk, renamed over it; mode 0600 on Unix), for
    /// [`FileToken`](crate::source::FileToken) readers in other processes.
    #[must_use]
    pub fn fleet_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.fleet_file = Some(path.into());
        self
    }

    /// The wall clock to date tokens by (default [`SystemTime::now`]). Vault's own clock is
    /// taken as this one plus the skew shown by the `Date` header of Vault's last answer.
    #[must_use]
    pub fn wall_clock(mut self, clock: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The longest any one call to Vault may take (default 30 s).
    #[must_use]
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// `X-VaultAPI-ClientID` on every call the issuer makes.
    #[must_use]
    pub fn client_id(mut self, client_id: &str) -> Self {
        self.client_id = Some(client_id.to_owned());
        self
    }

    /// The shortest time between two logins (default 60 s; Vault limits logins per minute).
    #[must_use]
    pub fn min_login_interval(mut self, interval: Duration) -> Self {
        self.min_login_interval = interval;
        self
    }

    /// The first wait before a failed revocation is tried again (default 30 s; doubling, at
    /// most 15 minutes).
    #[must_use]
    pub fn revocation_retry(mut self, first: Duration) -> Self {
        self.revoke_retry = first;
        self
    }

    /// Checks the settings and builds the issuer. Nothing is sent until the first fetch.
    ///
    /// # Errors
    ///
    /// A URL that is not `https://host[:port]` (or `http://` to a loopback address), an
    /// `https` URL without the `rustls` feature or an [`http_service`](Self::http_service), no
    /// bootstrap credential, an empty name prefix, a lifetime under two minutes, a client id
    /// Vault would refuse, or TLS settings that cannot work (a root certificate that cannot be
    /// read, roots and a whole `ClientConfig` together, either with an `http_service`).
    pub fn build(self) -> Result<VaultIssuer, IssuerConfigError> {
        let tls = self.any_scheme || cfg!(feature = "rustls");
        let (base, authority) = base_url(&self.url, tls)?;
        let (login_base, _) = base_url(&self.login_url, tls)?;
        let sandbox = match self.sandbox {
            Some((name, url)) => Some((name, base_url(&url, tls)?.0)),
            None => None,
        };
        let bootstrap = self.bootstrap.ok_or_else(|| {
            IssuerConfigError::new(
                "no bootstrap credential: call bootstrap_token, password or oauth",
            )
        })?;
        let prefix_ok = !self.name_prefix.is_empty()
            && self.name_prefix.len() <= 40
            && self
                .name_prefix
                .bytes()
                .all(|b| b.is_ascii_graphic() || b == b' ');
        if !prefix_ok {
            return Err(IssuerConfigError::new(
                "the name prefix must be 1 to 40 visible ASCII characters",
            ));
        }
        if self.lifetime < Duration::from_secs(120) {
            return Err(IssuerConfigError::new(
                "the lifetime must be at least 2 minutes",
            ));
        }
        // Vault's security profiles allow at most 90 days; ten years is past any of them and keeps
        // every date the issuer computes representable.
        if self.lifetime > MAX_SETTING {
            return Err(IssuerConfigError::new(
                "the lifetime must be at most 10 years",
            ));
        }
        if self.grace > MAX_SETTING {
            return Err(IssuerConfigError::new(
                "the grace period must be at most 10 years",
            ));
        }
        let client_id = match self.client_id {
            None => None,
            Some(id) => {
                let ok = !id.is_empty()
                    && id.len() <= 100
                    && id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
                if !ok {
                    return Err(IssuerConfigError::new(
                        "a client id is 1 to 100 characters of A-Z a-z 0-9 . _ -",
                    ));
                }
                HeaderValue::from_str(&id).ok()
            }
        };
        let version_ok = self.api_version.starts_with('v')
            && self.api_version.len() > 1
            && self.api_version[1..]
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'.');
        if !version_ok {
            return Err(IssuerConfigError::new("an API version looks like v26.2"));
        }
        #[cfg(feature = "rustls")]
        let tls = {
            if self.tls.is_set() && self.transport.is_some() {
                return Err(IssuerConfigError::new(
                    "TLS settings are for the issuer's own client: with an http_service, configure TLS in your service",
                ));
            }
            self.tls.client_config().map_err(IssuerConfigError::new)?
        };
        #[cfg(not(feature = "rustls"))]
        let tls = super::transport::Tls;
        Ok(VaultIssuer::from_config(Config {
            base,
            authority,
            login_base,
            api_version: self.api_version,
            bootstrap,
            name_prefix: self.name_prefix,
            lifetime: self.lifetime,
            grace: self.grace,
            sandbox,
            fleet_file: self.fleet_file,
            clock: self.clock,
            timeout: self.timeout,
            client_id,
            min_login_interval: self.min_login_interval,
            revoke_retry: self.revoke_retry.max(Duration::from_millis(100)),
            transport: self.transport,
            tls,
        }))
    }
}

/// `scheme://authority` and the authority of a Vault or login URL: https, or http to loopback;
/// no user info, no path but `/`, no query.
fn base_url(url: &str, tls: bool) -> Result<(String, String), IssuerConfigError> {
    // User info may hold a password: never repeat it.
    let shown = match url.rsplit_once('@') {
        Some((_, rest)) => format!("[user info]@{rest}"),
        None => url.to_owned(),
    };
    let bad = |why: &str| IssuerConfigError::new(format!("{shown:?} is not a usable URL: {why}"));
    let uri: Uri = url
        .trim_end_matches('/')
        .parse()
        .map_err(|_| bad("unparsable"))?;
    let authority = uri.authority().ok_or_else(|| bad("no host"))?;
    if authority.as_str().contains('@') {
        return Err(bad("user info is not allowed"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(bad(
            "give the Vault's address only, without a path or query",
        ));
    }
    let host = authority.host();
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match uri.scheme_str() {
        Some("https") if tls => {}
        Some("https") => {
            return Err(bad(
                "https needs the `rustls` feature of veeva-vault-auth, or your own http_service",
            ))
        }
        Some("http") if loopback => {}
        Some("http") => return Err(bad("plain http is allowed only to a loopback address")),
        _ => return Err(bad("the scheme must be https")),
    }
    let scheme = uri.scheme_str().unwrap_or("https");
    Ok((
        format!("{scheme}://{authority}"),
        authority.as_str().to_ascii_lowercase(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::StaticToken;

    fn build(url: &str) -> Result<VaultIssuer, IssuerConfigError> {
        VaultIssuer::builder(url)
            .bootstrap_token(StaticToken::new("veeva-vault-x").unwrap())
            .build()
    }

    #[test]
    fn urls_are_checked() {
        assert!(build("http://127.0.0.1:8080").is_ok());
        assert!(build("http://[::1]:8080/").is_ok());
        assert!(build("http://localhost").is_ok());
        let refused = [
            ("http://myvault.veevavault.com", "loopback"),
            ("ftp://127.0.0.1", "https"),
            ("http://user:pw@127.0.0.1", "user info"),
            ("http://127.0.0.1/api/v26.2", "path"),
            ("http://127.0.0.1/?x=1", "path"),
            ("myvault.veevavault.com", "usable"),
        ];
        for (url, why) in refused {
            let err = build(url).unwrap_err().to_string();
            assert!(err.contains(why), "{url}: {err}");
            assert!(!err.contains("pw@"), "{err}");
        }
        let https = build("https://myvault.veevavault.com");
        assert_eq!(https.is_ok(), cfg!(feature = "rustls"));
    }

    /// Without TLS (no `rustls`, no `http_service`) an `https` URL is refused with the reason,
    /// whichever features this build has; with it, the URL is kept as given, host lowercased.
    #[test]
    fn https_needs_tls() {
        let err = base_url("https://myvault.veevavault.com", false).unwrap_err();
        assert!(err.to_string().contains("`rustls` feature"), "{err}");
        let (base, authority) = base_url("https://MyVault.veevavault.com", true).unwrap();
        assert_eq!(base, "https://MyVault.veevavault.com");
        assert_eq!(authority, "myvault.veevavault.com");
        let (base, _) = base_url("http://127.0.0.1:8080", false).unwrap();
        assert_eq!(base, "http://127.0.0.1:8080");
    }

    #[test]
    fn settings_are_checked() {
        let base = || VaultIssuer::builder("http://127.0.0.1:1");
        assert!(base()
            .build()
            .unwrap_err()
            .to_string()
            .contains("bootstrap"));
        let token = || StaticToken::new("veeva-vault-x").unwrap();
        let with = |b: VaultIssuerBuilder| b.bootstrap_token(token()).build();
        assert!(with(base().name_prefix("")).is_err());
        assert!(with(base().name_prefix(&"p".repeat(41))).is_err());
        assert!(with(base().lifetime(Duration::from_secs(60))).is_err());
        assert!(with(base().client_id("bad id!")).is_err());
        assert!(with(base().api_version("26.2")).is_err());
        assert!(with(base().client_id("acme-crm-sync").api_version("v25.3")).is_ok());
    }
}
