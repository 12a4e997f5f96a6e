"""A drop-in for the ``wandb`` module's logging API that logs to steplake::

    # import wandb
    import steplake.wandb as wandb

    run = wandb.init(project="vision", name="lr-0.1", config={"lr": 0.1})
    for step in range(1000):
        wandb.log({"train/loss": loss, "train/acc": acc})
    wandb.summary["best_acc"] = best
    wandb.finish()

What each call stores, the same as ``steplake import wandb`` stores for a run
logged by W&B itself (so the two can be compared, and mixed):

- ``init(project, name, config, tags, id, resume, dir, mode, …)``: a steplake
  run; ``id`` (with or without ``resume``) continues a run of that id,
  ``dir`` is where points are spooled while the server is unreachable,
  ``mode="disabled"`` logs nothing. W&B's default project is
  ``uncategorized``; ``server`` and the other options of
  :func:`steplake.init` may be passed as keywords.
- ``log(data, step=None, commit=None)``: W&B's step semantics. Each call
  without ``step`` makes a history row at the current step and moves on;
  ``commit=False`` gathers keys into the row; ``step=`` larger than the
  current step commits the row before it, and a smaller one is refused
  with a warning, as W&B does. Nested dicts become ``a.b`` keys; numbers,
  booleans (0 and 1), NaN and ±Inf are points; a :class:`Histogram` is the
  whole tensor of its values; text and other media are left out (warned
  once).
- ``config``: attribute and item access, ``update``, ``setdefaults``; every
  change reaches the run's configuration.
- ``summary``: values set on it that differ from the last value logged go
  into the configuration under ``summary``.
- ``define_metric(name, step_metric=…)``: recorded in the configuration
  under ``wandb.step_metrics``; points keep W&B's ``_step`` as their step.
- ``watch(model, log="gradients", log_freq=1000)``: :func:`steplake.watch`.
- ``alert(title, text, level)``: an event of the run (the ``events`` table,
  ``run.events()``, the dashboard), at the current step, labelled
  ``"title: text"``.
- ``finish(exit_code=0)``: the last row is committed and the run is marked
  finished (failed for a non-zero exit code).
"""

from __future__ import annotations

import enum
import math
import sys
from typing import Any, Iterator, Mapping, MutableMapping, Sequence

import numpy as np

from .run import Run as _SteplakeRun
from .run import init as _steplake_init

__all__ = [
    "AlertLevel", "Config", "Histogram", "Run", "Summary", "alert", "config", "define_metric",
    "finish", "init", "log", "run", "summary", "watch",
]

#: W&B's project for runs that name none.
DEFAULT_PROJECT = "uncategorized"


class AlertLevel(str, enum.Enum):
    """``wandb.AlertLevel``."""

    INFO = "INFO"
    WARN = "WARN"
    ERROR = "ERROR"


class Histogram:
    """``wandb.Histogram(sequence)``: logged as the whole tensor of its values
    (the server computes the statistics and histogram)."""

    def __init__(self, sequence: Any = None, np_histogram: Any = None, num_bins: int = 64) -> None:
        if sequence is None:
            raise ValueError("steplake.wandb.Histogram needs the values (sequence=); "
                             "np_histogram= is not supported")
        if hasattr(sequence, "detach"):
            sequence = sequence.detach().cpu().numpy()
        self.values = np.asarray(sequence, dtype=np.float64).ravel()
        self.num_bins = num_bins


def _flatten(data: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _flatten(value, f"{name}.")
        else:
            yield name, value


def _number(value: Any) -> float | None:
    """A value W&B charts as a number: ints, floats, booleans, numpy and 0-d
    tensor scalars."""
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if isinstance(value, (bool, int, float, np.number, np.bool_)):
        return float(value)
    return None


class Config(MutableMapping[str, Any]):
    """``wandb.config``: a dict with attribute access; changes reach the run."""

    def __init__(self, run: "Run | None", values: Mapping[str, Any] | None = None) -> None:
        object.__setattr__(self, "_run", run)
        object.__setattr__(self, "_values", dict(values or {}))

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def __delitem__(self, key: str) -> None:
        del self._values[key]
        if self._run is not None:
            self._run._store_config()

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __getattr__(self, key: str) -> Any:
        try:
            return self._values[key]
        except KeyError:
            raise AttributeError(key) from None

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value

    def update(self, values: Any = (), allow_val_change: bool | None = None, **more: Any) -> None:  # type: ignore[override]
        """Adds or changes keys (``allow_val_change`` is accepted and ignored)."""
        self._values.update(dict(values, **more))
        if self._run is not None:
            self._run._store_config()

    def setdefaults(self, values: Mapping[str, Any]) -> None:
        """Adds the keys not set yet."""
        self.update({k: v for k, v in values.items() if k not in self._values})

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)

    def __repr__(self) -> str:
        return repr(self._values)


class Summary(MutableMapping[str, Any]):
    """``wandb.summary``: the last value logged of each key, and values set
    on it; those set that history does not give are stored in the run's
    configuration under ``summary``."""

    def __init__(self, run: "Run | None") -> None:
        self._run = run
        self._last: dict[str, Any] = {}
        self._set: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        if key in self._set:
            return self._set[key]
        return self._last[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def __delitem__(self, key: str) -> None:
        self._set.pop(key, None)
        self._last.pop(key, None)
        if self._run is not None:
            self._run._store_config()

    def __iter__(self) -> Iterator[str]:
        return iter({**self._last, **self._set})

    def __len__(self) -> int:
        return len({**self._last, **self._set})

    def update(self, values: Any = (), **more: Any) -> None:  # type: ignore[override]
        for key, value in _flatten(dict(values, **more)):
            self._set[key] = value
        if self._run is not None:
            self._run._store_config()

    def _logged(self, key: str, value: Any) -> None:
        self._last[key] = value
        self._set.pop(key, None)

    def beyond_history(self) -> dict[str, Any]:
        """Values set that are not the last value logged."""
        return {k: v for k, v in self._set.items() if self._last.get(k, _MISSING) != v}

    def __repr__(self) -> str:
        return repr(dict(self.items()))


_MISSING = object()


class Run:
    """``wandb.Run``: ``log``, ``config``, ``summary``, ``define_metric``,
    ``watch``, ``alert`` and ``finish`` on a steplake run (``.steplake``)."""

    def __init__(self, steplake_run: _SteplakeRun | None, config: Mapping[str, Any] | None) -> None:
        #: The steplake run logged to (None when ``mode="disabled"``).
        self.steplake = steplake_run
        self._step = 0
        self._row: dict[str, Any] = {}
        self._step_metrics: dict[str, str] = {}
        self._warned: set[str] = set()
        self._alert_conditions: dict[str, int] = {}
        self._finished = False
        self.summary = Summary(self)
        self.config = Config(self, config)

    # ---- identity -----------------------------------------------------------

    @property
    def id(self) -> str:
        return self.steplake.id if self.steplake else "disabled"

    @property
    def name(self) -> str:
        return self.steplake.name if self.steplake else "disabled"

    @property
    def project(self) -> str:
        return self.steplake.project if self.steplake else DEFAULT_PROJECT

    @property
    def step(self) -> int:
        """The step the next committed row gets."""
        return self._step

    # ---- logging ------------------------------------------------------------

    def log(self, data: Mapping[str, Any], step: int | None = None, commit: bool | None = None) -> None:
        """W&B's ``run.log``: see the module's documentation for the step
        and commit semantics. Never raises."""
        try:
            if step is not None:
                step = int(step)
                if step < self._step:
                    self._warn(
                        "step",
                        f"wandb.log: step {step} is before the current step {self._step}; "
                        "the data was not logged (W&B refuses it too)")
                    return
                if step > self._step:
                    self._commit()
                    self._step = step
                commit = bool(commit) if commit is not None else False
            elif commit is None:
                commit = True
            self._row.update(_flatten(data))
            if commit:
                self._commit()
        except Exception as error:  # noqa: BLE001 - never break the training loop
            self._warn("log", f"wandb.log failed and the data was dropped: {error!r}")

    def _commit(self) -> None:
        """Writes the pending row at the current step and moves one on."""
        if not self._row:
            return
        row, self._row = self._row, {}
        step = self._step
        self._step += 1
        if self.steplake is None:
            return
        points: dict[str, float] = {}
        for key, value in row.items():
            if isinstance(value, Histogram):
                self.steplake.log_tensor(key, value.values, step=step)
                continue
            number = _number(value)
            self.summary._logged(key, value if number is None or not math.isnan(number) else "NaN")
            if number is None:
                self._warn(f"type:{type(value).__name__}",
                           f"wandb.log: {type(value).__name__} values (key {key!r}) are not stored by steplake")
                continue
            points[key] = number
        if points:
            self.steplake.log(points, step=step)

    def define_metric(self, name: str, step_metric: str | None = None, **options: Any) -> None:
        """Records ``name``'s step metric (the chart's x-axis in W&B) in the
        configuration under ``wandb.step_metrics``."""
        if step_metric:
            self._step_metrics[name] = step_metric
            self._store_config()

    def watch(self, models: Any, criterion: Any = None, log: str | None = "gradients",
              log_freq: int = 1000, idx: int | None = None, log_graph: bool = False) -> None:
        """``steplake.watch`` on each model: ``log`` "gradients", "parameters"
        or "all", every ``log_freq`` steps."""
        if self.steplake is None or log is None:
            return
        from . import watch as _watch

        what = {"gradients": ("grads",), "parameters": ("weights",), "all": ("weights", "grads")}
        if log not in what:
            raise ValueError(f"log must be 'gradients', 'parameters', 'all' or None, not {log!r}")
        for model in models if isinstance(models, (list, tuple)) else [models]:
            _watch(model, self.steplake, every=log_freq, log=what[log], step_fn=lambda: self._step)

    def alert(self, title: str, text: str, level: str | AlertLevel | None = None,
              wait_duration: Any = None) -> None:
        """An event of the run at the current step, labelled ``"title: text"``
        (a standing condition on series ``alert/<title>`` that the point
        logged here fires). Never raises."""
        if self.steplake is None:
            return
        try:
            level_name = getattr(level, "value", level) or "INFO"
            series = "alert/" + "".join(c if c.isalnum() or c in "-_." else "_" for c in title)
            count = self._alert_conditions.get(series, 0) + 1
            self._alert_conditions[series] = count
            self.steplake.watch_for(series, f"value = {count}", label=f"{title}: {text} [{level_name}]")
            self.steplake.log({series: count}, step=self._step)
        except Exception as error:  # noqa: BLE001
            self._warn("alert", f"wandb.alert failed: {error!r}")

    def _store_config(self) -> None:
        if self.steplake is None:
            return
        values: dict[str, Any] = dict(self.config)
        if self._step_metrics:
            values["wandb.step_metrics"] = dict(self._step_metrics)
        beyond = self.summary.beyond_history()
        if beyond:
            values["summary"] = beyond
        self.steplake.update_config(values)

    def finish(self, exit_code: int | None = None, quiet: bool | None = None) -> None:
        """Commits the last row and marks the run finished (failed for a
        non-zero ``exit_code``)."""
        if self._finished:
            return
        self._finished = True
        self._commit()
        if self.steplake is not None:
            self._store_config()
            self.steplake.finish("failed" if exit_code else "finished")
        global run
        if run is self:
            _set_current(None)

    def _warn(self, kind: str, message: str) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            print(f"steplake.wandb: {message}", file=sys.stderr)

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.finish(exit_code=1 if exc_type is not None else 0)

    def __repr__(self) -> str:
        return f"<steplake.wandb.Run {self.id} project={self.project!r} name={self.name!r}>"


#: The current run (``wandb.run``), None before ``init`` and after ``finish``.
run: Run | None = None
#: The current run's config and summary (``wandb.config``, ``wandb.summary``).
config: Config = Config(None)
summary: Summary = Summary(None)


def _set_current(current: Run | None) -> None:
    global run, config, summary
    run = current
    config = current.config if current else Config(None)
    summary = current.summary if current else Summary(None)


def init(
    project: str | None = None,
    name: str | None = None,
    config: Mapping[str, Any] | None = None,
    tags: Sequence[str] | None = None,
    id: str | None = None,  # noqa: A002 - W&B's name
    resume: bool | str | None = None,
    dir: str | None = None,  # noqa: A002 - W&B's name
    mode: str | None = None,
    **options: Any,
) -> Run:
    """``wandb.init``: starts a steplake run (see the module's
    documentation) and makes it the current one. W&B-only keywords
    (``entity``, ``group``, ``job_type``, ``notes``, ``reinit``,
    ``settings``, …) are accepted and ignored."""
    for ignored in ("entity", "group", "job_type", "notes", "reinit", "settings", "save_code",
                    "anonymous", "allow_val_change", "magic", "sync_tensorboard",
                    "monitor_gym", "config_exclude_keys", "config_include_keys", "fork_from",
                    "resume_from"):
        options.pop(ignored, None)
    if run is not None:
        run.finish()
    if config is not None and not isinstance(config, Mapping):
        config = vars(config)  # an argparse.Namespace, as W&B accepts
    if mode == "disabled":
        current = Run(None, config)
    else:
        if id is not None:
            options["run_id"] = id
        elif isinstance(resume, str) and resume not in ("allow", "must", "never", "auto"):
            options["run_id"] = resume
        if dir is not None:
            options.setdefault("spool_dir", dir)
        steplake_run = _steplake_init(
            project=project or DEFAULT_PROJECT, name=name, config=dict(config or {}),
            tags=list(tags or ()), **options)
        current = Run(steplake_run, config)
    _set_current(current)
    return current


def _current(call: str) -> Run:
    if run is None:
        raise RuntimeError(f"wandb.{call}() before wandb.init(); call steplake.wandb.init() first")
    return run


def log(data: Mapping[str, Any], step: int | None = None, commit: bool | None = None) -> None:
    """``wandb.log`` on the current run."""
    _current("log").log(data, step=step, commit=commit)


def define_metric(name: str, step_metric: str | None = None, **options: Any) -> None:
    """``wandb.define_metric`` on the current run."""
    _current("define_metric").define_metric(name, step_metric=step_metric, **options)


def watch(models: Any, criterion: Any = None, log: str | None = "gradients",
          log_freq: int = 1000, idx: int | None = None, log_graph: bool = False) -> None:
    """``wandb.watch`` on the current run."""
    _current("watch").watch(models, criterion, log, log_freq, idx, log_graph)


def alert(title: str, text: str, level: str | AlertLevel | None = None, wait_duration: Any = None) -> None:
    """``wandb.alert`` on the current run."""
    _current("alert").alert(title, text, level, wait_duration)


def finish(exit_code: int | None = None, quiet: bool | None = None) -> None:
    """``wandb.finish``: finishes the current run, if any."""
    if run is not None:
        run.finish(exit_code=exit_code)
