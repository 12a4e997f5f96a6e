//! Runs every sqllogictest file in `sql/slt/` against a steplake query
//! engine (over an empty store: the files bring their data as VALUES).

mod slt_support;

use std::sync::Arc;

use slt_support::{run_all, SltDb};
use steplake_query::QueryEngine;
use steplake_store::{Store, StoreOptions};

async fn one_process() -> Result<SltDb, steplake_query::QueryError> {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path(), StoreOptions::default()).expect("open store");
    Ok(SltDb::new(QueryEngine::new(Arc::new(store))?, dir))
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if !runtime.block_on(run_all(one_process, &[])).is_empty() {
        std::process::exit(1);
    }
}
