"""``steplake.init`` and :class:`Run`: logging from a training loop.

A run never blocks or breaks training: ``log`` appends to an in-memory
batch and returns; a background thread (:mod:`steplake._writer`) streams
batches to the server, retries with the same writer id and sequence numbers,
and spools to disk while the server is unreachable. Every exception inside
the logger is caught and reported once on stderr.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import sys
import threading
import uuid
import weakref
from types import TracebackType
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from steplake import _local, _wire
from steplake._events import Event, Watcher, predicate_for, prediction_for
from steplake._address import DEFAULT_SERVER, ca_cert_pem, server_address, token_value
from steplake._spool import Spool, spool_root
from steplake._writer import Writer
from steplake.v1 import ingest_pb2 as pb

__all__ = ["DEFAULT_SERVER", "Event", "Run", "init", "server_address"]

_RUN_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_live_runs: "weakref.WeakSet[Run]" = weakref.WeakSet()
_crashed = False


class Run:
    """One training run being logged. Create it with :func:`steplake.init`."""

    def __init__(
        self,
        *,
        project: str | None = None,
        name: str | None = None,
        config: Mapping[str, Any] | None = None,
        tags: Sequence[str] = (),
        server: str | None = None,
        resume: str | None = None,
        run_id: str | None = None,
        parent_run_id: str | None = None,
        fork_step: int | None = None,
        spool_dir: str | os.PathLike[str] | None = None,
        batch_points: int = 50_000,
        flush_interval: float = 0.1,
        max_queued_tensor_bytes: int = 64 << 20,
        token: str | None = None,
        ca_cert: str | os.PathLike[str] | None = None,
    ) -> None:
        run_id = resume or run_id or uuid.uuid4().hex
        if not _RUN_ID.match(run_id):
            raise ValueError(
                f"run id {run_id!r} must be 1-128 characters of letters, digits, '-', '_' or '.'"
            )
        #: The run's id (the ``run_id`` column); pass it to ``resume=`` to continue the run.
        self.id = run_id
        #: The server address this run logs to.
        self.server = server_address(server)
        relocate: Callable[[], str] | None = None
        if _local.wanted(server):
            try:
                self.server = _local.ensure()
                relocate = _local.ensure
            except _local.LocalServerError as error:
                print(f"steplake: {error}; logging to {self.server} (spooled until it is reachable)",
                      file=sys.stderr)
        self.project = project or "default"
        self.name = name or run_id
        self._finished = False
        self._finish_lock = threading.Lock()
        self._next_step = 0
        self._warned: set[str] = set()
        writer_id = f"{run_id}-{uuid.uuid4().hex[:12]}"
        self._config = dict(config or {})
        meta = {
            "run_id": run_id,
            "project": self.project,
            "name": self.name,
            "config_json": json.dumps(self._config, default=str),
            "tags": list(tags),
            "parent_run_id": parent_run_id,
            "fork_step": fork_step,
        }
        spool = Spool(spool_root(spool_dir) / run_id / writer_id)
        self._token = token_value(token)
        self._ca_cert = ca_cert_pem(ca_cert)
        self._writer = Writer(
            self.server, meta, writer_id, spool,
            batch_points=batch_points, flush_interval=flush_interval,
            max_queued_tensor_bytes=max_queued_tensor_bytes,
            token=self._token, ca_cert=self._ca_cert, relocate=relocate,
        )
        self._watcher: Watcher | None = None
        self._watcher_lock = threading.Lock()
        _live_runs.add(self)

    # ---- logging ----------------------------------------------------------

    def log(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Logs scalar metrics at ``step`` (default: one past the last step logged).

        Values may be Python or numpy numbers, or 0-d tensors; NaN and ±Inf
        are kept. Never raises: a problem is reported once on stderr.
        """
        try:
            if step is None:
                step = self._next_step
            elif step < 0:
                raise ValueError(f"step {step} is negative; steps start at 0")
            if step >= self._next_step:
                self._next_step = step + 1
            if metrics:
                self._writer.add_scalars(metrics, step, _wire.now_us())  # type: ignore[arg-type]
        except Exception as error:  # noqa: BLE001 - never break the training loop
            self._warn_once("log", f"run.log failed and the points were dropped: {error!r}")

    def log_many(
        self,
        metrics: Mapping[str, Any],
        steps: Any,
        wall_times_us: Any | None = None,
    ) -> None:
        """Logs whole series at once: ``{"loss": values, ...}`` at ``steps``.

        Each value array has one entry per step. The fast path for importing
        or for logging from a vectorised loop. Never raises.
        """
        try:
            steps_array = np.asarray(steps, dtype=np.int64).ravel()
            n = len(steps_array)
            if n == 0 or not metrics:
                return
            if steps_array.min() < 0:
                raise ValueError("steps must be >= 0")
            names = list(metrics)
            values = np.concatenate(
                [np.asarray(metrics[name], dtype=np.float64).ravel() for name in names]
            )
            if len(values) != n * len(names):
                raise ValueError(f"every series needs one value per step ({n} steps)")
            if wall_times_us is None:
                wall = np.full(n, _wire.now_us(), dtype=np.int64)
            else:
                wall = np.asarray(wall_times_us, dtype=np.int64).ravel()
            index = np.repeat(np.arange(len(names), dtype=np.int64), n)
            self._writer.add_columns(
                names, index, np.tile(steps_array, len(names)), values, np.tile(wall, len(names))
            )
            self._next_step = max(self._next_step, int(steps_array.max()) + 1)
        except Exception as error:  # noqa: BLE001
            self._warn_once("log_many", f"run.log_many failed and the points were dropped: {error!r}")

    def log_tensor(self, name: str, array: Any, step: int | None = None) -> None:
        """Logs a whole tensor (numpy array, or torch tensor on any device).

        The tensor is copied to host memory at once, so it may change
        afterwards; the server computes its statistics. Never raises. Waits
        while more than ``max_queued_tensor_bytes`` (default 64 MiB) of
        tensors are queued and not yet sent or spooled, so the trainer's
        memory stays bounded however fast it logs.
        """
        try:
            step = self._next_step - 1 if step is None else step
            step = max(step, 0)
            dtype, shape, data = _wire.tensor_bytes(array)
            self._writer.add_tensor_messages(
                list(_wire.tensor_requests(name, step, dtype, shape, data, _wire.now_us()))
            )
        except Exception as error:  # noqa: BLE001
            self._warn_once(f"log_tensor:{name}", f"run.log_tensor({name!r}) failed: {error!r}")

    def log_tensor_stats(
        self, name: str, stats: pb.TensorStatistics, step: int, dtype: str, shape: Sequence[int]
    ) -> None:
        """Logs statistics a trainer computed itself (e.g. on its GPU), without the data."""
        try:
            message = _wire.stats_only_tensor(name, step, dtype, shape, stats, _wire.now_us())
            self._writer.add_tensor_messages([message])
        except Exception as error:  # noqa: BLE001
            self._warn_once(f"stats:{name}", f"logging statistics of {name!r} failed: {error!r}")

    def update_config(self, values: Mapping[str, Any]) -> None:
        """Adds keys to the run's configuration, or changes them (e.g.
        hyperparameters known only once training starts). Never raises."""
        try:
            self._config.update(values)
            self._writer.update_config(json.dumps(self._config, default=str))
        except Exception as error:  # noqa: BLE001
            self._warn_once("config", f"run.update_config failed: {error!r}")

    # ---- standing conditions and events -------------------------------------

    def watch_for(
        self,
        series: str,
        predicate: str | None = None,
        *,
        spike: bool | float | None = None,
        above: float | None = None,
        below: float | None = None,
        nonfinite: bool = False,
        predict: Mapping[str, Any] | None = None,
        hold: int = 1,
        label: str | None = None,
        timeout: float = 10.0,
    ) -> str:
        """Asks the server to watch ``series`` (a name, or a pattern with
        ``*``) of this run and raise an event when a condition holds; returns
        the condition's id.

        Give exactly one of:

        - ``predicate``: SQL over the current point, e.g.
          ``"rolling_zscore(value, 50) > 6 OR isnan(value)"``;
        - ``spike=True`` (``is_spike(value)``: 1.5x the median of the previous
          20 points) or ``spike=2.0`` (that ratio);
        - ``above=x`` / ``below=x``: the value crosses a threshold;
        - ``nonfinite=True``: the value is NaN or infinite;
        - ``predict={"final_step": 100_000, "above": 2.1}``: the predicted
          value at the run's last step (the schedule-aware fit of SQL's
          ``fit_loss_curve``, refitted every ``every`` points, 500 by
          default, against the learning-rate series ``lr`` when given) is
          above 2.1, or above the final value of the same series in
          ``baseline_run=`` another run. Its events carry ``predicted``,
          ``predicted_lo`` and ``predicted_hi``.

        ``hold``: points in a row it must hold on first. The server evaluates
        it on every batch it stores; events reach :meth:`on_event` callbacks
        and :meth:`events`. Raises ``ValueError`` (with what is allowed) for a
        predicate the server refuses, ``TimeoutError`` when the server cannot
        be reached within ``timeout`` seconds.
        """
        text = predicate_for(predicate, spike, above, below, nonfinite, predict)
        return self._events_watcher().add_condition(
            series, text, hold, label or "", timeout, prediction_for(predict))

    def on_event(self, callback: Callable[[Event], Any]) -> None:
        """Calls ``callback(event)`` once for each event of this run, as
        soon as the batch that fired it is durable.

        It runs on the logger's event thread, never the training thread, so
        keep it short: set a flag the loop checks (``stop = True``), save a
        checkpoint name. An exception in it is reported once on stderr and
        changes nothing else.
        """
        self._events_watcher().on_event(callback)

    def events(self) -> list[Event]:
        """The events of this run received so far, oldest first (the
        polling form of :meth:`on_event`)."""
        return self._events_watcher().events()

    def _events_watcher(self) -> Watcher:
        with self._watcher_lock:
            if self._watcher is None:
                self._watcher = Watcher(self._writer.server, self.id, self._token, self._ca_cert, self._warn_once)
            return self._watcher

    # ---- ending -----------------------------------------------------------

    def flush(self, timeout: float = 30.0) -> bool:
        """Waits until everything logged so far is acknowledged by the server.

        Returns False when that did not happen within ``timeout`` seconds
        (the points are still retried, or spooled).
        """
        return self._writer.flush(timeout)

    def finish(self, status: str = "finished", timeout: float = 30.0) -> None:
        """Sends what is left, marks the run ended, and stops the logger.

        Waits up to ``timeout`` seconds for the server; what it has not
        acknowledged by then stays in the spool for ``steplake sync``.
        Called at interpreter exit for runs not finished by then (waiting
        up to 10 s for the server).
        """
        with self._finish_lock:
            if self._finished:
                return
            self._finished = True
        try:
            self._writer.finish(status, timeout)
        except Exception as error:  # noqa: BLE001
            self._warn_once("finish", f"run.finish failed: {error!r}")
        watcher = self._watcher
        if watcher is not None:
            # Events fired by the last batches have arrived or are lost to
            # this process only: they stay in the events table.
            watcher.close()

    @property
    def resumed(self) -> bool:
        """True when the server reported that an existing run was resumed."""
        return self._writer.resumed

    @property
    def points_logged(self) -> int:
        """Points handed to the logger thread so far."""
        return self._writer.points_logged

    def __enter__(self) -> "Run":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.finish("failed" if exc_type is not None else "finished")

    def __repr__(self) -> str:
        return f"<steplake.Run {self.id} project={self.project!r} name={self.name!r} server={self.server}>"

    def _warn_once(self, kind: str, message: str) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            print(f"steplake: {message}", file=sys.stderr)


def init(
    project: str | None = None,
    name: str | None = None,
    config: Mapping[str, Any] | None = None,
    **options: Any,
) -> Run:
    """Starts (or, with ``resume=RUN_ID``, continues) a run and returns it.

    Keyword options are those of :class:`Run`: ``tags``, ``server`` (default
    ``STEPLAKE_SERVER``, else ``127.0.0.1:50051`` when a server listens
    there, else the local server: started as a child process on first need
    and shared by the user's processes, data in ``STEPLAKE_DATA_DIR`` or
    ``~/.local/share/steplake``, stopping after ``STEPLAKE_LOCAL_IDLE_SECS``
    (300) with no client), ``resume``, ``run_id``,
    ``parent_run_id``, ``fork_step``, ``spool_dir``, ``batch_points``,
    ``flush_interval``, ``max_queued_tensor_bytes`` (64 MiB: ``log_tensor``
    waits while more tensor bytes than this are queued and not yet sent or
    spooled), ``token`` (default ``STEPLAKE_TOKEN``; a ``write:PROJECT``
    or ``write:*`` token for servers that require one) and ``ca_cert`` (a
    PEM file, default ``STEPLAKE_CA_CERT``, for ``https://`` servers whose
    certificate a private CA signed). Returns at once: the run is created on the server in
    the background, and its id is chosen here (``run.id``). Writing a step
    again in a resumed run replaces the earlier value.
    """
    return Run(project=project, name=name, config=config, **options)


def _excepthook(exc_type: Any, exc: Any, tb: Any) -> None:
    global _crashed
    _crashed = True
    _previous_excepthook(exc_type, exc, tb)


def _finish_at_exit() -> None:
    for run in list(_live_runs):
        run.finish("crashed" if _crashed else "finished", timeout=10.0)


_previous_excepthook = sys.excepthook
sys.excepthook = _excepthook
atexit.register(_finish_at_exit)
