//! How the issuer's calls reach Vault: its own hyper-util client, or a tower service the user
//! supplies (sharing their pool, proxy or TLS settings).

use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::source::BoxFuture;
use crate::BoxError;

#[cfg(feature = "rustls")]
type Connector = hyper_rustls::HttpsConnector<HttpConnector>;
#[cfg(not(feature = "rustls"))]
type Connector = HttpConnector;

/// The TLS configuration of the issuer's own client: `None` for the bundled webpki roots.
#[cfg(feature = "rustls")]
pub(super) type Tls = Option<Arc<rustls::ClientConfig>>;
/// Without the `rustls` feature the client speaks plain http only: nothing to configure.
#[cfg(not(feature = "rustls"))]
#[derive(Clone)]
pub(super) struct Tls;

/// An answer's body, whatever the transport's.
pub(super) type AnyBody = UnsyncBoxBody<Bytes, BoxError>;

type SendFn = dyn Fn(Request<Full<Bytes>>) -> BoxFuture<'static, Result<Response<AnyBody>, BoxError>>
    + Send
    + Sync;

/// Sends one request, answers its response.
#[derive(Clone)]
pub(super) struct Transport(Arc<SendFn>);

impl Transport {
    /// The issuer's own client: plain http (to loopback, as the builder checks), or https with
    /// the `rustls` feature: with `tls` when the builder was given roots or a configuration,
    /// else with the bundled webpki roots.
    pub(super) fn hyper(tls: Tls) -> Transport {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        #[cfg(feature = "rustls")]
        let connector = match tls {
            Some(config) => hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(Arc::unwrap_or_clone(config)),
            None => hyper_rustls::HttpsConnectorBuilder::new().with_webpki_roots(),
        }
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
        #[cfg(not(feature = "rustls"))]
        let (Tls, connector) = (tls, http);
        let client: Client<Connector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build(connector);
        Transport(Arc::new(move |request| {
            let client = client.clone();
            Box::pin(async move {
                let response = client
                    .request(request)
                    .await
                    .map_err(|err| -> BoxError { Box::new(err) })?;
                Ok(response.map(|body| {
                    body.map_err(|err| -> BoxError { Box::new(err) })
                        .boxed_unsync()
                }))
            })
        }))
    }

    /// A user's tower service. Each call clones it, waits until it is ready, then calls it.
    pub(super) fn service<S, B>(service: S) -> Transport
    where
        S: tower_service::Service<Request<Full<Bytes>>, Response = Response<B>>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let service = Mutex::new(service);
        Transport(Arc::new(move |request| {
            let mut service = service
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            Box::pin(async move {
                std::future::poll_fn(|cx| service.poll_ready(cx))
                    .await
                    .map_err(|err| -> BoxError { err.into() })?;
                let response = service
                    .call(request)
                    .await
                    .map_err(|err| -> BoxError { err.into() })?;
                Ok(response.map(|body| {
                    body.map_err(|err| -> BoxError { err.into() })
                        .boxed_unsync()
                }))
            })
        }))
    }

    pub(super) fn send(
        &self,
        request: Request<Full<Bytes>>,
    ) -> BoxFuture<'static, Result<Response<AnyBody>, BoxError>> {
        (self.0)(request)
    }
}
