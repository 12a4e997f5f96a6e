//! The WAL thread: owns the write-ahead log and serializes every change to
//! the store. Per group of waiting requests: log (frame one record each),
//! append and fsync once (group commit), apply (to the buffer and the
//! catalog, then reply), and freeze the buffer for the flusher when due.

use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use steplake_core::{RunInfo, RUN_STATUS_RUNNING};
use tokio::sync::oneshot;

use crate::apply::{Change, Record, Refusal, WriteRules};
use crate::flusher::FlushJob;
use crate::request::{reject, Command, Effect, RunReply};
use crate::shared::{read_state, write_state, Frozen, Shared};
use crate::tensor_record::encode_tensor_part;
use crate::wal::{frame_record, frame_record_with_crc, FsyncPolicy, RecordKind, WalWriter};
use crate::{now_us, random_id, CreateRun, StoreError, StoreOptions, TensorPart, WriteAck};

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

    fn process(&mut self, group: Vec<Command>) {
        let mut framed = Vec::new();
        let first_lsn = self.wal.next_lsn();
        let mut effects = Vec::with_capacity(group.len());
        let mut flushes = Vec::new();
        let failure = read_state(&self.shared).failure.clone();
        for command in group {
            if let Some(reason) = &failure {
                reject(command, reason);
                continue;
            }
            match command {
                Command::Flush { reply } => flushes.push(reply),
                other => {
                    if let Some(effect) = self.log(other, &mut framed) {
                        effects.push(effect);
                    }
                }
            }
            if self.wal.policy() == FsyncPolicy::Always && !framed.is_empty() {
                let lsn = self.wal.next_lsn() - 1;
                if let Err(e) = self.wal.append(&framed, lsn) {
                    return self.fail_all(effects, flushes, e);
                }
                framed.clear();
            }
        }
        if !framed.is_empty() {
            if let Err(e) = self.wal.append(&framed, first_lsn) {
                return self.fail_all(effects, flushes, e);
            }
        }
        self.apply(effects);
        let forced = (!flushes.is_empty()).then_some(flushes);
        self.freeze_if_due(forced);
    }

    /// Frames the record for a command and returns what to do once it is durable.
    fn log(&mut self, command: Command, framed: &mut Vec<u8>) -> Option<Effect> {
        match command {
            Command::Scalars {
                writer_id,
                sequence,
                run_id,
                batch,
                payload,
                payload_crc,
                reply,
            } => {
                let ack = WriteAck {
                    sequence,
                    points: batch.len() as u64,
                    duplicate: false,
                };
                let record = Record::Scalars {
                    writer_id,
                    sequence,
                    run_id,
                    batch,
                };
                let effect = self.admit(record, reply, ack)?;
                if let Effect::Write { .. } = effect {
                    let lsn = self.wal.assign_lsn();
                    frame_record_with_crc(framed, lsn, RecordKind::Scalars, &payload, &payload_crc);
                }
                Some(effect)
            }
            Command::Tensor {
                part,
                payload,
                payload_crc,
                reply,
            } => {
                if let Err(error) = self.check_partial_room(&part) {
                    let _ = reply.send(Err(error));
                    return None;
                }
                let ack = WriteAck {
                    sequence: part.sequence,
                    points: 1,
                    duplicate: false,
                };
                let record = Record::Tensor {
                    part,
                    carried_over: false,
                };
                let effect = self.admit(record, reply, ack)?;
                if let Effect::Write { .. } = effect {
                    let lsn = self.wal.assign_lsn();
                    frame_record_with_crc(framed, lsn, RecordKind::Tensor, &payload, &payload_crc);
                }
                Some(effect)
            }
            Command::CreateRun { request, reply } => {
                let (run, resumed) = self.create_or_resume(request);
                self.log_run(&run, framed);
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
                let Some(existing) = self.rules.runs.get(&run_id) else {
                    let _ = reply.send(Err(StoreError::RunNotFound { run_id }));
                    return None;
                };
                let run = RunInfo {
                    status,
                    ended_at_us: Some(now_us()),
                    ..existing.clone()
                };
                self.log_run(&run, framed);
                Some(Effect::Run {
                    run,
                    resumed: false,
                    reply: RunReply::Finished(reply),
                })
            }
            Command::Flush { .. } => None,
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

    /// Admits a write by the write rules: the effect to apply once its
    /// record is durable (a duplicate's is only its ack), or `None` when it
    /// was refused (and the refusal is sent). `?` in [`WalThread::log`]
    /// passes a `None` on.
    fn admit(
        &mut self,
        record: Record,
        reply: oneshot::Sender<Result<WriteAck, StoreError>>,
        ack: WriteAck,
    ) -> Option<Effect> {
        match self.rules.admit(record) {
            Ok(change) => Some(Effect::Write { change, reply, ack }),
            // Nothing is logged; the ack waits for this group's append all
            // the same, since the copy it repeats may be in this group.
            Err(Refusal::Repeat) => Some(Effect::Duplicate {
                reply,
                ack: WriteAck {
                    duplicate: true,
                    ..ack
                },
            }),
            Err(Refusal::Refused(error)) => {
                let _ = reply.send(Err(error));
                None
            }
        }
    }

    fn log_run(&mut self, run: &RunInfo, framed: &mut Vec<u8>) {
        let payload = serde_json::to_vec(run).unwrap_or_default();
        let lsn = self.wal.assign_lsn();
        frame_record(framed, lsn, RecordKind::Run, &payload);
        // A run record is always admitted.
        let _ = self.rules.admit(Record::Run(run.clone()));
    }

    fn create_or_resume(&self, request: CreateRun) -> (RunInfo, bool) {
        if let Some(existing) = request
            .run_id
            .as_ref()
            .and_then(|id| self.rules.runs.get(id))
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

    /// Applies durable effects to the readable state, then acknowledges them.
    fn apply(&mut self, effects: Vec<Effect>) {
        if effects.is_empty() {
            return;
        }
        let mut replies = Vec::with_capacity(effects.len());
        {
            let mut state = write_state(&self.shared);
            for effect in effects {
                match effect {
                    Effect::Write { change, reply, ack } => {
                        if let Change::Scalars { .. } = &change {
                            self.shared
                                .stats
                                .points_written
                                .fetch_add(ack.points, Ordering::Relaxed);
                        }
                        let readable = match &change {
                            Change::Scalars { .. } => true,
                            Change::Tensor { complete, .. } => complete.is_some(),
                            Change::Run => false,
                        };
                        if readable && self.buffer_started.is_none() {
                            self.buffer_started = Some(Instant::now());
                        }
                        change.apply_to(&mut state.active);
                        replies.push(Effect::Duplicate { reply, ack });
                    }
                    Effect::Run {
                        run,
                        resumed,
                        reply,
                    } => {
                        state.runs.insert(run.run_id.clone(), run.clone());
                        replies.push(Effect::Run {
                            run,
                            resumed,
                            reply,
                        });
                    }
                    duplicate @ Effect::Duplicate { .. } => replies.push(duplicate),
                }
            }
        }
        for effect in replies {
            match effect {
                Effect::Duplicate { reply, ack } | Effect::Write { reply, ack, .. } => {
                    self.shared
                        .stats
                        .batches_written
                        .fetch_add(1, Ordering::Relaxed);
                    let _ = reply.send(Ok(ack));
                }
                Effect::Run {
                    run,
                    resumed,
                    reply,
                } => match reply {
                    RunReply::Created(r) => {
                        let _ = r.send(Ok((run, resumed)));
                    }
                    RunReply::Finished(r) => {
                        let _ = r.send(Ok(run));
                    }
                },
            }
        }
    }

    fn fail_all(
        &mut self,
        effects: Vec<Effect>,
        flushes: Vec<mpsc::Sender<Result<(), String>>>,
        error: StoreError,
    ) {
        let reason = format!("writing the write-ahead log failed ({error}); restart the server once the disk is healthy");
        tracing::error!("{reason}");
        write_state(&self.shared).failure = Some(reason.clone());
        for effect in effects {
            effect.fail(&reason);
        }
        for f in flushes {
            let _ = f.send(Err(reason.clone()));
        }
    }

    /// Freezes the active buffer and hands it to the flusher when it is big or
    /// old enough, or when `forced` callers wait for a flush.
    fn freeze_if_due(&mut self, forced: Option<Vec<mpsc::Sender<Result<(), String>>>>) {
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
        self.carry_over_partial_tensors();
        let job = FlushJob {
            file_id,
            buffer,
            covered_lsn,
            runs: self.rules.runs.clone(),
            writers: self
                .rules
                .writers
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
            replies: forced.unwrap_or_default(),
        };
        if let Err(mpsc::SendError(job)) = self.flush_tx.send(job) {
            self.shared.release_flush_slot();
            for reply in job.replies {
                let _ = reply.send(Err("the flusher has stopped".into()));
            }
        }
    }
}

impl WalThread {
    /// Logs every tensor still being received again, past the LSN the next
    /// flush covers: the WAL segments holding their earlier parts may then be
    /// deleted without losing acknowledged bytes. On failure the store stops
    /// accepting writes, as for any WAL failure.
    fn carry_over_partial_tensors(&mut self) {
        let parts = self.rules.assembler.carry_over();
        if parts.is_empty() {
            return;
        }
        let first_lsn = self.wal.next_lsn();
        let mut framed = Vec::new();
        for part in &parts {
            let mut payload = Vec::new();
            encode_tensor_part(&mut payload, part, true);
            let lsn = self.wal.assign_lsn();
            frame_record(&mut framed, lsn, RecordKind::Tensor, &payload);
        }
        if let Err(e) = self.wal.append(&framed, first_lsn) {
            self.fail_all(Vec::new(), Vec::new(), e);
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
