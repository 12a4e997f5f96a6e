//! The GPU pipeline on an emulated device: the real kernel source
//! (src/gpu/kernels.cu) compiled for the host by g++ with a small shim
//! (tests/emulator/shim.cpp) that runs each CUDA block as real threads with a
//! barrier. The Rust side — job tables, planning, layout, headers — is the
//! one the CUDA device runs. Checks byte equality with the CPU path, and
//! statistics, on machines with no GPU.
//!
//! Skipped, with a message, where no C++20 compiler (`g++`) is found.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use steplake_codec::gpu::{Device, GpuError, Kernel, Pipeline};
use steplake_core::DType;

type Emulate = unsafe extern "C" fn(*const std::ffi::c_char, u32, u32, *const u64, u32) -> i32;

/// The shim built once per test binary.
fn library() -> Option<&'static libloading::Library> {
    static LIBRARY: OnceLock<Option<libloading::Library>> = OnceLock::new();
    LIBRARY
        .get_or_init(|| {
            let root = PathBuf::from(manifest_dir());
            let out =
                PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("libsteplake_kernels_emulated.so");
            let status = Command::new("g++")
                .args(["-std=c++20", "-O2", "-shared", "-fPIC", "-pthread", "-Wall"])
                .arg("-I")
                .arg(root.join("src/gpu"))
                .arg(root.join("tests/emulator/shim.cpp"))
                .arg("-o")
                .arg(&out)
                .status();
            match status {
                Ok(s) if s.success() => {
                    // SAFETY: our own library, with no initialisers of note.
                    Some(unsafe { libloading::Library::new(&out) }.expect("load the emulator"))
                }
                Ok(s) => panic!("g++ failed to build the kernel emulator: {s}"),
                Err(e) => {
                    eprintln!("skipped: no g++ to build the kernel emulator ({e})");
                    None
                }
            }
        })
        .as_ref()
}

/// Host memory standing in for device memory: 8-byte aligned words.
struct HostBuffer {
    words: *mut u64,
    len: usize,
}

impl Drop for HostBuffer {
    fn drop(&mut self) {
        // SAFETY: made by Box::into_raw of a boxed slice of `len` words.
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(self.words, self.len)) });
    }
}

struct Emulated {
    emulate: libloading::Symbol<'static, Emulate>,
    threads: u32,
}

impl Emulated {
    fn new(threads: u32) -> Option<Self> {
        let library = library()?;
        // SAFETY: the symbol has this signature in shim.cpp.
        let emulate = unsafe { library.get::<Emulate>(b"steplake_emulate") }.expect("symbol");
        Some(Emulated { emulate, threads })
    }

    fn buffer(len: usize) -> HostBuffer {
        let words = len.div_ceil(8).max(1);
        let boxed = vec![0u64; words].into_boxed_slice();
        HostBuffer {
            words: Box::into_raw(boxed) as *mut u64,
            len: words,
        }
    }
}

impl Device for Emulated {
    type Buffer = HostBuffer;

    fn upload(&self, bytes: &[u8]) -> Result<HostBuffer, GpuError> {
        let buffer = Self::buffer(bytes.len());
        // SAFETY: the buffer holds at least bytes.len() bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), buffer.words as *mut u8, bytes.len())
        };
        Ok(buffer)
    }

    fn zeroed(&self, len: usize) -> Result<HostBuffer, GpuError> {
        Ok(Self::buffer(len))
    }

    fn address(&self, buffer: &HostBuffer) -> u64 {
        buffer.words as u64
    }

    fn launch(&self, kernel: Kernel, grid: u32, args: &[u64]) -> Result<(), GpuError> {
        if grid == 0 {
            return Ok(());
        }
        let name = std::ffi::CString::new(kernel.name()).expect("kernel name");
        // SAFETY: the arguments are addresses of live HostBuffers and counts,
        // as the kernel expects.
        let status = unsafe {
            (self.emulate)(
                name.as_ptr(),
                grid,
                self.threads,
                args.as_ptr(),
                args.len() as u32,
            )
        };
        if status != 0 {
            return Err(GpuError::Driver(format!(
                "emulator refused {}",
                kernel.name()
            )));
        }
        Ok(())
    }

    fn synchronize(&self) -> Result<(), GpuError> {
        Ok(())
    }

    fn download(&self, buffer: &HostBuffer, out: &mut [u8]) -> Result<(), GpuError> {
        assert!(out.len() <= buffer.len * 8);
        // SAFETY: in bounds, checked above.
        unsafe {
            std::ptr::copy_nonoverlapping(buffer.words as *const u8, out.as_mut_ptr(), out.len())
        };
        Ok(())
    }
}

fn pipeline(threads: u32) -> Option<Pipeline<Emulated>> {
    Some(Pipeline::new(Emulated::new(threads)?, 1 << 30))
}

#[test]
fn frames_equal_the_cpu_path_for_every_kind_of_input() {
    // The CUDA launch's block size, on the small cases.
    let Some(pipeline) = pipeline(256) else {
        return;
    };
    common::check_frames(&pipeline, &common::all_cases(4097));
}

#[test]
fn frames_equal_the_cpu_path_across_blocks_and_streams() {
    // Fewer threads per block keep the emulation fast on larger inputs; the
    // kernels are written for any power-of-two block size.
    let Some(pipeline) = pipeline(32) else { return };
    let cases: Vec<_> = common::all_cases(usize::MAX)
        .into_iter()
        .filter(|(_, bytes, _)| bytes.len() > 4097 * 8)
        .collect();
    common::check_frames(&pipeline, &cases);
}

#[test]
fn statistics_match_the_cpu_path() {
    let Some(pipeline) = pipeline(64) else { return };
    common::check_stats(&pipeline, &common::all_cases(usize::MAX));
}

#[test]
fn frames_and_statistics_from_one_upload() {
    let Some(pipeline) = pipeline(64) else { return };
    let cases = common::all_cases(1024);
    let items: Vec<(&[u8], DType)> = cases.iter().map(|(_, b, d)| (b.as_slice(), *d)).collect();
    let results = pipeline.encode_tensors(&items).expect("encode_tensors");
    for ((label, bytes, dtype), (frame, stats)) in cases.iter().zip(&results) {
        assert!(
            frame == &steplake_codec::encode(bytes, dtype.size()),
            "{label}"
        );
        common::assert_stats_match(
            label,
            stats,
            &steplake_codec::stats::tensor_stats(bytes, *dtype),
        );
    }
}

#[test]
fn minilm_weights_fp32_and_bf16() {
    let Some(pipeline) = pipeline(32) else { return };
    let cases = common::minilm_cases(2 << 20);
    common::check_frames(&pipeline, &cases);
    common::check_stats(&pipeline, &cases);
}

#[test]
fn a_batch_over_the_memory_budget_is_refused() {
    let Some(emulated) = Emulated::new(32) else {
        return;
    };
    let pipeline = Pipeline::new(emulated, 1 << 20);
    let big = vec![1u8; 1 << 20];
    match pipeline.encode(&[(&big, 4)]) {
        Err(GpuError::OverBudget { needed, budget }) => {
            assert!(needed > budget);
            assert!(GpuError::OverBudget { needed, budget }
                .to_string()
                .contains("device memory budget"));
        }
        other => panic!("expected OverBudget, got {:?}", other.map(|f| f.len())),
    }
}

#[test]
fn tensors_already_on_the_device_encode_the_same() {
    let Some(pipeline) = pipeline(32) else { return };
    let cases = common::all_cases(4097);
    let (staged, placed) = common::stage_on_device(&cases);
    let values = pipeline.device().upload(&staged).expect("upload");
    let packed = pipeline.encode_resident(&values, &placed).expect("encode");
    let frames = pipeline.download_frames(packed).expect("download");
    for ((label, bytes, dtype), frame) in cases.iter().zip(&frames) {
        assert!(
            frame == &steplake_codec::encode(bytes, dtype.size()),
            "{label}"
        );
    }
}

/// This package's directory. Cargo sets it when it runs the target, so it
/// stays right when one target directory serves checkouts at several paths
/// (the compile-time value is only the fallback).
fn manifest_dir() -> String {
    std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string())
}
