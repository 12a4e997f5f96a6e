//! Sorts that the files' own order makes needless: [`MergeSortedFiles`].
//!
//! Every Parquet file the store writes is sorted by (run_id, name, step)
//! and says so in its metadata, and DataFusion reads that order per file.
//! But a scan of several files declares no order: DataFusion packs several
//! files (or pieces of them) into each partition, one after another. So a
//! window over every series, `f(value) OVER (PARTITION BY run_id, name
//! ORDER BY step)`, gets a hash repartition and then a full sort of every
//! row:
//!
//! ```text
//! SortExec [run_id, name, step]            one per partition
//!   RepartitionExec Hash(run_id, name)
//!     UnionExec
//!       DataSourceExec                     several file pieces per partition
//!       DataSourceExec                     buffered rows
//! ```
//!
//! This rule, run after DataFusion's own, reads each file piece as its own
//! partition (each one sorted), sorts only what is not sorted already (the
//! buffered rows: few), merges the sorted partitions run by run
//! ([`RunMergeExec`]) and repartitions after the merge. A hash repartition
//! of one sorted stream keeps every output partition sorted, so the sort
//! goes:
//!
//! ```text
//! RepartitionExec Hash(run_id, name)
//!   RunMergeExec [run_id, name, step]
//!     UnionExec
//!       DataSourceExec                     one sorted file piece per partition
//!       SortExec [run_id, name, step]      buffered rows
//! ```
//!
//! A sort with no repartition under it (one that also merges its input's
//! partitions into one) becomes the merge alone. The plan changes only
//! where it reads sorted files and DataFusion's own ordering analysis
//! confirms that every merged partition has the sort's order, and the
//! result has it.

use std::sync::Arc;

use datafusion::config::ConfigOptions;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfig, FileScanConfigBuilder};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::Result;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{LexOrdering, PhysicalExpr, PhysicalSortExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::{
    replace_children_if_necessary, ExecutionPlan, ExecutionPlanProperties, Partitioning,
};

use crate::run_merge::RunMergeExec;

/// File pieces are no smaller than this when a file is cut for parallel
/// reading.
const MIN_PIECE_BYTES: u64 = 8 << 20;

/// The physical optimizer rule (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct MergeSortedFiles;

impl PhysicalOptimizerRule for MergeSortedFiles {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let pieces = 2 * config.execution.target_partitions.max(1);
        rewrite(plan, false, pieces)
    }

    fn name(&self) -> &str {
        "steplake_merge_sorted_files"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// `node` with the sorts under it (and its own) that sorted files make
/// needless replaced. `joined_above`: an operator above `node` reads
/// several inputs (a join, a union), which may count on the hash
/// partitioning a repartition gives.
fn rewrite(
    node: Arc<dyn ExecutionPlan>,
    joined_above: bool,
    pieces: usize,
) -> Result<Arc<dyn ExecutionPlan>> {
    let joined = joined_above || node.children().len() > 1;
    let children = node
        .children()
        .into_iter()
        .map(|child| rewrite(Arc::clone(child), joined, pieces))
        .collect::<Result<Vec<_>>>()?;
    let node = replace_children_if_necessary(node, children)?;
    Ok(without_sort(&node, joined_above, pieces)?.unwrap_or(node))
}

/// `node` without its sort, when it is a sort that sorted files make
/// needless; None otherwise.
fn without_sort(
    node: &Arc<dyn ExecutionPlan>,
    joined_above: bool,
    pieces: usize,
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let Some(sort) = node.downcast_ref::<SortExec>() else {
        return Ok(None);
    };
    if sort.fetch().is_some() {
        // A top-k keeps a few rows in a heap: cheaper than any merge.
        return Ok(None);
    }
    let ordering = sort.expr();
    if !sort.preserve_partitioning() {
        let merged = sorted_input(sort.input(), ordering, pieces)?
            .map(|sorted| Arc::new(RunMergeExec::new(sorted, ordering.clone())) as _);
        return Ok(merged);
    }
    let Some(repartition) = sort.input().downcast_ref::<RepartitionExec>() else {
        return Ok(None);
    };
    let Partitioning::Hash(keys, outputs) = repartition.partitioning() else {
        return Ok(None);
    };
    if repartition.preserve_order() {
        return Ok(None);
    }
    let Some(sorted) = sorted_input(repartition.input(), ordering, pieces)? else {
        return Ok(None);
    };
    let merged: Arc<dyn ExecutionPlan> = if !joined_above && keys_lead(keys, ordering) {
        // Nothing above needs the hash itself, only each key in one
        // partition: deal the merged runs out instead of hashing rows.
        Arc::new(RunMergeExec::split_by_keys(
            sorted,
            ordering.clone(),
            keys.clone(),
            *outputs,
        ))
    } else {
        let merged = Arc::new(RunMergeExec::new(sorted, ordering.clone()));
        Arc::new(RepartitionExec::try_new(
            merged,
            repartition.partitioning().clone(),
        )?)
    };
    Ok(has_order(&merged, ordering)?.then_some(merged))
}

/// Whether `keys` are the first expressions of `ordering` (in any order),
/// so that rows with equal keys are next to each other.
fn keys_lead(keys: &[Arc<dyn PhysicalExpr>], ordering: &LexOrdering) -> bool {
    keys.len() <= ordering.len()
        && keys.iter().all(|key| {
            ordering
                .iter()
                .take(keys.len())
                .any(|sort| sort.expr.eq(key))
        })
}

/// `input` with every partition sorted by `ordering`, reading sorted file
/// pieces; None when nothing in `input` is sorted already (every part would
/// need a sort of its own: no better than the sort there is) or the result
/// does not have that order.
fn sorted_input(
    input: &Arc<dyn ExecutionPlan>,
    ordering: &LexOrdering,
    pieces: usize,
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let mut found_sorted = false;
    let sorted = sorted_partitions(input, ordering, pieces, &mut found_sorted)?;
    if !found_sorted || !has_order(&sorted, ordering)? {
        return Ok(None);
    }
    Ok(Some(sorted))
}

/// `plan` with every partition sorted by `ordering` (in `plan`'s schema):
/// file scans read a sorted piece per partition, unions, filters and
/// projections of columns pass the question on, and anything else is
/// sorted per partition.
fn sorted_partitions(
    plan: &Arc<dyn ExecutionPlan>,
    ordering: &LexOrdering,
    pieces: usize,
    found_sorted: &mut bool,
) -> Result<Arc<dyn ExecutionPlan>> {
    if has_order(plan, ordering)? {
        // Such as one file read in byte ranges, each sorted.
        *found_sorted = true;
        return Ok(Arc::clone(plan));
    }
    if let Some(scan) = sorted_file_pieces(plan, pieces) {
        if has_order(&scan, ordering)? {
            *found_sorted = true;
            return Ok(scan);
        }
    }
    let passes_order_on =
        plan.downcast_ref::<UnionExec>().is_some() || plan.downcast_ref::<FilterExec>().is_some();
    if passes_order_on {
        let children = plan
            .children()
            .into_iter()
            .map(|child| sorted_partitions(child, ordering, pieces, found_sorted))
            .collect::<Result<Vec<_>>>()?;
        return replace_children_if_necessary(Arc::clone(plan), children);
    }
    if let Some(projection) = plan.downcast_ref::<ProjectionExec>() {
        if let Some(below) = ordering_below(projection, ordering) {
            let input = sorted_partitions(projection.input(), &below, pieces, found_sorted)?;
            return replace_children_if_necessary(Arc::clone(plan), vec![input]);
        }
    }
    Ok(Arc::new(
        SortExec::new(ordering.clone(), Arc::clone(plan)).with_preserve_partitioning(true),
    ))
}

/// `ordering` of a projection's output as an ordering of its input, when
/// every column it names is a column of the input.
fn ordering_below(projection: &ProjectionExec, ordering: &LexOrdering) -> Option<LexOrdering> {
    let sorts = ordering
        .iter()
        .map(|sort| {
            let column = sort.expr.downcast_ref::<Column>()?;
            let projected = projection.expr().get(column.index())?;
            projected.expr.downcast_ref::<Column>()?;
            Some(PhysicalSortExpr::new(
                Arc::clone(&projected.expr),
                sort.options,
            ))
        })
        .collect::<Option<Vec<_>>>()?;
    LexOrdering::new(sorts)
}

/// A file scan read as one partition per file piece, when its files all
/// say they are sorted (so each piece is); None for other plans.
fn sorted_file_pieces(
    plan: &Arc<dyn ExecutionPlan>,
    pieces: usize,
) -> Option<Arc<dyn ExecutionPlan>> {
    let scan = plan.downcast_ref::<DataSourceExec>()?;
    let config = scan.data_source().downcast_ref::<FileScanConfig>()?;
    let files: Vec<PartitionedFile> = config
        .file_groups
        .iter()
        .flat_map(|group| group.iter().cloned())
        .collect();
    // The scan's declared order, or else the one every file declares
    // (a single partition of several files may carry its order only per
    // file, for DataFusion to reorder them).
    let ordering = if config.output_ordering.is_empty() {
        let first = files.first()?.ordering.clone()?;
        files
            .iter()
            .all(|f| f.ordering.as_ref() == Some(&first))
            .then(|| vec![first])?
    } else {
        config.output_ordering.clone()
    };
    let groups = cut(files, pieces)
        .into_iter()
        .map(|piece| FileGroup::new(vec![piece]))
        .collect();
    let config = FileScanConfigBuilder::from(config.clone())
        .with_file_groups(groups)
        .with_output_ordering(ordering)
        .build();
    Some(DataSourceExec::from_data_source(config))
}

/// `files` cut into about `pieces` byte ranges of similar size, none
/// under [`MIN_PIECE_BYTES`]; a range selects the row groups whose middle
/// falls in it, so every row is in exactly one piece.
fn cut(files: Vec<PartitionedFile>, pieces: usize) -> Vec<PartitionedFile> {
    let span = |f: &PartitionedFile| match &f.range {
        Some(r) => (r.start.max(0) as u64, r.end.max(0) as u64),
        None => (0, f.object_meta.size),
    };
    let total: u64 = files.iter().map(|f| span(f).1 - span(f).0).sum();
    let piece_bytes = (total / pieces.max(1) as u64).max(MIN_PIECE_BYTES);
    let mut out = Vec::new();
    for file in files {
        let (start, end) = span(&file);
        let count = (end - start).div_ceil(piece_bytes).max(1);
        if count == 1 {
            out.push(file);
            continue;
        }
        let step = (end - start).div_ceil(count);
        let mut from = start;
        while from < end {
            let to = (from + step).min(end);
            out.push(file.clone().with_range(from as i64, to as i64));
            from = to;
        }
    }
    out
}

/// Whether every partition of `plan` is sorted by `ordering`.
fn has_order(plan: &Arc<dyn ExecutionPlan>, ordering: &LexOrdering) -> Result<bool> {
    plan.equivalence_properties()
        .ordering_satisfy(ordering.iter().cloned())
}
