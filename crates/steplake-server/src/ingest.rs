//! The `steplake.v1.Ingest` gRPC service: runs and the write stream.

use std::sync::Arc;

use steplake_core::ScalarBatch;
use steplake_proto::v1::ingest_server::Ingest;
use steplake_proto::v1::{
    CreateRunRequest, CreateRunResponse, FinishRunRequest, FinishRunResponse, WriteRequest,
    WriteResponse,
};
use steplake_store::{now_us, CreateRun, PendingAck, Store};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::status::store_status;

/// Batches of one stream that may wait for durability at once.
const MAX_IN_FLIGHT: usize = 64;

/// Implements [`Ingest`] over a [`Store`].
pub struct IngestService {
    store: Arc<Store>,
}

impl IngestService {
    /// A service writing into `store`.
    pub fn new(store: Arc<Store>) -> Self {
        IngestService { store }
    }
}

/// Turns the wire batch into the store's batch; stamps wall times when absent.
fn scalar_batch(request: &mut WriteRequest) -> Result<ScalarBatch, Status> {
    let wire = request
        .scalars
        .take()
        .ok_or_else(|| Status::invalid_argument("invalid scalars: the request carries no batch"))?;
    let wall_times_us = if wire.wall_times_us.is_empty() {
        vec![now_us(); wire.steps.len()]
    } else {
        wire.wall_times_us
    };
    Ok(ScalarBatch {
        names: wire.names,
        name_index: wire.name_index,
        steps: wire.steps,
        values: wire.values,
        wall_times_us,
    })
}

fn submit(store: &Store, mut request: WriteRequest) -> Result<PendingAck, Status> {
    let batch = scalar_batch(&mut request)?;
    store
        .submit_scalars(&request.writer_id, request.sequence, &request.run_id, batch)
        .map_err(|e| {
            let status = store_status(e);
            Status::new(
                status.code(),
                format!(
                    "batch {} of writer {:?}: {}",
                    request.sequence,
                    request.writer_id,
                    status.message()
                ),
            )
        })
}

#[tonic::async_trait]
impl Ingest for IngestService {
    async fn create_run(
        &self,
        request: Request<CreateRunRequest>,
    ) -> Result<Response<CreateRunResponse>, Status> {
        let r = request.into_inner();
        let (run, resumed) = self
            .store
            .create_run(CreateRun {
                run_id: (!r.run_id.is_empty()).then_some(r.run_id),
                project: r.project,
                name: r.name,
                config_json: r.config_json,
                tags: r.tags,
                parent_run_id: (!r.parent_run_id.is_empty()).then_some(r.parent_run_id),
                fork_step: r.fork_step,
            })
            .await
            .map_err(store_status)?;
        Ok(Response::new(CreateRunResponse {
            run_id: run.run_id,
            resumed,
        }))
    }

    type WriteStream = ReceiverStream<Result<WriteResponse, Status>>;

    /// Reads requests in order and submits each to the WAL at once (keeping a
    /// writer's sequence order), while a second task awaits durability and
    /// answers in the same order. The first error ends the stream with its
    /// status; batches acknowledged before it stay durable.
    async fn write(
        &self,
        request: Request<Streaming<WriteRequest>>,
    ) -> Result<Response<Self::WriteStream>, Status> {
        let mut inbound = request.into_inner();
        let store = self.store.clone();
        let (pending_tx, mut pending_rx) =
            mpsc::channel::<Result<PendingAck, Status>>(MAX_IN_FLIGHT);
        let (out_tx, out_rx) = mpsc::channel(MAX_IN_FLIGHT);
        tokio::spawn(async move {
            loop {
                let next = match inbound.message().await {
                    Ok(Some(request)) => submit(&store, request),
                    Ok(None) => break,
                    // A message that cannot be decoded (too large, malformed):
                    // report it; if the client is gone the send fails harmlessly.
                    Err(status) => Err(status),
                };
                let failed = next.is_err();
                if pending_tx.send(next).await.is_err() || failed {
                    break;
                }
            }
        });
        tokio::spawn(async move {
            while let Some(pending) = pending_rx.recv().await {
                let response = match pending {
                    Ok(ack) => ack.await.map_err(store_status).map(|ack| WriteResponse {
                        sequence: ack.sequence,
                        points: ack.points,
                        duplicate: ack.duplicate,
                    }),
                    Err(status) => Err(status),
                };
                let failed = response.is_err();
                if out_tx.send(response).await.is_err() || failed {
                    break;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(out_rx)))
    }

    async fn finish_run(
        &self,
        request: Request<FinishRunRequest>,
    ) -> Result<Response<FinishRunResponse>, Status> {
        let r = request.into_inner();
        self.store
            .finish_run(&r.run_id, &r.status)
            .await
            .map_err(store_status)?;
        Ok(Response::new(FinishRunResponse {}))
    }
}
