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
    /// The bare authority when there is one, else the full one.
    usual_authority: Box<str>,
}

impl VaultOrigin {
    /// Reads the Vault's URL: `https://host[:port]`, with an optional `/` at the end. A bare DNS
    /// name (`myvault.veevavault.com`, as `VEEVA_VAULT_DNS` and Vault's docs give it) means
    /// `https://` that name. A URL with user info, a path, a query or a fragment is refused: none
    /// of them would be kept, and the token goes to the origin only.
    pub(crate) fn parse(url: &str) -> Result<Self, ConfigError> {
        let invalid = |reason: &str| ConfigError::InvalidVaultUrl {
            reason: reason.to_owned(),
        };
        let url = url.trim();
        if url.is_empty() {
            return Err(invalid("it is empty"));
        }
        let with_scheme;
        let url = if url.contains("://") {
            url
        } else {
            // A bare DNS name, perhaps with a port.
            with_scheme = format!("https://{url}");
            &with_scheme
        };
        let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
        let https = scheme.eq_ignore_ascii_case("https");
        if !https && !scheme.eq_ignore_ascii_case("http") {
            return Err(invalid(&format!(
                "the scheme `{scheme}` is not supported: use https:// (or http:// for a loopback address)"
            )));
        }
        let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_len);
        if authority.is_empty() {
            return Err(invalid("it has no host"));
        }
        if authority.contains('@') {
            return Err(invalid(
                "it has user info (`user@`): the token is the credential; give only the Vault's origin",
            ));
        }
        if !tail.is_empty() && tail != "/" {
            return Err(invalid(
                "it has a path, query or fragment: give only the Vault's origin (`https://myvault.veevavault.com`); requests name their own paths",
            ));
        }
        let uri: Uri = format!("{scheme}://{authority}/")
            .parse()
            .map_err(|e: http::uri::InvalidUri| invalid(&e.to_string()))?;
        let host = uri.host().ok_or_else(|| invalid("it has no host"))?;
        if host.is_empty() {
            return Err(invalid("it has no host"));
        }
        if !https && !is_loopback(host) {
            return Err(ConfigError::InsecureScheme {
                scheme: scheme.to_owned(),
            });
        }
        let default_port = if https { 443 } else { 80 };
        let port = match explicit_port(authority) {
            None => default_port,
            Some(Some(port)) if port != 0 => port,
            Some(_) => return Err(invalid("its port is not one from 1 to 65535")),
        };
        let host = match ip_literal(host) {
            Some(IpAddr::V6(ip)) => format!("[{ip}]"),
            Some(IpAddr::V4(ip)) => ip.to_string(),
            None if is_dns_name(host) => host.to_ascii_lowercase(),
            None => {
                return Err(invalid(
                    "its host is neither a DNS name (letters, digits, `-`, `_` and dots) nor an IP address",
                ))
            }
        };
        let bare_authority: Option<Box<str>> = (port == default_port).then(|| host.clone().into());
        let full_authority: Box<str> = format!("{host}:{port}").into();
        Ok(Self {
            usual_authority: bare_authority
                .clone()
                .unwrap_or_else(|| full_authority.clone()),
            bare_authority,
            full_authority,
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
            && self.is_named(host)
            && target.port.unwrap_or(if https { 443 } else { 80 }) == self.port
    }

    /// Whether `host` names this Vault's host: the same name in any case, or the same IP address
    /// however it is written (`[::1]` and `[0:0:0:0:0:0:0:1]`).
    fn is_named(&self, host: &str) -> bool {
        host.eq_ignore_ascii_case(&self.host)
            || ip_literal(host).is_some_and(|ip| ip_literal(&self.host) == Some(ip))
    }

    /// A cheap exact check of the request URI's scheme and authority, for the request path: `true`
    /// only when [`matches`](Self::matches) would say so too; `false` means "not sure".
    #[inline]
    pub(crate) fn surely_matches(&self, uri: &Uri) -> bool {
        let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
            return false;
        };
        // Schemes are parsed to an enum for http and https: comparing the name with a constant is
        // a match and a fixed-length compare, cheaper than `Scheme`'s own (case-folding) equality,
        // which is not inlined (scripts/hot_path_instructions.sh: 16 instructions more).
        let scheme_ok = if self.https {
            scheme.as_str() == "https"
        } else {
            scheme.as_str() == "http"
        };
        let authority = authority.as_str();
        // The authority requests usually carry (the host alone on the default port, else
        // `host:port`) compared byte for byte; case-folding, a step per byte (285 instructions
        // for `127.0.0.1:port` in scripts/end_to_end_instructions.sh), only when that fails.
        scheme_ok && (authority == &*self.usual_authority || self.same_authority(authority))
    }

    /// Whether `authority` is this Vault's in any case, with or without the default port.
    #[cold]
    #[inline(never)]
    fn same_authority(&self, authority: &str) -> bool {
        self.bare_authority
            .as_deref()
            .is_some_and(|bare| authority.eq_ignore_ascii_case(bare))
            || authority.eq_ignore_ascii_case(&self.full_authority)
    }

    /// Whether a `Host` header value names this Vault: its host (any case) and port (the
    /// scheme's default when absent). A value that is not an authority does not.
    pub(crate) fn is_host(&self, value: &[u8]) -> bool {
        let Ok(authority) = http::uri::Authority::try_from(value) else {
            return false;
        };
        let default = if self.https { 443 } else { 80 };
        let host = authority.host();
        // One trailing dot names the same host (a fully qualified name); more name nothing.
        let host = host.strip_suffix('.').unwrap_or(host);
        authority.as_str().find('@').is_none()
            && self.is_named(host)
            && authority.port_u16().unwrap_or(default) == self.port
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

/// Whether `host` is written as a DNS name: labels of letters, digits, `-` and `_`, separated by
/// single dots (one trailing dot allowed).
fn is_dns_name(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// The IP address a URI's host is, if it is one (IPv6 in brackets).
fn ip_literal(host: &str) -> Option<IpAddr> {
    match host.strip_prefix('[') {
        Some(rest) => rest.strip_suffix(']')?.parse().ok(),
        None => host.parse().ok(),
    }
}

/// The port an authority (`host`, `host:port`, `[v6]:port`) names: `None` without one,
/// `Some(None)` for one that is not a 16-bit number.
fn explicit_port(authority: &str) -> Option<Option<u16>> {
    let after_host = match authority.rfind(']') {
        Some(end) => &authority[end + 1..],
        None => authority,
    };
    let (_, port) = after_host.rsplit_once(':')?;
    Some(port.parse().ok())
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
        for bad in ["http://myvault.veevavault.com", "http://10.0.0.1"] {
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

    fn refusal(url: &str) -> String {
        match VaultOrigin::parse(url) {
            Err(ConfigError::InvalidVaultUrl { reason }) => reason,
            Err(other) => panic!("{url}: {other:?}"),
            Ok(vault) => panic!("{url} accepted as {}", vault.shown),
        }
    }

    #[test]
    fn bad_urls_are_refused_with_what_is_wrong() {
        assert!(refusal("ftp://myvault.veevavault.com").contains("`ftp` is not supported"));
        assert!(refusal("ftp://127.0.0.1").contains("`ftp` is not supported"));
        assert_eq!(refusal("https://"), "it has no host");
        assert_eq!(refusal(""), "it is empty");
        assert!(refusal("https://user:pw@myvault.veevavault.com").contains("user info"));
        assert!(refusal("https://myvault.veevavault.com/api/v26.2").contains("path"));
        assert!(refusal("https://myvault.veevavault.com?x=1").contains("path, query"));
        assert!(refusal("https://myvault.veevavault.com#top").contains("fragment"));
    }

    #[test]
    fn hosts_that_are_not_hosts_are_refused() {
        for bad in [
            "~[:]",
            ",[:]",
            "https://a[b]c",
            "https://[]",
            "https://[v1.x]",
            "https://a..b",
        ] {
            assert!(
                matches!(
                    VaultOrigin::parse(bad),
                    Err(ConfigError::InvalidVaultUrl { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_bare_dns_name_means_https() {
        let vault = origin("myvault.veevavault.com");
        assert_eq!(&*vault.shown, "https://myvault.veevavault.com:443");
        let vault = origin("MyVault.veevavault.com:8443");
        assert_eq!(&*vault.shown, "https://myvault.veevavault.com:8443");
        assert_eq!(
            &*origin("https://myvault.veevavault.com/").shown,
            "https://myvault.veevavault.com:443",
            "a trailing slash is fine"
        );
    }

    #[test]
    fn the_fast_check_ignores_the_case_of_the_host() {
        // What `surely_matches` accepts without the full check: the host in any case, with or
        // without the default port.
        let vault = origin("https://MyVault.veevavault.com");
        for url in [
            "https://myvault.veevavault.com/api",
            "https://MYVAULT.VEEVAVAULT.COM/api",
            "https://MyVault.veevavault.com:443/api",
            "https://MYVAULT.veevavault.com:443/api",
        ] {
            let uri: Uri = url.parse().unwrap();
            assert!(vault.surely_matches(&uri), "{url}");
        }
    }
}
