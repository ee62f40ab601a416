//! A layer's binding to its Vault: the settings both front doors read on the request path, and
//! what they decide about a request before it is sent.

use std::sync::Arc;

use http::header::{AUTHORIZATION, HOST};
use http::{HeaderMap, HeaderName, HeaderValue, Uri};

use super::origin::{Target, VaultOrigin};
use crate::cache::Cache;
use crate::error::{ConfigError, NotForVault};
use crate::trace::event;

/// The request header that names the calling program to Vault.
pub const VAULT_CLIENT_ID: HeaderName = HeaderName::from_static("x-vaultapi-clientid");

/// What to do with a request, decided before anything is sent.
pub(crate) enum Admission {
    /// For the Vault, without a credential of its own: attach the token.
    Authenticate,
    /// Send as it is: the caller's own credential.
    PassThrough,
    /// For the Vault by its URI, but its `Host` header names another host: handle it as a
    /// request for that host.
    OtherHost,
    /// Another host, let through: send without any Vault token.
    Foreign,
    /// Another host: refuse.
    Refuse(NotForVault),
}

/// Settings the request path reads; fixed when the layer is built.
pub(crate) struct Binding {
    pub(crate) cache: Arc<Cache>,
    pub(crate) origin: VaultOrigin,
    pub(crate) pass_through_other_hosts: bool,
    pub(crate) override_authorization: bool,
    pub(crate) replay_limit: Option<u64>,
    pub(crate) inspect_limit: usize,
    pub(crate) inspect_wait: std::time::Duration,
    /// The two inspection bounds in the form a response future carries them, worked out once.
    pub(crate) judging: Judging,
    pub(crate) client_id: Option<HeaderValue>,
}

/// The inspection bounds as a response future carries them: four bytes each, so that the future
/// every request carries stays small.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Judging {
    /// The bound on a body read into memory (a bound of 4 GiB or more counts as 4 GiB).
    pub(crate) limit: u32,
    /// The wait for it in milliseconds (a wait of 49 days or more counts as 49 days).
    pub(crate) wait_ms: u32,
}

impl Judging {
    pub(crate) fn new(limit: usize, wait: std::time::Duration) -> Self {
        Self {
            limit: u32::try_from(limit).unwrap_or(u32::MAX),
            wait_ms: u32::try_from(wait.as_millis()).unwrap_or(u32::MAX),
        }
    }

    /// A future's bounds for the body of an unjudged answer: none is read.
    pub(crate) const NONE: Self = Self {
        limit: 0,
        wait_ms: 0,
    };

    pub(crate) fn wait(self) -> std::time::Duration {
        std::time::Duration::from_millis(self.wait_ms.into())
    }
}

impl Binding {
    /// Whether a request for `target` is for this layer's Vault.
    #[cfg_attr(not(feature = "reqwest"), allow(dead_code))]
    pub(crate) fn is_vault(&self, target: &Target<'_>) -> bool {
        self.origin.matches(target)
    }

    /// Whether a request for `uri` is for this layer's Vault: the cheap exact check first, the
    /// full one only when that is not sure.
    #[inline]
    pub(crate) fn is_vault_uri(&self, uri: &Uri) -> bool {
        self.origin.surely_matches(uri) || self.is_vault_uri_slowly(uri)
    }

    /// The full check of [`is_vault_uri`](Self::is_vault_uri), out of line.
    #[cold]
    #[inline(never)]
    fn is_vault_uri_slowly(&self, uri: &Uri) -> bool {
        self.origin.matches(&Target::of(uri))
    }

    /// A `Host` header of the request that names another host than the Vault, if any. Vaults
    /// share one domain, and a front end that routes by `Host` would hand the token to whichever
    /// Vault it names: such a request is treated as one for another host.
    #[inline]
    pub(crate) fn foreign_host<'h>(&self, headers: &'h HeaderMap) -> Option<&'h HeaderValue> {
        if headers.is_empty() {
            return None;
        }
        self.foreign_host_in(headers)
    }

    #[inline(never)]
    fn foreign_host_in<'h>(&self, headers: &'h HeaderMap) -> Option<&'h HeaderValue> {
        headers
            .get_all(HOST)
            .iter()
            .find(|value| !self.origin.is_host(value.as_bytes()))
    }

    /// What both front doors do with a request for `target` that is not for the Vault (by its
    /// URI, or by a `Host` header in `headers` that names another host).
    pub(crate) fn admit_other(&self, target: &Target<'_>, headers: &HeaderMap) -> Admission {
        let Some(host) = self.foreign_host(headers) else {
            return self.admit_foreign(target);
        };
        let named = http::uri::Authority::try_from(host.as_bytes()).ok();
        let by_host = Target {
            scheme: target.scheme,
            host: Some(match &named {
                Some(authority) => authority.host(),
                None => "(an unreadable Host header)",
            }),
            port: named.as_ref().and_then(http::uri::Authority::port_u16),
        };
        self.admit_foreign(&by_host)
    }

    /// What both front doors do with a request that is not for the Vault: let it through without
    /// a token, or refuse it.
    fn admit_foreign(&self, target: &Target<'_>) -> Admission {
        if self.pass_through_other_hosts {
            event!(
                debug,
                host = target.host,
                "passing a request for another host through without the token"
            );
            return Admission::Foreign;
        }
        let refused = self.origin.refuse(target);
        event!(debug, error = %refused, "refused a request for another host");
        Admission::Refuse(refused)
    }

    /// What both front doors do with a request for the Vault by its URI, on its headers: treat it
    /// as one for another host if its `Host` says so, add the client id, and let the caller's own
    /// `Authorization` stand unless told to override it.
    #[inline(always)]
    pub(crate) fn admit_headers(&self, headers: &mut http::HeaderMap) -> Admission {
        let mut own_credential = false;
        if !headers.is_empty() {
            let (host, authorization) = host_and_authorization(headers);
            if host && self.foreign_host_in(headers).is_some() {
                return Admission::OtherHost;
            }
            own_credential = !self.override_authorization && authorization;
        }
        if let Some(client_id) = &self.client_id {
            add_client_id(headers, client_id);
        }
        if own_credential {
            return Admission::PassThrough;
        }
        Admission::Authenticate
    }
}

/// A request with at most this many header names is searched for `Host` and `Authorization` by
/// walking its names rather than by two look-ups.
const WALKED_NAMES: usize = 8;

/// Whether the request carries a `Host` header, and an `Authorization` header. Most requests
/// carry a few headers (`Accept`, `Content-Type`): one walk over their names, each a comparison
/// of a standard header's tag, costs less than two look-ups that each hash a name
/// (scripts/end_to_end_instructions.sh, a POST with `Content-Type`: 120 instructions fewer).
#[inline]
fn host_and_authorization(headers: &HeaderMap) -> (bool, bool) {
    if headers.keys_len() > WALKED_NAMES {
        return (
            headers.contains_key(HOST),
            headers.contains_key(AUTHORIZATION),
        );
    }
    let (mut host, mut authorization) = (false, false);
    for name in headers.keys() {
        host |= *name == HOST;
        authorization |= *name == AUTHORIZATION;
    }
    (host, authorization)
}

/// Adds `X-VaultAPI-ClientID` unless the caller set one. Out of line: most layers have no client
/// id, and the request path stays small.
#[inline(never)]
fn add_client_id(headers: &mut http::HeaderMap, client_id: &HeaderValue) {
    if let http::header::Entry::Vacant(slot) = headers.entry(VAULT_CLIENT_ID) {
        slot.insert(client_id.clone());
    }
}

/// The longest client id Vault accepts.
const MAX_CLIENT_ID_LEN: usize = 100;

pub(crate) fn encode_client_id(client_id: &str) -> Result<HeaderValue, ConfigError> {
    let invalid = |reason: String| ConfigError::InvalidClientId { reason };
    if client_id.is_empty() {
        return Err(invalid("it is empty".into()));
    }
    if client_id.len() > MAX_CLIENT_ID_LEN {
        return Err(invalid(format!(
            "it is {} characters long, over Vault's limit of {MAX_CLIENT_ID_LEN}",
            client_id.chars().count()
        )));
    }
    if let Some((position, c)) = client_id
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(invalid(format!(
            "character {c:?} at byte {position} is not one of A-Z a-z 0-9 . _ -"
        )));
    }
    HeaderValue::from_str(client_id).map_err(|e| invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walked or looked up, the answer is the same.
    #[test]
    fn host_and_authorization_are_found_among_few_and_many_headers() {
        for padding in [0, 3, WALKED_NAMES, WALKED_NAMES + 5] {
            for (host, authorization) in
                [(false, false), (true, false), (false, true), (true, true)]
            {
                let mut headers = HeaderMap::new();
                for i in 0..padding {
                    headers.insert(
                        HeaderName::try_from(format!("x-pad-{i}")).unwrap(),
                        HeaderValue::from_static("1"),
                    );
                }
                if host {
                    headers.insert(HOST, HeaderValue::from_static("myvault.veevavault.com"));
                }
                if authorization {
                    headers.insert(AUTHORIZATION, HeaderValue::from_static("Basic eA=="));
                }
                assert_eq!(
                    host_and_authorization(&headers),
                    (host, authorization),
                    "{padding} other headers, host {host}, authorization {authorization}"
                );
            }
        }
    }
}
