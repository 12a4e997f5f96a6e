//! The WAL thread: owns the write-ahead log and serializes every change to
//! the store. Per group of waiting requests: log (frame one record each),
//! append and fsync once (group commit), apply (to the buffer and the
//! catalog, then reply), and freeze the buffer for the flusher when due.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use steplake_core::{RunInfo, RUN_STATUS_DELETED, RUN_STATUS_RUNNING};
use tokio::sync::oneshot;

use crate::apply::{number_events, Change, Record, Refusal, WriteRules};
use crate::flusher::FlushJob;
use crate::request::{reject, Command, DeletionStarted, Effect, RunReply, RunSelector};
use crate::shared::{read_state, write_state, Frozen, Shared};
use crate::wal::{frame_record, frame_record_with_crc, FsyncPolicy, RecordKind, WalWriter};
use crate::{now_us, random_id, CreateRun, StoreError, StoreOptions, TensorPart, WriteAck};

/// Callers waiting for the next flush: until it is written, or until it is
/// written and the compaction passes after it are done.
pub(crate) struct Waiting {
    flushed: Vec<mpsc::Sender<Result<(), String>>>,
    compacted: Vec<mpsc::Sender<Result<(), String>>>,
}

/// Owns the WAL writer; serializes every change to the store.
pub(crate) struct WalThread {
    pub(crate) shared: Arc<Shared>,
    pub(crate) wal: WalWriter,
    /// Runs, writer sequences and tensors being assembled: what requests
    /// are admitted by, the same rules recovery replays with.
    pub(crate) rules: WriteRules,
    pub(crate) next_file_id: u64,
    pub(crate) buffer_started: Option<Instant>,
    pub(crate) options: StoreOptions,
    pub(crate) flush_tx: mpsc::Sender<FlushJob>,
    /// Runs deleted since the last freeze: the next flush drops their rows
    /// from every listed file (recovery hands over those deleted in the
    /// WAL past the manifest).
    pub(crate) deleted_runs: Vec<String>,
    /// Deletions waiting for that flush.
    pub(crate) deletion_replies: Vec<mpsc::Sender<Result<(), String>>>,
}

/// The requests of one group framed so far, and their effects.
#[derive(Default)]
struct Pending {
    /// Records framed since the last append.
    framed: Vec<u8>,
    /// LSN of the first record in `framed`.
    first_lsn: Option<u64>,
    /// One per request still to answer, in log order.
    effects: Vec<Effect>,
    /// How many of `effects` the appends so far made durable.
    durable: usize,
    /// Runs created, resumed or finished in this group, not yet admitted.
    runs: HashMap<String, RunInfo>,
}

impl Pending {
    /// Frames a record with a payload checksummed by the submitter;
    /// returns its LSN.
    fn frame(
        &mut self,
        wal: &mut WalWriter,
        kind: RecordKind,
        payload: &[u8],
        payload_crc: &crc32fast::Hasher,
    ) -> u64 {
        let lsn = wal.assign_lsn();
        self.first_lsn.get_or_insert(lsn);
        frame_record_with_crc(&mut self.framed, lsn, kind, payload, payload_crc);
        lsn
    }

    /// Frames a record whose payload is `value` as JSON; returns its LSN.
    fn log_json(
        &mut self,
        wal: &mut WalWriter,
        kind: RecordKind,
        value: &impl serde::Serialize,
    ) -> u64 {
        let payload = serde_json::to_vec(value).unwrap_or_default();
        let lsn = wal.assign_lsn();
        self.first_lsn.get_or_insert(lsn);
        frame_record(&mut self.framed, lsn, kind, &payload);
        lsn
    }

    fn log_run(&mut self, wal: &mut WalWriter, run: &RunInfo) {
        let payload = serde_json::to_vec(run).unwrap_or_default();
        let lsn = wal.assign_lsn();
        self.first_lsn.get_or_insert(lsn);
        frame_record(&mut self.framed, lsn, RecordKind::Run, &payload);
        self.runs.insert(run.run_id.clone(), run.clone());
    }

    /// A run as this group leaves it so far (`None` once deleted).
    fn run<'a>(&'a self, rules: &'a WriteRules, run_id: &str) -> Option<&'a RunInfo> {
        match self.runs.get(run_id) {
            Some(run) => (run.status != RUN_STATUS_DELETED).then_some(run),
            None => rules.runs.get(run_id),
        }
    }

    /// The runs `selector` names as this group leaves them so far.
    fn select(&self, rules: &WriteRules, selector: &RunSelector) -> Vec<RunInfo> {
        match selector {
            RunSelector::Run(id) => self.run(rules, id).cloned().into_iter().collect(),
            RunSelector::Project(project) => {
                let mut ids: Vec<&String> = rules.runs.keys().chain(self.runs.keys()).collect();
                ids.sort();
                ids.dedup();
                ids.into_iter()
                    .filter_map(|id| self.run(rules, id))
                    .filter(|run| &run.project == project)
                    .cloned()
                    .collect()
            }
        }
    }
}

/// The answer to one request of an applied group.
enum Reply {
    Write(
        oneshot::Sender<Result<WriteAck, StoreError>>,
        Result<WriteAck, StoreError>,
    ),
    Run(RunInfo, bool, RunReply),
    Deleted(
        Vec<String>,
        mpsc::Sender<Result<DeletionStarted, StoreError>>,
    ),
    Condition(
        oneshot::Sender<Result<(), StoreError>>,
        Result<(), StoreError>,
    ),
}

/// Most requests grouped into one append.
pub(crate) const MAX_GROUP: usize = 4096;

impl WalThread {
    pub(crate) fn run(mut self, commands: mpsc::Receiver<Command>) {
        let tick = Duration::from_millis(250);
        loop {
            let first = match commands.recv_timeout(tick) {
                Ok(command) => command,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.freeze_if_due(None);
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match commands.try_recv() {
                    Ok(command) => group.push(command),
                    Err(_) => break,
                }
            }
            self.process(group);
        }
        // A clean stop flushed everything first: then no segment is left for
        // the next start (or an embedded reader) to replay.
        let covered_lsn = read_state(&self.shared).manifest.covered_lsn;
        if let Err(e) = self.wal.close(covered_lsn) {
            tracing::warn!(error = %e, "closing the write-ahead log failed; the next start replays it");
        }
    }

    /// Logs a group of requests with one append, then admits and applies
    /// what became durable. A failed append is undone by the log (the
    /// segment is cut back), so it stored nothing and changed no state: its
    /// requests are answered with the error, and the next group tries again
    /// (writes resume by themselves once the disk has room). Only when the
    /// log cannot be cut back does the store stop accepting writes.
    fn process(&mut self, group: Vec<Command>) {
        let failure = read_state(&self.shared).failure.clone();
        let mut pending = Pending::default();
        let mut flushes = Vec::new();
        let mut compactions = Vec::new();
        let mut commands = group.into_iter();
        let mut append_error = None;
        for command in commands.by_ref() {
            match (command, &failure) {
                (
                    Command::Flush {
                        reply,
                        then_compact,
                    },
                    _,
                ) => match then_compact {
                    false => flushes.push(reply),
                    true => compactions.push(reply),
                },
                (command, Some(reason)) => reject(command, reason),
                (command, None) => {
                    if let Some(effect) = self.log(command, &mut pending) {
                        pending.effects.push(effect);
                    }
                }
            }
            if self.wal.policy() == FsyncPolicy::Always {
                if let Err(e) = self.append(&mut pending) {
                    append_error = Some(e);
                    break;
                }
            }
        }
        if append_error.is_none() {
            append_error = self.append(&mut pending).err();
        }
        let durable = pending.effects.drain(..pending.durable).collect();
        self.apply(durable);
        if let Some(error) = append_error {
            let reason = self.append_failed(&error);
            for effect in pending.effects {
                effect.fail(&reason);
            }
            for command in commands {
                match command {
                    Command::Flush { reply, .. } => flushes.push(reply),
                    other => reject(other, &reason),
                }
            }
        }
        flushes.append(&mut self.deletion_replies);
        let forced = (!flushes.is_empty() || !compactions.is_empty()).then_some(Waiting {
            flushed: flushes,
            compacted: compactions,
        });
        self.freeze_if_due(forced);
    }

    /// Appends what `pending` framed since the last append; its effects up
    /// to here are then durable.
    fn append(&mut self, pending: &mut Pending) -> Result<(), StoreError> {
        if let Some(first_lsn) = pending.first_lsn.take() {
            self.wal.append(&pending.framed, first_lsn)?;
            self.shared
                .stats
                .wal_bytes_appended
                .fetch_add(pending.framed.len() as u64, Ordering::Relaxed);
            pending.framed.clear();
        }
        pending.durable = pending.effects.len();
        Ok(())
    }

    /// What to answer the requests of a failed append; stops the store from
    /// accepting writes when the log could not be cut back to its last
    /// durable record.
    fn append_failed(&mut self, error: &StoreError) -> String {
        match self.wal.damage() {
            None => {
                tracing::warn!(%error, "a write-ahead log append failed and was undone; its requests were refused and later ones are tried again");
                format!("writing the write-ahead log failed ({error}); nothing of this request was stored, and writes resume by themselves once the disk has room: retry")
            }
            Some(damage) => {
                let reason = format!("writing the write-ahead log failed ({error}) and could not be undone ({damage}); restart the server once the disk is healthy");
                tracing::error!("{reason}");
                write_state(&self.shared).failure = Some(reason.clone());
                reason
            }
        }
    }

    /// Frames the record for a command and returns what to do once it is
    /// durable (`None` when it was answered already).
    fn log(&mut self, command: Command, pending: &mut Pending) -> Option<Effect> {
        match command {
            Command::Scalars {
                writer_id,
                sequence,
                run_id,
                batch,
                mut events,
                payload,
                payload_crc,
                reply,
            } => {
                let ack = WriteAck {
                    sequence,
                    points: batch.len() as u64,
                    duplicate: false,
                };
                if self.rules.is_repeat(&writer_id, sequence) {
                    return Some(Effect::duplicate(reply, ack));
                }
                let kind = match events.is_empty() {
                    true => RecordKind::Scalars,
                    false => RecordKind::ScalarsWithEvents,
                };
                let lsn = pending.frame(&mut self.wal, kind, &payload, &payload_crc);
                number_events(&mut events, lsn);
                let record = Record::Scalars {
                    writer_id,
                    sequence,
                    run_id,
                    batch,
                    events,
                };
                Some(Effect::Write { record, reply, ack })
            }
            Command::Tensor {
                part,
                payload,
                payload_crc,
                reply,
            } => {
                let ack = WriteAck {
                    sequence: part.sequence,
                    points: 1,
                    duplicate: false,
                };
                if self.rules.is_repeat(&part.writer_id, part.sequence) {
                    return Some(Effect::duplicate(reply, ack));
                }
                if let Err(error) = self.check_partial_room(&part) {
                    let _ = reply.send(Err(error));
                    return None;
                }
                pending.frame(&mut self.wal, RecordKind::Tensor, &payload, &payload_crc);
                let record = Record::Tensor {
                    part,
                    carried_over: false,
                };
                Some(Effect::Write { record, reply, ack })
            }
            Command::Condition { change, reply } => {
                pending.log_json(&mut self.wal, RecordKind::Condition, &change);
                Some(Effect::Catalog {
                    record: Record::Condition(change),
                    reply,
                })
            }
            Command::Events { mut logged, reply } => {
                let lsn = pending.log_json(&mut self.wal, RecordKind::Events, &logged);
                number_events(&mut logged.events, lsn);
                Some(Effect::Catalog {
                    record: Record::Events(logged),
                    reply,
                })
            }
            Command::CreateRun { request, reply } => {
                let (run, resumed) = self.create_or_resume(request, pending);
                pending.log_run(&mut self.wal, &run);
                Some(Effect::Run {
                    run,
                    resumed,
                    reply: RunReply::Created(reply),
                })
            }
            Command::FinishRun {
                run_id,
                status,
                reply,
            } => {
                let Some(existing) = pending.run(&self.rules, &run_id) else {
                    let _ = reply.send(Err(StoreError::RunNotFound { run_id }));
                    return None;
                };
                let run = RunInfo {
                    status,
                    ended_at_us: Some(now_us()),
                    ..existing.clone()
                };
                pending.log_run(&mut self.wal, &run);
                Some(Effect::Run {
                    run,
                    resumed: false,
                    reply: RunReply::Finished(reply),
                })
            }
            Command::Flush { .. } => None,
            Command::DeleteRuns { selector, reply } => {
                let runs = pending.select(&self.rules, &selector);
                if runs.is_empty() {
                    let what = match selector {
                        RunSelector::Run(id) => format!("run {id:?}"),
                        RunSelector::Project(p) => format!("a run of project {p:?}"),
                    };
                    let _ = reply.send(Err(StoreError::NothingToDelete { what }));
                    return None;
                }
                let runs: Vec<RunInfo> = runs
                    .into_iter()
                    .map(|run| RunInfo {
                        status: RUN_STATUS_DELETED.into(),
                        ended_at_us: Some(now_us()),
                        ..run
                    })
                    .collect();
                for run in &runs {
                    pending.log_run(&mut self.wal, run);
                }
                Some(Effect::Delete { runs, reply })
            }
        }
    }

    /// Refuses a tensor chunk that would make the tensors still being
    /// received hold more than `max_partial_tensor_bytes` (a live-only
    /// limit: replay never refuses what was admitted).
    fn check_partial_room(&self, part: &TensorPart) -> Result<(), StoreError> {
        let assembler = &self.rules.assembler;
        let added = assembler.bytes_added_by(part);
        let limit = self.options.max_partial_tensor_bytes;
        if added == 0 || assembler.partial_bytes() + added <= limit {
            return Ok(());
        }
        Err(StoreError::Overloaded {
            reason: format!(
                "tensors still being received hold {} bytes, and this chunk of {:?} at step {} would pass the limit of {limit} bytes; finish the tensors already started, or retry later",
                assembler.partial_bytes(),
                part.name,
                part.step
            ),
        })
    }

    fn create_or_resume(&self, request: CreateRun, pending: &Pending) -> (RunInfo, bool) {
        if let Some(existing) = request
            .run_id
            .as_ref()
            .and_then(|id| pending.run(&self.rules, id))
        {
            let mut run = existing.clone();
            run.status = RUN_STATUS_RUNNING.into();
            run.ended_at_us = None;
            run.config_json = merged_config(&run.config_json, &request.config_json);
            return (run, true);
        }
        let run_id = request.run_id.unwrap_or_else(random_id);
        let run = RunInfo {
            project: non_empty_or(request.project, "default"),
            name: non_empty_or(request.name, &run_id),
            created_at_us: now_us(),
            ended_at_us: None,
            status: RUN_STATUS_RUNNING.into(),
            config_json: non_empty_or(request.config_json, "{}"),
            tags: request.tags,
            parent_run_id: request.parent_run_id,
            fork_step: request.fork_step,
            run_id,
        };
        (run, false)
    }

    /// Admits durable effects by the write rules (in log order, the order
    /// replay admits them in), applies what they change to the readable
    /// state under one lock, then answers each request.
    fn apply(&mut self, effects: Vec<Effect>) {
        if effects.is_empty() {
            return;
        }
        let mut changes = Vec::new();
        let mut replies = Vec::with_capacity(effects.len());
        for effect in effects {
            match effect {
                Effect::Write { record, reply, ack } => match self.rules.admit(record) {
                    Ok(change) => {
                        changes.push(change);
                        replies.push(Reply::Write(reply, Ok(ack)));
                    }
                    Err(Refusal::Repeat) => {
                        let ack = WriteAck {
                            duplicate: true,
                            ..ack
                        };
                        replies.push(Reply::Write(reply, Ok(ack)));
                    }
                    Err(Refusal::Refused(error)) => replies.push(Reply::Write(reply, Err(error))),
                },
                Effect::Duplicate { reply, ack } => replies.push(Reply::Write(reply, Ok(ack))),
                Effect::Run {
                    run,
                    resumed,
                    reply,
                } => {
                    // A run record is always admitted.
                    let _ = self.rules.admit(Record::Run(run.clone()));
                    replies.push(Reply::Run(run, resumed, reply));
                }
                Effect::Catalog { record, reply } => {
                    let result = match self.rules.admit(record) {
                        Ok(change) => {
                            changes.push(change);
                            Ok(())
                        }
                        Err(Refusal::Refused(error)) => Err(error),
                        Err(Refusal::Repeat) => Ok(()),
                    };
                    replies.push(Reply::Condition(reply, result));
                }
                Effect::Delete { runs, reply } => {
                    let mut ids = Vec::new();
                    for run in runs {
                        ids.push(run.run_id.clone());
                        if let Ok(change) = self.rules.admit(Record::Run(run)) {
                            changes.push(change);
                        }
                    }
                    replies.push(Reply::Deleted(ids, reply));
                }
            }
        }
        {
            let mut state = write_state(&self.shared);
            for reply in &replies {
                match reply {
                    Reply::Run(run, ..) => {
                        state.runs.insert(run.run_id.clone(), run.clone());
                    }
                    Reply::Deleted(ids, _) => {
                        for id in ids {
                            state.runs.remove(id);
                        }
                    }
                    Reply::Write(..) | Reply::Condition(..) => {}
                }
            }
            for change in changes {
                // Readers' copy of the conditions and events follows change
                // by change (never copied whole: it only grows with a run).
                state.watch.follow(&change);
                let readable = match &change {
                    Change::Scalars { batch, .. } => {
                        self.shared
                            .stats
                            .points_written
                            .fetch_add(batch.len() as u64, Ordering::Relaxed);
                        !batch.is_empty()
                    }
                    Change::Tensor { complete, .. } => complete.is_some(),
                    Change::Run
                    | Change::RunDeleted(_)
                    | Change::Condition(_)
                    | Change::Events(_) => false,
                };
                if readable && self.buffer_started.is_none() {
                    self.buffer_started = Some(Instant::now());
                }
                change.apply_to(&mut state.active);
            }
        }
        for reply in replies {
            match reply {
                Reply::Write(reply, result) => {
                    if result.is_ok() {
                        self.shared
                            .stats
                            .batches_written
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    let _ = reply.send(result);
                }
                Reply::Run(run, resumed, RunReply::Created(r)) => {
                    let _ = r.send(Ok((run, resumed)));
                }
                Reply::Run(run, _, RunReply::Finished(r)) => {
                    let _ = r.send(Ok(run));
                }
                Reply::Condition(reply, result) => {
                    let _ = reply.send(result);
                }
                Reply::Deleted(runs, reply) => {
                    // Answered by the flush that drops their files' rows.
                    let (done, flushed) = mpsc::channel();
                    self.deleted_runs.extend(runs.iter().cloned());
                    self.deletion_replies.push(done);
                    let _ = reply.send(Ok(DeletionStarted { runs, flushed }));
                }
            }
        }
    }

    /// Freezes the active buffer and hands it to the flusher when it is big or
    /// old enough, or when `forced` callers wait for a flush.
    fn freeze_if_due(&mut self, forced: Option<Waiting>) {
        let (rows, tensor_bytes, empty) = {
            let state = read_state(&self.shared);
            (
                state.active.rows(),
                state.active.tensor_bytes(),
                state.active.is_empty(),
            )
        };
        let old = self
            .buffer_started
            .is_some_and(|t| t.elapsed() >= self.options.flush_interval);
        let due = rows >= self.options.flush_rows
            || tensor_bytes >= self.options.flush_tensor_bytes
            || (!empty && old);
        if !due && forced.is_none() {
            return;
        }
        self.shared.reserve_flush_slot();
        let file_id = self.next_file_id;
        self.next_file_id += 1;
        let buffer = {
            let mut state = write_state(&self.shared);
            let buffer = Arc::new(std::mem::take(&mut state.active));
            state.frozen.push(Frozen {
                file_id,
                buffer: buffer.clone(),
            });
            buffer
        };
        self.buffer_started = None;
        for (run, name, step) in self
            .rules
            .assembler
            .drop_older_than(self.options.max_partial_tensor_age)
        {
            tracing::warn!(
                run,
                name,
                step,
                "dropping a tensor whose remaining chunks never came"
            );
        }
        let covered_lsn = self.wal.next_lsn() - 1;
        let (replies, compacted_replies) =
            forced.map_or_else(Default::default, |w| (w.flushed, w.compacted));
        let job = FlushJob {
            partials: self.rules.assembler.snapshot(),
            file_id,
            buffer,
            covered_lsn,
            runs: self.rules.runs.clone(),
            watch: self.rules.watch.clone(),
            deleted_runs: std::mem::take(&mut self.deleted_runs),
            writers: self
                .rules
                .writers
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
            replies,
            compacted_replies,
        };
        if let Err(mpsc::SendError(job)) = self.flush_tx.send(job) {
            self.shared.release_flush_slot();
            for reply in job.replies.iter().chain(&job.compacted_replies) {
                let _ = reply.send(Err("the flusher has stopped".into()));
            }
        }
    }
}

/// The configuration of a resumed run: the keys of `update` (a JSON object,
/// validated before it got here) replace or join those of `existing`. An
/// empty update, or one that is not an object, leaves `existing` as it is.
pub(crate) fn merged_config(existing: &str, update: &str) -> String {
    let Ok(serde_json::Value::Object(update)) = serde_json::from_str(update) else {
        return existing.to_string();
    };
    if update.is_empty() {
        return existing.to_string();
    }
    let mut merged = match serde_json::from_str(existing) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    merged.extend(update);
    serde_json::Value::Object(merged).to_string()
}

pub(crate) fn non_empty_or(value: String, default: &str) -> String {
    if value.is_empty() {
        default.to_string()
    } else {
        value
    }
}

#[cfg(test)]
mod config_tests {
    use super::merged_config;

    #[test]
    fn a_resumed_run_merges_new_config_keys() {
        assert_eq!(
            merged_config(r#"{"lr":0.1,"layers":2}"#, r#"{"lr":0.05,"seed":7}"#),
            r#"{"layers":2,"lr":0.05,"seed":7}"#
        );
        assert_eq!(merged_config(r#"{"lr":0.1}"#, ""), r#"{"lr":0.1}"#);
        assert_eq!(merged_config(r#"{"lr":0.1}"#, "{}"), r#"{"lr":0.1}"#);
        assert_eq!(merged_config(r#"{"lr":0.1}"#, "[1]"), r#"{"lr":0.1}"#);
    }
}
