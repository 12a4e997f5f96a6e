//! The last (and first) value of each series is read from one row per
//! series per file, where the manifest's row counts place it, with the same
//! answers as reading every row: across flushes, a compacted file, buffered
//! rows, two runs, a series written twice and a series filter (issue 24).

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Float64Type, Int64Type};
use steplake_core::ScalarBatch;
use steplake_query::QueryEngine;
use steplake_store::{CompactionPolicy, RunSelector, Store, StoreOptions};

mod common;

/// (run, name) → step → value, the latest write of each step.
type Written = BTreeMap<(String, String), BTreeMap<i64, f64>>;

/// Writes to a store, remembering what it wrote.
struct Writer<'a> {
    store: &'a Store,
    sequence: u64,
    written: Written,
}

impl Writer<'_> {
    /// Writes `steps` of series `names` of `run` (`version` shifts the values).
    async fn write(
        &mut self,
        run: &str,
        names: &[&str],
        steps: std::ops::Range<i64>,
        version: f64,
    ) {
        let mut batch = ScalarBatch {
            names: names.iter().map(|n| n.to_string()).collect(),
            ..Default::default()
        };
        for step in steps {
            for (i, name) in names.iter().enumerate() {
                let value = (step * 3 + i as i64) as f64 + version;
                batch.name_index.push(i as u32);
                batch.steps.push(step);
                batch.values.push(value);
                batch.wall_times_us.push(1_000);
                self.written
                    .entry((run.to_string(), name.to_string()))
                    .or_default()
                    .insert(step, value);
            }
        }
        self.sequence += 1;
        self.store
            .write_scalars("w", self.sequence, run, batch)
            .await
            .expect("write");
    }
}

/// Rows of `sql` as text, sorted.
async fn rows(engine: &QueryEngine, sql: &str) -> Vec<String> {
    let (_, batches) = engine.sql_collect(sql).await.expect("query");
    let mut out = Vec::new();
    for batch in &batches {
        for i in 0..batch.num_rows() {
            let cells: Vec<String> = batch
                .columns()
                .iter()
                .map(|c| {
                    if c.is_null(i) {
                        "NULL".to_string()
                    } else if let Some(v) = c.as_primitive_opt::<Float64Type>() {
                        v.value(i).to_string()
                    } else if let Some(v) = c.as_primitive_opt::<Int64Type>() {
                        v.value(i).to_string()
                    } else {
                        arrow::util::display::array_value_to_string(c, i).expect("text")
                    }
                })
                .collect();
            out.push(cells.join(","));
        }
    }
    out.sort();
    out
}

/// The rows every file scan of `sql` produced, by `EXPLAIN ANALYZE`.
async fn rows_read_from_files(engine: &QueryEngine, sql: &str) -> usize {
    let (_, batches) = engine
        .sql_collect(&format!("EXPLAIN ANALYZE {sql}"))
        .await
        .expect("explain");
    let mut total = 0;
    for batch in &batches {
        let plans = batch.column(1).as_string::<i32>();
        for i in 0..batch.num_rows() {
            for line in plans.value(i).lines() {
                if !line.contains("DataSourceExec: file_groups") {
                    continue;
                }
                let count = line
                    .split("output_rows=")
                    .nth(1)
                    .and_then(|rest| rest.split([',', ']']).next())
                    .unwrap_or_else(|| panic!("no output_rows in {line}"));
                total += parse_count(count);
            }
        }
    }
    total
}

/// A metric count as `EXPLAIN ANALYZE` prints it ("12", "1.5 K").
fn parse_count(text: &str) -> usize {
    let text = text.trim();
    match text.strip_suffix(" K") {
        Some(k) => (k.parse::<f64>().expect("count") * 1000.0) as usize,
        None => text.parse().unwrap_or_else(|_| panic!("count {text}")),
    }
}

/// Per series: last value, largest step, first value, smallest step.
fn ends(written: &Written, keep: impl Fn(&str) -> bool) -> Vec<String> {
    let mut out: Vec<String> = written
        .iter()
        .filter(|((_, name), _)| keep(name))
        .map(|((run, name), steps)| {
            let (last_step, last) = steps.last_key_value().expect("steps");
            let (first_step, first) = steps.first_key_value().expect("steps");
            format!("{run},{name},{last},{last_step},{first},{first_step}")
        })
        .collect();
    out.sort();
    out
}

const ENDS: &str = "SELECT run_id, name, last_value(value ORDER BY step), max(step), \
                    first_value(value ORDER BY step), min(step) FROM scalars";

#[tokio::test]
async fn series_ends_come_from_one_row_per_series_per_file() {
    let options = StoreOptions {
        compaction: CompactionPolicy {
            min_files: 3,
            target_bytes: 1 << 30,
        },
        ..StoreOptions::default()
    };
    let (_dir, store) = common::store_with_run_and(options).await;
    common::add_run(&store, "q").await;
    let mut writer = Writer {
        store: &store,
        sequence: 0,
        written: Written::new(),
    };
    // Three flushes (compacted into one file), then one more file, then
    // buffered rows; series c starts late, d only in the buffer.
    for (steps, names) in [
        (0..400, &["a", "b"][..]),
        (400..500, &["a", "b", "c"][..]),
        (500..600, &["a", "c"][..]),
    ] {
        for run in ["r", "q"] {
            writer.write(run, names, steps.clone(), 0.0).await;
        }
        store.flush_and_compact().expect("flush");
    }
    writer.write("r", &["b", "c"], 600..700, 0.0).await;
    store.flush().expect("flush");
    writer.write("q", &["a", "d"], 700..710, 0.0).await;

    let engine = QueryEngine::new(store.clone()).expect("engine");
    let grouped = format!("{ENDS} GROUP BY run_id, name");
    assert_eq!(
        rows(&engine, &grouped).await,
        ends(&writer.written, |_| true)
    );
    // About two rows per series per file, not the 3,200 rows written to files.
    let read = rows_read_from_files(&engine, &grouped).await;
    assert!(read <= 2 * 4 * 2 * 3, "read {read} rows from files");

    // Grouped by name alone, across both runs: the latest step wins.
    let by_name = "SELECT name, last_value(value ORDER BY step), max(step) \
                   FROM scalars GROUP BY name";
    let mut want: BTreeMap<String, (i64, f64)> = BTreeMap::new();
    for ((_, name), steps) in &writer.written {
        let (step, value) = steps.last_key_value().expect("steps");
        let best = want.entry(name.clone()).or_insert((*step, *value));
        if *step > best.0 {
            *best = (*step, *value);
        }
    }
    let want: Vec<String> = want
        .iter()
        .map(|(name, (step, value))| format!("{name},{value},{step}"))
        .collect();
    assert_eq!(rows(&engine, by_name).await, want);

    // A filter on the series keeps whole series: still the ends only.
    let filtered = format!("{ENDS} WHERE name IN ('a', 'c') GROUP BY run_id, name");
    assert_eq!(
        rows(&engine, &filtered).await,
        ends(&writer.written, |n| n == "a" || n == "c")
    );
    assert!(rows_read_from_files(&engine, &filtered).await <= 2 * 2 * 2 * 3);

    // A filter on steps needs every row: the last value below step 450.
    let below = format!("{ENDS} WHERE step < 450 GROUP BY run_id, name");
    let mut early = writer.written.clone();
    for steps in early.values_mut() {
        steps.retain(|step, _| *step < 450);
    }
    early.retain(|_, steps| !steps.is_empty());
    assert_eq!(rows(&engine, &below).await, ends(&early, |_| true));

    // Series a of run r written again (steps 100..650 with new values): it
    // is read whole, from memory, and its latest writes win.
    writer.write("r", &["a"], 100..650, 0.5).await;
    store.flush().expect("flush");
    assert_eq!(
        rows(&engine, &grouped).await,
        ends(&writer.written, |_| true)
    );

    // Run q deleted: the files shared with run r are rewritten without its
    // rows, and their listed series (and row counts) without its series.
    store
        .delete_runs(RunSelector::Run("q".into()))
        .expect("delete");
    writer.written.retain(|(run, _), _| run != "q");
    assert_eq!(
        rows(&engine, &grouped).await,
        ends(&writer.written, |_| true)
    );
    assert!(rows_read_from_files(&engine, &grouped).await <= 2 * 4 * 4);
}
