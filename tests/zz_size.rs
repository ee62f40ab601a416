use bytes::Bytes;
use http_body_util::Empty;
use std::convert::Infallible;
use std::future::{ready, Ready};
#[test]
fn sizes() {
    type Inner = tower::util::ServiceFn<
        fn(http::Request<Empty<Bytes>>) -> Ready<Result<http::Response<Empty<Bytes>>, Infallible>>,
    >;
    type F = veeva_vault_auth::ResponseFuture<
        Inner,
        Empty<Bytes>,
        Empty<Bytes>,
        veeva_vault_auth::detect::VaultRule,
    >;
    let _ = ready::<()>(());
    eprintln!("future {}", std::mem::size_of::<F>());
    eprintln!(
        "inner future {}",
        std::mem::size_of::<Ready<Result<http::Response<Empty<Bytes>>, Infallible>>>()
    );
    eprintln!(
        "request {}",
        std::mem::size_of::<http::Request<Empty<Bytes>>>()
    );
    eprintln!(
        "response {}",
        std::mem::size_of::<http::Response<veeva_vault_auth::ResponseBody<Empty<Bytes>>>>()
    );
    eprintln!(
        "result {}",
        std::mem::size_of::<
            Result<
                http::Response<veeva_vault_auth::ResponseBody<Empty<Bytes>>>,
                veeva_vault_auth::BoxError,
            >,
        >()
    );
    eprintln!("headervalue {}", std::mem::size_of::<http::HeaderValue>());
}
