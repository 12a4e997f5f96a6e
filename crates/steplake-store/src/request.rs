//! What callers ask of the WAL thread (one [`Command`] per request kind),
//! the single reply each gets, and what the thread does with a request once
//! its record is durable ([`Effect`]).

use std::sync::mpsc;

use steplake_core::{Event, RunInfo, ScalarBatch};
use tokio::sync::oneshot;

use crate::apply::{ConditionChange, LoggedEvents, Record};
use crate::{StoreError, TensorPart};

/// Acknowledgement of one durable batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteAck {
    /// The writer's sequence number.
    pub sequence: u64,
    /// Points in the batch.
    pub points: u64,
    /// The batch had been applied before; it was not applied again.
    pub duplicate: bool,
}

/// What a caller asks for when creating or resuming a run.
#[derive(Debug, Clone, Default)]
pub struct CreateRun {
    /// Client-chosen id; resumes the run when it exists. Generated when `None`.
    pub run_id: Option<String>,
    /// Project; "default" when empty.
    pub project: String,
    /// Name; the run id when empty.
    pub name: String,
    /// Configuration JSON; `{}` when empty. Must be valid JSON.
    pub config_json: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Forked from this run.
    pub parent_run_id: Option<String>,
    /// At this step of the parent.
    pub fork_step: Option<i64>,
}

/// An acknowledgement that arrives once a submitted batch is durable.
pub struct PendingAck {
    pub(crate) ack: oneshot::Receiver<Result<WriteAck, StoreError>>,
}

impl std::future::Future for PendingAck {
    type Output = Result<WriteAck, StoreError>;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.ack)
            .poll(cx)
            .map(|r| r.unwrap_or_else(|_| Err(StoreError::closed())))
    }
}

pub(crate) enum Command {
    Scalars {
        writer_id: String,
        sequence: u64,
        run_id: String,
        batch: ScalarBatch,
        /// The events the batch's points fired; logged in its record.
        events: Vec<Event>,
        /// The encoded WAL payload and its CRC, prepared by the submitter.
        payload: Vec<u8>,
        payload_crc: crc32fast::Hasher,
        reply: oneshot::Sender<Result<WriteAck, StoreError>>,
    },
    Tensor {
        part: TensorPart,
        /// The encoded WAL payload and its CRC, prepared by the submitter.
        payload: Vec<u8>,
        payload_crc: crc32fast::Hasher,
        reply: oneshot::Sender<Result<WriteAck, StoreError>>,
    },
    CreateRun {
        request: CreateRun,
        reply: oneshot::Sender<Result<(RunInfo, bool), StoreError>>,
    },
    FinishRun {
        run_id: String,
        status: String,
        reply: oneshot::Sender<Result<RunInfo, StoreError>>,
    },
    Condition {
        change: ConditionChange,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    Events {
        logged: LoggedEvents,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    Flush {
        reply: mpsc::Sender<Result<(), String>>,
        /// Answer only once the compaction passes after the flush are done.
        then_compact: bool,
    },
    DeleteRuns {
        selector: RunSelector,
        reply: mpsc::Sender<Result<DeletionStarted, StoreError>>,
    },
}

/// Which runs [`Store::delete_runs`](crate::Store::delete_runs) deletes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunSelector {
    /// The run with this id.
    Run(String),
    /// Every run of this project.
    Project(String),
}

/// A deletion logged and applied: the runs it deleted, and the flush that
/// rewrites their files, to wait for.
pub(crate) struct DeletionStarted {
    pub(crate) runs: Vec<String>,
    pub(crate) flushed: mpsc::Receiver<Result<(), String>>,
}

/// A request in the group being appended, waiting for the append: what the
/// WAL thread does with it once its record is durable.
pub(crate) enum Effect {
    /// A logged write, to admit by the write rules once durable.
    Write {
        record: Record,
        reply: oneshot::Sender<Result<WriteAck, StoreError>>,
        ack: WriteAck,
    },
    /// A write that was stored before (its sequence is covered): not
    /// logged again, only acknowledged, once the append holding a copy it
    /// may repeat is durable.
    Duplicate {
        reply: oneshot::Sender<Result<WriteAck, StoreError>>,
        ack: WriteAck,
    },
    /// A logged run record.
    Run {
        run: RunInfo,
        resumed: bool,
        reply: RunReply,
    },
    /// A logged condition change, or logged events: admitted, then
    /// answered.
    Catalog {
        record: Record,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Logged deletion records of these runs.
    Delete {
        runs: Vec<RunInfo>,
        reply: mpsc::Sender<Result<DeletionStarted, StoreError>>,
    },
}

pub(crate) enum RunReply {
    Created(oneshot::Sender<Result<(RunInfo, bool), StoreError>>),
    Finished(oneshot::Sender<Result<RunInfo, StoreError>>),
}

impl Effect {
    /// A request already stored, answered once this group is durable.
    pub(crate) fn duplicate(
        reply: oneshot::Sender<Result<WriteAck, StoreError>>,
        ack: WriteAck,
    ) -> Effect {
        Effect::Duplicate {
            reply,
            ack: WriteAck {
                duplicate: true,
                ..ack
            },
        }
    }

    /// Answers the request with `reason`: it was not stored.
    pub(crate) fn fail(self, reason: &str) {
        let err = || StoreError::Unavailable {
            reason: reason.to_string(),
        };
        match self {
            Effect::Write { reply, .. } | Effect::Duplicate { reply, .. } => {
                let _ = reply.send(Err(err()));
            }
            Effect::Run { reply, .. } => match reply {
                RunReply::Created(r) => {
                    let _ = r.send(Err(err()));
                }
                RunReply::Finished(r) => {
                    let _ = r.send(Err(err()));
                }
            },
            Effect::Delete { reply, .. } => {
                let _ = reply.send(Err(err()));
            }
            Effect::Catalog { reply, .. } => {
                let _ = reply.send(Err(err()));
            }
        }
    }
}

pub(crate) fn reject(command: Command, reason: &str) {
    let err = || StoreError::Unavailable {
        reason: reason.to_string(),
    };
    match command {
        Command::Scalars { reply, .. } | Command::Tensor { reply, .. } => {
            let _ = reply.send(Err(err()));
        }
        Command::CreateRun { reply, .. } => {
            let _ = reply.send(Err(err()));
        }
        Command::FinishRun { reply, .. } => {
            let _ = reply.send(Err(err()));
        }
        Command::Flush { reply, .. } => {
            let _ = reply.send(Err(reason.to_string()));
        }
        Command::DeleteRuns { reply, .. } => {
            let _ = reply.send(Err(err()));
        }
        Command::Condition { reply, .. } | Command::Events { reply, .. } => {
            let _ = reply.send(Err(err()));
        }
    }
}
