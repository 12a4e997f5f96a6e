"""A Lightning logger that writes to steplake (needs ``lightning`` or ``pytorch_lightning``).

    from steplake.lightning import SteplakeLogger, StopOnEvent
    logger = SteplakeLogger(project="mnist", name="baseline")
    logger.experiment.watch_for("train/loss", spike=True)
    trainer = Trainer(logger=logger, callbacks=[StopOnEvent()])
"""

from __future__ import annotations

from typing import Any, Mapping

try:
    from lightning.pytorch.callbacks import Callback
    from lightning.pytorch.loggers.logger import Logger, rank_zero_experiment
    from lightning.pytorch.utilities import rank_zero_only
except ImportError:  # the older package name
    try:
        from pytorch_lightning.callbacks import Callback  # type: ignore[no-redef]
        from pytorch_lightning.loggers.logger import Logger, rank_zero_experiment  # type: ignore[no-redef]
        from pytorch_lightning.utilities import rank_zero_only  # type: ignore[no-redef]
    except ImportError as error:
        raise ImportError(
            "steplake.lightning needs Lightning: pip install lightning"
        ) from error

import steplake
from steplake._events import StopSignal
from steplake.run import Run


class SteplakeLogger(Logger):
    """Logs metrics and hyperparameters of a Lightning run to steplake.

    Arguments are those of :func:`steplake.init`; ``watch=N`` also logs
    weight and gradient statistics every N steps (:func:`steplake.watch`).
    """

    def __init__(self, project: str | None = None, name: str | None = None,
                 watch: int | None = None, **init_options: Any) -> None:
        super().__init__()
        self._project = project
        self._name = name
        self._watch_every = watch
        self._init_options = init_options
        self._run: Run | None = None
        self._config: dict[str, Any] = {}

    @property
    def name(self) -> str:
        return self._name or "steplake"

    @property
    def version(self) -> str:
        return self.experiment.id if self._run is not None else ""

    @property
    @rank_zero_experiment
    def experiment(self) -> Run:
        """The steplake :class:`~steplake.Run` (created on first use)."""
        if self._run is None:
            self._run = steplake.init(project=self._project, name=self._name,
                                      config=self._config, **self._init_options)
        return self._run

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        values = dict(params if isinstance(params, Mapping) else vars(params))
        self._config.update(values)
        if self._run is not None:  # Lightning may have created it already
            self._run.update_config(values)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self.experiment.log(dict(metrics), step=step)

    @rank_zero_only
    def log_graph(self, model: Any, input_array: Any = None) -> None:
        if self._watch_every:
            steplake.watch(model, self.experiment, every=self._watch_every)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        if self._run is not None:
            self._run.finish("finished" if status == "success" else status)


class StopOnEvent(Callback):  # type: ignore[misc]
    """Stops training (``trainer.should_stop``) after the batch in which the
    steplake server reports an event of the run: any event, or one whose
    label, condition id or series is in ``labels``.

    The run is ``run``, or that of the trainer's :class:`SteplakeLogger`.
    Register the conditions with ``run.watch_for(...)``. With
    ``checkpoint_dir``, the checkpoint ``stopped-at-event.ckpt`` is saved
    there when it stops, so the run can be resumed after a fix.
    """

    def __init__(self, run: Run | None = None, labels: Any = None,
                 checkpoint_dir: str | None = None) -> None:
        super().__init__()
        self._run = run
        self._labels = labels
        self._checkpoint_dir = checkpoint_dir
        self._signal: StopSignal | None = None
        #: The event that stopped training, once one did.
        self.event: Any = None

    def _watching(self, trainer: Any) -> StopSignal | None:
        if self._signal is None:
            run = self._run
            if run is None:
                run = next((lg.experiment for lg in trainer.loggers if isinstance(lg, SteplakeLogger)), None)
            if run is None:
                return None
            self._signal = StopSignal(run, self._labels)
        return self._signal

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        signal = self._watching(trainer)
        if signal is None or signal.event is None or self.event is not None:
            return
        self.event = signal.event
        if self._checkpoint_dir:
            import os

            trainer.save_checkpoint(os.path.join(self._checkpoint_dir, "stopped-at-event.ckpt"))
        trainer.should_stop = True
