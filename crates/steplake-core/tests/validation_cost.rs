//! Checking a valid batch allocates nothing: the server checks every batch
//! on its way in, point by point, and naming each point's field up front
//! (a `format!` per point) once cost more than the checks themselves.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use steplake_core::ScalarBatch;

/// The system allocator, counting allocations.
struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc` is passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[test]
fn a_valid_batch_is_checked_without_allocating() {
    let series = 100;
    let mut batch = ScalarBatch {
        names: (0..series).map(|s| format!("layer{s}/grad_norm")).collect(),
        ..Default::default()
    };
    for step in 0..100i64 {
        for s in 0..series {
            batch.name_index.push(s as u32);
            batch.steps.push(step);
            batch.values.push(step as f64 * 0.5);
            batch.wall_times_us.push(1_700_000_000_000_000 + step);
        }
    }
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let checked = batch.validate();
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    assert!(checked.is_ok(), "{checked:?}");
    assert_eq!(
        allocations, 0,
        "allocations while checking 10,000 valid points"
    );

    // A bad point is still named exactly.
    batch.wall_times_us[4_321] = i64::MAX;
    let error = batch.validate().expect_err("a wall time in nanoseconds");
    assert!(
        error.to_string().contains("scalars.wall_times_us[4321]"),
        "{error}"
    );
    batch.wall_times_us[4_321] = 1_700_000_000_000_000;
    batch.names[7] = "bad\nname".into();
    let error = batch.validate().expect_err("a control character");
    assert!(error.to_string().contains("scalars.names[7]"), "{error}");
}
