//! The logical codec that ships steplake's tables to the scheduler by name.
//!
//! ```text
//! client                           scheduler
//! ClusterTable("scalars")  ──▶  b"steplake-table:scalars"  ──▶  ScalarsTable over
//!                                                               the bucket, read only
//! ```
//!
//! `generate_series` and `range` ship their arguments ([`crate::series_table`]).
//! Everything else (Ballista's own nodes, file formats, DataFusion's tables)
//! goes through Ballista's codec unchanged.

use std::fmt;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use ballista_core::serde::BallistaLogicalExtensionCodec;
use datafusion::catalog::TableProvider;
use datafusion::common::TableReference;
use datafusion::datasource::file_format::FileFormatFactory;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Extension, LogicalPlan};
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use steplake_query::tables::{Catalog, CatalogTable, ScalarsTable, TensorsTable};
use steplake_store::Store;

use crate::client::ClusterTable;
use crate::series_table;

/// What an encoded steplake table starts with.
const TABLE_TAG: &[u8] = b"steplake-table:";

/// One of steplake's tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SteplakeTable {
    /// `runs`, `events` or `conditions`.
    Catalog(Catalog),
    /// `scalars`.
    Scalars,
    /// `tensors`.
    Tensors,
}

impl SteplakeTable {
    /// Every table.
    pub const ALL: [SteplakeTable; 5] = [
        SteplakeTable::Catalog(Catalog::Runs),
        SteplakeTable::Catalog(Catalog::Events),
        SteplakeTable::Catalog(Catalog::Conditions),
        SteplakeTable::Scalars,
        SteplakeTable::Tensors,
    ];

    /// Its name in SQL.
    pub fn name(self) -> &'static str {
        match self {
            SteplakeTable::Catalog(Catalog::Runs) => "runs",
            SteplakeTable::Catalog(Catalog::Events) => "events",
            SteplakeTable::Catalog(Catalog::Conditions) => "conditions",
            SteplakeTable::Scalars => "scalars",
            SteplakeTable::Tensors => "tensors",
        }
    }

    /// Its schema.
    pub fn schema(self) -> SchemaRef {
        match self {
            SteplakeTable::Catalog(catalog) => catalog.schema(),
            SteplakeTable::Scalars => steplake_query::tables::scalars_table_schema(),
            SteplakeTable::Tensors => steplake_core::schema::tensors_schema(),
        }
    }

    fn of(provider: &dyn TableProvider) -> Option<SteplakeTable> {
        let any: &dyn std::any::Any = provider;
        if let Some(stand_in) = any.downcast_ref::<ClusterTable>() {
            Some(stand_in.table())
        } else if any.is::<ScalarsTable>() {
            Some(SteplakeTable::Scalars)
        } else if let Some(table) = any.downcast_ref::<CatalogTable>() {
            Some(SteplakeTable::Catalog(table.catalog()))
        } else if any.is::<TensorsTable>() {
            Some(SteplakeTable::Tensors)
        } else {
            None
        }
    }

    fn from_name(name: &[u8]) -> Option<SteplakeTable> {
        Self::ALL
            .into_iter()
            .find(|table| table.name().as_bytes() == name)
    }
}

/// Opens the store a scheduler plans a query over.
type OpenStore = Arc<dyn Fn() -> Result<Arc<Store>> + Send + Sync>;

/// Ballista's logical codec plus steplake's tables, shipped by name.
#[derive(Clone)]
pub struct TableCodec {
    ballista: Arc<BallistaLogicalExtensionCodec>,
    open: Option<OpenStore>,
}

impl fmt::Debug for TableCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TableCodec")
            .field("decodes_tables", &self.open.is_some())
            .finish()
    }
}

impl TableCodec {
    /// A client's codec: encodes steplake tables, cannot decode them.
    pub fn client() -> TableCodec {
        TableCodec {
            ballista: Arc::new(BallistaLogicalExtensionCodec::default()),
            open: None,
        }
    }

    /// A scheduler's codec: each decoded steplake table reads the bucket
    /// prefix `url` as its manifest lists it at that moment.
    pub fn scheduler(url: &str) -> TableCodec {
        let url = url.to_string();
        TableCodec {
            ballista: Arc::new(BallistaLogicalExtensionCodec::default()),
            open: Some(Arc::new(move || {
                Store::open_bucket_read_only(&url)
                    .map(Arc::new)
                    .map_err(|e| DataFusionError::External(Box::new(e)))
            })),
        }
    }

    /// A codec whose tables read `store` (one process: tests, standalone).
    pub fn over(store: Arc<Store>) -> TableCodec {
        TableCodec {
            ballista: Arc::new(BallistaLogicalExtensionCodec::default()),
            open: Some(Arc::new(move || Ok(store.clone()))),
        }
    }
}

impl LogicalExtensionCodec for TableCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        ctx: &TaskContext,
    ) -> Result<Extension> {
        self.ballista.try_decode(buf, inputs, ctx)
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        self.ballista.try_encode(node, buf)
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> Result<Arc<dyn TableProvider>> {
        let Some(name) = buf.strip_prefix(TABLE_TAG) else {
            if let Some(series) = series_table::decode(buf, schema.clone())? {
                return Ok(series);
            }
            return self
                .ballista
                .try_decode_table_provider(buf, table_ref, schema, ctx);
        };
        let table = SteplakeTable::from_name(name).ok_or_else(|| {
            DataFusionError::Plan(format!(
                "the plan names a steplake table `{}` this scheduler does not know; are client and cluster the same steplake version?",
                String::from_utf8_lossy(name)
            ))
        })?;
        let open = self.open.as_ref().ok_or_else(|| {
            DataFusionError::Plan(format!(
                "the `{}` table can only be read on the cluster's scheduler",
                table.name()
            ))
        })?;
        let store = open()?;
        Ok(match table {
            SteplakeTable::Catalog(catalog) => Arc::new(CatalogTable::new(store, catalog)),
            SteplakeTable::Scalars => Arc::new(ScalarsTable::new(store)),
            SteplakeTable::Tensors => Arc::new(TensorsTable::new(store)),
        })
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        match SteplakeTable::of(node.as_ref()) {
            Some(table) => {
                buf.extend_from_slice(TABLE_TAG);
                buf.extend_from_slice(table.name().as_bytes());
                Ok(())
            }
            None => match series_table::encode(node.as_ref())? {
                Some(series) => {
                    buf.extend_from_slice(&series);
                    Ok(())
                }
                None => self
                    .ballista
                    .try_encode_table_provider(table_ref, node, buf),
            },
        }
    }

    fn try_decode_file_format(
        &self,
        buf: &[u8],
        ctx: &TaskContext,
    ) -> Result<Arc<dyn FileFormatFactory>> {
        self.ballista.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(
        &self,
        buf: &mut Vec<u8>,
        node: Arc<dyn FileFormatFactory>,
    ) -> Result<()> {
        self.ballista.try_encode_file_format(buf, node)
    }
}
