//! Hostile https servers on 127.0.0.1 for the issuer: one that accepts TCP and never answers the
//! handshake, one that answers it with bytes that are not TLS, ones whose certificate is expired
//! or names another host, and ones that finish the handshake and then stall, cut the answer short
//! or answer something that is not JSON. Certificates are made at test time with rcgen (a CA of
//! the test's own, which the issuer is told to trust), the TLS side is tokio-rustls.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// A CA of the test's own.
pub struct Ca(CertifiedIssuer<'static, KeyPair>);

/// What a server certificate says.
#[derive(Clone, Copy, Debug)]
pub enum Cert {
    /// For `127.0.0.1`, valid now.
    Good,
    /// For `127.0.0.1`, valid only in 2001.
    Expired,
    /// Valid now, for `vault.example.com` only.
    OtherHost,
}

impl Ca {
    pub fn new() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "round2 hostile CA");
        Ca(CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap())
    }

    pub fn pem(&self) -> String {
        self.0.pem()
    }

    fn server_config(&self, cert: Cert) -> ServerConfig {
        let names = match cert {
            Cert::Good | Cert::Expired => vec!["127.0.0.1".to_owned()],
            Cert::OtherHost => vec!["vault.example.com".to_owned()],
        };
        let mut params = CertificateParams::new(names).unwrap();
        if let Cert::Expired = cert {
            params.not_before = rcgen::date_time_ymd(2001, 1, 1);
            params.not_after = rcgen::date_time_ymd(2001, 12, 31);
        }
        let key = KeyPair::generate().unwrap();
        let signed = params.signed_by(&key, &self.0).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let chain: Vec<CertificateDer<'static>> = vec![signed.der().clone()];
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap()
    }
}

/// How a server behaves once a connection is accepted.
#[derive(Clone, Copy, Debug)]
pub enum Conduct {
    /// Never answers the handshake (nor closes).
    Silent,
    /// Answers the handshake with plain text, then holds the connection.
    Garbage,
    /// Reads the start of the handshake, then closes the connection.
    CloseAtHello,
    /// Completes the handshake with `Cert`, then does `After`.
    Tls(Cert, After),
}

/// What a TLS server does after the handshake, with the request read.
#[derive(Clone, Copy, Debug)]
pub enum After {
    /// Never answers (nor closes).
    Stall,
    /// Writes these bytes of an answer (its head promises more), then closes.
    Cut(&'static str),
    /// Writes these bytes of an answer (its head promises more), then holds the connection.
    StallMidBody(&'static str),
    /// Writes this whole answer, then closes.
    Whole(&'static str),
}

/// A hostile server; stops (and lets go of every connection) when dropped.
pub struct Hostile {
    addr: SocketAddr,
    task: AbortHandle,
}

impl Hostile {
    pub async fn start(ca: &Ca, conduct: Conduct) -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = match conduct {
            Conduct::Tls(cert, _) => Some(TlsAcceptor::from(Arc::new(ca.server_config(cert)))),
            _ => None,
        };
        let held: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                match (conduct, &acceptor) {
                    (Conduct::Silent, _) => held.lock().unwrap().push(stream),
                    (Conduct::Garbage, _) => {
                        let _ = stream
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nno")
                            .await;
                        held.lock().unwrap().push(stream);
                    }
                    (Conduct::CloseAtHello, _) => {
                        let mut hello = [0u8; 64];
                        let _ = stream.read(&mut hello).await;
                        drop(stream);
                    }
                    (Conduct::Tls(_, after), Some(acceptor)) => {
                        let acceptor = acceptor.clone();
                        connections.spawn(async move {
                            let Ok(tls) = acceptor.accept(stream).await else {
                                return;
                            };
                            behave(tls, after).await;
                        });
                    }
                    (Conduct::Tls(..), None) => unreachable!(),
                }
                while connections.try_join_next().is_some() {}
            }
        })
        .abort_handle();
        Hostile { addr, task }
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn behave<S: AsyncRead + AsyncWrite + Unpin>(mut tls: S, after: After) {
    // The request's head (the issuer's bodies are small: read what comes with it).
    let mut request = Vec::new();
    let mut chunk = [0u8; 4096];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match tls.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&chunk[..n]),
        }
    }
    match after {
        After::Stall => std::future::pending::<()>().await,
        After::StallMidBody(bytes) => {
            let _ = tls.write_all(bytes.as_bytes()).await;
            let _ = tls.flush().await;
            std::future::pending::<()>().await;
        }
        After::Cut(bytes) | After::Whole(bytes) => {
            let _ = tls.write_all(bytes.as_bytes()).await;
            let _ = tls.flush().await;
            let _ = tls.shutdown().await;
        }
    }
}
