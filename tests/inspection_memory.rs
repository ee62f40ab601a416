//! What an inspection holds in memory when a body arrives in one-byte chunks, counted by a global
//! allocator: the net bytes allocated on the test's thread (where the client, its connection and
//! the layer run; the server runs on a thread of its own) between sending a request and holding
//! its response, whose body the layer read up to the inspection bound. Both doors.

mod common;
mod inspection;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::Bytes;
use common::{authed, get, send, tokens_in_order};
use inspection::*;
use veeva_vault_auth::{VaultAuthLayer, DEFAULT_INSPECT_LIMIT};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static NET: Cell<i64> = const { Cell::new(0) };
}

fn note(bytes: i64) {
    // `try_with`: allocations made while a thread's locals are torn down are not counted.
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        let _ = NET.try_with(|net| net.set(net.get() + bytes));
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counters are plain
// thread-local cells with constant initialisers, so touching them never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size() as i64);
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size() as i64);
        System.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(-(layout.size() as i64));
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size as i64 - layout.size() as i64);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Counts what `during` leaves allocated on this thread.
async fn held_after<T>(during: impl std::future::Future<Output = T>) -> (T, i64) {
    NET.with(|net| net.set(0));
    COUNTING.with(|counting| counting.set(true));
    let kept = during.await;
    COUNTING.with(|counting| counting.set(false));
    (kept, NET.with(Cell::get))
}

/// A JSON answer without a status header whose body comes in 100,000 one-byte chunks, and then
/// never ends: the layer reads it up to the bound, no further.
fn one_byte_chunks() -> Hostile {
    let steps = (0..100_000)
        .map(|_| Step::Data(Bytes::from_static(b" ")))
        .chain([Step::Stall])
        .collect();
    Hostile::start_on_thread(vec![Answer::new(&[JSON], "").steps(steps)])
}

/// The most a response read up to the default bound may hold: the bound (data and frame
/// slots), the client's read buffers the held chunks point into (up to 400 KiB, as hyper sizes
/// them), and the connection's own state.
/// Measured: about 110 KiB; before frame slots were counted, 13 MB.
const MOST: i64 = 1 << 20;

fn layer_for(server: &Hostile) -> VaultAuthLayer {
    VaultAuthLayer::new(&server.url, tokens_in_order(vec![token(1)])).unwrap()
}

#[tokio::test]
async fn a_body_in_one_byte_chunks_holds_about_the_bound_tower() {
    let server = one_byte_chunks();
    let layer = layer_for(&server);
    let client = authed(&layer);
    let url = server.api_url();
    let (response, held) = held_after(async { send(&client, get(&url)).await.unwrap() }).await;
    assert!(format!("{:?}", response.body()).contains("read_ahead_frames"));
    assert!(
        held < MOST,
        "{held} bytes held for a bound of {DEFAULT_INSPECT_LIMIT}"
    );
    assert_eq!(layer.handle().status().reacquisitions, 0);
}

#[cfg(feature = "reqwest")]
#[tokio::test]
async fn a_body_in_one_byte_chunks_holds_about_the_bound_reqwest() {
    let server = one_byte_chunks();
    let layer = layer_for(&server);
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(layer.middleware())
        .build();
    let url = server.api_url();
    let (response, held) = held_after(async { client.get(url).send().await.unwrap() }).await;
    assert_eq!(response.status(), 200);
    assert!(
        held < MOST,
        "{held} bytes held for a bound of {DEFAULT_INSPECT_LIMIT}"
    );
    assert_eq!(layer.handle().status().reacquisitions, 0);
}
