//! Tests that kill mutants cargo-mutants found alive (scripts/mutants.sh): backpressure from the
//! inner service through the layer and the guard, and the constant-time token comparison.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use tower::{Layer, Service};
use veeva_vault_auth::source::StaticToken;
use veeva_vault_auth::{AccessToken, BoxError, VaultAuthLayer};

/// An inner service that is ready only when told, and fails readiness when told.
#[derive(Clone)]
struct Gate {
    open: Arc<AtomicBool>,
    broken: Arc<AtomicBool>,
}

impl Service<Request<Full<Bytes>>> for Gate {
    type Response = Response<Full<Bytes>>;
    type Error = BoxError;
    type Future = std::future::Ready<Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        if self.broken.load(Ordering::SeqCst) {
            return Poll::Ready(Err("the inner service is gone".into()));
        }
        if self.open.load(Ordering::SeqCst) {
            Poll::Ready(Ok(()))
        } else {
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    fn call(&mut self, _: Request<Full<Bytes>>) -> Self::Future {
        std::future::ready(Ok(Response::new(Full::new(Bytes::new()))))
    }
}

fn gate() -> Gate {
    Gate {
        open: Arc::new(AtomicBool::new(false)),
        broken: Arc::new(AtomicBool::new(false)),
    }
}

fn layer() -> VaultAuthLayer {
    let token = format!("veeva-vault-{}", "m".repeat(6));
    VaultAuthLayer::new(
        "https://myvault.veevavault.com",
        StaticToken::new(token).unwrap(),
    )
    .unwrap()
}

/// Polls `service` ready once.
fn poll_ready<S: Service<Request<Full<Bytes>>>>(service: &mut S) -> Poll<Result<(), S::Error>> {
    let mut task = tokio_test::task::spawn(());
    task.enter(|cx, _| service.poll_ready(cx))
}

#[tokio::test]
async fn the_layer_is_ready_only_when_the_inner_service_is() {
    let inner = gate();
    let mut service = layer().layer(inner.clone());
    assert!(
        poll_ready(&mut service).is_pending(),
        "backpressure passes through"
    );
    inner.open.store(true, Ordering::SeqCst);
    assert!(matches!(poll_ready(&mut service), Poll::Ready(Ok(()))));
    inner.broken.store(true, Ordering::SeqCst);
    let Poll::Ready(Err(err)) = poll_ready(&mut service) else {
        panic!("the inner service's readiness error passes through");
    };
    assert_eq!(err.to_string(), "the inner service is gone");
}

#[tokio::test]
async fn the_guard_is_ready_only_when_the_inner_service_is() {
    let inner = gate();
    let mut guard = layer().token_guard().layer(inner.clone());
    assert!(
        poll_ready(&mut guard).is_pending(),
        "backpressure passes through"
    );
    inner.open.store(true, Ordering::SeqCst);
    assert!(matches!(poll_ready(&mut guard), Poll::Ready(Ok(()))));
    inner.broken.store(true, Ordering::SeqCst);
    assert!(matches!(poll_ready(&mut guard), Poll::Ready(Err(_))));
}

#[test]
fn two_differences_never_cancel_in_the_comparison() {
    // Bytes `a`/`b` swapped: the two differences are equal, so XOR-ing them together would
    // cancel where OR-ing them does not.
    let a = AccessToken::new(format!("veeva-vault-{}", "ab")).unwrap();
    let b = AccessToken::new(format!("veeva-vault-{}", "ba")).unwrap();
    assert!(!a.same_value(&b));
    assert!(!b.same_value(&a));
    let c = AccessToken::new(format!("veeva-vault-{}", "ab")).unwrap();
    assert!(a.same_value(&c));
    let longer = AccessToken::new(format!("veeva-vault-{}", "abc")).unwrap();
    assert!(!a.same_value(&longer), "a prefix is not the same value");
}

#[tokio::test(start_paused = true)]
async fn a_token_is_expired_from_its_expiry_on_and_never_without_one() {
    use std::time::Duration;
    use tokio::time::Instant;

    let value = format!("veeva-vault-{}", "e".repeat(4));
    let token = AccessToken::new(value.clone())
        .unwrap()
        .with_expires_in(Duration::from_secs(60));
    let now = Instant::now();
    assert!(!token.is_expired_at(now));
    assert!(!token.is_expired_at(now + Duration::from_secs(59)));
    assert!(
        token.is_expired_at(now + Duration::from_secs(60)),
        "at its expiry"
    );
    assert!(token.is_expired_at(now + Duration::from_secs(61)));
    let forever = AccessToken::new(value).unwrap();
    assert!(!forever.is_expired_at(now + Duration::from_secs(1 << 30)));
}
