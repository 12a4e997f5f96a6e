//! steplake-client: the Rust client of a steplake server.
//!
//! Used by the `steplake` CLI, the end-to-end tests and the benchmarks.
//!
//! - [`Client::connect`] opens one HTTP/2 channel shared by the ingest
//!   service and Flight SQL; [`Client::connect_with`] adds a token (sent
//!   as `authorization: Bearer …` on every call) and, for `https://` URLs,
//!   the CA certificate to trust.
//! - [`Client::create_run`] / [`Client::finish_run`] manage runs.
//! - [`Client::writer`] opens a write stream: [`ScalarWriter::send`] queues a
//!   batch with the next sequence number without waiting, so many batches are
//!   in flight at once; [`ScalarWriter::finish`] closes the stream and returns
//!   what the server acknowledged (or the error that ended the stream, with
//!   the count acknowledged before it).
//! - [`Client::add_condition`] registers a standing condition, and
//!   [`Client::watch`] streams a run's events.
//! - [`Client::sql`] runs SQL through Flight SQL and returns Arrow batches.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::{CommandStatementQuery, ProstMessageExt};
use arrow_flight::FlightDescriptor;
use futures::TryStreamExt;
use prost::Message;
pub use steplake_proto::v1;
use steplake_proto::v1::ingest_client::IngestClient;
use steplake_proto::v1::{
    AddConditionRequest, CreateRunRequest, FinishRunRequest, ScalarBatch, WatchRequest,
    WriteRequest,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Request, Status};

/// Default server URL.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:50051";

/// Batches one writer keeps in flight before `send` waits.
const MAX_IN_FLIGHT: usize = 64;

/// Errors talking to a server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server could not be reached.
    #[error("cannot connect to steplake at {url}: {source}; is `steplake serve` running there?")]
    Connect {
        /// The URL.
        url: String,
        /// Why.
        source: tonic::transport::Error,
    },
    /// The URL is malformed.
    #[error("invalid server URL {url:?}: {reason}")]
    BadUrl {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The server answered with an error.
    #[error("{}", status_text(.0))]
    Status(Status),
    /// A write stream ended with an error after acknowledging some batches.
    #[error(
        "{status}; {} in {} were acknowledged before it",
        steplake_core::counted(*.acked_points, "point", "points"),
        steplake_core::counted(*.acked_batches, "batch", "batches")
    )]
    Stream {
        /// The error.
        status: Box<ClientError>,
        /// Points acknowledged before the error.
        acked_points: u64,
        /// Batches acknowledged before the error.
        acked_batches: u64,
    },
    /// A write stream has ended (the server answered an error or went away);
    /// [`ScalarWriter::finish`] returns the reason and what was acknowledged.
    #[error("the write stream has ended; finish() tells why")]
    StreamClosed,
    /// Flight SQL failed.
    #[error("{0}")]
    Flight(String),
}

impl ClientError {
    /// The gRPC code, when the server produced this error.
    pub fn code(&self) -> Option<Code> {
        match self {
            ClientError::Status(s) => Some(s.code()),
            ClientError::Stream { status, .. } => status.code(),
            _ => None,
        }
    }
}

/// What a user reads for a status: the server writes the messages of
/// refused requests for people, so they stand alone; failures of the
/// system say which kind they are.
fn status_text(status: &Status) -> String {
    let kind = match status.code() {
        Code::InvalidArgument
        | Code::NotFound
        | Code::PermissionDenied
        | Code::OutOfRange
        | Code::ResourceExhausted
        | Code::FailedPrecondition
        | Code::AlreadyExists => None,
        Code::Unavailable => Some("server unavailable"),
        Code::Unauthenticated => Some("not authenticated"),
        Code::DeadlineExceeded => Some("timed out"),
        Code::Cancelled => Some("cancelled"),
        _ => Some("server error"),
    };
    match kind {
        Some(kind) => format!("{kind}: {}", status.message()),
        None => status.message().to_string(),
    }
}

impl From<Status> for ClientError {
    fn from(status: Status) -> Self {
        ClientError::Status(status)
    }
}

impl From<FlightError> for ClientError {
    fn from(error: FlightError) -> Self {
        match error {
            FlightError::Tonic(status) => ClientError::Status(*status),
            other => ClientError::Flight(other.to_string()),
        }
    }
}

impl From<arrow::error::ArrowError> for ClientError {
    fn from(error: arrow::error::ArrowError) -> Self {
        // Flight SQL client errors arrive as ArrowError wrapping the status text.
        ClientError::Flight(error.to_string())
    }
}

/// How to reach a server beyond its URL.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// The token to send (`authorization: Bearer …`).
    pub token: Option<String>,
    /// PEM certificate(s) of the CA that signed the server's certificate,
    /// for `https://` URLs; without it, the public web CAs are trusted.
    pub ca_cert_pem: Option<Vec<u8>>,
}

/// A connection to a steplake server.
#[derive(Clone)]
pub struct Client {
    channel: Channel,
    max_message_bytes: usize,
    authorization: Option<MetadataValue<Ascii>>,
}

impl Client {
    /// Connects to `url` (e.g. `http://127.0.0.1:50051`) with no token.
    pub async fn connect(url: &str) -> Result<Client, ClientError> {
        Client::connect_with(url, &ConnectOptions::default()).await
    }

    /// Connects to `url` (`http://` or `https://`) with `options`.
    pub async fn connect_with(url: &str, options: &ConnectOptions) -> Result<Client, ClientError> {
        let bad_url = |reason: String| ClientError::BadUrl {
            url: url.to_string(),
            reason,
        };
        let mut endpoint =
            Endpoint::from_shared(url.to_string()).map_err(|e| bad_url(e.to_string()))?;
        if url.starts_with("https://") {
            let mut tls = ClientTlsConfig::new();
            tls = match &options.ca_cert_pem {
                Some(pem) => tls.ca_certificate(Certificate::from_pem(pem)),
                None => tls.with_webpki_roots(),
            };
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|e| bad_url(format!("TLS: {e}")))?;
        } else if options.ca_cert_pem.is_some() {
            return Err(bad_url(
                "a CA certificate was given for a plain http:// URL; use https://".into(),
            ));
        }
        let authorization = match &options.token {
            Some(token) => Some(
                format!("Bearer {}", token.trim())
                    .parse()
                    .map_err(|_| bad_url("the token holds characters a token never has".into()))?,
            ),
            None => None,
        };
        let channel = endpoint
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|source| ClientError::Connect {
                url: url.to_string(),
                source,
            })?;
        Ok(Client {
            channel,
            max_message_bytes: 256 << 20,
            authorization,
        })
    }

    /// `message` as a request that carries the token, if there is one.
    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        if let Some(value) = &self.authorization {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        request
    }

    fn ingest(&self) -> IngestClient<Channel> {
        IngestClient::new(self.channel.clone())
            .max_decoding_message_size(self.max_message_bytes)
            .max_encoding_message_size(self.max_message_bytes)
    }

    /// Creates a run, or resumes it when `request.run_id` names an existing one.
    pub async fn create_run(
        &self,
        request: CreateRunRequest,
    ) -> Result<v1::CreateRunResponse, ClientError> {
        Ok(self
            .ingest()
            .create_run(self.request(request))
            .await?
            .into_inner())
    }

    /// Creates the run `run_id` in `project` (named after its id), or resumes
    /// it when it exists: what command-line writers do before streaming.
    pub async fn ensure_run(
        &self,
        run_id: &str,
        project: &str,
    ) -> Result<v1::CreateRunResponse, ClientError> {
        self.create_run(CreateRunRequest {
            run_id: run_id.to_string(),
            project: project.to_string(),
            name: run_id.to_string(),
            ..Default::default()
        })
        .await
    }

    /// Marks a run finished with `status` ("finished" when empty).
    pub async fn finish_run(&self, run_id: &str, status: &str) -> Result<(), ClientError> {
        self.ingest()
            .finish_run(self.request(FinishRunRequest {
                run_id: run_id.to_string(),
                status: status.to_string(),
            }))
            .await?;
        Ok(())
    }

    /// Registers a standing condition; returns its id.
    pub async fn add_condition(&self, request: AddConditionRequest) -> Result<String, ClientError> {
        Ok(self
            .ingest()
            .add_condition(self.request(request))
            .await?
            .into_inner()
            .condition_id)
    }

    /// Streams the events of `run_id` with a seq above `after_seq`: the
    /// stored ones, then each new one as it becomes durable.
    pub async fn watch(
        &self,
        run_id: &str,
        after_seq: u64,
    ) -> Result<tonic::Streaming<v1::Event>, ClientError> {
        Ok(self
            .ingest()
            .watch(self.request(WatchRequest {
                run_id: run_id.to_string(),
                after_seq,
            }))
            .await?
            .into_inner())
    }

    /// Opens a write stream for `run_id` with a fresh random writer id.
    pub async fn writer(&self, run_id: &str) -> Result<ScalarWriter, ClientError> {
        self.writer_with_id(run_id, &random_writer_id(), 1).await
    }

    /// Opens a write stream with a chosen writer id, numbering batches from
    /// `first_sequence`. Reusing a writer id and sequence numbers replays
    /// batches idempotently: already-applied ones are acknowledged as
    /// duplicates. A writer's sequences must follow each other from 1: after
    /// a stream ends with an error, open the next one at the first
    /// unacknowledged sequence (see `ingest.proto`, "Exactly once").
    pub async fn writer_with_id(
        &self,
        run_id: &str,
        writer_id: &str,
        first_sequence: u64,
    ) -> Result<ScalarWriter, ClientError> {
        let (tx, rx) = mpsc::channel::<WriteRequest>(MAX_IN_FLIGHT);
        let mut responses = self
            .ingest()
            .write(self.request(ReceiverStream::new(rx)))
            .await?
            .into_inner();
        let acks = tokio::spawn(async move {
            let mut summary = WriteSummary::default();
            loop {
                match responses.message().await {
                    Ok(Some(ack)) => {
                        summary.batches += 1;
                        if ack.duplicate {
                            summary.duplicates += 1;
                        } else {
                            summary.points += ack.points;
                        }
                        summary.last_sequence = ack.sequence;
                    }
                    Ok(None) => return Ok(summary),
                    Err(status) => {
                        return Err(ClientError::Stream {
                            status: Box::new(ClientError::Status(status)),
                            acked_points: summary.points,
                            acked_batches: summary.batches,
                        })
                    }
                }
            }
        });
        Ok(ScalarWriter {
            run_id: run_id.to_string(),
            writer_id: writer_id.to_string(),
            next_sequence: first_sequence,
            tx: Some(tx),
            acks,
        })
    }

    /// Runs SQL through Flight SQL and collects the result.
    ///
    /// Uses the plain Flight RPCs (GetFlightInfo with a `CommandStatementQuery`,
    /// then DoGet per endpoint) so that server status codes reach the caller.
    pub async fn sql(&self, sql: &str) -> Result<(SchemaRef, Vec<RecordBatch>), ClientError> {
        let mut flight =
            FlightServiceClient::new(self.channel.clone()).max_decoding_message_size(usize::MAX);
        let command = CommandStatementQuery {
            query: sql.to_string(),
            transaction_id: None,
        };
        let descriptor = FlightDescriptor::new_cmd(command.as_any().encode_to_vec());
        let info = flight
            .get_flight_info(self.request(descriptor))
            .await?
            .into_inner();
        let schema: SchemaRef = std::sync::Arc::new(info.clone().try_decode_schema()?);
        let mut batches = Vec::new();
        for endpoint in info.endpoint {
            let ticket = endpoint.ticket.ok_or_else(|| {
                ClientError::Flight("the server returned an endpoint without a ticket".into())
            })?;
            let data = flight
                .do_get(self.request(ticket))
                .await?
                .into_inner()
                .map_err(FlightError::from);
            let mut part: Vec<RecordBatch> = FlightRecordBatchStream::new_from_flight_data(data)
                .try_collect()
                .await?;
            batches.append(&mut part);
        }
        Ok((schema, batches))
    }
}

/// Largest tensor chunk [`ScalarWriter::send_tensor`] puts in one message.
pub const TENSOR_CHUNK_BYTES: usize = 8 << 20;

/// What a closed write stream acknowledged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteSummary {
    /// Batches acknowledged (duplicates included).
    pub batches: u64,
    /// Points newly applied.
    pub points: u64,
    /// Batches the server had already applied.
    pub duplicates: u64,
    /// Sequence number of the last acknowledgement.
    pub last_sequence: u64,
}

/// An open write stream for one run.
pub struct ScalarWriter {
    run_id: String,
    writer_id: String,
    next_sequence: u64,
    tx: Option<mpsc::Sender<WriteRequest>>,
    acks: JoinHandle<Result<WriteSummary, ClientError>>,
}

impl ScalarWriter {
    /// This stream's writer id.
    pub fn writer_id(&self) -> &str {
        &self.writer_id
    }

    /// Queues a batch with the next sequence number; waits only when
    /// `MAX_IN_FLIGHT` batches are unacknowledged. Returns the sequence number,
    /// or [`ClientError::StreamClosed`] once the stream has ended.
    pub async fn send(&mut self, batch: ScalarBatch) -> Result<u64, ClientError> {
        let sequence = self.next_sequence;
        self.send_with_sequence(sequence, batch).await?;
        Ok(sequence)
    }

    /// Queues a batch with an explicit sequence number (for replays).
    pub async fn send_with_sequence(
        &mut self,
        sequence: u64,
        batch: ScalarBatch,
    ) -> Result<(), ClientError> {
        let request = WriteRequest {
            writer_id: self.writer_id.clone(),
            sequence,
            run_id: self.run_id.clone(),
            scalars: Some(batch),
            tensor: None,
        };
        self.queue(request).await
    }

    /// Queues a whole tensor (little-endian `data` of `dtype`, e.g. "f32" or
    /// "bf16"), split into chunks of at most [`TENSOR_CHUNK_BYTES`], each with
    /// the next sequence number. The server computes its statistics; it
    /// becomes visible once its last chunk is durable. Returns the sequence
    /// number of the last chunk.
    pub async fn send_tensor(
        &mut self,
        name: &str,
        step: i64,
        dtype: &str,
        shape: &[i64],
        data: &[u8],
    ) -> Result<u64, ClientError> {
        self.send_tensor_chunked(name, step, dtype, shape, data, TENSOR_CHUNK_BYTES)
            .await
    }

    /// [`ScalarWriter::send_tensor`] with a chosen chunk size (at least 1 byte).
    pub async fn send_tensor_chunked(
        &mut self,
        name: &str,
        step: i64,
        dtype: &str,
        shape: &[i64],
        data: &[u8],
        chunk_bytes: usize,
    ) -> Result<u64, ClientError> {
        let header = v1::Tensor {
            name: name.to_string(),
            step,
            dtype: dtype.to_string(),
            shape: shape.to_vec(),
            total_bytes: data.len() as u64,
            ..Default::default()
        };
        let mut offset = 0;
        loop {
            let end = (offset + chunk_bytes.max(1)).min(data.len());
            let sequence = self
                .send_tensor_message(v1::Tensor {
                    offset: offset as u64,
                    data: data[offset..end].to_vec(),
                    ..header.clone()
                })
                .await?;
            offset = end;
            if offset >= data.len() {
                return Ok(sequence);
            }
        }
    }

    /// Queues one tensor message as given (whole tensor, chunk, or
    /// statistics only) with the next sequence number; returns it.
    pub async fn send_tensor_message(&mut self, tensor: v1::Tensor) -> Result<u64, ClientError> {
        let sequence = self.next_sequence;
        self.queue(WriteRequest {
            writer_id: self.writer_id.clone(),
            sequence,
            run_id: self.run_id.clone(),
            scalars: None,
            tensor: Some(tensor),
        })
        .await?;
        Ok(sequence)
    }

    /// Queues a request exactly as it was recorded, with its own writer id,
    /// sequence number and run (replaying a spool: what the server already
    /// applied is acknowledged as a duplicate).
    pub async fn send_recorded(&mut self, request: WriteRequest) -> Result<(), ClientError> {
        self.queue(request).await
    }

    async fn queue(&mut self, request: WriteRequest) -> Result<(), ClientError> {
        self.next_sequence = self.next_sequence.max(request.sequence + 1);
        let tx = self.tx.as_ref().ok_or(ClientError::StreamClosed)?;
        if tx.send(request).await.is_err() {
            // The stream has ended early; `finish` returns the reason.
            self.tx = None;
            return Err(ClientError::StreamClosed);
        }
        Ok(())
    }

    /// Closes the stream and waits for every acknowledgement.
    pub async fn finish(mut self) -> Result<WriteSummary, ClientError> {
        self.tx = None;
        self.acks
            .await
            .map_err(|e| ClientError::Flight(format!("the acknowledgement task failed: {e}")))?
    }
}

/// Builds a wire batch from (name, step, value) points, collecting names.
#[derive(Debug, Default, Clone)]
pub struct BatchBuilder {
    batch: ScalarBatch,
    names: std::collections::HashMap<String, u32>,
}

impl BatchBuilder {
    /// Adds a point; `wall_time_us` must be given for all points or none.
    pub fn push(&mut self, name: &str, step: i64, value: f64, wall_time_us: Option<i64>) {
        let index = match self.names.get(name) {
            Some(&i) => i,
            None => {
                let i = self.batch.names.len() as u32;
                self.batch.names.push(name.to_string());
                self.names.insert(name.to_string(), i);
                i
            }
        };
        self.batch.name_index.push(index);
        self.batch.steps.push(step);
        self.batch.values.push(value);
        if let Some(t) = wall_time_us {
            self.batch.wall_times_us.push(t);
        }
    }

    /// Points added so far.
    pub fn len(&self) -> usize {
        self.batch.steps.len()
    }

    /// True when no point was added.
    pub fn is_empty(&self) -> bool {
        self.batch.steps.is_empty()
    }

    /// Takes the batch, leaving the builder empty.
    pub fn take(&mut self) -> ScalarBatch {
        self.names.clear();
        std::mem::take(&mut self.batch)
    }
}

fn random_writer_id() -> String {
    let mut bytes = [0u8; 12];
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        bytes[..12].copy_from_slice(&nanos.to_le_bytes()[..12]);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
