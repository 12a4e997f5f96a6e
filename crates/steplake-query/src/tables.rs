//! Table providers for `scalars` and `tensors`, and for the catalog tables
//! `runs`, `events` and `conditions`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, OnceLock};

use arrow::array::{
    ArrayRef, AsArray, Float64Array, Int64Array, ListBuilder, RecordBatch, RecordBatchOptions,
    StringArray, StringBuilder, TimestampMicrosecondArray, UInt64Array,
};
use arrow::compute::{cast, interleave_record_batch};
use arrow::datatypes::{DataType, Int64Type, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::{collect, ExecutionPlan};
use datafusion::prelude::{col, lit, not};

use steplake_core::schema::{
    conditions_schema, events_schema, runs_schema, scalars_col, scalars_schema, tensors_schema,
    TIMESTAMP_TZ,
};
use steplake_core::{ConditionScope, ConditionSpec, Event, Predicted, RunInfo, TensorRecord};
use steplake_store::tensor_files::tensors_batch;
use steplake_store::{BufferedRows, FileRef, ScalarsSnapshot, ScalarsView, Store, TensorsView};

use crate::filters::series_filter;

/// A table of the store's catalog, read whole from the store at each scan:
/// `runs`, `events` or `conditions`.
pub struct CatalogTable {
    store: Arc<Store>,
    catalog: Catalog,
}

/// Which catalog a [`CatalogTable`] shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Catalog {
    /// `runs`: one row per run.
    Runs,
    /// `events`: one row per firing of a standing condition.
    Events,
    /// `conditions`: one row per standing condition.
    Conditions,
}

impl CatalogTable {
    /// The `catalog` table over `store`.
    pub fn new(store: Arc<Store>, catalog: Catalog) -> Self {
        CatalogTable { store, catalog }
    }

    /// Which catalog it shows.
    pub fn catalog(&self) -> Catalog {
        self.catalog
    }

    fn batch(&self) -> Result<RecordBatch> {
        match self.catalog {
            Catalog::Runs => runs_batch(&self.store.runs()),
            Catalog::Events => events_batch(&self.store.events(None, 0)),
            Catalog::Conditions => conditions_batch(&self.store.conditions()),
        }
    }
}

impl Catalog {
    /// The table's schema.
    pub fn schema(self) -> SchemaRef {
        match self {
            Catalog::Runs => runs_schema(),
            Catalog::Events => events_schema(),
            Catalog::Conditions => conditions_schema(),
        }
    }
}

impl fmt::Debug for CatalogTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CatalogTable({:?})", self.catalog)
    }
}

fn string_column<T>(rows: &[T], f: impl Fn(&T) -> &str) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(rows.iter().map(f)))
}

fn time_column<T>(rows: &[T], f: impl Fn(&T) -> Option<i64>) -> ArrayRef {
    Arc::new(
        TimestampMicrosecondArray::from(rows.iter().map(f).collect::<Vec<_>>())
            .with_timezone(TIMESTAMP_TZ),
    )
}

fn predicted_column(events: &[Event], f: impl Fn(&Predicted) -> f64) -> ArrayRef {
    Arc::new(Float64Array::from(
        events
            .iter()
            .map(|e| e.predicted.as_ref().map(&f))
            .collect::<Vec<_>>(),
    ))
}

/// The events as a batch of the `events` schema.
pub fn events_batch(events: &[Event]) -> Result<RecordBatch> {
    let columns: Vec<ArrayRef> = vec![
        string_column(events, |e| &e.id),
        Arc::new(UInt64Array::from_iter_values(events.iter().map(|e| e.seq))),
        string_column(events, |e| &e.run_id),
        string_column(events, |e| &e.condition_id),
        string_column(events, |e| &e.label),
        string_column(events, |e| &e.series),
        Arc::new(Int64Array::from_iter_values(events.iter().map(|e| e.step))),
        Arc::new(Float64Array::from_iter_values(
            events.iter().map(|e| e.value),
        )),
        time_column(events, |e| Some(e.time_us)),
        time_column(events, |e| Some(e.detected_at_us)),
        predicted_column(events, |p| p.value),
        predicted_column(events, |p| p.lo),
        predicted_column(events, |p| p.hi),
    ];
    Ok(RecordBatch::try_new(events_schema(), columns)?)
}

/// The conditions as a batch of the `conditions` schema.
pub fn conditions_batch(conditions: &[ConditionSpec]) -> Result<RecordBatch> {
    let scope = |c: &ConditionSpec, run: bool| match (&c.scope, run) {
        (ConditionScope::Run(id), true) | (ConditionScope::Project(id), false) => Some(id.clone()),
        _ => None,
    };
    let columns: Vec<ArrayRef> = vec![
        string_column(conditions, |c| &c.id),
        Arc::new(StringArray::from(
            conditions
                .iter()
                .map(|c| scope(c, true))
                .collect::<Vec<_>>(),
        )),
        Arc::new(StringArray::from(
            conditions
                .iter()
                .map(|c| scope(c, false))
                .collect::<Vec<_>>(),
        )),
        string_column(conditions, |c| &c.series),
        string_column(conditions, |c| &c.predicate),
        Arc::new(UInt64Array::from_iter_values(
            conditions.iter().map(|c| c.hold),
        )),
        string_column(conditions, |c| &c.label),
        time_column(conditions, |c| Some(c.created_at_us)),
    ];
    Ok(RecordBatch::try_new(conditions_schema(), columns)?)
}

/// The runs as a batch of the `runs` schema.
pub fn runs_batch(runs: &[RunInfo]) -> Result<RecordBatch> {
    let strings = |f: fn(&RunInfo) -> &str| string_column(runs, f);
    let times = |f: fn(&RunInfo) -> Option<i64>| time_column(runs, f);
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
impl TableProvider for CatalogTable {
    fn schema(&self) -> SchemaRef {
        self.catalog.schema()
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
        let batch = self.batch()?;
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            self.catalog.schema(),
            projection.cloned(),
        )?)
    }
}

/// The schema of the `scalars` table as queries see it: the store's
/// [`scalars_schema`] with `run_id` and `name` read as `Utf8View`. A view
/// of a short string holds it inline, so the Parquet reader turns the
/// files' dictionary pages into views instead of copying every name into
/// every row, and grouping by a series compares 16-byte views. Results
/// still leave the engine as `Utf8` (see `QueryEngine`).
pub fn scalars_table_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(crate::retyped(&scalars_schema(), |t| {
                (*t == DataType::Utf8).then_some(DataType::Utf8View)
            }))
        })
        .clone()
}

/// `batch`, rows of the store's [`scalars_schema`] (any projection of it),
/// with the types of the table's [`scalars_table_schema`]: the strings as
/// views of the same bytes.
fn as_table_batch(batch: &RecordBatch) -> Result<RecordBatch> {
    let table = scalars_table_schema();
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut columns = Vec::with_capacity(batch.num_columns());
    for (column, field) in batch.columns().iter().zip(batch.schema().fields()) {
        let wanted = table.field_with_name(field.name())?.data_type();
        columns.push(cast(column, wanted)?);
        fields.push(field.as_ref().clone().with_data_type(wanted.clone()));
    }
    // The row count too: `count(*)` projects no column at all.
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(RecordBatch::try_new_with_options(
        Arc::new(Schema::new(fields)),
        columns,
        &options,
    )?)
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
        scalars_table_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(prunes_only(filters))
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let filter = series_filter(filters);
        // Everything this scan reads, taken under one lock in the store.
        let snapshot = self
            .store
            .scalars_snapshot(&filter, projection.map(Vec::as_slice));
        let files = snapshot.streaming.files.iter();
        let files = files.chain(snapshot.latest.iter().flat_map(|l| l.files.iter()));
        verify(&self.store, files.cloned().collect()).await?;
        let mut inputs = self
            .streaming_scan(state, projection, filters, limit, &snapshot)
            .await?;
        if let Some(latest) = snapshot.latest {
            inputs.push(
                self.latest_write_scan(state, projection, filters, latest, &snapshot.rewritten)
                    .await?,
            );
        }
        if inputs.is_empty() {
            let schema = projected_scalars_schema(projection)?;
            inputs.push(MemorySourceConfig::try_new_exec(&[vec![]], schema, None)?);
        }
        UnionExec::try_new(inputs)
    }
}

impl ScalarsTable {
    /// Parquet files and buffered rows, streamed, for every series except the
    /// `rewritten` ones (which [`Self::latest_write_scan`] serves). No series
    /// here appears in two sources with overlapping steps, so no row can
    /// shadow another.
    async fn streaming_scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
        snapshot: &ScalarsSnapshot,
    ) -> Result<Vec<Arc<dyn ExecutionPlan>>> {
        let (view, rewritten) = (&snapshot.streaming, &snapshot.rewritten);
        let mut inputs = Vec::new();
        if rewritten.is_empty() {
            inputs.extend(
                files_scan(
                    state,
                    view,
                    &view.files,
                    scalars_table_schema(),
                    projection,
                    filters,
                    limit,
                )
                .await?,
            );
        } else if !view.files.is_empty() {
            inputs.push(files_scan_excluding(state, view, projection, filters, rewritten).await?);
        }
        let buffered: Vec<RecordBatch> = view
            .buffered
            .iter()
            .flat_map(|b| b.batches.iter())
            .map(as_table_batch)
            .collect::<Result<_>>()?;
        if !buffered.is_empty() {
            let schema = projected_scalars_schema(projection)?;
            inputs.push(MemorySourceConfig::try_new_exec(&[buffered], schema, None)?);
        }
        Ok(inputs)
    }

    /// The series written more than once across files and buffers: read their
    /// matching rows with each source's version, keep the latest write of each
    /// (run, name, step), and serve the result from memory.
    async fn latest_write_scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        view: ScalarsView,
        rewritten: &BTreeSet<(String, String)>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let mut sources: Vec<(u64, RecordBatch)> = Vec::new();
        for file in &view.files {
            // Read as the store wrote them, to merge with the buffer's rows.
            if let Some(plan) = files_scan(
                state,
                &view,
                std::slice::from_ref(file),
                scalars_schema(),
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
        let merged = as_table_batch(&keep_latest_writes(&sources, rewritten)?)?;
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

/// A scan of the view's files without the rows of `series`, projected to
/// `projection`. The series columns are read for the filter even when the
/// query does not ask for them.
async fn files_scan_excluding(
    state: &dyn Session,
    view: &ScalarsView,
    projection: Option<&Vec<usize>>,
    filters: &[Expr],
    series: &BTreeSet<(String, String)>,
) -> Result<Arc<dyn ExecutionPlan>> {
    let wanted: Vec<usize> = projection
        .cloned()
        .unwrap_or_else(|| (0..scalars_schema().fields().len()).collect());
    let mut scanned = wanted.clone();
    for column in [scalars_col::RUN_ID, scalars_col::NAME] {
        if !scanned.contains(&column) {
            scanned.push(column);
        }
    }
    let schema = scalars_table_schema();
    let plan = files_scan(
        state,
        view,
        &view.files,
        schema.clone(),
        Some(&scanned),
        filters,
        None,
    )
    .await?
    .ok_or_else(|| DataFusionError::Internal("no files to scan".into()))?;
    let is_rewritten = series
        .iter()
        .map(|(run, name)| {
            let text = |s: &str| lit(ScalarValue::Utf8View(Some(s.to_string())));
            col("run_id").eq(text(run)).and(col("name").eq(text(name)))
        })
        .reduce(Expr::or)
        .unwrap_or_else(|| lit(false));
    let df_schema = DFSchema::try_from(plan.schema().as_ref().clone())?;
    let predicate = state.create_physical_expr(not(is_rewritten), &df_schema)?;
    let filtered: Arc<dyn ExecutionPlan> = Arc::new(FilterExec::try_new(predicate, plan)?);
    let output = filtered.schema();
    let columns = wanted
        .iter()
        .map(|&c| {
            let name = schema.field(c).name().clone();
            let position = output.index_of(&name)?;
            Ok((
                Arc::new(Column::new(&name, position)) as Arc<dyn PhysicalExpr>,
                name,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Arc::new(ProjectionExec::try_new(columns, filtered)?))
}

fn projected_scalars_schema(projection: Option<&Vec<usize>>) -> Result<SchemaRef> {
    Ok(match projection {
        Some(p) => Arc::new(scalars_table_schema().project(p)?),
        None => scalars_table_schema(),
    })
}

/// Checks that `files` are whole and unchanged before a scan reads them
/// ([`Store::verify_files`]), on a blocking thread: a damaged file fails the
/// query with its name instead of giving wrong values.
async fn verify(store: &Arc<Store>, files: Vec<FileRef>) -> Result<()> {
    let files = store.unverified(&files);
    if files.is_empty() {
        return Ok(());
    }
    let store = store.clone();
    tokio::task::spawn_blocking(move || store.verify_files(&files))
        .await
        .map_err(|e| DataFusionError::External(Box::new(e)))?
        .map_err(|e| DataFusionError::External(Box::new(e)))
}

/// Filters prune files, pages and buffered series; DataFusion still applies them.
fn prunes_only(filters: &[&Expr]) -> Vec<TableProviderFilterPushDown> {
    vec![TableProviderFilterPushDown::Inexact; filters.len()]
}

/// A Parquet scan of the scalars `files` of `view`, read as `schema` (the
/// store's or the table's), None when there are none.
async fn files_scan(
    state: &dyn Session,
    view: &ScalarsView,
    files: &[FileRef],
    schema: SchemaRef,
    projection: Option<&Vec<usize>>,
    filters: &[Expr],
    limit: Option<usize>,
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let paths: Vec<String> = files.iter().map(|f| view.file_url(f)).collect();
    parquet_scan(state, &paths, schema, projection, filters, limit).await
}

/// A Parquet scan of `paths` (local paths or object-store URLs) read as
/// `schema` (None when there are none).
async fn parquet_scan(
    state: &dyn Session,
    paths: &[String],
    schema: SchemaRef,
    projection: Option<&Vec<usize>>,
    filters: &[Expr],
    limit: Option<usize>,
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    if paths.is_empty() {
        return Ok(None);
    }
    let urls = paths
        .iter()
        .map(ListingTableUrl::parse)
        .collect::<Result<Vec<_>>>()?;
    let format = ParquetFormat::new().with_options(state.default_table_options().parquet);
    let options = ListingOptions::new(Arc::new(format)).with_file_extension(".parquet");
    let config = ListingTableConfig::new_with_multi_paths(urls)
        .with_listing_options(options)
        .with_schema(schema);
    // The files' statistics (which prune them) are read once per file and
    // kept in the engine's runtime, shared by every query: data files never
    // change once written, and the cache checks each file's size and time.
    let statistics = state.runtime_env().cache_manager.get_file_statistic_cache();
    let table = ListingTable::try_new(config)?.with_cache(statistics);
    Ok(Some(table.scan(state, projection, filters, limit).await?))
}

/// The buffered tensors of `view` as one full-schema batch (None when none).
fn buffered_tensors(view: &TensorsView) -> Result<Option<RecordBatch>> {
    if view.buffered.is_empty() {
        return Ok(None);
    }
    let rows: Vec<(&str, &TensorRecord)> = view
        .buffered
        .iter()
        .map(|(run, t)| (run.as_ref(), t.as_ref()))
        .collect();
    tensors_batch(&rows)
        .map(Some)
        .map_err(|e| DataFusionError::External(Box::new(e)))
}

/// Some (run, name, step) is held more than once: read every matching row
/// (files by id, then the buffer, which is the order of writes), keep the last
/// row of each (run, name, step) and serve the result from memory.
async fn latest_tensors_scan(
    state: &dyn Session,
    view: &TensorsView,
    projection: Option<&Vec<usize>>,
    filters: &[Expr],
) -> Result<Arc<dyn ExecutionPlan>> {
    let mut batches = Vec::new();
    for file in &view.files {
        let path = [view.file_url(file)];
        if let Some(plan) =
            parquet_scan(state, &path, tensors_schema(), None, filters, None).await?
        {
            batches.extend(collect(plan, state.task_ctx()).await?);
        }
    }
    batches.extend(buffered_tensors(view)?);
    let all = arrow::compute::concat_batches(&tensors_schema(), &batches)?;
    let runs = all.column(0).as_string::<i32>();
    let names = all.column(1).as_string::<i32>();
    let steps = all.column(2).as_primitive::<Int64Type>();
    let mut last: BTreeMap<(&str, &str, i64), usize> = BTreeMap::new();
    for row in 0..all.num_rows() {
        last.insert((runs.value(row), names.value(row), steps.value(row)), row);
    }
    let indices = Int64Array::from_iter_values(last.into_values().map(|i| i as i64));
    let columns = all
        .columns()
        .iter()
        .map(|c| arrow::compute::take(c.as_ref(), &indices, None))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let latest = RecordBatch::try_new(tensors_schema(), columns)?;
    let latest = match projection {
        Some(p) => latest.project(p)?,
        None => latest,
    };
    let schema = latest.schema();
    Ok(MemorySourceConfig::try_new_exec(
        &[vec![latest]],
        schema,
        None,
    )?)
}

/// The `tensors` table: one row per tensor per step, from tensor files and
/// the buffer. Statistics always; the whole tensor in `tensor` (f32, bf16,
/// f16), `tensor_f64` or `tensor_int` when it was sent.
pub struct TensorsTable {
    store: Arc<Store>,
}

impl TensorsTable {
    /// The table over `store`.
    pub fn new(store: Arc<Store>) -> Self {
        TensorsTable { store }
    }
}

impl fmt::Debug for TensorsTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TensorsTable").finish_non_exhaustive()
    }
}

#[async_trait]
impl TableProvider for TensorsTable {
    fn schema(&self) -> SchemaRef {
        tensors_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(prunes_only(filters))
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let view = self.store.tensors_view(&series_filter(filters));
        verify(&self.store, view.files.clone()).await?;
        if view.repeated {
            return latest_tensors_scan(state, &view, projection, filters).await;
        }
        let paths: Vec<String> = view.files.iter().map(|f| view.file_url(f)).collect();
        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        if let Some(plan) =
            parquet_scan(state, &paths, tensors_schema(), projection, filters, limit).await?
        {
            inputs.push(plan);
        }
        let schema = match projection {
            Some(p) => Arc::new(tensors_schema().project(p)?),
            None => tensors_schema(),
        };
        let buffered = match buffered_tensors(&view)? {
            Some(batch) => vec![match projection {
                Some(p) => batch.project(p)?,
                None => batch,
            }],
            None => vec![],
        };
        if !buffered.is_empty() || inputs.is_empty() {
            inputs.push(MemorySourceConfig::try_new_exec(&[buffered], schema, None)?);
        }
        UnionExec::try_new(inputs)
    }
}

/// Merges full-schema batches from versioned sources, keeping only rows of
/// `rewritten` series and, of those, the highest version of each step. The
/// result is sorted by (run, name, step).
fn keep_latest_writes(
    sources: &[(u64, RecordBatch)],
    rewritten: &BTreeSet<(String, String)>,
) -> Result<RecordBatch> {
    // (run, name, step) → (version, source, row); the BTreeMap keeps the output sorted.
    let mut latest: BTreeMap<(&str, &str, i64), (u64, usize, usize)> = BTreeMap::new();
    for (source, (version, batch)) in sources.iter().enumerate() {
        let run = batch.column(scalars_col::RUN_ID).as_string::<i32>();
        let name = batch.column(scalars_col::NAME).as_string::<i32>();
        let step = batch.column(scalars_col::STEP).as_primitive::<Int64Type>();
        for row in 0..batch.num_rows() {
            let (r, n) = (run.value(row), name.value(row));
            if !rewritten.contains(&(r.to_string(), n.to_string())) {
                continue;
            }
            let entry = latest
                .entry((r, n, step.value(row)))
                .or_insert((*version, source, row));
            if *version >= entry.0 {
                *entry = (*version, source, row);
            }
        }
    }
    if latest.is_empty() {
        return Ok(RecordBatch::new_empty(scalars_schema()));
    }
    let indices: Vec<(usize, usize)> = latest.values().map(|&(_, s, r)| (s, r)).collect();
    let batches: Vec<&RecordBatch> = sources.iter().map(|(_, b)| b).collect();
    Ok(interleave_record_batch(&batches, &indices)?)
}
