//! Helpers shared by the query crate's integration tests.

use std::sync::Arc;

use steplake_store::{CreateRun, Store, StoreOptions};

/// A store in a temporary directory with run `r`.
#[allow(
    dead_code,
    reason = "each test binary compiles these helpers; not all use every one"
)]
pub(crate) async fn store_with_run() -> (tempfile::TempDir, Arc<Store>) {
    store_with_run_and(StoreOptions::default()).await
}

/// A store opened with `options` in a temporary directory, with run `r`.
pub(crate) async fn store_with_run_and(options: StoreOptions) -> (tempfile::TempDir, Arc<Store>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(Store::open(dir.path(), options).expect("open"));
    store
        .create_run(CreateRun {
            run_id: Some("r".into()),
            ..Default::default()
        })
        .await
        .expect("run");
    (dir, store)
}

/// Creates run `run` in `store`.
#[allow(
    dead_code,
    reason = "each test binary compiles these helpers; not all use every one"
)]
pub(crate) async fn add_run(store: &Store, run: &str) {
    store
        .create_run(CreateRun {
            run_id: Some(run.into()),
            ..Default::default()
        })
        .await
        .expect("run");
}
