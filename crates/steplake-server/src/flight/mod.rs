//! Arrow Flight SQL over the same DataFusion session as everything else.
//!
//! What JDBC, ADBC and DBeaver need, and how it is answered:
//! - statements (`CommandStatementQuery`): GetFlightInfo plans the SQL and
//!   returns its schema and one endpoint; DoGet runs it;
//! - prepared statements: CreatePreparedStatement returns the result schema
//!   (tools decide "query or update" from it) and the parameter schema;
//!   binding parameters (DoPut) returns an updated handle; GetFlightInfo and
//!   DoGet run it; ClosePreparedStatement has nothing to free;
//! - metadata ([`metadata`]): GetSqlInfo, GetCatalogs, GetDbSchemas,
//!   GetTables (with table schemas), GetTableTypes, GetXdbcTypeInfo and the
//!   key commands, with the spec's exact schemas;
//! - Handshake: accepted without credentials (there is no auth yet).
//!
//! Statement tickets and prepared-statement handles are both a
//! [`handle::StatementHandle`] (SQL plus bound parameters), so the server holds
//! nothing between calls. Endpoints carry no location, which Flight clients
//! read as "this same connection". Strings go out as `Utf8` (never
//! `Utf8View`), the type every Flight SQL client reads.

pub mod handle;
pub mod metadata;

use std::pin::Pin;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, Command, CommandGetCatalogs, CommandGetCrossReference,
    CommandGetDbSchemas, CommandGetExportedKeys, CommandGetImportedKeys, CommandGetPrimaryKeys,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandGetXdbcTypeInfo,
    CommandPreparedStatementQuery, CommandPreparedStatementUpdate, CommandStatementQuery,
    CommandStatementUpdate, DoPutPreparedStatementResult, ProstMessageExt, SqlInfo,
    TicketStatementQuery,
};
use arrow_flight::{
    Action, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse,
    IpcMessage, SchemaAsIpc, Ticket,
};
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use steplake_query::{QueryEngine, QueryError};
use tonic::{Request, Response, Status, Streaming};

use crate::status::query_status;
use handle::StatementHandle;

/// Flight SQL over a [`QueryEngine`].
pub struct FlightSqlServer {
    engine: Arc<QueryEngine>,
}

impl FlightSqlServer {
    /// A Flight SQL service answering with `engine`.
    pub fn new(engine: Arc<QueryEngine>) -> Self {
        FlightSqlServer { engine }
    }

    /// A FlightInfo with one endpoint on this same connection.
    fn flight_info(
        schema: &Schema,
        ticket: Vec<u8>,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        let info = FlightInfo::new()
            .try_with_schema(schema)
            .map_err(|e| Status::internal(format!("cannot encode the result schema: {e}")))?
            .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket)))
            .with_descriptor(descriptor);
        Ok(Response::new(info))
    }

    /// Plans `handle`'s statement with its parameters: the wire schema of the result.
    async fn statement_schema(&self, handle: &StatementHandle) -> Result<SchemaRef, Status> {
        let schema = self
            .engine
            .schema_with_parameters(&handle.sql, handle.parameter_values()?)
            .await
            .map_err(query_status)?;
        Ok(wire_schema(&schema))
    }

    /// Runs `handle`'s statement and streams its result.
    async fn run_statement(
        &self,
        handle: StatementHandle,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let (schema, batches) = self
            .engine
            .sql_with_parameters(&handle.sql, handle.parameter_values()?)
            .await
            .map_err(query_status)?;
        let wire = wire_schema(&schema);
        let batches = batches
            .map_err(|e| FlightError::Tonic(Box::new(query_status(QueryError::from_execution(e)))))
            .and_then({
                let wire = wire.clone();
                move |batch| std::future::ready(to_wire(&wire, batch))
            });
        let stream = FlightDataEncoderBuilder::new()
            .with_schema(wire)
            .build(batches)
            .map_err(Status::from)
            .boxed();
        Ok(Response::new(stream))
    }

    /// GetFlightInfo of a metadata command: its schema, and the command as ticket.
    async fn metadata_info(
        &self,
        command: Command,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let ticket = command.clone().into_any().encode_to_vec();
        let batch = self.metadata(command).await?;
        Self::flight_info(&batch.schema(), ticket, request.into_inner())
    }

    /// DoGet of a metadata command: one batch.
    async fn metadata_stream(
        &self,
        command: Command,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let batch = self.metadata(command).await?;
        let stream = FlightDataEncoderBuilder::new()
            .with_schema(batch.schema())
            .build(futures::stream::iter([Ok(batch)]))
            .map_err(Status::from)
            .boxed();
        Ok(Response::new(stream))
    }

    async fn metadata(&self, command: Command) -> Result<RecordBatch, Status> {
        metadata::metadata_batch(&self.engine, command).await
    }
}

/// `schema` as it goes over the wire: view types become their plain
/// counterparts (`Utf8View` → `Utf8`, `BinaryView` → `Binary`).
pub fn wire_schema(schema: &Schema) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|field| {
            let data_type = match field.data_type() {
                DataType::Utf8View => DataType::Utf8,
                DataType::BinaryView => DataType::Binary,
                other => other.clone(),
            };
            field.as_ref().clone().with_data_type(data_type)
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// Casts `batch` to the wire schema (a no-op when nothing differs).
fn to_wire(wire: &SchemaRef, batch: RecordBatch) -> Result<RecordBatch, FlightError> {
    if batch.schema().fields() == wire.fields() {
        return Ok(batch);
    }
    let columns = batch
        .columns()
        .iter()
        .zip(wire.fields())
        .map(|(column, field)| cast(column, field.data_type()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(wire.clone(), columns)?)
}

/// `schema` as the IPC-encapsulated bytes Flight SQL messages carry.
fn schema_bytes(schema: &Schema) -> Result<bytes::Bytes, Status> {
    let message: IpcMessage = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e| Status::internal(format!("cannot encode a schema: {e}")))?;
    Ok(message.0)
}

fn read_only(what: &str) -> Status {
    Status::permission_denied(format!(
        "{what} not allowed: steplake SQL is read-only; write through the ingest API (steplake write, the Python package)"
    ))
}

type HandshakeStream = Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>;

#[tonic::async_trait]
impl FlightSqlService for FlightSqlServer {
    type FlightService = FlightSqlServer;

    /// Basic → Bearer, as the JDBC and ADBC drivers expect: a handshake
    /// sent with `Basic <user:token>` (or `Bearer <token>`) has already
    /// passed [`crate::auth::ReadGate`], and its answer carries
    /// `authorization: Bearer <token>` for the driver to send on every
    /// later call. On an open server no credentials are needed, and any
    /// are accepted.
    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<HandshakeStream>, Status> {
        // Credentials that do not parse reach here only on an open server
        // (the gate refused them otherwise), where they are ignored.
        let token =
            steplake_auth::credentials::token_from_header(crate::auth::authorization(&request))
                .ok()
                .flatten();
        let response = HandshakeResponse {
            protocol_version: 0,
            payload: Default::default(),
        };
        let mut response =
            Response::new(Box::pin(futures::stream::iter([Ok(response)])) as HandshakeStream);
        if let Some(token) = token {
            let bearer = format!("Bearer {token}")
                .parse()
                .map_err(|_| Status::unauthenticated("the token is not valid"))?;
            response.metadata_mut().insert("authorization", bearer);
        }
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let handle = StatementHandle::new(query.query);
        let schema = self.statement_schema(&handle).await?;
        let ticket = TicketStatementQuery {
            statement_handle: handle.encode_to_vec().into(),
        };
        Self::flight_info(
            &schema,
            ticket.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.run_statement(StatementHandle::decode_from(&ticket.statement_handle)?)
            .await
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let prepared = self
            .engine
            .prepare(&query.query)
            .await
            .map_err(query_status)?;
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: StatementHandle::new(query.query).encode_to_vec().into(),
            dataset_schema: schema_bytes(&wire_schema(&prepared.result))?,
            parameter_schema: schema_bytes(&prepared.parameters)?,
        })
    }

    /// Binds one row of parameters; the answer is the updated handle.
    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let handle = StatementHandle::decode_from(&query.prepared_statement_handle)?;
        let flight_data = request
            .into_inner()
            .map_err(|e| FlightError::Tonic(Box::new(e)));
        let rows: Vec<RecordBatch> = FlightRecordBatchStream::new_from_flight_data(flight_data)
            .try_collect()
            .await
            .map_err(|e| Status::invalid_argument(format!("cannot read the parameters: {e}")))?;
        let rows: Vec<RecordBatch> = rows.into_iter().filter(|b| b.num_rows() > 0).collect();
        let handle = match rows.as_slice() {
            [] => handle,
            [row] => handle.with_parameters(row)?,
            _ => {
                return Err(Status::invalid_argument(
                    "bind exactly one row of parameters, got several batches",
                ))
            }
        };
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(handle.encode_to_vec().into()),
        })
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let handle = StatementHandle::decode_from(&query.prepared_statement_handle)?;
        let schema = self.statement_schema(&handle).await?;
        Self::flight_info(
            &schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn do_get_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.run_statement(StatementHandle::decode_from(
            &query.prepared_statement_handle,
        )?)
        .await
    }

    /// Handles hold no server state: closing frees nothing.
    async fn do_action_close_prepared_statement(
        &self,
        _query: ActionClosePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<(), Status> {
        Ok(())
    }

    async fn do_put_statement_update(
        &self,
        _query: CommandStatementUpdate,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(read_only("updates are"))
    }

    async fn do_put_prepared_statement_update(
        &self,
        _query: CommandPreparedStatementUpdate,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(read_only("updates are"))
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.metadata_info(Command::CommandGetCatalogs(query), request)
            .await
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.metadata_stream(Command::CommandGetCatalogs(query))
            .await
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.metadata_info(Command::CommandGetDbSchemas(query), request)
            .await
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.metadata_stream(Command::CommandGetDbSchemas(query))
            .await
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.metadata_info(Command::CommandGetTables(query), request)
            .await
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.metadata_stream(Command::CommandGetTables(query)).await
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.metadata_info(Command::CommandGetTableTypes(query), request)
            .await
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.metadata_stream(Command::CommandGetTableTypes(query))
            .await
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.metadata_info(Command::CommandGetSqlInfo(query), request)
            .await
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.metadata_stream(Command::CommandGetSqlInfo(query))
            .await
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.metadata_info(Command::CommandGetXdbcTypeInfo(query), request)
            .await
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.metadata_stream(Command::CommandGetXdbcTypeInfo(query))
            .await
    }

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.metadata_info(Command::CommandGetPrimaryKeys(query), request)
            .await
    }

    async fn do_get_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.metadata_stream(Command::CommandGetPrimaryKeys(query))
            .await
    }

    async fn get_flight_info_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.metadata_info(Command::CommandGetExportedKeys(query), request)
            .await
    }

    async fn do_get_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.metadata_stream(Command::CommandGetExportedKeys(query))
            .await
    }

    async fn get_flight_info_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.metadata_info(Command::CommandGetImportedKeys(query), request)
            .await
    }

    async fn do_get_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.metadata_stream(Command::CommandGetImportedKeys(query))
            .await
    }

    async fn get_flight_info_cross_reference(
        &self,
        query: CommandGetCrossReference,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.metadata_info(Command::CommandGetCrossReference(query), request)
            .await
    }

    async fn do_get_cross_reference(
        &self,
        query: CommandGetCrossReference,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.metadata_stream(Command::CommandGetCrossReference(query))
            .await
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
