//! The Python a benchmark compares against: `STEPLAKE_PYTHON`, else the
//! virtual environment `./scripts/test.sh` makes (with DuckDB, ruptures and
//! the rest of the test requirements), else `python3`.

/// The Python interpreter to run comparison scripts with.
pub(crate) fn python() -> String {
    std::env::var("STEPLAKE_PYTHON").unwrap_or_else(|_| {
        let venv = format!(
            "{}/.cache/steplake/venv/bin/python",
            std::env::var("HOME").unwrap_or_default()
        );
        if std::path::Path::new(&venv).exists() {
            venv
        } else {
            "python3".into()
        }
    })
}

/// The `steplake-cli` package's directory (benches live two levels up).
/// Cargo sets it when it runs the target, so it stays right when one target
/// directory serves checkouts at several paths (the compile-time value is
/// only the fallback).
#[allow(
    dead_code,
    reason = "each bench compiles these helpers; not all use every one"
)]
pub(crate) fn manifest_dir() -> String {
    std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string())
}
