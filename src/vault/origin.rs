//! The one Vault a layer sends its token to: its scheme, host and port, and the check that a
//! request is for it.

use std::net::IpAddr;

use http::Uri;

use crate::error::{ConfigError, NotForVault};

/// The scheme, host and port of the one Vault a layer sends its token to.
#[derive(Clone)]
pub(crate) struct VaultOrigin {
    https: bool,
    host: Box<str>,
    port: u16,
    pub(crate) shown: Box<str>,
    /// `host` when the port is the scheme's default: the authority most requests carry.
    bare_authority: Option<Box<str>>,
    /// `host:port`.
    full_authority: Box<str>,
}

impl VaultOrigin {
    pub(crate) fn parse(url: &str) -> Result<Self, ConfigError> {
        let invalid = |reason: &str| ConfigError::InvalidVaultUrl {
            reason: reason.to_owned(),
        };
        let uri: Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| invalid(&e.to_string()))?;
        let scheme = uri
            .scheme_str()
            .ok_or_else(|| invalid("it has no scheme"))?;
        let host = uri.host().ok_or_else(|| invalid("it has no host"))?;
        if host.is_empty() {
            return Err(invalid("it has no host"));
        }
        let https = scheme.eq_ignore_ascii_case("https");
        let loopback_http = scheme.eq_ignore_ascii_case("http") && is_loopback(host);
        if !(https || loopback_http) {
            return Err(ConfigError::InsecureScheme {
                scheme: scheme.to_owned(),
            });
        }
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let host = host.to_ascii_lowercase();
        let default_port = if https { 443 } else { 80 };
        Ok(Self {
            bare_authority: (port == default_port).then(|| host.clone().into()),
            full_authority: format!("{host}:{port}").into(),
            shown: format!(
                "{}://{}:{}",
                if https { "https" } else { "http" },
                host,
                port
            )
            .into(),
            https,
            host: host.into(),
            port,
        })
    }

    /// Whether a request for `scheme://host:port` is for this Vault: same scheme, host (any case)
    /// and port (the scheme's default when absent).
    #[inline]
    pub(crate) fn matches(&self, target: &Target<'_>) -> bool {
        let (Some(scheme), Some(host)) = (target.scheme, target.host) else {
            return false;
        };
        let https = if scheme.eq_ignore_ascii_case("https") {
            true
        } else if scheme.eq_ignore_ascii_case("http") {
            false
        } else {
            return false;
        };
        https == self.https
            && host.eq_ignore_ascii_case(&self.host)
            && target.port.unwrap_or(if https { 443 } else { 80 }) == self.port
    }

    /// A cheap exact check of the request URI's scheme and authority, for the request path: `true`
    /// only when [`matches`](Self::matches) would say so too; `false` means "not sure".
    #[inline]
    pub(crate) fn surely_matches(&self, uri: &Uri) -> bool {
        let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
            return false;
        };
        // Schemes are parsed to an enum for http and https: comparing the name with a constant is
        // a match and a fixed-length compare, cheaper than `Scheme`'s own (case-folding) equality.
        let scheme_ok = if self.https {
            scheme.as_str() == "https"
        } else {
            scheme.as_str() == "http"
        };
        let authority = authority.as_str();
        scheme_ok
            && (self
                .bare_authority
                .as_deref()
                .is_some_and(|bare| authority == bare || authority.eq_ignore_ascii_case(bare))
                || authority.eq_ignore_ascii_case(&self.full_authority))
    }

    pub(crate) fn refuse(&self, target: &Target<'_>) -> NotForVault {
        let origin = match (target.scheme, target.host) {
            (Some(scheme), Some(host)) => Some(match target.port {
                Some(port) => format!("{scheme}://{host}:{port}"),
                None => format!("{scheme}://{host}"),
            }),
            _ => None,
        };
        NotForVault::new(origin, self.shown.to_string())
    }
}

/// Where a request is going, as far as the origin check cares.
pub(crate) struct Target<'a> {
    pub(crate) scheme: Option<&'a str>,
    pub(crate) host: Option<&'a str>,
    pub(crate) port: Option<u16>,
}

impl<'a> Target<'a> {
    #[inline]
    pub(crate) fn of(uri: &'a Uri) -> Self {
        Self {
            scheme: uri.scheme_str(),
            host: uri.host(),
            port: uri.port_u16(),
        }
    }
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(url: &str) -> VaultOrigin {
        VaultOrigin::parse(url).unwrap()
    }

    #[test]
    fn origin_compares_scheme_host_and_port() {
        let vault = origin("https://MyVault.veevavault.com");
        for yes in [
            "https://myvault.veevavault.com/api/v26.2/objects/users/me",
            "https://MYVAULT.veevavault.com:443/api",
            "HTTPS://myvault.veevavault.com",
        ] {
            let uri: Uri = yes.parse().unwrap();
            assert!(vault.matches(&Target::of(&uri)), "{yes}");
        }
        for no in [
            "http://myvault.veevavault.com/api",
            "https://myvault.veevavault.com:8443/api",
            "https://other.veevavault.com/api",
            "https://myvault.veevavault.com.evil.example/api",
            "/api/v26.2/objects/users/me",
        ] {
            let uri: Uri = no.parse().unwrap();
            assert!(!vault.matches(&Target::of(&uri)), "{no}");
        }
    }

    #[test]
    fn the_fast_check_never_says_yes_when_the_full_one_says_no() {
        for vault in [
            "https://MyVault.veevavault.com",
            "http://127.0.0.1:8080",
            "https://h:8443",
        ] {
            let vault = origin(vault);
            for url in [
                "https://myvault.veevavault.com/api",
                "https://MYVAULT.veevavault.com:443/api",
                "https://myvault.veevavault.com:444/api",
                "http://myvault.veevavault.com/api",
                "http://127.0.0.1:8080/x",
                "http://127.0.0.1/x",
                "https://127.0.0.1:8080/x",
                "https://h:8443/x",
                "https://H:8443/x",
                "https://h/x",
                "https://user@myvault.veevavault.com/api",
                "/relative",
            ] {
                let uri: Uri = url.parse().unwrap();
                if vault.surely_matches(&uri) {
                    assert!(vault.matches(&Target::of(&uri)), "{url}");
                }
            }
        }
        let vault = origin("https://myvault.veevavault.com");
        let uri: Uri = "https://myvault.veevavault.com/api".parse().unwrap();
        assert!(
            vault.surely_matches(&uri),
            "the common case takes the fast path"
        );
    }

    #[test]
    fn plain_http_only_for_loopback() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://localhost",
            "http://[::1]:9000",
            "http://127.2.3.4",
        ] {
            assert!(VaultOrigin::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://myvault.veevavault.com",
            "http://10.0.0.1",
            "ftp://myvault.veevavault.com",
        ] {
            assert!(
                matches!(
                    VaultOrigin::parse(bad),
                    Err(ConfigError::InsecureScheme { .. })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            VaultOrigin::parse("not a url"),
            Err(ConfigError::InvalidVaultUrl { .. })
        ));
        assert!(matches!(
            VaultOrigin::parse("/relative"),
            Err(ConfigError::InvalidVaultUrl { .. })
        ));
    }
}
