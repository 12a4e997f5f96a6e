//! The last (or first) value of each series read from one row per series
//! per file: [`ReadSeriesEnds`].
//!
//! `SELECT name, last_value(value ORDER BY step) FROM scalars GROUP BY
//! name` asks for one row of each series, the one with its largest step.
//! DataFusion reads every row and compares each one's step with the best so
//! far. But the store knows where that row is: every file's rows are sorted
//! by (run_id, name, step), and the manifest lists each file's series in
//! that order with their row counts, so a series' last row in a file is at
//! the running total of those counts, less one:
//!
//! ```text
//! file rows:  | r/a: 0 .. 99 | r/b: 0 .. 49 | r/c: 0 .. 199 |
//! manifest:     a 100 rows     b 50 rows      c 200 rows
//! selected:              ^99            ^149            ^349
//! ```
//!
//! This rule gives each file's scan that row selection, so Parquet decodes
//! only the pages holding those rows; the aggregate above is unchanged and
//! still picks, among the rows of every file and of the buffer, the one
//! with the largest step. That is the same answer, because a series' row
//! with its largest step is the last of that series in whichever file
//! holds it (files and the buffer never hold the same step of a series
//! twice in the streaming scan; series written twice are served from
//! memory and read whole).
//!
//! It applies to an aggregate over raw rows:
//! - grouped by nothing, `run_id` or `name` (whole series), without
//!   grouping sets;
//! - whose aggregates are all `last_value(x ORDER BY step)`,
//!   `first_value(x ORDER BY step)` (either direction), `max(step)` or
//!   `min(step)`, without `DISTINCT`, `IGNORE NULLS` or `FILTER`;
//! - over scans of listed `scalars` files and buffered rows, through
//!   unions, repartitions, projections that keep column names, and filters
//!   on `run_id` and `name` only (which keep or drop whole series).

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::config::ConfigOptions;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::physical_plan::parquet::{ParquetAccessPlan, ParquetRowSelection};
use datafusion::datasource::physical_plan::{
    FileGroup, FileScanConfig, FileScanConfigBuilder, ParquetSource,
};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::Result;
use datafusion::parquet::arrow::arrow_reader::{RowSelection, RowSelector};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::utils::collect_columns;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::{replace_children_if_necessary, ExecutionPlan};
use steplake_store::{SeriesRange, Store};

/// The columns that name a series: grouping or filtering by them keeps or
/// drops whole series.
const SERIES_COLUMNS: [&str; 2] = ["run_id", "name"];

/// The physical optimizer rule (see the module docs).
pub(crate) struct ReadSeriesEnds {
    store: Arc<Store>,
}

impl std::fmt::Debug for ReadSeriesEnds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReadSeriesEnds")
    }
}

impl ReadSeriesEnds {
    /// The rule over the files of `store`.
    pub(crate) fn new(store: Arc<Store>) -> Self {
        ReadSeriesEnds { store }
    }
}

impl PhysicalOptimizerRule for ReadSeriesEnds {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(aggregate) = node.downcast_ref::<AggregateExec>() else {
                return Ok(Transformed::no(node));
            };
            let Some(ends) = ends_read(aggregate) else {
                return Ok(Transformed::no(node));
            };
            let Some(input) = self.narrowed(aggregate.input(), ends) else {
                return Ok(Transformed::no(node));
            };
            Ok(Transformed::yes(replace_children_if_necessary(
                Arc::clone(&node),
                vec![input],
            )?))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "steplake_read_series_ends"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Which rows of each series an aggregate reads.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Ends {
    first: bool,
    last: bool,
}

/// The ends of each series `aggregate` needs, if those are all it needs.
fn ends_read(aggregate: &AggregateExec) -> Option<Ends> {
    let raw_input = matches!(
        aggregate.mode(),
        AggregateMode::Partial | AggregateMode::Single | AggregateMode::SinglePartitioned
    );
    let groups = aggregate.group_expr();
    let by_series = groups.is_single()
        && groups
            .expr()
            .iter()
            .all(|(expr, _)| is_series_column(expr.as_ref()));
    let unfiltered = aggregate.filter_expr().iter().all(Option::is_none);
    if !raw_input || !by_series || !unfiltered || aggregate.aggr_expr().is_empty() {
        return None;
    }
    let mut ends = Ends::default();
    for function in aggregate.aggr_expr() {
        if function.is_distinct() || function.ignore_nulls() {
            return None;
        }
        let last = match (function.fun().name(), function.order_bys()) {
            ("last_value", [by]) if is_step(by.expr.as_ref()) => !by.options.descending,
            ("first_value", [by]) if is_step(by.expr.as_ref()) => by.options.descending,
            ("max" | "min", []) => {
                let arguments = function.expressions();
                let [argument] = arguments.as_slice() else {
                    return None;
                };
                if !is_step(argument.as_ref()) {
                    return None;
                }
                function.fun().name() == "max"
            }
            _ => return None,
        };
        if last {
            ends.last = true;
        } else {
            ends.first = true;
        }
    }
    Some(ends)
}

fn column_name(expr: &dyn PhysicalExpr) -> Option<&str> {
    expr.downcast_ref::<Column>().map(Column::name)
}

fn is_series_column(expr: &dyn PhysicalExpr) -> bool {
    column_name(expr).is_some_and(|name| SERIES_COLUMNS.contains(&name))
}

fn is_step(expr: &dyn PhysicalExpr) -> bool {
    column_name(expr) == Some("step")
}

/// Whether `predicate` reads only the columns that name a series.
fn on_series_only(predicate: &Arc<dyn PhysicalExpr>) -> bool {
    collect_columns(predicate)
        .iter()
        .all(|c| SERIES_COLUMNS.contains(&c.name()))
}

impl ReadSeriesEnds {
    /// `plan` reading only the `ends` of each series from its files, if
    /// every operator in it passes whole series through unchanged.
    fn narrowed(
        &self,
        plan: &Arc<dyn ExecutionPlan>,
        ends: Ends,
    ) -> Option<Arc<dyn ExecutionPlan>> {
        if let Some(scan) = plan.downcast_ref::<DataSourceExec>() {
            let source = scan.data_source();
            if let Some(config) = source.downcast_ref::<FileScanConfig>() {
                return self.narrowed_scan(config, ends);
            }
            // Buffered rows: few, and read whole.
            return source
                .downcast_ref::<MemorySourceConfig>()
                .map(|_| Arc::clone(plan));
        }
        let passes = plan.is::<UnionExec>()
            || plan.is::<RepartitionExec>()
            || plan.is::<CoalescePartitionsExec>()
            || plan
                .downcast_ref::<FilterExec>()
                .is_some_and(|f| on_series_only(f.predicate()))
            || plan.downcast_ref::<ProjectionExec>().is_some_and(|p| {
                p.expr()
                    .iter()
                    .all(|e| column_name(e.expr.as_ref()) == Some(e.alias.as_str()))
            });
        if !passes {
            return None;
        }
        let children = plan
            .children()
            .into_iter()
            .map(|child| self.narrowed(child, ends))
            .collect::<Option<Vec<_>>>()?;
        replace_children_if_necessary(Arc::clone(plan), children).ok()
    }

    /// The scan `config` with each file reading only the `ends` of each of
    /// its series.
    fn narrowed_scan(&self, config: &FileScanConfig, ends: Ends) -> Option<Arc<dyn ExecutionPlan>> {
        let source = config.file_source();
        source.downcast_ref::<ParquetSource>()?;
        if config.limit.is_some() || !source.filter().as_ref().is_none_or(on_series_only) {
            return None;
        }
        let groups = config
            .file_groups
            .iter()
            .map(|group| {
                group
                    .iter()
                    .map(|file| self.narrowed_file(file, ends))
                    .collect::<Option<Vec<_>>>()
                    .map(FileGroup::new)
            })
            .collect::<Option<Vec<_>>>()?;
        let config = FileScanConfigBuilder::from(config.clone())
            .with_file_groups(groups)
            .build();
        Some(DataSourceExec::from_data_source(config))
    }

    fn narrowed_file(&self, file: &PartitionedFile, ends: Ends) -> Option<PartitionedFile> {
        if file.extensions.contains::<ParquetAccessPlan>()
            || file.extensions.contains::<ParquetRowSelection>()
        {
            return None;
        }
        let series = self
            .store
            .scalars_file_series(file.object_meta.location.filename()?)?;
        let mut narrowed = file.clone();
        narrowed
            .extensions
            .insert(ParquetRowSelection::new(series_ends(&series, ends)));
        Some(narrowed)
    }
}

/// The rows of a file holding `series` (in row order) that are the `ends`
/// of a series.
fn series_ends(series: &[SeriesRange], ends: Ends) -> RowSelection {
    let mut selectors = Vec::with_capacity(series.len() * 3);
    for range in series {
        let rows = usize::try_from(range.rows).unwrap_or(usize::MAX);
        match rows {
            0 => {}
            1 => selectors.push(RowSelector::select(1)),
            _ => {
                let end = |wanted: bool| {
                    if wanted {
                        RowSelector::select(1)
                    } else {
                        RowSelector::skip(1)
                    }
                };
                selectors.push(end(ends.first));
                if rows > 2 {
                    selectors.push(RowSelector::skip(rows - 2));
                }
                selectors.push(end(ends.last));
            }
        }
    }
    RowSelection::from(selectors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(rows: u64) -> SeriesRange {
        SeriesRange {
            run_id: "r".into(),
            name: "n".into(),
            min_step: 0,
            max_step: rows as i64,
            rows,
        }
    }

    #[test]
    fn selects_the_first_and_last_row_of_each_series() {
        let series = [range(3), range(1), range(2), range(5)];
        let rows = |ends| -> Vec<usize> {
            let selection = series_ends(&series, ends);
            let mut at = 0;
            let mut picked = Vec::new();
            for s in selection.iter() {
                if !s.skip {
                    picked.extend(at..at + s.row_count);
                }
                at += s.row_count;
            }
            assert_eq!(at, 11, "the selection covers the file");
            picked
        };
        let last = Ends {
            first: false,
            last: true,
        };
        let first = Ends {
            first: true,
            last: false,
        };
        let both = Ends {
            first: true,
            last: true,
        };
        assert_eq!(rows(last), vec![2, 3, 5, 10]);
        assert_eq!(rows(first), vec![0, 3, 4, 6]);
        assert_eq!(rows(both), vec![0, 2, 3, 4, 5, 6, 10]);
    }
}
