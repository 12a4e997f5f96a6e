//! Builds the dashboard page from `web/` (npm ci, then esbuild bundles uPlot
//! and our modules) into OUT_DIR/web/dist, which src/assets.rs embeds.
//!
//! Without Node.js and npm the binary still builds: the page then says how
//! to get the dashboard (install Node.js 18+ and rebuild), and cargo prints
//! a warning.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let web = manifest.join("../../web");
    for path in [
        "package.json",
        "package-lock.json",
        "build.mjs",
        "index.html",
        "src",
    ] {
        println!("cargo:rerun-if-changed={}", web.join(path).display());
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it")).join("web");
    let dist = out.join("dist");
    fs::create_dir_all(&dist).expect("create OUT_DIR/web/dist");
    if let Err(reason) = build(&web, &out) {
        println!("cargo:warning=dashboard not built: {reason}");
        placeholder(&dist, &reason);
    }
}

fn build(web: &Path, out: &Path) -> Result<(), String> {
    for file in [
        "package.json",
        "package-lock.json",
        "build.mjs",
        "index.html",
    ] {
        fs::copy(web.join(file), out.join(file)).map_err(|e| format!("copy web/{file}: {e}"))?;
    }
    copy_dir(&web.join("src"), &out.join("src")).map_err(|e| format!("copy web/src: {e}"))?;
    let installed = out.join("node_modules/.package-lock.json");
    let lock_changed = fs::read(out.join("package-lock.json")).ok()
        != fs::read(out.join("node_modules/.steplake-lock")).ok();
    if !installed.exists() || lock_changed {
        run(
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(out),
            "npm ci (install Node.js 18+ and npm to build the dashboard)",
        )?;
        let _ = fs::copy(
            out.join("package-lock.json"),
            out.join("node_modules/.steplake-lock"),
        );
    }
    run(
        Command::new("node").arg("build.mjs").current_dir(out),
        "node build.mjs",
    )
}

fn run(command: &mut Command, what: &str) -> Result<(), String> {
    match command.status() {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(format!("{what} failed: {status}")),
        Err(e) => Err(format!("{what} could not start: {e}")),
    }
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

fn placeholder(dist: &Path, reason: &str) {
    let page = format!(
        "<!doctype html><meta charset=utf-8><title>steplake</title>\
         <p>The steplake dashboard was not built into this binary: {}.\
         <p>Install Node.js 18+ with npm and rebuild (<code>cargo build --release</code>).\
         The JSON API under <code>/api</code> and <code>/metrics</code> work without it.",
        reason.replace('<', "&lt;")
    );
    let _ = fs::write(dist.join("index.html"), page);
    let _ = fs::write(dist.join("app.js"), "");
    let _ = fs::write(dist.join("app.css"), "");
}
