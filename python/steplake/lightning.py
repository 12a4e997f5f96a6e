"""A Lightning logger that writes to steplake (needs ``lightning`` or ``pytorch_lightning``).

    from steplake.lightning import SteplakeLogger
    trainer = Trainer(logger=SteplakeLogger(project="mnist", name="baseline"))
"""

from __future__ import annotations

from typing import Any, Mapping

try:
    from lightning.pytorch.loggers.logger import Logger, rank_zero_experiment
    from lightning.pytorch.utilities import rank_zero_only
except ImportError:  # the older package name
    try:
        from pytorch_lightning.loggers.logger import Logger, rank_zero_experiment  # type: ignore[no-redef]
        from pytorch_lightning.utilities import rank_zero_only  # type: ignore[no-redef]
    except ImportError as error:
        raise ImportError(
            "steplake.lightning needs Lightning: pip install lightning"
        ) from error

import steplake
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
