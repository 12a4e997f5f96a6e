"""A drop-in for ``torch.utils.tensorboard.SummaryWriter`` that logs to
steplake instead of event files::

    # from torch.utils.tensorboard import SummaryWriter
    from steplake.tensorboard import SummaryWriter

    writer = SummaryWriter("runs/lr-3e-4")
    writer.add_scalar("train/loss", loss, global_step=step)
    writer.close()

The methods keep PyTorch's signatures. What each stores:

- ``add_scalar(tag, value, global_step)``: a point of series ``tag`` (step 0
  when ``global_step`` is None, as TensorBoard stores it; ``walltime`` in
  seconds is kept);
- ``add_scalars(main_tag, {tag: value})``: points of series
  ``main_tag/tag`` in this run (TensorBoard writes each into a run
  directory of its own, ``log_dir/main_tag_tag``, as series ``main_tag``);
- ``add_histogram(tag, values, global_step)``: the whole tensor of values
  (its statistics and histogram are computed by the server, and the values
  stay queryable);
- ``add_hparams(hparam_dict, metric_dict)``: the hyperparameters join the
  run's configuration, and the metrics are logged as points at
  ``global_step`` (default 0);
- ``add_text(tag, text)``: a note in the run's configuration under
  ``text/<tag>``;
- ``flush()``, ``close()`` (the run is marked finished).

The run is named after ``log_dir`` (PyTorch's default ``runs/<date>_<host>
<comment>`` when None); ``project``, ``server`` and the other options of
:func:`steplake.init` may be passed as keywords.
"""

from __future__ import annotations

import datetime
import os
import socket
from typing import Any, Mapping

import numpy as np

from .run import Run, init

__all__ = ["SummaryWriter"]


def _step(global_step: int | None) -> int:
    return 0 if global_step is None else int(global_step)


def _number(value: Any) -> float:
    if hasattr(value, "item"):
        value = value.item()
    return float(value)


class SummaryWriter:
    """``torch.utils.tensorboard.SummaryWriter``'s methods, logging to a steplake run."""

    def __init__(
        self,
        log_dir: str | None = None,
        comment: str = "",
        purge_step: int | None = None,
        max_queue: int = 10,
        flush_secs: int = 120,
        filename_suffix: str = "",
        **options: Any,
    ) -> None:
        if log_dir is None:
            now = datetime.datetime.now().strftime("%b%d_%H-%M-%S")
            log_dir = os.path.join("runs", f"{now}_{socket.gethostname()}{comment}")
        self.log_dir = log_dir
        options.setdefault("name", log_dir)
        #: The steplake run this writer logs to.
        self.run: Run = init(**options)

    def get_logdir(self) -> str:
        """The ``log_dir`` the writer was made with (the run's name)."""
        return self.log_dir

    def _points(self, values: Mapping[str, float], step: int, walltime: float | None) -> None:
        names = list(values)
        wall = None if walltime is None else [int(round(walltime * 1e6))]
        self.run.log_many({name: [values[name]] for name in names}, [step], wall)

    def add_scalar(
        self,
        tag: str,
        scalar_value: Any,
        global_step: int | None = None,
        walltime: float | None = None,
        new_style: bool = False,
        double_precision: bool = False,
    ) -> None:
        """A point of series ``tag`` at ``global_step``."""
        self._points({tag: _number(scalar_value)}, _step(global_step), walltime)

    def add_scalars(
        self,
        main_tag: str,
        tag_scalar_dict: Mapping[str, Any],
        global_step: int | None = None,
        walltime: float | None = None,
    ) -> None:
        """Points of series ``main_tag/tag`` for each ``tag``."""
        values = {f"{main_tag}/{tag}": _number(v) for tag, v in tag_scalar_dict.items()}
        self._points(values, _step(global_step), walltime)

    def add_histogram(
        self,
        tag: str,
        values: Any,
        global_step: int | None = None,
        bins: str = "tensorflow",
        walltime: float | None = None,
        max_bins: int | None = None,
    ) -> None:
        """The whole tensor of ``values`` at ``global_step``."""
        if hasattr(values, "detach"):
            values = values.detach().cpu().numpy()
        self.run.log_tensor(tag, np.asarray(values), step=_step(global_step))

    def add_hparams(
        self,
        hparam_dict: Mapping[str, Any],
        metric_dict: Mapping[str, Any],
        hparam_domain_discrete: Mapping[str, list[Any]] | None = None,
        run_name: str | None = None,
        global_step: int | None = None,
    ) -> None:
        """Hyperparameters into the run's configuration; metrics as points."""
        self.run.update_config(dict(hparam_dict))
        if metric_dict:
            self._points({k: _number(v) for k, v in metric_dict.items()}, _step(global_step), None)

    def add_text(
        self,
        tag: str,
        text_string: str,
        global_step: int | None = None,
        walltime: float | None = None,
    ) -> None:
        """A note in the run's configuration, under ``text/<tag>``."""
        self.run.update_config({f"text/{tag}": text_string})

    def flush(self) -> None:
        """Waits until what was logged is acknowledged (or spooled)."""
        self.run.flush()

    def close(self) -> None:
        """Flushes and marks the run finished."""
        self.run.finish()

    def __enter__(self) -> "SummaryWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
