//! Table providers for `runs` and `scalars`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, AsArray, Int64Array, ListBuilder, RecordBatch, StringArray, StringBuilder,
    TimestampMicrosecondArray,
};
use arrow::compute::interleave_record_batch;
use arrow::datatypes::{Int64Type, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::{collect, ExecutionPlan};

use steplake_core::schema::{runs_schema, scalars_col, scalars_schema, TIMESTAMP_TZ};
use steplake_core::RunInfo;
use steplake_store::{BufferedRows, FileRef, ScalarsView, SeriesFilter, Store};

use crate::filters::series_filter;

/// The `runs` table: one row per run, read from the store at each scan.
pub struct RunsTable {
    store: Arc<Store>,
}

impl RunsTable {
    /// A `runs` table over `store`.
    pub fn new(store: Arc<Store>) -> Self {
        RunsTable { store }
    }
}

impl fmt::Debug for RunsTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RunsTable")
    }
}

/// The runs as a batch of the `runs` schema.
pub fn runs_batch(runs: &[RunInfo]) -> Result<RecordBatch> {
    let strings = |f: fn(&RunInfo) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(runs.iter().map(f)))
    };
    let times = |f: fn(&RunInfo) -> Option<i64>| -> ArrayRef {
        Arc::new(
            TimestampMicrosecondArray::from(runs.iter().map(f).collect::<Vec<_>>())
                .with_timezone(TIMESTAMP_TZ),
        )
    };
    let mut tags = ListBuilder::new(StringBuilder::new());
    for run in runs {
        for tag in &run.tags {
            tags.values().append_value(tag);
        }
        tags.append(true);
    }
    let columns: Vec<ArrayRef> = vec![
        strings(|r| &r.run_id),
        strings(|r| &r.project),
        strings(|r| &r.name),
        times(|r| Some(r.created_at_us)),
        times(|r| r.ended_at_us),
        strings(|r| &r.status),
        strings(|r| &r.config_json),
        Arc::new(tags.finish()),
        Arc::new(StringArray::from(
            runs.iter()
                .map(|r| r.parent_run_id.clone())
                .collect::<Vec<_>>(),
        )),
        Arc::new(Int64Array::from(
            runs.iter().map(|r| r.fork_step).collect::<Vec<_>>(),
        )),
    ];
    Ok(RecordBatch::try_new(runs_schema(), columns)?)
}

#[async_trait]
impl TableProvider for RunsTable {
    fn schema(&self) -> SchemaRef {
        runs_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let batch = runs_batch(&self.store.runs())?;
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            runs_schema(),
            projection.cloned(),
        )?)
    }
}

/// The `scalars` table: Parquet files ∪ in-memory buffer, latest write wins.
pub struct ScalarsTable {
    store: Arc<Store>,
}

impl ScalarsTable {
    /// A `scalars` table over `store`.
    pub fn new(store: Arc<Store>) -> Self {
        ScalarsTable { store }
    }
}

impl fmt::Debug for ScalarsTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ScalarsTable")
    }
}

#[async_trait]
impl TableProvider for ScalarsTable {
    fn schema(&self) -> SchemaRef {
        scalars_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Filters prune files, pages and buffered series; DataFusion still applies them.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let filter = series_filter(filters);
        let rewritten = self.store.rewritten_series(&filter);
        if !rewritten.is_empty() {
            return self
                .scan_with_latest_write(state, projection, filters, &filter, &rewritten)
                .await;
        }
        let view = self
            .store
            .scalars_view(&filter, projection.map(Vec::as_slice));
        let mut inputs = Vec::new();
        if let Some(files) =
            files_scan(state, &view, &view.files, projection, filters, limit).await?
        {
            inputs.push(files);
        }
        let schema = projected_scalars_schema(projection)?;
        let buffered: Vec<RecordBatch> =
            view.buffered.into_iter().flat_map(|b| b.batches).collect();
        if !buffered.is_empty() || inputs.is_empty() {
            inputs.push(MemorySourceConfig::try_new_exec(&[buffered], schema, None)?);
        }
        UnionExec::try_new(inputs)
    }
}

impl ScalarsTable {
    /// The slow path for series written more than once across files and
    /// buffers: read every matching row with its source version, keep the
    /// latest write of each (run, name, step), and serve the result from memory.
    async fn scan_with_latest_write(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        filter: &SeriesFilter,
        rewritten: &BTreeSet<(String, String)>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let view = self.store.scalars_view(filter, None);
        let mut sources: Vec<(u64, RecordBatch)> = Vec::new();
        for file in &view.files {
            if let Some(plan) = files_scan(
                state,
                &view,
                std::slice::from_ref(file),
                None,
                filters,
                None,
            )
            .await?
            {
                let batches = collect(plan, state.task_ctx()).await?;
                sources.extend(batches.into_iter().map(|b| (file.id, b)));
            }
        }
        for BufferedRows { version, batches } in view.buffered {
            sources.extend(batches.into_iter().map(|b| (version, b)));
        }
        let merged = keep_latest_writes(&sources, rewritten)?;
        let projected = match projection {
            Some(p) => merged.project(p)?,
            None => merged,
        };
        let schema = projected.schema();
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![projected]],
            schema,
            None,
        )?)
    }
}

fn projected_scalars_schema(projection: Option<&Vec<usize>>) -> Result<SchemaRef> {
    Ok(match projection {
        Some(p) => Arc::new(scalars_schema().project(p)?),
        None => scalars_schema(),
    })
}

/// A Parquet scan of `files` (None when there are none).
async fn files_scan(
    state: &dyn Session,
    view: &ScalarsView,
    files: &[FileRef],
    projection: Option<&Vec<usize>>,
    filters: &[Expr],
    limit: Option<usize>,
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    if files.is_empty() {
        return Ok(None);
    }
    let urls = files
        .iter()
        .map(|f| {
            let path = view.file_path(f);
            ListingTableUrl::parse(path.to_str().ok_or_else(|| {
                DataFusionError::Execution(format!(
                    "data file path {} is not UTF-8",
                    path.display()
                ))
            })?)
        })
        .collect::<Result<Vec<_>>>()?;
    let format = ParquetFormat::new().with_options(state.default_table_options().parquet);
    let options = ListingOptions::new(Arc::new(format)).with_file_extension(".parquet");
    let config = ListingTableConfig::new_with_multi_paths(urls)
        .with_listing_options(options)
        .with_schema(scalars_schema());
    let table = ListingTable::try_new(config)?;
    Ok(Some(table.scan(state, projection, filters, limit).await?))
}

/// Merges full-schema batches from versioned sources: rows of `rewritten`
/// series keep only the highest version per step; the result is sorted by
/// (run, name, step).
fn keep_latest_writes(
    sources: &[(u64, RecordBatch)],
    rewritten: &BTreeSet<(String, String)>,
) -> Result<RecordBatch> {
    // (run, name, step, version) → (source, row); BTreeMap keeps the output sorted.
    let mut latest: BTreeMap<(&str, &str, i64), (u64, usize, usize)> = Default::default();
    let mut plain: Vec<((&str, &str, i64), usize, usize)> = Vec::new();
    for (source, (version, batch)) in sources.iter().enumerate() {
        let run = batch.column(scalars_col::RUN_ID).as_string::<i32>();
        let name = batch.column(scalars_col::NAME).as_string::<i32>();
        let step = batch.column(scalars_col::STEP).as_primitive::<Int64Type>();
        for row in 0..batch.num_rows() {
            let key = (run.value(row), name.value(row), step.value(row));
            if rewritten.contains(&(key.0.to_string(), key.1.to_string())) {
                let entry = latest.entry(key).or_insert((*version, source, row));
                if *version >= entry.0 {
                    *entry = (*version, source, row);
                }
            } else {
                plain.push((key, source, row));
            }
        }
    }
    let mut rows: Vec<((&str, &str, i64), usize, usize)> =
        latest.into_iter().map(|(k, (_, s, r))| (k, s, r)).collect();
    rows.extend(plain);
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    let indices: Vec<(usize, usize)> = rows.iter().map(|&(_, s, r)| (s, r)).collect();
    let batches: Vec<&RecordBatch> = sources.iter().map(|(_, b)| b).collect();
    if batches.is_empty() {
        return Ok(RecordBatch::new_empty(scalars_schema()));
    }
    Ok(interleave_record_batch(&batches, &indices)?)
}
