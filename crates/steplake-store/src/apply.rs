//! The write rules, in one place for both paths that change the store:
//! recovery replaying the log, and the WAL thread logging live requests.
//!
//! [`WriteRules::admit`] decides whether a record changes anything (a batch
//! a writer's sequence already covers does not; a batch for an unknown run,
//! one that skips a sequence number, or a tensor chunk out of order is
//! refused) and records what it does to the writer sequences, the run
//! catalog and the tensors being assembled.
//!
//! The live path logs a request first and admits it only once its record is
//! durable, so a failed append changes nothing; replay admits every logged
//! record again in the same order, so both reach the same decisions and the
//! same state (a record refused live is refused again on replay).
//! [`Change::apply_to`] then puts what became readable into a buffer, the
//! same way on both paths.
//!
//! The sequence rule is what makes `duplicate` exact: a writer's sequence
//! numbers follow each other from 1, so a sequence at or below the last one
//! stored names a batch that is stored, and any other is either the next one
//! or refused (nothing past a refused batch is stored until the writer sends
//! that sequence again; an empty batch skips it).

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use steplake_core::{
    ConditionSpec, CoreError, Event, RunInfo, ScalarBatch, TensorRecord, RUN_STATUS_DELETED,
};

use crate::tensor_parts::Assembler;
use crate::{now_us, Buffer, StoreError, TensorPart, WriterState};

/// The content of one WAL record.
pub(crate) enum Record {
    /// A run was created, resumed or finished.
    Run(RunInfo),
    /// A scalar batch of one writer, with the events its points fired
    /// (their `seq` already set from the record's LSN).
    Scalars {
        writer_id: String,
        sequence: u64,
        run_id: String,
        batch: ScalarBatch,
        events: Vec<Event>,
    },
    /// A standing condition registered or removed.
    Condition(ConditionChange),
    /// Events fired apart from any batch (their `seq` already set).
    Events(LoggedEvents),
    /// A tensor, or one chunk of it; `carried_over` when the store logged
    /// a partial tensor again (no new write; only logs of steplake versions
    /// before partial tensor files hold such records).
    Tensor {
        part: TensorPart,
        carried_over: bool,
    },
}

/// A change of the standing conditions, as logged.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ConditionChange {
    /// Registered (or replaced, by id).
    Set(Box<ConditionSpec>),
    /// Removed, by id.
    Removed(String),
}

/// The payload of an `Events` record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LoggedEvents {
    pub(crate) run_id: String,
    pub(crate) events: Vec<Event>,
}

/// Sets the `seq` of a record's `events`: `lsn` in the high bits and the
/// position in the record in the low 24, so seqs increase in log order.
pub(crate) fn number_events(events: &mut [Event], lsn: u64) {
    for (i, event) in events.iter_mut().enumerate() {
        event.seq = (lsn << 24) | (i as u64 & 0xff_ffff);
    }
}

/// What an admitted record does to readable data.
pub(crate) enum Change {
    /// Only the run catalog changed.
    Run,
    /// A condition was registered or removed.
    Condition(ConditionChange),
    /// Events fired apart from any batch: those that are new.
    Events(Vec<Event>),
    /// The run was deleted: its points go too.
    RunDeleted(String),
    /// Points to add to the buffer, and the events they fired that are new.
    Scalars {
        run_id: String,
        batch: ScalarBatch,
        events: Vec<Event>,
    },
    /// A tensor chunk: the whole tensor when this chunk completed it.
    Tensor {
        run_id: String,
        complete: Option<TensorRecord>,
    },
}

/// Why a record is not admitted.
pub(crate) enum Refusal {
    /// The writer's sequence already covers it: it was stored before.
    Repeat,
    /// Not stored, for this reason.
    Refused(StoreError),
}

impl Change {
    /// Puts what this change makes readable into `buffer` (runs go to the
    /// catalog, not the buffer).
    pub(crate) fn apply_to(self, buffer: &mut Buffer) {
        match self {
            Change::Run | Change::Condition(_) | Change::Events(_) => {}
            Change::RunDeleted(run_id) => buffer.remove_run(&run_id),
            Change::Scalars { run_id, batch, .. } => buffer.apply(&run_id, &batch),
            Change::Tensor { run_id, complete } => {
                if let Some(tensor) = complete {
                    buffer.apply_tensor(&run_id, tensor);
                }
            }
        }
    }
}

/// The state the write rules decide by: every run, each writer's last
/// sequence, and the tensors being assembled; and the standing conditions
/// and their events, which the same records change.
pub(crate) struct WriteRules {
    pub(crate) runs: BTreeMap<String, RunInfo>,
    pub(crate) writers: HashMap<String, WriterState>,
    pub(crate) assembler: Assembler,
    pub(crate) watch: WatchCatalog,
}

/// The standing conditions and the events they fired, by the records that
/// registered and fired them.
#[derive(Default, Clone)]
pub(crate) struct WatchCatalog {
    pub(crate) conditions: BTreeMap<String, ConditionSpec>,
    /// In seq order.
    pub(crate) events: Vec<Event>,
    event_ids: HashSet<String>,
}

impl WatchCatalog {
    /// The catalog a manifest recorded.
    pub(crate) fn new(conditions: BTreeMap<String, ConditionSpec>, events: Vec<Event>) -> Self {
        let event_ids = events.iter().map(|e| e.id.clone()).collect();
        WatchCatalog {
            conditions,
            events,
            event_ids,
        }
    }

    /// What `change` (admitted by the write rules) does to a copy of the
    /// catalog, such as the one readers see: the same as it did to the
    /// rules' own, at the cost of the change alone.
    pub(crate) fn follow(&mut self, change: &Change) {
        match change {
            Change::Scalars { events, .. } | Change::Events(events) => {
                self.record_events(events.clone());
            }
            Change::Condition(condition) => self.apply(condition.clone()),
            Change::RunDeleted(run_id) => self.drop_run(run_id),
            Change::Run | Change::Tensor { .. } => {}
        }
    }

    /// Keeps the events whose id is new (a batch stored twice under two
    /// sequences fires the same event once), and returns them.
    fn record_events(&mut self, events: Vec<Event>) -> Vec<Event> {
        let fresh: Vec<Event> = events
            .into_iter()
            .filter(|e| self.event_ids.insert(e.id.clone()))
            .collect();
        self.events.extend(fresh.iter().cloned());
        fresh
    }

    fn apply(&mut self, change: ConditionChange) {
        match change {
            ConditionChange::Set(spec) => {
                self.conditions.insert(spec.id.clone(), *spec);
            }
            ConditionChange::Removed(id) => {
                self.conditions.remove(&id);
            }
        }
    }

    /// Forgets a deleted run's conditions and events.
    pub(crate) fn drop_run(&mut self, run_id: &str) {
        self.conditions
            .retain(|_, c| c.run_id().is_none_or(|id| id != run_id));
        let ids = &mut self.event_ids;
        self.events.retain(|e| {
            let keep = e.run_id != run_id;
            if !keep {
                ids.remove(&e.id);
            }
            keep
        });
    }
}

impl WriteRules {
    /// Admits `record`, recording its effect on runs, writers and tensors.
    pub(crate) fn admit(&mut self, record: Record) -> Result<Change, Refusal> {
        match record {
            Record::Run(run) if run.status == RUN_STATUS_DELETED => {
                self.runs.remove(&run.run_id);
                self.assembler.drop_run(&run.run_id);
                self.watch.drop_run(&run.run_id);
                Ok(Change::RunDeleted(run.run_id))
            }
            Record::Run(run) => {
                self.runs.insert(run.run_id.clone(), run);
                Ok(Change::Run)
            }
            Record::Scalars {
                writer_id,
                sequence,
                run_id,
                batch,
                events,
            } => {
                // The run first: a server that lost the run (a new data
                // directory) says so, and the writer can start afresh.
                self.check_run(&run_id)?;
                self.check_writer(&writer_id, sequence)?;
                self.advance(writer_id, sequence);
                let events = self.watch.record_events(events);
                Ok(Change::Scalars {
                    run_id,
                    batch,
                    events,
                })
            }
            Record::Events(logged) => {
                self.check_run(&logged.run_id)?;
                if logged.events.iter().any(|e| e.run_id != logged.run_id) {
                    return Err(Refusal::Refused(
                        CoreError::invalid("events", "every event must be of the record's run")
                            .into(),
                    ));
                }
                Ok(Change::Events(self.watch.record_events(logged.events)))
            }
            Record::Condition(change) => {
                if let ConditionChange::Set(spec) = &change {
                    if let Some(run_id) = spec.run_id() {
                        self.check_run(run_id)?;
                    }
                }
                self.watch.apply(change.clone());
                Ok(Change::Condition(change))
            }
            Record::Tensor { part, carried_over } => {
                // A chunk logged again to keep a partial tensor past a WAL
                // truncation replaces what was assembled; it is no new write.
                self.check_run(&part.run_id)?;
                if !carried_over {
                    self.check_writer(&part.writer_id, part.sequence)?;
                }
                self.assembler
                    .check(&part)
                    .map_err(|e: CoreError| Refusal::Refused(e.into()))?;
                if !carried_over {
                    self.advance(part.writer_id.clone(), part.sequence);
                }
                let run_id = part.run_id.clone();
                let complete = self.assembler.apply(part, carried_over);
                Ok(Change::Tensor { run_id, complete })
            }
        }
    }

    /// Whether the writer's sequence already covers `sequence`: that batch
    /// is stored, and sending it again changes nothing.
    pub(crate) fn is_repeat(&self, writer_id: &str, sequence: u64) -> bool {
        sequence <= self.last_sequence(writer_id)
    }

    fn last_sequence(&self, writer_id: &str) -> u64 {
        self.writers.get(writer_id).map_or(0, |w| w.sequence)
    }

    fn check_writer(&self, writer_id: &str, sequence: u64) -> Result<(), Refusal> {
        let last = self.last_sequence(writer_id);
        if sequence <= last {
            return Err(Refusal::Repeat);
        }
        if sequence != last + 1 {
            return Err(Refusal::Refused(StoreError::SequenceGap {
                writer_id: writer_id.to_string(),
                sequence,
                expected: last + 1,
            }));
        }
        Ok(())
    }

    fn check_run(&self, run_id: &str) -> Result<(), Refusal> {
        if self.runs.contains_key(run_id) {
            Ok(())
        } else {
            Err(Refusal::Refused(StoreError::RunNotFound {
                run_id: run_id.to_string(),
            }))
        }
    }

    fn advance(&mut self, writer_id: String, sequence: u64) {
        self.writers.insert(
            writer_id,
            WriterState {
                sequence,
                last_seen_us: now_us(),
            },
        );
    }
}
