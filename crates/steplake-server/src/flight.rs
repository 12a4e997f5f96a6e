//! Arrow Flight SQL: statement queries (GetFlightInfo + DoGet) over the same
//! DataFusion session as everything else.
//!
//! The ticket of a statement is the SQL text itself, wrapped in
//! `TicketStatementQuery`, so any endpoint of this server can answer it and
//! nothing is held between the two calls. The endpoint carries no location,
//! which Flight clients read as "this same connection".

use std::pin::Pin;
use std::sync::Arc;

use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::server::FlightSqlService;
use arrow_flight::sql::{CommandStatementQuery, ProstMessageExt, SqlInfo, TicketStatementQuery};
use arrow_flight::{
    FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, Ticket,
};
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use steplake_query::QueryEngine;
use tonic::{Request, Response, Status, Streaming};

use crate::status::query_status;

/// Flight SQL over a [`QueryEngine`].
pub struct FlightSqlServer {
    engine: Arc<QueryEngine>,
}

impl FlightSqlServer {
    /// A Flight SQL service answering with `engine`.
    pub fn new(engine: Arc<QueryEngine>) -> Self {
        FlightSqlServer { engine }
    }
}

type HandshakeStream = Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>;

#[tonic::async_trait]
impl FlightSqlService for FlightSqlServer {
    type FlightService = FlightSqlServer;

    /// No authentication yet: every handshake is accepted.
    async fn do_handshake(
        &self,
        _request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<HandshakeStream>, Status> {
        let response = HandshakeResponse {
            protocol_version: 0,
            payload: Default::default(),
        };
        Ok(Response::new(Box::pin(futures::stream::iter([Ok(
            response,
        )]))))
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = self
            .engine
            .schema_of(&query.query)
            .await
            .map_err(query_status)?;
        let ticket = TicketStatementQuery {
            statement_handle: query.query.into_bytes().into(),
        };
        let endpoint =
            FlightEndpoint::new().with_ticket(Ticket::new(ticket.as_any().encode_to_vec()));
        let info = FlightInfo::new()
            .try_with_schema(&schema)
            .map_err(|e| Status::internal(format!("cannot encode the result schema: {e}")))?
            .with_endpoint(endpoint)
            .with_descriptor(request.into_inner());
        Ok(Response::new(info))
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let sql = String::from_utf8(ticket.statement_handle.to_vec())
            .map_err(|_| Status::invalid_argument("the statement ticket is not UTF-8 SQL"))?;
        let (schema, batches) = self.engine.sql(&sql).await.map_err(query_status)?;
        let batches = batches.map_err(|e| FlightError::from_external_error(Box::new(e)));
        let stream = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(batches)
            .map_err(Status::from)
            .boxed();
        Ok(Response::new(stream))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
