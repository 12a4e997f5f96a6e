//! Checking a valid batch allocates nothing: the server checks every batch
//! on its way in, point by point, and naming each point's field up front
//! (a `format!` per point) once cost more than the checks themselves.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use steplake_core::ScalarBatch;

/// The system allocator, counting the allocations of each thread apart.
/// Only the test's own thread is measured: the harness's threads (output
/// capture, the runner) allocate whenever they like, and a global counter
/// once caught one of theirs.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn allocations_on_this_thread() -> usize {
    ALLOCATIONS.with(Cell::get)
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // `try_with`: a thread being torn down has no counter left to bump.
        let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
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
    let before = allocations_on_this_thread();
    let checked = batch.validate();
    let allocations = allocations_on_this_thread() - before;
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
