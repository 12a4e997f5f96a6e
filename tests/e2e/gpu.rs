//! `steplake serve --gpu`: on a machine without CUDA, `auto` serves with the
//! CPU codec and says so, `on` refuses to start with a message that says
//! what to do, and a bad mode or memory size is a usage error.

use std::process::Command;

use crate::harness::{binary, TestServer};

fn cuda_driver_present() -> bool {
    steplake_codec::gpu::driver_library_present()
}

#[test]
fn gpu_auto_serves_with_the_cpu_codec_when_there_is_no_gpu() {
    if cuda_driver_present() {
        eprintln!("skipped: this machine has a CUDA driver");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &["--gpu", "auto"]);
    // One short word on a machine without a GPU, not a call to install a driver.
    assert!(
        server.banner().contains("tensor codec: cpu (no GPU found)"),
        "{}",
        server.banner()
    );
    assert!(!server.banner().contains("install"), "{}", server.banner());
    server.stop();
}

#[test]
fn gpu_on_without_a_gpu_fails_at_start_with_a_clear_message() {
    if cuda_driver_present() {
        eprintln!("skipped: this machine has a CUDA driver");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let output = Command::new(binary())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--gpu",
            "on",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .expect("run steplake serve");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--gpu on"), "{stderr}");
    assert!(stderr.contains("CUDA driver library"), "{stderr}");
    assert!(stderr.contains("--gpu off"), "{stderr}");
    assert!(output.stdout.is_empty(), "it must not start listening");
}

#[test]
fn bad_gpu_flags_are_usage_errors() {
    for flags in [["--gpu", "maybe"], ["--gpu-memory", "lots"]] {
        let output = Command::new(binary())
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(flags)
            .output()
            .expect("run steplake serve");
        assert_eq!(output.status.code(), Some(2), "{flags:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(flags[0]), "{stderr}");
    }
}
