//! The `steplake.v1.Ingest` gRPC service: runs, the write stream, and
//! standing conditions with their events (the stages are in [`crate::watch`]).

use std::sync::Arc;

use steplake_auth::{Access, Action, Principal};
use steplake_core::tensor::HISTOGRAM_BINS;
use steplake_core::{ConditionScope, CoreError, DType, ScalarBatch, TensorStats};
use steplake_proto::v1::ingest_server::Ingest;
use steplake_proto::v1::{
    AddConditionRequest, AddConditionResponse, CreateRunRequest, CreateRunResponse,
    Event as WireEvent, FinishRunRequest, FinishRunResponse, ListConditionsRequest,
    ListConditionsResponse, RemoveConditionRequest, RemoveConditionResponse, Tensor, WatchRequest,
    WriteRequest, WriteResponse,
};
use steplake_store::{now_us, CreateRun, PendingAck, Store, TensorPart};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::principal;
use crate::status::{auth_status, store_status};
use crate::watch::{self, Evaluator, Watching};

/// Batches of one stream that may wait for durability at once.
const MAX_IN_FLIGHT: usize = 64;

/// Implements [`Ingest`] over a [`Store`].
pub struct IngestService {
    store: Arc<Store>,
    access: Access,
    watching: Arc<Watching>,
}

impl IngestService {
    /// A service writing into `store`, for callers that `access` admits,
    /// evaluating standing conditions with `watching`.
    pub(crate) fn new(store: Arc<Store>, access: Access, watching: Arc<Watching>) -> Self {
        IngestService {
            store,
            access,
            watching,
        }
    }
}

/// Refuses `principal` unless it may read, or write to `project` (a
/// trainer's token watches the events of the runs it writes).
fn authorize_watch(access: &Access, principal: &Principal, project: &str) -> Result<(), Status> {
    access
        .authorize(principal, Action::Read)
        .or_else(|_| access.authorize(principal, Action::Write { project }))
        .map_err(auth_status)
}

/// The project a condition scope is about: the run's, or the named one.
fn scope_project(store: &Store, scope: &ConditionScope) -> Result<String, Status> {
    match scope {
        ConditionScope::Run(run_id) => project_of(store, run_id),
        ConditionScope::Project(project) => Ok(project.clone()),
    }
}

/// The project of run `run_id`, or NOT_FOUND.
fn project_of(store: &Store, run_id: &str) -> Result<String, Status> {
    store
        .run_project(run_id)
        .ok_or_else(|| Status::not_found(format!("run {run_id:?} does not exist; create it first")))
}

/// Refuses `principal` unless it may write to the run `run_id`, or, for a
/// run that does not exist yet, to `project`. (A run that does not exist
/// and is not being created is left to the store, which answers NOT_FOUND.)
fn authorize_run(
    access: &Access,
    store: &Store,
    principal: &Principal,
    run_id: &str,
    project: Option<&str>,
) -> Result<(), Status> {
    let existing = store.run_project(run_id);
    let Some(project) = existing.as_deref().or(project) else {
        return Ok(());
    };
    access
        .authorize(principal, Action::Write { project })
        .map_err(auth_status)
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

/// Turns the wire tensor into the store's tensor part.
fn tensor_part(request: &mut WriteRequest, tensor: Tensor) -> Result<TensorPart, Status> {
    let field = format!("tensor {:?} at step {}", tensor.name, tensor.step);
    let dtype: DType = tensor
        .dtype
        .parse()
        .map_err(|e: CoreError| Status::invalid_argument(format!("invalid {field}: {e}")))?;
    let shape = tensor
        .shape
        .iter()
        .map(|&d| u64::try_from(d))
        .collect::<Result<Vec<u64>, _>>()
        .map_err(|_| {
            Status::invalid_argument(format!(
                "invalid {field}: shape {:?} has a negative dimension",
                tensor.shape
            ))
        })?;
    let stats = tensor.stats.map(|s| TensorStats {
        numel: s.numel,
        mean: s.mean,
        std: s.std,
        min: s.min,
        max: s.max,
        l2: s.l2,
        abs_max: s.abs_max,
        nan_count: s.nan_count,
        inf_count: s.inf_count,
        zero_frac: s.zero_frac,
        quantiles: (!s.quantiles.is_empty()).then_some(s.quantiles),
        histogram: s.histogram,
    });
    if let Some(stats) = &stats {
        if stats.histogram.len() != HISTOGRAM_BINS {
            return Err(Status::invalid_argument(format!(
                "invalid {field}: statistics need a {HISTOGRAM_BINS}-bin histogram, got {} bins",
                stats.histogram.len()
            )));
        }
    }
    Ok(TensorPart {
        writer_id: std::mem::take(&mut request.writer_id),
        sequence: request.sequence,
        run_id: std::mem::take(&mut request.run_id),
        name: tensor.name,
        step: tensor.step,
        wall_time_us: if tensor.wall_time_us == 0 {
            now_us()
        } else {
            tensor.wall_time_us
        },
        dtype,
        shape,
        total_len: tensor.total_bytes,
        offset: tensor.offset,
        stats_only: tensor.stats_only,
        stats,
        data: tensor.data,
    })
}

/// A request handed to the WAL: its acknowledgement to wait for, and
/// whether the batch fired events (its watchers are told once it is durable).
struct Submitted {
    run_id: String,
    fired: bool,
    ack: PendingAck,
}

/// Hands a request to the store. A scalar batch is evaluated against the
/// run's standing conditions first (when `evaluator` is given), and the
/// events it fires go into its WAL record.
async fn submit(
    store: &Store,
    evaluator: Option<&Evaluator>,
    mut request: WriteRequest,
) -> Result<Submitted, Status> {
    let (writer_id, sequence) = (request.writer_id.clone(), request.sequence);
    let run_id = request.run_id.clone();
    let submitted = match request.tensor.take() {
        Some(_) if request.scalars.is_some() => Err(Status::invalid_argument(
            "invalid request: it carries both scalars and a tensor; send them in separate requests",
        )),
        Some(tensor) => tensor_part(&mut request, tensor)
            .and_then(|part| store.submit_tensor(part).map_err(store_status))
            .map(|ack| (false, ack)),
        None => match scalar_batch(&mut request) {
            Err(status) => Err(status),
            Ok(batch) => {
                // Only a batch of a run that exists is evaluated; the store
                // refuses any other with the reason.
                let events = match evaluator {
                    Some(evaluator) if store.run_exists(&run_id) => {
                        evaluator.evaluate(&run_id, &batch).await
                    }
                    _ => Vec::new(),
                };
                let fired = !events.is_empty();
                store
                    .submit_scalars_with_events(
                        &request.writer_id,
                        request.sequence,
                        &request.run_id,
                        batch,
                        events,
                    )
                    .map_err(store_status)
                    .map(|ack| (fired, ack))
            }
        },
    };
    let submitted = submitted.map(|(fired, ack)| Submitted { run_id, fired, ack });
    submitted.map_err(|status| {
        Status::new(
            status.code(),
            format!(
                "batch {sequence} of writer {writer_id:?}: {}",
                status.message()
            ),
        )
    })
}

/// A request that does not decode is the sender's fault: tonic reports
/// INTERNAL, which clients retry forever; it is INVALID_ARGUMENT.
fn undecodable(status: Status) -> Status {
    if status.code() == tonic::Code::Internal && status.message().contains("decode") {
        Status::invalid_argument(format!(
            "invalid request: it is not a WriteRequest protobuf message ({})",
            status.message()
        ))
    } else {
        status
    }
}

#[tonic::async_trait]
impl Ingest for IngestService {
    async fn create_run(
        &self,
        request: Request<CreateRunRequest>,
    ) -> Result<Response<CreateRunResponse>, Status> {
        let principal = principal(&request);
        let r = request.into_inner();
        authorize_run(
            &self.access,
            &self.store,
            &principal,
            &r.run_id,
            Some(&r.project),
        )?;
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

    /// Reads requests in order, checks that the caller may still write to
    /// the batch's run, and submits each to the WAL at once (keeping a
    /// writer's sequence order), while a second task awaits durability and
    /// answers in the same order. The first error ends the stream with its
    /// status; batches acknowledged before it stay durable.
    async fn write(
        &self,
        request: Request<Streaming<WriteRequest>>,
    ) -> Result<Response<Self::WriteStream>, Status> {
        let principal = principal(&request);
        let access = self.access.clone();
        let mut inbound = request.into_inner();
        let store = self.store.clone();
        let watching = self.watching.clone();
        let acked = self.watching.clone();
        let (pending_tx, mut pending_rx) =
            mpsc::channel::<Result<Submitted, Status>>(MAX_IN_FLIGHT);
        let (out_tx, out_rx) = mpsc::channel(MAX_IN_FLIGHT);
        tokio::spawn(async move {
            loop {
                let next = match inbound.message().await {
                    Ok(Some(request)) => {
                        match authorize_run(&access, &store, &principal, &request.run_id, None) {
                            Ok(()) => submit(&store, Some(&watching.evaluator), request).await,
                            Err(status) => Err(status),
                        }
                    }
                    Ok(None) => break,
                    // A message that cannot be decoded (too large, malformed):
                    // report it; if the client is gone the send fails harmlessly.
                    Err(status) => Err(undecodable(status)),
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
                    Ok(Submitted { run_id, fired, ack }) => match ack.await {
                        Ok(ack) => {
                            if fired {
                                acked.notifier.events_stored(&run_id);
                            }
                            Ok(WriteResponse {
                                sequence: ack.sequence,
                                points: ack.points,
                                duplicate: ack.duplicate,
                            })
                        }
                        Err(error) => {
                            // Its points were evaluated but not stored.
                            acked.evaluator.forget(&run_id);
                            Err(store_status(error))
                        }
                    },
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
        let principal = principal(&request);
        let r = request.into_inner();
        authorize_run(&self.access, &self.store, &principal, &r.run_id, None)?;
        self.store
            .finish_run(&r.run_id, &r.status)
            .await
            .map_err(store_status)?;
        // Its windows are rebuilt from the stored points if it resumes.
        self.watching.evaluator.forget(&r.run_id);
        Ok(Response::new(FinishRunResponse {}))
    }

    async fn add_condition(
        &self,
        request: Request<AddConditionRequest>,
    ) -> Result<Response<AddConditionResponse>, Status> {
        let principal = principal(&request);
        let r = request.into_inner();
        let scope = watch::requested_scope(&r.run_id, &r.project)?;
        let project = scope_project(&self.store, &scope)?;
        self.access
            .authorize(&principal, Action::Write { project: &project })
            .map_err(auth_status)?;
        let condition_id = watch::add_condition(&self.store, &self.watching.evaluator, r).await?;
        Ok(Response::new(AddConditionResponse { condition_id }))
    }

    async fn remove_condition(
        &self,
        request: Request<RemoveConditionRequest>,
    ) -> Result<Response<RemoveConditionResponse>, Status> {
        let principal = principal(&request);
        let r = request.into_inner();
        if let Some(spec) = self.store.condition(&r.condition_id) {
            // A run's condition outlives no run: its run exists.
            let project = scope_project(&self.store, &spec.scope)?;
            self.access
                .authorize(&principal, Action::Write { project: &project })
                .map_err(auth_status)?;
        }
        watch::remove_condition(&self.store, &self.watching.evaluator, &r.condition_id).await?;
        Ok(Response::new(RemoveConditionResponse {}))
    }

    async fn list_conditions(
        &self,
        request: Request<ListConditionsRequest>,
    ) -> Result<Response<ListConditionsResponse>, Status> {
        let principal = principal(&request);
        let r = request.into_inner();
        let scope = watch::requested_scope(&r.run_id, &r.project)?;
        let project = scope_project(&self.store, &scope)?;
        authorize_watch(&self.access, &principal, &project)?;
        let conditions = watch::list_conditions(&self.store, &scope)?;
        Ok(Response::new(ListConditionsResponse { conditions }))
    }

    type WatchStream = ReceiverStream<Result<WireEvent, Status>>;

    async fn watch(
        &self,
        request: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let principal = principal(&request);
        let r = request.into_inner();
        let project = project_of(&self.store, &r.run_id)?;
        authorize_watch(&self.access, &principal, &project)?;
        // Subscribed before the store is read: nothing falls in between.
        let subscription = self.watching.notifier.subscribe(Some(&r.run_id));
        let events = watch::watch_events(self.store.clone(), r.run_id, r.after_seq, subscription);
        Ok(Response::new(ReceiverStream::new(events)))
    }
}

#[cfg(test)]
mod fuzz {
    //! Protobuf write requests from the wire into validation and the store
    //! (steplake-fuzz): any bytes are refused with a status or stored,
    //! never a panic, a hang or a huge allocation.

    use prost::Message as _;
    use steplake_proto::v1::{ScalarBatch as WireBatch, TensorStatistics};

    use super::*;

    fn requests() -> Vec<Vec<u8>> {
        let scalars = WriteRequest {
            writer_id: "w".into(),
            sequence: 1,
            run_id: "r".into(),
            scalars: Some(WireBatch {
                names: vec!["loss".into(), "acc".into()],
                name_index: vec![0, 1, 0],
                steps: vec![0, 0, 1],
                values: vec![2.5, 0.1, f64::NAN],
                wall_times_us: vec![1_000, 1_000, 2_000],
            }),
            tensor: None,
        };
        let data: Vec<u8> = (0..8u32).flat_map(|i| (i as f32).to_le_bytes()).collect();
        let chunk = WriteRequest {
            writer_id: "w".into(),
            sequence: 2,
            run_id: "r".into(),
            scalars: None,
            tensor: Some(Tensor {
                name: "w.0".into(),
                step: 3,
                dtype: "f32".into(),
                shape: vec![2, 4],
                total_bytes: data.len() as u64,
                offset: 16,
                data: data[16..].to_vec(),
                ..Default::default()
            }),
        };
        let stats = WriteRequest {
            writer_id: "w".into(),
            sequence: 3,
            run_id: "r".into(),
            scalars: None,
            tensor: Some(Tensor {
                name: "w.1".into(),
                step: 3,
                dtype: "bf16".into(),
                shape: vec![1024],
                stats_only: true,
                stats: Some(TensorStatistics {
                    numel: 1024,
                    l2: 3.0,
                    histogram: vec![1; HISTOGRAM_BINS],
                    quantiles: vec![0.0, 0.5, 1.0],
                    ..Default::default()
                }),
                ..Default::default()
            }),
        };
        [scalars, chunk, stats]
            .iter()
            .map(|r| r.encode_to_vec())
            .collect()
    }

    #[test]
    fn fuzz_write_requests_into_validation() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), steplake_store::StoreOptions::default()).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime
            .block_on(store.create_run(steplake_store::CreateRun {
                run_id: Some("r".into()),
                ..Default::default()
            }))
            .unwrap();
        let seeds = requests();
        steplake_fuzz::fuzz("write request", &seeds, &[b"f32", b"r"], 3_000, |input| {
            let Ok(request) = WriteRequest::decode(input) else {
                return;
            };
            if let Ok(submitted) = runtime.block_on(submit(&store, None, request)) {
                let _ = runtime.block_on(submitted.ack);
            }
        });
        store.shutdown().unwrap();
    }
}
