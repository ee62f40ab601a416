//! The scanning global allocator of tests/wipe.rs, copied (a test binary has one global
//! allocator): every block freed, or moved by `realloc`, is searched for the marker a test names,
//! and a block still holding it is counted as given back unwiped.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// The markers the tests look for.
pub const MARKERS: [&str; 4] = [
    "ROUND2GROWNRECORDINGMARKER",
    "ROUND2SPOILEDRECORDINGMARKER",
    "ROUND2HALFREADMARKER",
    "ROUND2SCANNERSELFTEST",
];
/// Which of [`MARKERS`] is looked for, plus one; 0 while nothing is scanned.
static ACTIVE: AtomicUsize = AtomicUsize::new(0);
/// Blocks given back while still holding the marker.
static UNWIPED: AtomicUsize = AtomicUsize::new(0);
/// One scan at a time.
static SERIAL: Mutex<()> = Mutex::new(());

struct Scanning;

fn holds_marker(block: &[u8]) -> bool {
    let Some(marker) = ACTIVE
        .load(Ordering::SeqCst)
        .checked_sub(1)
        .and_then(|index| MARKERS.get(index))
    else {
        return false;
    };
    block.len() >= marker.len() && block.windows(marker.len()).any(|w| w == marker.as_bytes())
}

// SAFETY: every call is forwarded unchanged to the system allocator. The scan only reads the
// block being freed (or about to be moved by `realloc`), which is still allocated; it is read as
// plain bytes and nothing is kept.
unsafe impl GlobalAlloc for Scanning {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` is a live block of `layout.size()` bytes until the call below.
        let block = unsafe { std::slice::from_raw_parts(ptr, layout.size()) };
        if holds_marker(block) {
            UNWIPED.fetch_add(1, Ordering::SeqCst);
        }
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as in `dealloc`; a block that moves leaves the old one behind.
        let block = unsafe { std::slice::from_raw_parts(ptr, layout.size()) };
        let held = holds_marker(block);
        let moved = unsafe { System.realloc(ptr, layout, new_size) };
        if held && moved != ptr {
            UNWIPED.fetch_add(1, Ordering::SeqCst);
        }
        moved
    }
}

#[global_allocator]
static ALLOCATOR: Scanning = Scanning;

/// Runs `f` with the allocator looking for `marker` (one of [`MARKERS`]); how many blocks went
/// back unwiped.
pub fn unwiped_blocks_in(marker: &str, f: impl FnOnce()) -> usize {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let index = MARKERS
        .iter()
        .position(|m| *m == marker)
        .expect("a known marker");
    let before = UNWIPED.load(Ordering::SeqCst);
    ACTIVE.store(index + 1, Ordering::SeqCst);
    f();
    ACTIVE.store(0, Ordering::SeqCst);
    UNWIPED.load(Ordering::SeqCst) - before
}
