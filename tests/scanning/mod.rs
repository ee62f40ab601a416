//! A scanning global allocator, shared by the test binaries that check wipes (each binary has one
//! global allocator, so each that includes this module gets it): every block freed or grown by
//! `realloc` is searched for the marker a test names, and a block that still holds it is counted
//! as given back unwiped. A `realloc` counts whether or not it moved the block this time: the
//! allocator may move it any time, leaving the old bytes behind unwiped.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::sync::Mutex;

/// The marker looked for: its bytes (a `&'static str`) and their length, 0 while nothing is
/// scanned. Atomics, not a lock: every thread's frees read them, and a lock could be missed.
static MARKER: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
static MARKER_LEN: AtomicUsize = AtomicUsize::new(0);
/// Blocks given back to the allocator while still holding the marker.
static UNWIPED: AtomicUsize = AtomicUsize::new(0);
/// One scan at a time: the tests of a binary share the allocator.
static SERIAL: Mutex<()> = Mutex::new(());

pub struct Scanning;

#[global_allocator]
static ALLOCATOR: Scanning = Scanning;

fn holds_marker(block: &[u8]) -> bool {
    let len = MARKER_LEN.load(Ordering::SeqCst);
    if len == 0 || block.len() < len {
        return false;
    }
    // SAFETY: while `MARKER_LEN` is not 0, `MARKER` points at the `len` bytes of a `&'static str`
    // (set before the length, cleared after it, in `unwiped_blocks_in`).
    let marker = unsafe { std::slice::from_raw_parts(MARKER.load(Ordering::SeqCst), len) };
    block.windows(len).any(|window| window == marker)
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
        // SAFETY: as in `dealloc`. Grown in place or not, a secret should never be grown by
        // `realloc`: the next time the block may move and leave the old one behind.
        let block = unsafe { std::slice::from_raw_parts(ptr, layout.size()) };
        if holds_marker(block) {
            UNWIPED.fetch_add(1, Ordering::SeqCst);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Runs `f` with the allocator looking for `marker`; returns how many blocks went back unwiped.
/// The marker should be a string nothing else in the test holds by chance.
pub fn unwiped_blocks_in(marker: &'static str, f: impl FnOnce()) -> usize {
    assert!(!marker.is_empty(), "an empty marker matches every block");
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let before = UNWIPED.load(Ordering::SeqCst);
    MARKER.store(marker.as_ptr().cast_mut(), Ordering::SeqCst);
    MARKER_LEN.store(marker.len(), Ordering::SeqCst);
    f();
    MARKER_LEN.store(0, Ordering::SeqCst);
    UNWIPED.load(Ordering::SeqCst) - before
}
