//! A real hyper-util client whose every connection goes to one loopback address, whatever host
//! and port the URI names (as a resolver pinned for tests would): requests for
//! `http://localhost` on port 80, or for another host's name, reach a [`RawServer`](super::raw)
//! that shows what the layer let out, with the `Host` line the client wrote.

use std::net::SocketAddr;

use bytes::Bytes;
use http::Uri;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use veeva_vault_auth::{VaultAuth, VaultAuthLayer};

pub type PinnedClient = Client<PinnedConnector, Full<Bytes>>;

/// Connects every URI to one address.
#[derive(Clone)]
pub struct PinnedConnector(SocketAddr);

impl tower::Service<Uri> for PinnedConnector {
    type Response = TokioIo<TcpStream>;
    type Error = std::io::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = std::io::Result<TokioIo<TcpStream>>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let addr = self.0;
        Box::pin(async move { TcpStream::connect(addr).await.map(TokioIo::new) })
    }
}

impl PinnedConnector {
    /// A connector whose every connection goes to `addr`.
    pub fn to(addr: SocketAddr) -> PinnedConnector {
        PinnedConnector(addr)
    }
}

/// A client whose connections all go to `addr`.
pub fn pinned_client(addr: SocketAddr) -> PinnedClient {
    Client::builder(TokioExecutor::new()).build(PinnedConnector(addr))
}

/// The layer around a pinned client.
pub fn pinned(layer: &VaultAuthLayer, addr: SocketAddr) -> VaultAuth<PinnedClient> {
    tower::Layer::layer(layer, pinned_client(addr))
}
