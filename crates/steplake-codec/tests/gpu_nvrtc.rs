//! The kernels compile with NVRTC for the GPUs we run on. Needs only the
//! NVRTC library, no driver and no GPU: `scripts/test.sh` installs it from
//! PyPI (`nvidia-cuda-nvrtc`, CUDA 13.0) and puts it on LD_LIBRARY_PATH.
//! Skipped, with a message, where NVRTC is not found.

use steplake_codec::gpu::{compile_kernels, nvrtc_library_present, Kernel};

#[test]
fn kernels_compile_for_hopper_and_ampere() {
    if !nvrtc_library_present() {
        eprintln!("skipped: NVRTC (libnvrtc.so.13) not found on LD_LIBRARY_PATH");
        return;
    }
    for arch in ["sm_90", "sm_80"] {
        let ptx = compile_kernels(arch).unwrap_or_else(|e| panic!("{arch}: {e}"));
        let text = ptx.to_src();
        for kernel in Kernel::ALL {
            assert!(
                text.contains(&format!(".entry {}(", kernel.name())),
                "{arch}: no entry point {} in the PTX",
                kernel.name()
            );
        }
    }
}
