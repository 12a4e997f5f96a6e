//! What the GPU pipeline needs from a device, and the CUDA device that
//! provides it through cudarc.
//!
//! [`Device`] is a small seam: buffers, uploads, downloads and launches of
//! the kernels in `kernels.cu` with 64-bit arguments. [`CudaDevice`] is the
//! real one. The tests implement it a second time with the same kernel source
//! compiled for the host, so the pipeline is checked on machines with no GPU.

use std::sync::{Arc, Mutex};

use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr, LaunchConfig, PinnedHostSlice,
    PushKernelArg,
};
use cudarc::nvrtc::CompileOptions;

use super::GpuError;

/// The kernels' CUDA C++ source.
pub const KERNEL_SOURCE: &str = include_str!("kernels.cu");

/// Threads per CUDA block; the kernels' shared arrays are sized for it.
pub const THREADS: u32 = 256;

/// The kernels of `kernels.cu`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// Values to byte planes.
    Split,
    /// One 256-bin histogram per stream segment.
    Histograms,
    /// Huffman bit-packing of streams.
    Pack,
    /// Raw blocks copied into the frame.
    Copy,
    /// First statistics pass.
    Moments,
    /// Second statistics pass.
    SecondPass,
}

impl Kernel {
    /// Every kernel.
    pub const ALL: [Kernel; 6] = [
        Kernel::Split,
        Kernel::Histograms,
        Kernel::Pack,
        Kernel::Copy,
        Kernel::Moments,
        Kernel::SecondPass,
    ];

    /// The kernel's name in the source.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Split => "steplake_split",
            Kernel::Histograms => "steplake_histograms",
            Kernel::Pack => "steplake_pack",
            Kernel::Copy => "steplake_copy",
            Kernel::Moments => "steplake_moments",
            Kernel::SecondPass => "steplake_second_pass",
        }
    }
}

/// A device the pipeline runs on. Work is queued in order; `download` waits
/// for everything queued before it. Dropping a buffer must not free it
/// before the work queued on it has run (cudarc frees in stream order).
pub trait Device {
    /// Device memory.
    type Buffer;
    /// Copies `bytes` into a new buffer.
    fn upload(&self, bytes: &[u8]) -> Result<Self::Buffer, GpuError>;
    /// A new buffer of `len` zero bytes.
    fn zeroed(&self, len: usize) -> Result<Self::Buffer, GpuError>;
    /// The buffer's device address, as kernels take it.
    fn address(&self, buffer: &Self::Buffer) -> u64;
    /// Launches `kernel` on `grid` blocks of [`THREADS`] threads.
    fn launch(&self, kernel: Kernel, grid: u32, args: &[u64]) -> Result<(), GpuError>;
    /// Waits for queued work, then copies the buffer's first `out.len()`
    /// bytes into `out`.
    fn download(&self, buffer: &Self::Buffer, out: &mut [u8]) -> Result<(), GpuError>;
    /// Waits for queued work.
    fn synchronize(&self) -> Result<(), GpuError>;
}

/// Whether the CUDA driver library can be loaded. cudarc panics on its first
/// call when it cannot, so this is asked first.
pub fn driver_library_present() -> bool {
    // SAFETY: only tries to open the library by its candidate names.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

/// Whether the NVRTC library can be loaded (needed to compile the kernels).
pub fn nvrtc_library_present() -> bool {
    // SAFETY: as above.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// Compiles the kernels to PTX for `arch` (e.g. `sm_90`), FMA contraction
/// off so that statistics bins match the CPU's. Needs NVRTC only, no device.
pub fn compile_kernels(arch: &str) -> Result<cudarc::nvrtc::Ptx, GpuError> {
    if !nvrtc_library_present() {
        return Err(GpuError::NoNvrtc);
    }
    // cudarc takes the architecture as a 'static str: one leak per compile.
    let arch: &'static str = Box::leak(arch.to_string().into_boxed_str());
    let options = CompileOptions {
        arch: Some(arch),
        fmad: Some(false),
        options: vec!["--std=c++17".into()],
        ..Default::default()
    };
    cudarc::nvrtc::compile_ptx_with_opts(KERNEL_SOURCE, options)
        .map_err(|e| GpuError::Compile(format!("{e:?}")))
}

/// A CUDA GPU: one context, one low-priority stream, the compiled kernels,
/// and a pinned (not write-combined) staging buffer for downloads.
pub struct CudaDevice {
    stream: Arc<CudaStream>,
    functions: Vec<(Kernel, CudaFunction)>,
    staging: Mutex<Option<PinnedHostSlice<u8>>>,
    description: String,
}

impl CudaDevice {
    /// Opens GPU `ordinal`: checks the driver library, finds the device,
    /// compiles the kernels for its architecture, and creates a stream of the
    /// lowest priority so a training job on the same GPU goes first.
    pub fn open(ordinal: usize) -> Result<Self, GpuError> {
        if !driver_library_present() {
            return Err(GpuError::NoDriver);
        }
        let count = CudaContext::device_count().map_err(driver)?;
        if count as usize <= ordinal {
            return Err(GpuError::NoDevice);
        }
        let context = CudaContext::new(ordinal).map_err(driver)?;
        let (major, minor) = context.compute_capability().map_err(driver)?;
        let ptx = compile_kernels(&format!("sm_{major}{minor}"))?;
        let module = context.load_module(ptx).map_err(driver)?;
        let functions = Kernel::ALL
            .iter()
            .map(|&k| module.load_function(k.name()).map(|f| (k, f)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(driver)?;
        let (least, _greatest) =
            cudarc::driver::result::stream::get_priority_range().map_err(driver)?;
        let stream = context.new_stream_with_priority(least).map_err(driver)?;
        let name = context.name().map_err(driver)?;
        let memory = context.total_mem().map_err(driver)?;
        Ok(CudaDevice {
            stream,
            functions,
            staging: Mutex::new(None),
            description: format!("{name} (sm_{major}{minor}, {} GiB)", memory >> 30),
        })
    }

    /// The device's name, architecture and memory.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Free device memory, in bytes.
    pub fn free_memory(&self) -> Result<usize, GpuError> {
        let (free, _total) = self.stream.context().mem_get_info().map_err(driver)?;
        Ok(free)
    }
}

fn driver(error: cudarc::driver::DriverError) -> GpuError {
    GpuError::Driver(error.to_string())
}

impl Device for CudaDevice {
    type Buffer = CudaSlice<u8>;

    fn upload(&self, bytes: &[u8]) -> Result<CudaSlice<u8>, GpuError> {
        if bytes.is_empty() {
            return self.zeroed(8);
        }
        self.stream.clone_htod(bytes).map_err(driver)
    }

    fn zeroed(&self, len: usize) -> Result<CudaSlice<u8>, GpuError> {
        self.stream.alloc_zeros(len.max(8)).map_err(driver)
    }

    fn address(&self, buffer: &CudaSlice<u8>) -> u64 {
        let (pointer, _sync) = buffer.device_ptr(&self.stream);
        pointer
    }

    fn launch(&self, kernel: Kernel, grid: u32, args: &[u64]) -> Result<(), GpuError> {
        if grid == 0 {
            return Ok(());
        }
        let function = self
            .functions
            .iter()
            .find(|(k, _)| *k == kernel)
            .map(|(_, f)| f)
            .ok_or_else(|| GpuError::Driver(format!("kernel {} not loaded", kernel.name())))?;
        let mut launch = self.stream.launch_builder(function);
        for arg in args {
            launch.arg(arg);
        }
        let config = LaunchConfig {
            grid_dim: (grid, 1, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: every kernel takes exactly these 64-bit arguments (checked
        // by the pipeline's tests against the same source), and the buffers
        // they address outlive the stream's work: the pipeline downloads
        // (and so waits) before dropping them.
        unsafe { launch.launch(config) }.map_err(driver)?;
        Ok(())
    }

    fn synchronize(&self) -> Result<(), GpuError> {
        self.stream.synchronize().map_err(driver)
    }

    fn download(&self, buffer: &CudaSlice<u8>, out: &mut [u8]) -> Result<(), GpuError> {
        let mut staging = self
            .staging
            .lock()
            .map_err(|_| GpuError::Driver("staging buffer poisoned".into()))?;
        let needed = buffer.len();
        if staging.as_ref().is_none_or(|s| s.len() < needed) {
            // Drop the old buffer before allocating a larger one. Flags 0:
            // cached, not write-combined, since the host reads it.
            *staging = None;
            let context = self.stream.context();
            // SAFETY: the memory is written by the copy below before it is read.
            let pinned =
                unsafe { context.alloc_pinned_with_flags::<u8>(needed.next_power_of_two(), 0) }
                    .map_err(driver)?;
            *staging = Some(pinned);
        }
        let pinned = staging
            .as_mut()
            .ok_or_else(|| GpuError::Driver("no staging buffer".into()))?;
        self.stream.memcpy_dtoh(buffer, pinned).map_err(driver)?;
        self.stream.synchronize().map_err(driver)?;
        let bytes = pinned.as_slice().map_err(driver)?;
        out.copy_from_slice(&bytes[..out.len()]);
        Ok(())
    }
}
