//! Today's bulk wipes (`wipe_bytes` behind the recording of a streamed body, its growth, its
//! spoiling past the cap, and the frames a replay sends): no block holding the caller's body bytes
//! goes back to the allocator unwiped. As in tests/wipe.rs the inner service is in-process and
//! copies nothing (a real HTTP client's write buffers are its own business), and the caller's
//! chunks are static, so the only heap copies of the marker are the layer's.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use tower::{Layer, ServiceExt};
use veeva_vault_auth::VaultAuthLayer;

use crate::scanning::unwiped_blocks_in;

/// The markers the tests look for.
const MARKERS: [&str; 4] = [
    "ROUND2GROWNRECORDINGMARKER",
    "ROUND2SPOILEDRECORDINGMARKER",
    "ROUND2HALFREADMARKER",
    "ROUND2SCANNERSELFTEST",
];
use crate::common::{tokens_in_order, Chunks};

type Boxed = BoxBody<Bytes, Infallible>;

/// `count` static chunks of 1,000 bytes, each holding `marker`.
fn chunks(marker: &str, count: usize) -> Vec<&'static [u8]> {
    (0..count)
        .map(|i| {
            let mut chunk = format!("{marker}{i:04}");
            while chunk.len() < 1000 {
                chunk.push('.');
            }
            &*Box::leak(chunk.into_bytes().into_boxed_slice())
        })
        .collect()
}

/// What one exchange did: the inner service's calls, and the body bytes each read.
struct Exchange {
    status: StatusCode,
    reads: Vec<usize>,
}

/// Sends one POST whose streamed body is `parts` through `layer` on a thread of its own (its
/// pooled copies go when it ends), to an in-process service that reads at most `first_read`
/// bytes of the first attempt's body (all of a later one's) and answers 401 first, 200 after.
fn exchange(layer: VaultAuthLayer, parts: &[&'static [u8]], first_read: usize) -> Exchange {
    let reads = Arc::new(std::sync::Mutex::new(Vec::new()));
    let status = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async {
                    let calls = Arc::new(AtomicUsize::new(0));
                    let seen = Arc::clone(&reads);
                    let inner = tower::service_fn(move |request: Request<Boxed>| {
                        let call = calls.fetch_add(1, Ordering::SeqCst);
                        let seen = Arc::clone(&seen);
                        async move {
                            let limit = if call == 0 { first_read } else { usize::MAX };
                            let mut body = request.into_body();
                            let mut read = 0;
                            while read < limit {
                                let Some(frame) = body.frame().await else {
                                    break;
                                };
                                if let Some(data) = frame.unwrap().data_ref() {
                                    read += data.len();
                                }
                            }
                            seen.lock().unwrap().push(read);
                            let mut response = Response::new(Full::new(Bytes::new()));
                            if call == 0 {
                                *response.status_mut() = StatusCode::UNAUTHORIZED;
                            }
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let service = layer.layer(inner);
                    let body =
                        Chunks(parts.iter().map(|part| Bytes::from_static(part)).collect()).boxed();
                    let request = Request::post("https://myvault.veevavault.com/api/v26.2/query")
                        .body(body)
                        .unwrap();
                    let status = service.oneshot(request).await.unwrap().status();
                    drop(layer);
                    status
                })
            })
            .join()
            .unwrap()
    });
    let reads = reads.lock().unwrap().clone();
    Exchange { status, reads }
}

fn layer(max_replay_body: u64) -> VaultAuthLayer {
    let source = tokens_in_order(vec![
        "veeva-vault-round2-wipe-first".to_owned(),
        "veeva-vault-round2-wipe-second".to_owned(),
    ]);
    VaultAuthLayer::builder("https://myvault.veevavault.com", source)
        .max_replay_body(max_replay_body)
        .build()
        .unwrap()
}

/// 40 KB in 40 chunks: the recording starts at 1 KiB and grows six times, each old buffer wiped
/// in bulk; the replay sends it whole, and every frame it sent is wiped as it goes.
#[test]
fn held_a_recording_that_grows_six_times_leaves_no_copy() {
    let marker = MARKERS[0];
    let parts = chunks(marker, 40);
    let mut result = None;
    let unwiped = unwiped_blocks_in(marker, || {
        result = Some(exchange(layer(64 * 1024), &parts, usize::MAX));
    });
    let result = result.unwrap();
    assert_eq!(result.status, StatusCode::OK, "replayed");
    assert_eq!(result.reads, [40_000, 40_000]);
    assert_eq!(unwiped, 0, "blocks freed still holding the body");
}

/// 20 KB past a cap of 8 KiB: the recording is spoiled (wiped and freed) part-way, the 401
/// reaches the caller, and nothing of the body is left behind.
#[test]
fn held_a_recording_spoiled_past_the_cap_leaves_no_copy() {
    let marker = MARKERS[1];
    let parts = chunks(marker, 20);
    let mut result = None;
    let unwiped = unwiped_blocks_in(marker, || {
        result = Some(exchange(layer(8 * 1024), &parts, usize::MAX));
    });
    let result = result.unwrap();
    assert_eq!(result.status, StatusCode::UNAUTHORIZED, "not replayed");
    assert_eq!(result.reads, [20_000]);
    assert_eq!(unwiped, 0, "blocks freed still holding the body");
}

/// The first attempt reads 5 of 40 chunks and answers 401: the replay sends the 5 recorded (as
/// wiped copies) and the 35 the first attempt never read, and the recording, grown only to what
/// was read, is wiped too.
#[test]
fn held_a_replay_after_a_half_read_body_leaves_no_copy() {
    let marker = MARKERS[2];
    let parts = chunks(marker, 40);
    let mut result = None;
    let unwiped = unwiped_blocks_in(marker, || {
        result = Some(exchange(layer(64 * 1024), &parts, 5_000));
    });
    let result = result.unwrap();
    assert_eq!(result.status, StatusCode::OK, "replayed");
    assert_eq!(result.reads, [5_000, 40_000]);
    assert_eq!(unwiped, 0, "blocks freed still holding the body");
}

/// The scanner itself sees a block freed with the marker in it.
#[test]
fn the_scanner_sees_an_unwiped_block() {
    let marker = MARKERS[3];
    let unwiped = unwiped_blocks_in(marker, || {
        drop(std::hint::black_box(marker.to_owned()));
    });
    assert_eq!(unwiped, 1);
}
