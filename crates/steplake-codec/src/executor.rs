//! Which executor compresses tensors and computes their statistics: the
//! CPU, or a GPU when one is found. The choice is made once, at start
//! (`steplake serve --gpu auto|on|off`); the output does not depend on it.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use steplake_core::DType;

use crate::gpu::{GpuCodec, GpuError};
use crate::stats::{tensor_stats, TensorStats};

/// How the GPU path is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GpuMode {
    /// Use a GPU when the driver library and a device are found, else the CPU.
    #[default]
    Auto,
    /// Use a GPU; fail at start when there is none.
    On,
    /// Never use a GPU.
    Off,
}

impl FromStr for GpuMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(GpuMode::Auto),
            "on" => Ok(GpuMode::On),
            "off" => Ok(GpuMode::Off),
            other => Err(format!("unknown GPU mode {other:?}: use auto, on or off")),
        }
    }
}

impl fmt::Display for GpuMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GpuMode::Auto => "auto",
            GpuMode::On => "on",
            GpuMode::Off => "off",
        })
    }
}

/// Default device-memory budget of the GPU path: small beside a training job.
pub const DEFAULT_GPU_MEMORY: usize = 4 << 30;

/// Tensors smaller than this are coded on the CPU even when a GPU is used:
/// the round trip to the device costs more than coding them. The bytes are
/// the same either way.
pub const GPU_MIN_BYTES: usize = 256 << 10;

/// The executor in use. Cheap to clone; shared by the store's threads.
#[derive(Clone, Default)]
pub struct Codec {
    gpu: Option<Arc<GpuCodec>>,
    /// Why the CPU is used, when a GPU was looked for.
    cpu_reason: Option<String>,
    /// Calls the GPU could not serve (over budget, a CUDA error), done on
    /// the CPU instead.
    fallbacks: Arc<AtomicU64>,
}

impl fmt::Debug for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Codec {
    /// The CPU executor.
    pub fn cpu() -> Codec {
        Codec::default()
    }

    /// Chooses the executor for `mode`. `On` without a usable GPU is an
    /// error that says why; `Auto` then falls back to the CPU and
    /// [`describe`](Codec::describe) says why. The CUDA libraries are looked
    /// for before any CUDA call, so a machine without them never panics.
    pub fn select(mode: GpuMode, memory_budget: usize) -> Result<Codec, GpuError> {
        match mode {
            GpuMode::Off => Ok(Codec::cpu()),
            GpuMode::On => Ok(Codec::with_gpu(GpuCodec::open(memory_budget)?)),
            GpuMode::Auto => match GpuCodec::open(memory_budget) {
                Ok(gpu) => Ok(Codec::with_gpu(gpu)),
                Err(reason) => {
                    // No GPU is the normal case on most machines: one short
                    // word, the detail at debug level. A GPU that is there
                    // but unusable is worth a warning.
                    let cpu_reason = if matches!(reason, GpuError::NoDriver | GpuError::NoDevice) {
                        tracing::debug!(%reason, "no GPU: tensors are coded on the CPU");
                        "no GPU found".to_string()
                    } else {
                        tracing::warn!(%reason, "a GPU was found but cannot be used: tensors are coded on the CPU");
                        format!("GPU not usable: {reason}")
                    };
                    Ok(Codec {
                        cpu_reason: Some(cpu_reason),
                        ..Codec::default()
                    })
                }
            },
        }
    }

    fn with_gpu(gpu: GpuCodec) -> Codec {
        Codec {
            gpu: Some(Arc::new(gpu)),
            ..Codec::default()
        }
    }

    /// Whether a GPU is in use.
    pub fn uses_gpu(&self) -> bool {
        self.gpu.is_some()
    }

    /// The path in use, for the start-up log: `gpu: <device>` or `cpu`, with
    /// the reason when a GPU was looked for and not used.
    pub fn describe(&self) -> String {
        match (&self.gpu, &self.cpu_reason) {
            (Some(gpu), _) => format!("gpu: {}", gpu.description()),
            (None, Some(reason)) => format!("cpu ({reason})"),
            (None, None) => "cpu".to_string(),
        }
    }

    /// Calls the GPU could not serve and the CPU did.
    pub fn gpu_fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }

    /// Runs `gpu` when a GPU is in use and `len` is worth it, else (or when
    /// the GPU fails) `cpu`.
    fn run<T>(
        &self,
        len: usize,
        gpu: impl FnOnce(&GpuCodec) -> Result<T, GpuError>,
        cpu: impl FnOnce() -> T,
    ) -> T {
        match &self.gpu {
            Some(device) if len >= GPU_MIN_BYTES => match gpu(device) {
                Ok(result) => result,
                Err(error) => {
                    if self.fallbacks.fetch_add(1, Ordering::Relaxed) == 0 {
                        tracing::warn!(%error, "GPU codec failed; this and later failures use the CPU");
                    }
                    cpu()
                }
            },
            _ => cpu(),
        }
    }

    /// [`crate::compress_planes`], on the executor in use.
    pub fn compress_planes(&self, data: &[u8], plane_len: usize) -> Vec<u8> {
        self.run(
            data.len(),
            |gpu| {
                gpu.with(|p| p.compress_planes(&[(data, plane_len)]))
                    .map(|mut frames| frames.pop().unwrap_or_default())
            },
            || crate::compress_planes(data, plane_len),
        )
    }

    /// [`crate::stats::tensor_stats`], on the executor in use.
    pub fn tensor_stats(&self, bytes: &[u8], dtype: DType) -> TensorStats {
        self.run(
            bytes.len(),
            |gpu| {
                gpu.with(|p| p.tensor_stats(&[(bytes, dtype)]))?
                    .pop()
                    .ok_or_else(|| GpuError::Driver("no statistics returned".into()))
            },
            || tensor_stats(bytes, dtype),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_print() {
        for mode in [GpuMode::Auto, GpuMode::On, GpuMode::Off] {
            assert_eq!(mode.to_string().parse::<GpuMode>(), Ok(mode));
        }
        assert!("maybe"
            .parse::<GpuMode>()
            .is_err_and(|e| e.contains("auto, on or off")));
    }

    #[test]
    fn without_cuda_auto_chooses_the_cpu_and_on_fails_clearly() {
        if crate::gpu::driver_library_present() {
            eprintln!("skipped: this machine has a CUDA driver");
            return;
        }
        let auto = Codec::select(GpuMode::Auto, DEFAULT_GPU_MEMORY).expect("auto never fails");
        assert!(!auto.uses_gpu());
        assert_eq!(auto.describe(), "cpu (no GPU found)");
        let error = Codec::select(GpuMode::On, DEFAULT_GPU_MEMORY).expect_err("on needs a GPU");
        assert!(error.to_string().contains("CUDA driver library"), "{error}");
        let off = Codec::select(GpuMode::Off, DEFAULT_GPU_MEMORY).expect("off");
        assert_eq!(off.describe(), "cpu");
    }

    #[test]
    fn the_cpu_executor_is_the_cpu_path() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 7) as u8).collect();
        let codec = Codec::cpu();
        assert_eq!(
            codec.compress_planes(&data, 100_000),
            crate::compress_planes(&data, 100_000)
        );
        assert_eq!(
            codec.tensor_stats(&data, DType::U8),
            tensor_stats(&data, DType::U8)
        );
    }
}
