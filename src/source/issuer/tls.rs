//! https for the issuer's own client (feature `rustls`): the bundled webpki roots plus any root
//! certificates the builder was given (a corporate proxy's private CA, a test server's), or the
//! user's whole rustls `ClientConfig`; and telling a failed handshake from other failures.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

/// What the builder was told about TLS.
#[derive(Clone, Default)]
pub(super) struct TlsSettings {
    /// Extra roots, DER-encoded, in the order given.
    roots: Vec<CertificateDer<'static>>,
    /// The first PEM text that held no certificate or could not be read, for `build` to report.
    unreadable: Option<String>,
    /// The user's own configuration, used as it is.
    config: Option<Arc<ClientConfig>>,
}

impl TlsSettings {
    /// Every `CERTIFICATE` block of `pem`.
    pub(super) fn add_pem(&mut self, pem: &[u8]) {
        let mut found = 0usize;
        for cert in CertificateDer::pem_slice_iter(pem) {
            match cert {
                Ok(cert) => {
                    self.roots.push(cert);
                    found += 1;
                }
                Err(err) => {
                    self.unreadable.get_or_insert_with(|| {
                        format!("a PEM root certificate is unreadable: {err}")
                    });
                    return;
                }
            }
        }
        if found == 0 {
            self.unreadable.get_or_insert_with(|| {
                "the PEM text given as root certificates holds no CERTIFICATE block".to_owned()
            });
        }
    }

    pub(super) fn add_der(&mut self, der: &[u8]) {
        self.roots.push(CertificateDer::from(der.to_vec()));
    }

    pub(super) fn set_config(&mut self, config: ClientConfig) {
        self.config = Some(Arc::new(config));
    }

    /// Whether anything was set (an `http_service` takes none of it).
    pub(super) fn is_set(&self) -> bool {
        !self.roots.is_empty() || self.unreadable.is_some() || self.config.is_some()
    }

    /// The client configuration to connect with: `None` for hyper-rustls's own (bundled webpki
    /// roots); an error names the setting that cannot work.
    pub(super) fn client_config(&self) -> Result<Option<Arc<ClientConfig>>, String> {
        if let Some(why) = &self.unreadable {
            return Err(why.clone());
        }
        if let Some(config) = &self.config {
            if !self.roots.is_empty() {
                return Err(
                    "give root certificates or a whole rustls ClientConfig, not both".to_owned(),
                );
            }
            return Ok(Some(Arc::clone(config)));
        }
        if self.roots.is_empty() {
            return Ok(None);
        }
        let mut store = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        for (n, cert) in self.roots.iter().enumerate() {
            store
                .add(cert.clone())
                .map_err(|err| format!("root certificate {} is not usable: {err}", n + 1))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|err| format!("no TLS protocol version to offer: {err}"))?
            .with_root_certificates(store)
            .with_no_client_auth();
        Ok(Some(Arc::new(config)))
    }
}

/// What failed in the TLS handshake, if `err` (or anything it came from) is a rustls error,
/// such as a certificate no trusted root vouches for.
pub(super) fn handshake_failure(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(err);
    while let Some(err) = next {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls.to_string());
        }
        // An io::Error's `source` skips the error it wraps (which may be another io::Error
        // around the rustls one): go on with the wrapped one.
        next = match err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_without_a_certificate_is_reported() {
        let mut settings = TlsSettings::default();
        settings.add_pem(b"not a certificate");
        let err = settings.client_config().unwrap_err();
        assert!(err.contains("no CERTIFICATE block"), "{err}");
    }

    #[test]
    fn a_der_root_that_is_not_a_certificate_is_reported() {
        let mut settings = TlsSettings::default();
        settings.add_der(b"\x30\x03\x02\x01\x00");
        let err = settings.client_config().unwrap_err();
        assert!(err.contains("root certificate 1"), "{err}");
    }

    #[test]
    fn nothing_set_keeps_the_bundled_roots() {
        assert!(TlsSettings::default().client_config().unwrap().is_none());
    }

    #[test]
    fn rustls_errors_are_found_inside_io_errors() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, tls);
        let twice = std::io::Error::other(io);
        let outer: Box<dyn std::error::Error + Send + Sync> = Box::new(twice);
        let found = handshake_failure(&*outer).unwrap();
        assert!(found.contains("UnknownIssuer"), "{found}");
        let plain = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(handshake_failure(&plain).is_none());
    }
}
