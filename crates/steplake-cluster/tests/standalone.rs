//! steplake's SQL through Ballista's standalone (in-process) cluster gives
//! the answers of one process: tables shipped by the codec, functions
//! decoded on the executor.

#[path = "../../steplake-query/tests/slt_support/mod.rs"]
mod slt_support;

use std::sync::Arc;

use ballista::prelude::{SessionConfigExt, SessionContextExt};
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::prelude::SessionContext;
use steplake_cluster::client::{cluster_config, register_steplake};
use steplake_cluster::{functions, TableCodec};
use steplake_core::ScalarBatch;
use steplake_query::{QueryEngine, QueryError, QueryOptions};
use steplake_store::{CreateRun, Store, StoreOptions};

/// Two runs of a loss with a spike at step 120 and an accuracy that
/// crosses 0.9 at step 150, flushed to Parquet.
async fn store_with_runs(dir: &std::path::Path) -> Arc<Store> {
    let store = Arc::new(Store::open(dir, StoreOptions::default()).expect("open"));
    for (i, run) in ["a", "b"].into_iter().enumerate() {
        store
            .create_run(CreateRun {
                run_id: Some(run.into()),
                ..Default::default()
            })
            .await
            .expect("create run");
        let mut batch = ScalarBatch {
            names: vec!["loss".into(), "acc".into()],
            ..Default::default()
        };
        for step in 0..300i64 {
            let spike = if step == 120 + i as i64 { 3.0 } else { 1.0 };
            let loss = spike * (2.0 / (1.0 + step as f64 * 0.01));
            let acc = (step as f64 / 166.0).min(1.0);
            for (name, value) in [(0u32, loss), (1, acc)] {
                batch.name_index.push(name);
                batch.steps.push(step);
                batch.values.push(value);
                batch.wall_times_us.push(1_700_000_000_000_000 + step);
            }
        }
        store
            .write_scalars("w", i as u64 + 1, run, batch)
            .await
            .expect("write");
    }
    store.flush().expect("flush");
    store
}

const QUERIES: [&str; 6] = [
    "SELECT run_id, name, count(*) AS n, round(sum(value), 6) AS total FROM scalars GROUP BY run_id, name ORDER BY run_id, name",
    "SELECT run_id, step FROM (SELECT run_id, step, is_spike(value) OVER (PARTITION BY run_id, name ORDER BY step) AS spike FROM scalars WHERE name = 'loss') WHERE spike ORDER BY run_id, step",
    "SELECT run_id, first_sustained(step, value > 0.9, 3) AS emerged FROM scalars WHERE name = 'acc' GROUP BY run_id ORDER BY run_id",
    "SELECT r.run_id, count(*) AS n FROM runs r JOIN scalars s ON r.run_id = s.run_id WHERE s.step >= 100 GROUP BY r.run_id ORDER BY r.run_id",
    // A sort over a union whose branches each hold one `k`: Ballista's
    // split of it into per-branch sorts never finished (see cluster_config).
    "SELECT step, k FROM (SELECT step, 1 AS k FROM scalars WHERE name = 'loss' AND step < 3 UNION ALL SELECT step, 0 AS k FROM scalars WHERE name = 'acc' AND step < 3) ORDER BY step, k",
    // IGNORE NULLS in window functions: DataFusion's physical codec drops
    // it, and the executors answered with NULLs until the function carried
    // it in its name (src/ignore_nulls.rs). first_value over a frame that
    // ends the partition is planned reversed, as last_value.
    "SELECT run_id, step, \
       last_value(v) IGNORE NULLS OVER (PARTITION BY run_id ORDER BY step) AS lv, \
       first_value(v) IGNORE NULLS OVER (PARTITION BY run_id ORDER BY step ROWS BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING) AS fv, \
       lag(v) IGNORE NULLS OVER (PARTITION BY run_id ORDER BY step) AS lagged, \
       lead(v) IGNORE NULLS OVER (PARTITION BY run_id ORDER BY step) AS led, \
       nth_value(v, 2) IGNORE NULLS OVER (PARTITION BY run_id ORDER BY step) AS second \
     FROM (SELECT run_id, step, CASE WHEN step % 3 = 0 THEN value END AS v FROM scalars WHERE name = 'acc' AND step < 8) \
     ORDER BY run_id, step",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_cluster_answers_as_one_process() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_with_runs(dir.path()).await;
    let engine = QueryEngine::new(store.clone()).expect("engine");

    let config = cluster_config()
        .with_ballista_logical_extension_codec(Arc::new(TableCodec::over(store.clone())));
    let cluster = SessionContext::standalone_with_state(functions::session_state(config))
        .await
        .expect("standalone cluster");
    register_steplake(&cluster).expect("tables");

    for sql in QUERIES {
        let (_, local) = engine.sql_collect(sql).await.expect(sql);
        let frame = cluster
            .sql(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let remote = tokio::time::timeout(std::time::Duration::from_secs(60), frame.collect())
            .await
            .unwrap_or_else(|_| panic!("{sql}: no answer within 60 s"))
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let (local, remote) = (
            pretty_format_batches(&local).expect("format").to_string(),
            pretty_format_batches(&remote).expect("format").to_string(),
        );
        assert!(
            local.lines().count() > 4,
            "{sql} answered nothing:\n{local}"
        );
        assert_eq!(local, remote, "{sql}");
    }
}

/// A standalone cluster (scheduler and executor in this process) over an
/// empty store, as the slt runner's engine.
async fn standalone_engine() -> Result<slt_support::SltDb, QueryError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(dir.path(), StoreOptions::default()).expect("open"));
    let config = cluster_config()
        .with_ballista_logical_extension_codec(Arc::new(TableCodec::over(store.clone())));
    let cluster = SessionContext::standalone_with_state(functions::session_state(config))
        .await
        .map_err(QueryError::Execution)?;
    register_steplake(&cluster).map_err(QueryError::Execution)?;
    // A statement of the spec takes well under a second: one that hangs on
    // the cluster fails its file instead of holding the suite.
    let options = QueryOptions {
        timeout: Some(std::time::Duration::from_secs(30)),
        ..QueryOptions::default()
    };
    let engine = steplake_cluster::cluster_engine(cluster, options)?;
    Ok(slt_support::SltDb::new(engine, (dir, store)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_slt_spec_passes_on_a_standalone_cluster() {
    let failures = slt_support::run_all(standalone_engine, &["cluster"]).await;
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
