//! One sorted stream dealt out to several outputs a key at a time:
//! [`KeySplit`], the output side of a [`crate::run_merge::RunMergeExec`]
//! that feeds a window over every series.
//!
//! After the merge, the rows of one `PARTITION BY` key (one series) are
//! contiguous. A hash repartition would hash every row and copy every
//! column into per-output batches; here each run of rows with one key goes,
//! as a slice of the merged batch, to the next output in turn, so every key
//! is in exactly one output and each output stays sorted:
//!
//! ```text
//! merged:   [a a a b b][b c c d d] ...
//! output 0:  a a a      c c          (keys a, c, ...)
//! output 1:        b b b      d d    (keys b, d, ...)
//! ```
//!
//! One task runs the merge and deals; it stops only while every output
//! already has [`QUEUED_BATCHES`] batches waiting, so an output that is
//! read while the others are not can always go on (no deadlock), and it is
//! aborted when every output stream is dropped.

use std::sync::atomic::{AtomicUsize, Ordering as Atomic};
use std::sync::{Arc, Mutex};

use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::common::runtime::SpawnedTask;
use datafusion::error::{DataFusionError, Result};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::SendableRecordBatchStream;
use futures::StreamExt;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::Notify;

use crate::operators::KeyRuns;

/// The dealer waits while every output has this many batches queued.
const QUEUED_BATCHES: usize = 4;

type Delivery = Result<RecordBatch>;

/// Deals a sorted stream's runs of equal `keys` to `outputs` outputs.
#[derive(Debug)]
pub(crate) struct KeySplit {
    keys: Vec<Arc<dyn PhysicalExpr>>,
    outputs: usize,
    /// The outputs not yet taken of the current execution.
    running: Mutex<Option<Execution>>,
}

#[derive(Debug)]
struct Execution {
    receivers: Vec<Option<UnboundedReceiver<Delivery>>>,
    gate: Arc<Gate>,
    dealer: Arc<SpawnedTask<()>>,
}

/// How many batches each output has waiting, and a wake-up for the dealer
/// when one is taken.
#[derive(Debug)]
struct Gate {
    queued: Vec<AtomicUsize>,
    taken: Notify,
}

impl Gate {
    fn all_full(&self) -> bool {
        self.queued
            .iter()
            .all(|q| q.load(Atomic::Acquire) >= QUEUED_BATCHES)
    }
}

impl KeySplit {
    /// A split of a stream sorted with `keys` first into `outputs` outputs.
    pub(crate) fn new(keys: Vec<Arc<dyn PhysicalExpr>>, outputs: usize) -> Self {
        KeySplit {
            keys,
            outputs: outputs.max(1),
            running: Mutex::new(None),
        }
    }

    pub(crate) fn keys(&self) -> &[Arc<dyn PhysicalExpr>] {
        &self.keys
    }

    pub(crate) fn outputs(&self) -> usize {
        self.outputs
    }

    /// Output `output`'s stream. The first output asked for of an execution
    /// starts the dealer over the stream `start` gives.
    pub(crate) fn output(
        &self,
        output: usize,
        schema: SchemaRef,
        batch_size: usize,
        start: impl FnOnce() -> Result<SendableRecordBatchStream>,
    ) -> Result<SendableRecordBatchStream> {
        if output >= self.outputs {
            return Err(DataFusionError::Internal(format!(
                "key split has {} outputs, asked for {output}",
                self.outputs
            )));
        }
        let mut running = self
            .running
            .lock()
            .map_err(|_| DataFusionError::Internal("key split state poisoned".into()))?;
        let taken = running
            .as_ref()
            .is_none_or(|execution| execution.receivers[output].is_none());
        if taken {
            *running = Some(self.start(start()?, batch_size));
        }
        let Some(execution) = running.as_mut() else {
            return Err(DataFusionError::Internal("key split not started".into()));
        };
        let Some(receiver) = execution.receivers[output].take() else {
            return Err(DataFusionError::Internal("key split output taken".into()));
        };
        let state = (
            receiver,
            Arc::clone(&execution.gate),
            Arc::clone(&execution.dealer),
        );
        if execution.receivers.iter().all(Option::is_none) {
            // Every output is out: from now on only their streams hold the
            // dealer, which is aborted when the last of them is dropped.
            *running = None;
        }
        let batches =
            futures::stream::unfold(state, move |(mut receiver, gate, dealer)| async move {
                let delivery = receiver.recv().await?;
                gate.queued[output].fetch_sub(1, Atomic::AcqRel);
                gate.taken.notify_one();
                Some((delivery, (receiver, gate, dealer)))
            });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, batches)))
    }

    fn start(&self, sorted: SendableRecordBatchStream, batch_size: usize) -> Execution {
        let (senders, receivers): (Vec<_>, Vec<_>) =
            (0..self.outputs).map(|_| unbounded_channel()).unzip();
        let gate = Arc::new(Gate {
            queued: (0..self.outputs).map(|_| AtomicUsize::new(0)).collect(),
            taken: Notify::new(),
        });
        let dealer = Dealer {
            keys: self.keys.clone(),
            senders: senders.into_iter().map(Some).collect(),
            gate: Arc::clone(&gate),
            schema: sorted.schema(),
            batch_size: batch_size.max(1),
            pending: (0..self.outputs).map(|_| (Vec::new(), 0)).collect(),
            runs: KeyRuns::default(),
            last_output: 0,
            next_output: 0,
        };
        Execution {
            receivers: receivers.into_iter().map(Some).collect(),
            gate,
            dealer: Arc::new(SpawnedTask::spawn(dealer.run(sorted))),
        }
    }
}

struct Dealer {
    keys: Vec<Arc<dyn PhysicalExpr>>,
    /// None once that output's stream is gone.
    senders: Vec<Option<UnboundedSender<Delivery>>>,
    gate: Arc<Gate>,
    schema: SchemaRef,
    batch_size: usize,
    /// Slices held per output until a batch's worth, and their rows.
    pending: Vec<(Vec<RecordBatch>, usize)>,
    /// The runs of one key dealt, across batches.
    runs: KeyRuns,
    /// Where the last run went.
    last_output: usize,
    next_output: usize,
}

impl Dealer {
    async fn run(mut self, mut sorted: SendableRecordBatchStream) {
        let dealt = async {
            while let Some(batch) = sorted.next().await {
                self.deal(batch?).await?;
            }
            for output in 0..self.senders.len() {
                self.flush(output).await?;
            }
            Ok(())
        };
        if let Err(error) = dealt.await {
            let error = Arc::new(error);
            for sender in self.senders.iter().flatten() {
                let _ = sender.send(Err(DataFusionError::Shared(Arc::clone(&error))));
            }
        }
    }

    /// Sends each run of one key in `batch` to its output.
    async fn deal(&mut self, batch: RecordBatch) -> Result<()> {
        let rows = batch.num_rows();
        if rows == 0 {
            return Ok(());
        }
        let keys = self
            .keys
            .iter()
            .map(|key| key.evaluate(&batch)?.into_array(rows))
            .collect::<Result<Vec<_>>>()?;
        for (range, continues) in self.runs.next(&keys, rows)? {
            if !continues {
                self.last_output = self.next_output;
                self.next_output = (self.next_output + 1) % self.senders.len();
            }
            let run = batch.slice(range.start, range.end - range.start);
            self.hold(self.last_output, run).await?;
        }
        Ok(())
    }

    /// Holds `run` for `output` until a batch's worth is there.
    async fn hold(&mut self, output: usize, run: RecordBatch) -> Result<()> {
        let (held, rows) = &mut self.pending[output];
        if held.is_empty() && run.num_rows() >= self.batch_size / 2 {
            return self.send(output, run).await;
        }
        *rows += run.num_rows();
        held.push(run);
        if *rows >= self.batch_size {
            self.flush(output).await?;
        }
        Ok(())
    }

    async fn flush(&mut self, output: usize) -> Result<()> {
        let (held, rows) = std::mem::take(&mut self.pending[output]);
        if rows == 0 {
            return Ok(());
        }
        let batch = concat_batches(&self.schema, &held)?;
        self.send(output, batch).await
    }

    async fn send(&mut self, output: usize, batch: RecordBatch) -> Result<()> {
        while self.gate.all_full() {
            self.gate.taken.notified().await;
        }
        if self.senders.iter().all(Option::is_none) {
            return Err(DataFusionError::Execution("every output is gone".into()));
        }
        let Some(sender) = &self.senders[output] else {
            return Ok(());
        };
        self.gate.queued[output].fetch_add(1, Atomic::AcqRel);
        if sender.send(Ok(batch)).is_err() {
            // That output's stream is gone: nothing more goes there, and it
            // no longer counts as waiting.
            self.senders[output] = None;
            self.gate.queued[output].store(0, Atomic::Release);
        }
        Ok(())
    }
}
