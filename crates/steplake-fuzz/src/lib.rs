//! steplake-fuzz: bounded, structured fuzzing inside `cargo test`.
//!
//! Every decoder that outside bytes reach (WAL records, scalar and tensor
//! payloads, protobuf write requests, safetensors headers, CSV and JSONL
//! lines, SQL text) has a fuzz target in its own crate's tests. A target
//! starts from valid seeds and feeds [`fuzz`] a closure that decodes one
//! input; the input must come back as a value or an error, never as
//!
//! - a **panic** (caught, and reported with the input that caused it),
//! - a **hang** (one input running past [`input_time_limit`]: the process
//!   prints the input and aborts, so CI fails instead of stalling), or
//! - an **unbounded allocation** (one allocation larger than
//!   [`ALLOCATION_LIMIT`] while the input is decoded: reported like a
//!   panic; test binaries install [`CappedAllocator`] to notice it).
//!
//! Inputs are mutations of the seeds ([`Mutator`]): bit flips, interesting
//! integers over length fields, cut, repeated, spliced and deleted ranges,
//! and tokens from a dictionary (SQL keywords, JSON punctuation). The runs
//! are deterministic: `STEPLAKE_FUZZ_SEED` picks another sequence,
//! `STEPLAKE_FUZZ_ITERS` sets how many inputs each target tries (default
//! [`DEFAULT_ITERATIONS`]; the long mode is e.g. `STEPLAKE_FUZZ_ITERS=1000000`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Inputs per target when `STEPLAKE_FUZZ_ITERS` is not set.
pub const DEFAULT_ITERATIONS: u64 = 2_000;

/// Largest single allocation a decoder may make for one input: 256 MiB.
pub const ALLOCATION_LIMIT: usize = 256 << 20;

thread_local! {
    /// Whether this thread is decoding a fuzz input now.
    static ARMED: Cell<bool> = const { Cell::new(false) };
    /// The largest allocation over the limit seen while armed (0: none).
    static OVERSIZED: Cell<usize> = const { Cell::new(0) };
}

/// The system allocator, noting allocations over [`ALLOCATION_LIMIT`] made
/// by a thread that is decoding a fuzz input (other threads, and tests
/// that are not fuzzing, are not affected). Install it in a test binary:
///
/// ```ignore
/// #[global_allocator]
/// static ALLOCATOR: steplake_fuzz::CappedAllocator = steplake_fuzz::CappedAllocator;
/// ```
pub struct CappedAllocator;

// SAFETY: every call is forwarded to `System` unchanged; the bookkeeping
// touches only const-initialized thread-locals, which never allocate.
unsafe impl GlobalAlloc for CappedAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn note(size: usize) {
    if size > ALLOCATION_LIMIT {
        let _ = ARMED.try_with(|armed| {
            if armed.get() {
                let _ = OVERSIZED.try_with(|o| o.set(o.get().max(size)));
            }
        });
    }
}

/// Seeded mutations of seed inputs.
pub struct Mutator {
    state: u64,
}

/// Integers that break length and count fields.
const INTERESTING: [u64; 12] = [
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x7fff_ffff_ffff_ffff,
    0x8000_0000_0000_0000,
    u64::MAX,
];

impl Mutator {
    /// A mutator whose sequence is fixed by `seed`.
    pub fn new(seed: u64) -> Mutator {
        Mutator {
            state: seed ^ 0x9e37_79b9_7f4a_7c15,
        }
    }

    /// The next pseudo-random number (SplitMix64).
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// One to four mutations of a seed picked from `seeds`, using tokens of
    /// `dictionary` among them.
    pub fn mutate(&mut self, seeds: &[Vec<u8>], dictionary: &[&[u8]]) -> Vec<u8> {
        let mut data = seeds[self.below(seeds.len())].clone();
        for _ in 0..=self.below(4) {
            self.mutate_once(&mut data, seeds, dictionary);
        }
        data
    }

    fn mutate_once(&mut self, data: &mut Vec<u8>, seeds: &[Vec<u8>], dictionary: &[&[u8]]) {
        let len = data.len();
        match self.below(9) {
            0 if len > 0 => {
                let at = self.below(len);
                data[at] ^= 1 << self.below(8);
            }
            1 if len > 0 => {
                let at = self.below(len);
                data[at] = INTERESTING[self.below(INTERESTING.len())] as u8;
            }
            2 if len >= 4 => {
                let width = [2usize, 4, 8][self.below(3)].min(len);
                let at = self.below(len - width + 1);
                let value = INTERESTING[self.below(INTERESTING.len())].to_le_bytes();
                data[at..at + width].copy_from_slice(&value[..width]);
            }
            3 => data.truncate(self.below(len + 1)),
            4 if len > 0 => {
                let start = self.below(len);
                let end = start + self.below(len - start) + 1;
                data.drain(start..end);
            }
            5 if len > 0 => {
                let start = self.below(len);
                let end = (start + self.below(64) + 1).min(len);
                let copy = data[start..end].to_vec();
                let at = self.below(data.len() + 1);
                for _ in 0..=self.below(3) {
                    data.splice(at..at, copy.iter().copied());
                }
            }
            6 if !dictionary.is_empty() => {
                let token = dictionary[self.below(dictionary.len())];
                let at = self.below(len + 1);
                data.splice(at..at, token.iter().copied());
            }
            7 => {
                let other = &seeds[self.below(seeds.len())];
                let cut = self.below(len + 1);
                let from = self.below(other.len() + 1);
                data.truncate(cut);
                data.extend_from_slice(&other[from..]);
            }
            _ => {
                let at = self.below(len + 1);
                let count = self.below(16) + 1;
                let bytes: Vec<u8> = (0..count).map(|_| self.next_u64() as u8).collect();
                data.splice(at..at, bytes);
            }
        }
    }
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// Inputs per target: `STEPLAKE_FUZZ_ITERS`, else `default`.
pub fn iterations(default: u64) -> u64 {
    env_number("STEPLAKE_FUZZ_ITERS").unwrap_or(default)
}

/// Longest one input may take: `STEPLAKE_FUZZ_INPUT_SECS`, else 20 s.
pub fn input_time_limit() -> Duration {
    Duration::from_secs(env_number("STEPLAKE_FUZZ_INPUT_SECS").unwrap_or(20))
}

/// How an input is shown in a report: text when it is UTF-8, else hex
/// (at most 4 KiB of it).
pub fn show(input: &[u8]) -> String {
    let shown = &input[..input.len().min(4096)];
    match std::str::from_utf8(shown) {
        Ok(text) => format!("{text:?}"),
        Err(_) => shown.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

/// Aborts the process when one input runs too long.
struct Watchdog {
    epoch: Instant,
    /// When the current input started, in ms after `epoch` plus one (0: none).
    started_ms: Arc<AtomicU64>,
    input: Arc<Mutex<Vec<u8>>>,
    done: Arc<AtomicBool>,
}

impl Watchdog {
    fn start(name: &'static str, limit: Duration) -> Watchdog {
        let watchdog = Watchdog {
            epoch: Instant::now(),
            started_ms: Arc::new(AtomicU64::new(0)),
            input: Arc::new(Mutex::new(Vec::new())),
            done: Arc::new(AtomicBool::new(false)),
        };
        let (epoch, started_ms, input, done) = (
            watchdog.epoch,
            watchdog.started_ms.clone(),
            watchdog.input.clone(),
            watchdog.done.clone(),
        );
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                let started = started_ms.load(Ordering::Relaxed);
                let now = epoch.elapsed().as_millis() as u64 + 1;
                if started > 0 && now.saturating_sub(started) > limit.as_millis() as u64 {
                    let shown = input.lock().map(|i| show(&i)).unwrap_or_default();
                    eprintln!(
                        "fuzz target {name}: one input ran longer than {limit:?} (a hang); input: {shown}"
                    );
                    std::process::abort();
                }
            }
        });
        watchdog
    }

    fn begin(&self, input: &[u8]) {
        if let Ok(mut current) = self.input.lock() {
            current.clear();
            current.extend_from_slice(input);
        }
        let now = self.epoch.elapsed().as_millis() as u64 + 1;
        self.started_ms.store(now, Ordering::Relaxed);
    }

    fn end(&self) {
        self.started_ms.store(0, Ordering::Relaxed);
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
    }
}

/// Runs `decode` on every seed and on [`iterations`] mutations of them.
/// Panics with the input when `decode` panics, or allocates more than
/// [`ALLOCATION_LIMIT`] at once; aborts when one input hangs. `decode`
/// returns normally for any input (its result is for it to check).
pub fn fuzz(
    name: &'static str,
    seeds: &[Vec<u8>],
    dictionary: &[&[u8]],
    default_iterations: u64,
    mut decode: impl FnMut(&[u8]),
) {
    assert!(!seeds.is_empty(), "fuzz target {name} has no seeds");
    let seed = env_number("STEPLAKE_FUZZ_SEED").unwrap_or_else(|| {
        name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        })
    });
    let mut mutator = Mutator::new(seed);
    let total = iterations(default_iterations);
    let watchdog = Watchdog::start(name, input_time_limit());
    for i in 0..seeds.len() as u64 + total {
        let input = match seeds.get(i as usize) {
            Some(seed) => seed.clone(),
            None => mutator.mutate(seeds, dictionary),
        };
        watchdog.begin(&input);
        ARMED.with(|a| a.set(true));
        OVERSIZED.with(|o| o.set(0));
        let outcome = catch_unwind(AssertUnwindSafe(|| decode(&input)));
        ARMED.with(|a| a.set(false));
        watchdog.end();
        let oversized = OVERSIZED.with(Cell::get);
        if let Err(panic) = outcome {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!(
                "fuzz target {name}: input {i} (STEPLAKE_FUZZ_SEED={seed}) panicked: {message}\ninput: {}",
                show(&input)
            );
        }
        if oversized > 0 {
            panic!(
                "fuzz target {name}: input {i} (STEPLAKE_FUZZ_SEED={seed}) allocated {oversized} bytes at once (limit {ALLOCATION_LIMIT})\ninput: {}",
                show(&input)
            );
        }
    }
}

#[cfg(test)]
#[global_allocator]
static ALLOCATOR: CappedAllocator = CappedAllocator;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_oversized_allocation_is_reported() {
        let caught = catch_unwind(|| {
            fuzz("greedy", &[vec![1]], &[], 0, |input| {
                let v: Vec<u8> = Vec::with_capacity(ALLOCATION_LIMIT + input.len());
                std::hint::black_box(v);
            })
        });
        let message = caught
            .err()
            .and_then(|p| p.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        assert!(message.contains("allocated"), "{message}");
    }

    #[test]
    fn mutations_are_deterministic_and_vary() {
        let seeds = vec![b"hello, world".to_vec()];
        let a: Vec<_> = (0..50)
            .scan(Mutator::new(7), |m, _| Some(m.mutate(&seeds, &[b"SELECT"])))
            .collect();
        let b: Vec<_> = (0..50)
            .scan(Mutator::new(7), |m, _| Some(m.mutate(&seeds, &[b"SELECT"])))
            .collect();
        assert_eq!(a, b);
        assert!(a.iter().filter(|m| **m != seeds[0]).count() > 40);
    }

    #[test]
    fn a_panicking_decoder_is_reported_with_its_input() {
        let caught = catch_unwind(|| {
            fuzz("demo", &[b"ok".to_vec()], &[], 100, |input| {
                assert!(input != b"ok", "seeds run first");
            })
        });
        let message = caught
            .err()
            .and_then(|p| p.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        assert!(
            message.contains("input 0") && message.contains("\"ok\""),
            "{message}"
        );
    }
}
