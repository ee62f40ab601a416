//! The bounds the tower door puts on the service it wraps and on the answer's body, named once
//! for the door's own code (the public impls spell them out, so that their docs say them).
//!
//! Every rare part of an exchange runs in one boxed `Send` future, so the service, its future
//! and its error must cross threads, and the answer's body with its chunks and errors too.

use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use crate::BoxError;

/// A service the tower door sends requests with bodies `B` through, answering with bodies `ResB`.
pub(crate) trait Upstream<B, ResB>:
    Service<Request<B>, Response = Response<ResB>, Future: Send, Error: Into<BoxError>> + Send + 'static
{
}

impl<S, B, ResB> Upstream<B, ResB> for S
where
    S: Service<Request<B>, Response = Response<ResB>> + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
{
}

/// The body of an answer the tower door may read, hold and hand over from another thread.
pub(crate) trait AnswerBody: Body<Data: Send, Error: Send> + Send + 'static {}

impl<B> AnswerBody for B
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Send,
{
}
