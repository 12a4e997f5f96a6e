"""Standing conditions and their events, for a :class:`steplake.Run`.

The server evaluates a condition on every batch it stores and keeps each
firing as an event, durable with the batch that caused it. Here a
background thread (one per run, started by the first ``watch_for`` or
``on_event``) holds a ``Watch`` stream open, reconnecting after a server
restart from the last event it saw, and hands each event once to
``run.events()`` and to the ``on_event`` callbacks. Callbacks run on that
thread, never on the training thread; an exception in one is reported
once on stderr and does not stop the others or the stream.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import grpc

from steplake._writer import open_channel
from steplake.v1 import ingest_pb2 as pb
from steplake.v1 import ingest_pb2_grpc as pb_grpc

#: Longest pause between two attempts to reach the server.
_MAX_BACKOFF = 2.0


@dataclass(frozen=True)
class Event:
    """One firing of a standing condition (a row of the ``events`` table)."""

    #: Names the firing: the same condition, series and step give the same id.
    event_id: str
    #: Increasing in the order events became durable.
    seq: int
    run_id: str
    condition_id: str
    #: The condition's label (its predicate unless one was given).
    label: str
    #: The series and the point it fired at.
    series: str
    step: int
    value: float
    #: Wall time of that point, and when the server saw it fire (seconds since the epoch).
    time: float
    detected_at: float
    #: For a prediction condition: the predicted value at ``final_step``,
    #: its interval, and the threshold it exceeded.
    predicted: float | None = None
    predicted_lo: float | None = None
    predicted_hi: float | None = None
    threshold: float | None = None
    final_step: int | None = None

    @classmethod
    def from_wire(cls, e: pb.Event) -> "Event":
        def optional(field: str) -> Any:
            return getattr(e, field) if e.HasField(field) else None

        return cls(
            event_id=e.event_id, seq=e.seq, run_id=e.run_id, condition_id=e.condition_id,
            label=e.label, series=e.series, step=e.step, value=e.value,
            time=e.time_us / 1e6, detected_at=e.detected_at_us / 1e6,
            predicted=optional("predicted"), predicted_lo=optional("predicted_lo"),
            predicted_hi=optional("predicted_hi"), threshold=optional("threshold"),
            final_step=optional("final_step"),
        )


_PREDICT_KEYS = {"final_step", "above", "baseline_run", "lr", "every", "level"}


def prediction_for(predict: Any) -> pb.Prediction | None:
    """The wire form of ``watch_for(predict={...})``."""
    if predict is None:
        return None
    options = dict(predict)
    unknown = set(options) - _PREDICT_KEYS
    if unknown or "final_step" not in options:
        raise ValueError(
            "predict= takes final_step (required), above= or baseline_run=, and optionally lr="
            f" (the learning-rate series), every= (points between fits), level= (got {sorted(options)})"
        )
    return pb.Prediction(
        final_step=int(options["final_step"]), lr_series=options.get("lr", ""),
        above=float(options.get("above", 0.0)), baseline_run_id=options.get("baseline_run", ""),
        every=int(options.get("every", 0)), level=float(options.get("level", 0.0)),
    )


def predicate_for(
    predicate: str | None,
    spike: bool | float | None,
    above: float | None,
    below: float | None,
    nonfinite: bool,
    predict: Any = None,
) -> str:
    """The predicate ``watch_for`` registers: exactly one of its forms
    (empty for a prediction, which is not a predicate)."""
    forms = [
        f for f, given in (
            ("predicate", predicate is not None), ("spike", spike not in (None, False)),
            ("above", above is not None), ("below", below is not None), ("nonfinite", nonfinite),
            ("predict", predict is not None),
        ) if given
    ]
    if len(forms) != 1:
        raise ValueError(
            "watch_for takes exactly one of predicate=, spike=, above=, below=, nonfinite=True,"
            f" predict= (got {', '.join(forms) or 'none'})"
        )
    if predict is not None:
        return ""
    if predicate is not None:
        return predicate
    if spike is True:
        return "is_spike(value)"
    if spike is not None and spike is not False:
        # A number: the ratio to the rolling median that counts as a spike.
        return f"is_spike(value, 20, {float(spike)!r})"
    if above is not None:
        return f"value > {float(above)!r}"
    if below is not None:
        return f"value < {float(below)!r}"
    return "NOT isfinite(value)"


def _raise_refusal(error: grpc.RpcError) -> None:
    """Raises what a refused AddCondition means to the caller: ``ValueError``
    for a condition the server will not take (its message says what is
    allowed), ``PermissionError`` for a token that may not; returns for
    anything worth retrying or reporting otherwise."""
    code = error.code()
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        raise ValueError(error.details()) from None
    if code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED):
        raise PermissionError(error.details()) from None


class Watcher:
    """The events of one run, streamed on a background thread."""

    def __init__(self, server: str, run_id: str, token: str | None, ca_cert: bytes | None,
                 warn: Callable[[str, str], None]) -> None:
        self._server = server
        self._run_id = run_id
        self._token = token
        self._ca_cert = ca_cert
        self._warn = warn
        self._lock = threading.Lock()
        self._events: list[Event] = []
        self._seen: set[str] = set()
        self._callbacks: list[Callable[[Event], Any]] = []
        self._after = 0
        self._stopping = threading.Event()
        self._call: Any = None
        self._channel = open_channel(server, token, ca_cert)
        self._stub = pb_grpc.IngestStub(self._channel)
        self._thread = threading.Thread(target=self._loop, name=f"steplake-events-{run_id}", daemon=True)
        self._thread.start()

    # ---- conditions -------------------------------------------------------

    def add_condition(self, series: str, predicate: str, hold: int, label: str,
                      timeout: float, predict: pb.Prediction | None = None) -> str:
        """Registers a condition on the run; returns its id.

        Waits (up to ``timeout`` seconds) for the logger to have created the
        run. Raises ``ValueError`` with the server's reason when the
        condition is refused, ``TimeoutError`` when the server cannot be
        reached in time.
        """
        request = pb.AddConditionRequest(
            run_id=self._run_id, series=series, predicate=predicate, hold=hold, label=label,
            predict=predict,
        )
        deadline = time.monotonic() + timeout
        pause = 0.05
        while True:
            try:
                return self._stub.AddCondition(request, timeout=max(0.1, deadline - time.monotonic())).condition_id
            except grpc.RpcError as error:
                _raise_refusal(error)
                code = error.code()
                # NOT_FOUND: the logger has not created the run yet.
                if time.monotonic() + pause > deadline:
                    raise TimeoutError(
                        f"could not register the condition with {self._server} within {timeout} s"
                        f" ({code.name}: {error.details()}); is the server running?"
                    ) from None
                time.sleep(pause)
                pause = min(pause * 2, 0.5)

    # ---- events -------------------------------------------------------------

    def on_event(self, callback: Callable[[Event], Any]) -> None:
        with self._lock:
            self._callbacks.append(callback)
            delivered = list(self._events)
        # Events that arrived before the callback was registered reach it too.
        for event in delivered:
            self._call_back(callback, event)

    def events(self) -> list[Event]:
        with self._lock:
            return list(self._events)

    def close(self, timeout: float = 2.0) -> None:
        self._stopping.set()
        call = self._call
        if call is not None:
            call.cancel()
        self._thread.join(timeout)
        self._channel.close()

    def _loop(self) -> None:
        pause = 0.05
        while not self._stopping.is_set():
            try:
                self._call = self._stub.Watch(pb.WatchRequest(run_id=self._run_id, after_seq=self._after))
                for wire in self._call:
                    self._deliver(Event.from_wire(wire))
                    pause = 0.05
                # The server ended the stream (it is stopping): reconnect.
            except grpc.RpcError as error:
                if self._stopping.is_set():
                    return
                code = error.code()
                if code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED):
                    self._warn("watch", f"watching events of run {self._run_id} is not allowed: {error.details()}")
                    return
                # NOT_FOUND until the logger created the run; UNAVAILABLE while
                # the server restarts.
            except Exception as error:  # noqa: BLE001
                self._warn("watch-internal", f"the event watcher failed: {error!r}; retrying")
            self._stopping.wait(pause)
            pause = min(pause * 2, _MAX_BACKOFF)

    def _deliver(self, event: Event) -> None:
        with self._lock:
            self._after = max(self._after, event.seq)
            if event.event_id in self._seen:
                return
            self._seen.add(event.event_id)
            self._events.append(event)
            callbacks = list(self._callbacks)
        for callback in callbacks:
            self._call_back(callback, event)

    def _call_back(self, callback: Callable[[Event], Any], event: Event) -> None:
        try:
            callback(event)
        except Exception as error:  # noqa: BLE001
            self._warn("callback", f"an on_event callback raised {error!r} on event {event.label!r}"
                       f" at step {event.step}; training goes on")


class StopSignal:
    """Set by the first event of a run that matches: any event, or one whose
    label, condition id or series is in ``labels``. Framework callbacks
    (``steplake.lightning.StopOnEvent``, ``steplake.huggingface.StopOnEventCallback``)
    check it between steps; a plain loop can too::

        stop = StopSignal(run)
        for step in range(steps):
            ...
            if stop.event:
                break
    """

    def __init__(self, run: Any, labels: Any = None) -> None:
        self._labels = None if labels is None else {labels} if isinstance(labels, str) else set(labels)
        #: The event that set it, or ``None``.
        self.event: Event | None = None
        run.on_event(self._on_event)

    def _on_event(self, event: Event) -> None:
        if self.event is not None:
            return
        if self._labels is None or self._labels & {event.label, event.condition_id, event.series}:
            self.event = event


def watch_project(
    project: str,
    series: str,
    predicate: str | None = None,
    *,
    spike: bool | float | None = None,
    above: float | None = None,
    below: float | None = None,
    nonfinite: bool = False,
    predict: Any = None,
    hold: int = 1,
    label: str | None = None,
    server: str | None = None,
    token: str | None = None,
    ca_cert: Any = None,
    timeout: float = 10.0,
) -> str:
    """Registers a condition on every run of ``project``, those there are
    and those to come (the same forms as :meth:`steplake.Run.watch_for`);
    returns its id. Raises ``ValueError`` when the server refuses it."""
    from steplake._address import ca_cert_pem, server_address, token_value

    address = server_address(server)
    channel = open_channel(address, token_value(token), ca_cert_pem(ca_cert))
    try:
        request = pb.AddConditionRequest(
            project=project, series=series, hold=hold, label=label or "",
            predicate=predicate_for(predicate, spike, above, below, nonfinite, predict),
            predict=prediction_for(predict),
        )
        try:
            return pb_grpc.IngestStub(channel).AddCondition(request, timeout=timeout).condition_id
        except grpc.RpcError as error:
            _raise_refusal(error)
            raise ConnectionError(f"{address}: {error.code().name}: {error.details()}") from None
    finally:
        channel.close()
