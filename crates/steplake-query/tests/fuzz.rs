//! Fuzz target for SQL text (steplake-fuzz): mutations of every statement
//! in sql/slt/ and of queries over steplake's tables, spliced with SQL
//! tokens, are planned and run (at most a few thousand rows read, a short
//! time limit). Each must answer rows or an error: never a panic, a stack
//! overflow, a hang or a huge allocation. `STEPLAKE_FUZZ_ITERS` runs longer.

mod common;

use std::time::Duration;

use futures::StreamExt;
use steplake_core::ScalarBatch;
use steplake_query::{QueryEngine, QueryOptions};

#[global_allocator]
static ALLOCATOR: steplake_fuzz::CappedAllocator = steplake_fuzz::CappedAllocator;

/// The statements of the .slt spec files.
fn slt_statements() -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sql/slt");
    let mut statements = Vec::new();
    for entry in std::fs::read_dir(dir).expect("sql/slt") {
        let text = std::fs::read_to_string(entry.expect("entry").path()).expect("read");
        let mut current: Option<String> = None;
        for line in text.lines() {
            if line.starts_with("query") || line.starts_with("statement") {
                current = Some(String::new());
            } else if line == "----" || line.trim().is_empty() {
                if let Some(sql) = current.take().filter(|s| !s.is_empty()) {
                    statements.push(sql.into_bytes());
                }
            } else if let Some(sql) = current.as_mut() {
                sql.push_str(line);
                sql.push('\n');
            }
        }
        if let Some(sql) = current.take().filter(|s| !s.is_empty()) {
            statements.push(sql.into_bytes());
        }
    }
    statements
}

#[test]
fn fuzz_sql_text() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (_dir, store) = runtime.block_on(async {
        let (dir, store) = common::store_with_run().await;
        let n = 2_000;
        let batch = ScalarBatch {
            names: vec!["loss".into(), "acc".into()],
            name_index: (0..n).map(|i| (i % 2) as u32).collect(),
            steps: (0..n as i64).map(|i| i / 2).collect(),
            values: (0..n).map(|i| 1.0 / (i as f64 + 1.0)).collect(),
            wall_times_us: vec![1_000; n],
        };
        store
            .write_scalars("w", 1, "r", batch)
            .await
            .expect("write");
        (dir, store)
    });
    let engine = QueryEngine::with_options(
        store.clone(),
        QueryOptions {
            memory_bytes: 256 << 20,
            timeout: Some(Duration::from_secs(3)),
            ..QueryOptions::default()
        },
    )
    .expect("engine");
    let mut seeds = slt_statements();
    seeds.extend(
        [
            "SELECT run_id, name, step, value FROM scalars WHERE step BETWEEN 10 AND 20 ORDER BY step",
            "SELECT name, count(*), avg(value) FROM scalars GROUP BY name",
            "SELECT step, avg(value) OVER (ORDER BY step ROWS BETWEEN 5 PRECEDING AND CURRENT ROW) FROM scalars WHERE name = 'loss'",
            "SELECT * FROM runs",
            "SELECT name, step FROM tensors",
        ]
        .map(|s| s.as_bytes().to_vec()),
    );
    assert!(seeds.len() > 20, "found only {} statements", seeds.len());
    let dictionary: &[&[u8]] = &[
        b" SELECT ",
        b" FROM ",
        b" WHERE ",
        b" GROUP BY ",
        b" ORDER BY ",
        b" JOIN ",
        b" UNION ALL ",
        b" OVER (",
        b")",
        b"(",
        b",",
        b"'",
        b"\"",
        b" NULL ",
        b" -9223372036854775808 ",
        b" 1e308 ",
        b" 'NaN'::double ",
        b" CAST(",
        b" AS ",
        b" ::bigint ",
        b" CASE WHEN ",
        b" END ",
        b" generate_series(",
        b" unnest(",
        b" [",
        b"]",
        b" scalars ",
        b" tensors ",
        b" spikes(",
        b" first_sustained(",
        b" $1 ",
        b";",
        b" LIMIT ",
        b"+1+1+1+1+1+1+1+1",
    ];
    steplake_fuzz::fuzz("sql text", &seeds, dictionary, 400, |input| {
        let sql = String::from_utf8_lossy(input).into_owned();
        runtime.block_on(async {
            let Ok((_, mut stream)) = engine.sql(&sql).await else {
                return;
            };
            let mut rows = 0;
            while let Some(Ok(batch)) = stream.next().await {
                rows += batch.num_rows();
                if rows > 20_000 {
                    break;
                }
            }
        });
    });
}
