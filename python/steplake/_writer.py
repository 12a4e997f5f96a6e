"""The logger thread: batches points, streams them, retries, spools.

Data flow::

    log() ──lock──▶ ScalarColumns ──(every flush_interval or batch_points)──▶
    WriteRequest(writer_id, sequence) ──▶ Write stream ──ack──▶ forgotten
                                     └──▶ spool (disk) when the server is
                                          unreachable or too slow; sent from
                                          there, in order, once it is back

Only the logger thread touches the stream, the in-flight table and the spool;
``log()`` only appends to the pending columns under a lock, and the thread that
reads acknowledgements only hands them over as events. Every request keeps its
(writer id, sequence) for life, and requests reach the server in sequence
order, so a retried request is applied once (the server acknowledges it as a
duplicate). Sequence numbers run 1, 2, 3, ... without a gap, as the server
requires: a request the server refuses (or a spooled one that cannot be read)
is sent again as an empty batch with its number, which stores nothing and
lets the requests after it be stored.
"""

from __future__ import annotations

import collections
import queue
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

import grpc
import numpy as np

from steplake import _wire
from steplake._address import counted, host_port, uses_tls
from steplake._spool import Spool
from steplake.v1 import ingest_pb2 as pb

#: Status codes after which the same request may succeed later.
_RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
}

_MAX_MESSAGE_BYTES = 64 << 20
# Refusals that resending cannot cure: stop sending, keep the spool.
_HALTING = {
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
}

_CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
]


class _CallDetails(
    collections.namedtuple(
        "_CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")
    ),
    grpc.ClientCallDetails,
):
    pass


class _Authorization(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds ``authorization: Bearer <token>`` to every call (on plain and
    TLS channels alike; grpc's own call credentials need TLS)."""

    def __init__(self, token: str) -> None:
        self._metadata = (("authorization", f"Bearer {token}"),)

    def _details(self, details: grpc.ClientCallDetails) -> _CallDetails:
        return _CallDetails(
            details.method, details.timeout, tuple(details.metadata or ()) + self._metadata,
            details.credentials, details.wait_for_ready, getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, continuation, details, request):  # type: ignore[no-untyped-def]
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):  # type: ignore[no-untyped-def]
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation, details, requests):  # type: ignore[no-untyped-def]
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation, details, requests):  # type: ignore[no-untyped-def]
        return continuation(self._details(details), requests)


def open_channel(server: str, token: str | None = None, ca_cert: bytes | None = None) -> grpc.Channel:
    """A channel to a steplake server: TLS for ``https://`` addresses
    (trusting ``ca_cert``, PEM, or the system's CAs), and the token on every
    call when there is one."""
    target = host_port(server)
    if uses_tls(server):
        credentials = grpc.ssl_channel_credentials(root_certificates=ca_cert)
        channel = grpc.secure_channel(target, credentials, options=_CHANNEL_OPTIONS)
    elif ca_cert is not None:
        raise ValueError(f"a CA certificate was given for {server!r}; use an https:// address for TLS")
    else:
        channel = grpc.insecure_channel(target, options=_CHANNEL_OPTIONS)
    if token:
        channel = grpc.intercept_channel(channel, _Authorization(token))
    return channel


def write_call(channel: grpc.Channel) -> Callable[..., Any]:
    """The Write stream method, taking already serialized requests."""
    return channel.stream_stream(
        "/steplake.v1.Ingest/Write",
        request_serializer=None,
        response_deserializer=pb.WriteResponse.FromString,
    )


@dataclass
class _Outgoing:
    sequence: int
    payload: bytes
    points: int
    on_disk: bool


class _Stream:
    """One open Write stream: a queue of requests and a thread reading acks."""

    _CLOSE = object()

    def __init__(self, channel: grpc.Channel, generation: int, events: Callable[[tuple], None]):
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._generation = generation
        self._events = events
        self._responses = write_call(channel)(iter(self._queue.get, self._CLOSE))
        self._reader = threading.Thread(target=self._read, name="steplake-acks", daemon=True)
        self._reader.start()

    def send(self, payload: bytes) -> None:
        self._queue.put(payload)

    def close(self) -> None:
        self._queue.put(self._CLOSE)

    def cancel(self) -> None:
        self._queue.put(self._CLOSE)
        try:
            self._responses.cancel()
        except Exception:  # noqa: BLE001 - the stream may already be gone
            pass

    def _read(self) -> None:
        try:
            for response in self._responses:
                self._events(("ack", self._generation, response.sequence))
            self._events(("end", self._generation, None))
        except grpc.RpcError as error:
            self._events(("error", self._generation, error))
        except Exception as error:  # noqa: BLE001 - report, never raise in a thread
            self._events(("error", self._generation, error))


class Writer:
    """Delivers one logger's points and tensors to the server (see module doc)."""

    def __init__(
        self,
        server: str,
        run: dict[str, Any],
        writer_id: str,
        spool: Spool,
        *,
        batch_points: int = 50_000,
        flush_interval: float = 0.1,
        max_inflight_bytes: int = 64 << 20,
        max_queued_points: int = 5_000_000,
        max_queued_tensor_bytes: int = 64 << 20,
        connect_timeout: float = 2.0,
        token: str | None = None,
        ca_cert: bytes | None = None,
        relocate: Callable[[], str] | None = None,
    ) -> None:
        self.server = server
        # Where the server is now, asked again after a lost connection
        # (the local server, restarted on demand).
        self._relocate = relocate
        self._token = token
        self._ca_cert = ca_cert
        self.run = run
        self.writer_id = writer_id
        self.spool = spool
        self.batch_points = batch_points
        self.flush_interval = flush_interval
        self.max_inflight_bytes = max_inflight_bytes
        self.max_queued_points = max_queued_points
        self.max_queued_tensor_bytes = max_queued_tensor_bytes
        self.connect_timeout = connect_timeout

        # Shared with the caller's thread (under _cond).
        self._cond = threading.Condition()
        self._pending = _wire.ScalarColumns()
        self._tensors: list[pb.Tensor] = []
        # Tensor bytes logged and not yet sent or spooled (queued, or in the
        # logger thread's hand).
        self._tensor_bytes_queued = 0
        self._names: list[str] = []
        self._name_ids: dict[str, int] = {}
        self._key_cache: dict[tuple, list[int]] = {}
        self._events: list[tuple] = []
        self._stop_status: str | None = None
        self._finish_timeout = 30.0
        self._flush_waiters = 0
        # Requests cut and delivered, counted in "ordinals": a request's
        # sequence number plus _ordinal_base, which only changes when the
        # writer starts numbering afresh (see _start_new_writer).
        self._delivered_through = 0
        self._cut_through = 0
        self._ordinal_base = 0
        self._in_hand = False
        self._wake = False
        self._config_update: str | None = None

        # The logger thread's own state.
        self._next_sequence = 1
        self._inflight: collections.OrderedDict[int, _Outgoing] = collections.OrderedDict()
        self._inflight_bytes = 0
        self._spooled: collections.deque[int] = collections.deque(spool.sequences())
        if self._spooled:
            self._next_sequence = self._spooled[-1] + 1
        # Cut before the first connection attempt resolved: kept in memory
        # (not spooled) until we know whether the server is there.
        self._waiting: collections.deque[_Outgoing] = collections.deque()
        self._unreachable = False
        self._channel: grpc.Channel | None = None
        self._stream: _Stream | None = None
        self._generation = 0
        self._connecting: tuple[dict[str, grpc.ChannelConnectivity], float] | None = None
        self._next_attempt = 0.0
        self._failures = 0
        self._run_created = False
        # Set when the server refused our sequence numbers: send nothing more.
        self._halted = False
        self.resumed = False
        self._warned: set[str] = set()
        self._last_cut = time.monotonic()
        self.points_logged = 0
        self.points_delivered = 0
        self.points_dropped = 0

        self._thread = threading.Thread(target=self._loop, name="steplake-logger", daemon=True)
        self._thread.start()

    # ---- caller side -------------------------------------------------------

    def add_scalars(self, metrics: dict[str, Any], step: int, wall_us: int) -> None:
        """Queues one step's metrics (called by ``Run.log``)."""
        keys = tuple(metrics)
        with self._cond:
            indices = self._key_cache.get(keys)
            if indices is None:
                indices = self._register(keys)
            self._pending.add(indices, metrics.values(), step, wall_us)
            if self._pending.points >= self.batch_points:
                self._cond.notify()
                if self._pending.points >= self.max_queued_points:
                    self._wait_for_room()

    def add_columns(self, names: list[str], index: Any, steps: Any, values: Any, wall_us: Any) -> None:
        """Queues many points at once (``Run.log_many``); ``index`` points into ``names``."""
        with self._cond:
            ids = np.asarray(self._register(tuple(names)), dtype=np.int64)
            self._pending.add_columns(ids[index], steps, values, wall_us)
            self._cond.notify()
            if self._pending.points >= self.max_queued_points:
                self._wait_for_room()

    def update_config(self, config_json: str) -> None:
        """Replaces the run's configuration; the server merges it (CreateRun again)."""
        with self._cond:
            self._config_update = config_json
            self._wake = True
            self._cond.notify_all()

    def add_tensor_messages(self, tensors: list[pb.Tensor]) -> None:
        """Queues tensor messages (one request each).

        Back-pressure: waits while the tensor bytes already queued and these
        would exceed ``max_queued_tensor_bytes`` (a tensor larger than the
        budget waits for an empty queue), so logging tensors faster than they
        can be sent or spooled holds the trainer's memory at the budget.
        """
        size = sum(len(t.data) for t in tensors)
        with self._cond:
            while (
                self._tensor_bytes_queued
                and self._tensor_bytes_queued + size > self.max_queued_tensor_bytes
                and self._thread.is_alive()
            ):
                self._cond.notify()
                self._cond.wait(0.05)
            self._tensors.extend(tensors)
            self._tensor_bytes_queued += size
            self._cond.notify()

    @property
    def tensor_bytes_queued(self) -> int:
        """Tensor bytes logged and not yet sent or spooled."""
        with self._cond:
            return self._tensor_bytes_queued

    def _register(self, keys: tuple) -> list[int]:
        indices = []
        for key in keys:
            name = key if isinstance(key, str) else str(key)
            index = self._name_ids.get(name)
            if index is None:
                index = len(self._names)
                self._names.append(name)
                self._name_ids[name] = index
            indices.append(index)
        if len(self._key_cache) < 10_000:
            self._key_cache[keys] = indices
        return indices

    def _wait_for_room(self) -> None:
        """Back-pressure, only when the logger thread cannot keep up at all."""
        deadline = time.monotonic() + 5.0
        while self._pending.points >= self.max_queued_points and time.monotonic() < deadline:
            self._cond.wait(0.05)

    def flush(self, timeout: float) -> bool:
        """Waits until everything queued so far is acknowledged; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._flush_waiters += 1
            self._wake = True
            self._cond.notify_all()
            try:
                # Let the logger thread cut what is pending, then wait for its acks.
                while self._pending.points or self._tensors or self._in_hand:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or not self._thread.is_alive():
                        return False
                    self._cond.wait(min(remaining, 0.1))
                target = self._cut_through
                while self._delivered_through < target:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or not self._thread.is_alive():
                        return False
                    self._cond.wait(min(remaining, 0.1))
                return True
            finally:
                self._flush_waiters -= 1

    def finish(self, status: str, timeout: float) -> None:
        """Delivers what is left (or spools it) and ends the run; returns when done."""
        with self._cond:
            self._stop_status = status
            self._finish_timeout = timeout
            self._wake = True
            self._cond.notify_all()
        self._thread.join(timeout + 10.0)

    # ---- logger thread -----------------------------------------------------

    def _post_event(self, event: tuple) -> None:
        with self._cond:
            self._events.append(event)
            self._cond.notify_all()

    def _loop(self) -> None:
        try:
            self._run_loop()
        except Exception as error:  # noqa: BLE001 - never let the logger die silently
            self._warn_once("crash", f"the logger thread failed ({error!r}); "
                            f"later points are not sent")

    def _run_loop(self) -> None:
        deadline: float | None = None
        while True:
            with self._cond:
                if not self._work_ready():
                    self._cond.wait(self.flush_interval / 2)
                self._wake = False
                config_update, self._config_update = self._config_update, None
                events, self._events = self._events, []
                scalars = None
                due = time.monotonic() - self._last_cut >= self.flush_interval
                if self._pending.points and (
                    due or self._pending.points >= self.batch_points
                    or self._stop_status is not None or self._flush_waiters
                ):
                    scalars, self._pending = self._pending, _wire.ScalarColumns()
                    names = list(self._names)
                tensors, self._tensors = self._tensors, []
                self._in_hand = scalars is not None or bool(tensors)
                stopping = self._stop_status is not None
                if stopping and deadline is None:
                    deadline = time.monotonic() + self._finish_timeout
                self._cond.notify_all()
            for event in events:
                self._handle_event(event)
            if config_update is not None:
                self.run["config_json"] = config_update
                self._run_created = False  # CreateRun again: the server merges the config
                if self.spool.has_run():
                    self.spool.write_run(self.run, self.writer_id, self.server, replace=True)
            if scalars is not None:
                self._last_cut = time.monotonic()
                self._cut_scalars(scalars, names)
            for tensor in tensors:
                self._route(tensor, 1)
                with self._cond:
                    self._tensor_bytes_queued -= len(tensor.data)
                    self._cond.notify_all()
            del tensors
            if self._in_hand:
                with self._cond:
                    self._in_hand = False
                    self._cond.notify_all()
            self._pump()
            if stopping:
                delivered = not (self._inflight or self._spooled or self._waiting)
                with self._cond:
                    nothing_left = not (self._pending.points or self._tensors or self._events)
                # A halted writer delivers nothing more: it finishes as soon
                # as everything is in the spool.
                halted = self._halted and nothing_left and not (self._inflight or self._waiting)
                if (delivered and nothing_left) or halted or (deadline is not None and time.monotonic() >= deadline):
                    self._finish_run()
                    return

    def _work_ready(self) -> bool:
        return bool(
            self._events or self._wake or self._tensors
            or self._pending.points >= self.batch_points
        )

    def _cut_scalars(self, columns: _wire.ScalarColumns, names: list[str]) -> None:
        batches, dropped = columns.encode(names, self.batch_points)
        if dropped:
            self.points_dropped += dropped
            self._warn_once("values", f"{dropped} logged values were not numbers and were dropped")
        for batch in batches:
            self._route(batch.payload, batch.points)

    def _route(self, body: bytes | pb.Tensor, points: int) -> None:
        """Wraps an encoded scalar batch or a tensor in a WriteRequest with
        this writer's identity and the next sequence number; sends it, or
        spools it."""
        sequence = self._next_sequence
        self._next_sequence += 1
        if isinstance(body, bytes):
            payload = _wire.encode_write_request(self.writer_id, sequence, self.run["run_id"], body)
        else:
            request = pb.WriteRequest(
                writer_id=self.writer_id, sequence=sequence, run_id=self.run["run_id"], tensor=body
            )
            payload = request.SerializeToString()
        self.points_logged += points
        outgoing = _Outgoing(sequence, payload, points, False)
        with self._cond:
            self._cut_through = outgoing.sequence + self._ordinal_base
        if self._stream is not None and not self._spooled and self._inflight_bytes < self.max_inflight_bytes:
            self._send(outgoing)
        elif self._stream is None and not self._unreachable and not self._spooled:
            self._waiting.append(outgoing)
        else:
            self._to_spool(outgoing)

    def _to_spool(self, outgoing: _Outgoing) -> None:
        if not outgoing.on_disk:
            self.spool.write_run(self.run, self.writer_id, self.server)
            self.spool.put(outgoing.sequence, outgoing.payload)
        self._spooled.append(outgoing.sequence)

    def _send(self, outgoing: _Outgoing) -> None:
        assert self._stream is not None
        self._inflight[outgoing.sequence] = outgoing
        self._inflight_bytes += len(outgoing.payload)
        self._stream.send(outgoing.payload)

    def _pump(self) -> None:
        """Connects when due, then sends spooled requests while there is room."""
        if self._halted:
            while self._waiting:
                self._to_spool(self._waiting.popleft())
            return
        if self._stream is None:
            self._try_connect()
        if self._stream is None:
            return
        if not self._run_created and time.monotonic() >= self._next_attempt:
            try:
                self._create_run()
            except grpc.RpcError as error:
                self._next_attempt = time.monotonic() + 1.0
                self._warn_once("config", f"cannot update the run's configuration: {_describe(error)}")
        while self._waiting:
            self._send(self._waiting.popleft())
        while self._spooled and self._inflight_bytes < self.max_inflight_bytes:
            sequence = self._spooled.popleft()
            try:
                payload = self.spool.get(sequence)
                points = _points_in(payload)
            except Exception as error:  # noqa: BLE001 - unreadable or damaged
                # Its points are lost; an empty batch keeps the sequence
                # numbers contiguous, so the later ones are still stored.
                self._warn_once("spool-read", f"cannot read spooled batch {sequence} ({error}); "
                                f"its points are lost")
                self._send(self._empty_request(_Outgoing(sequence, b"", 0, True)))
                continue
            self._send(_Outgoing(sequence, payload, points, True))

    def _try_connect(self) -> None:
        """Advances a non-blocking connection attempt by one step."""
        now = time.monotonic()
        if self._connecting is None:
            if now < self._next_attempt:
                return
            if self._relocate is not None and self._failures > 0:
                try:
                    self.server = self._relocate()
                except Exception as error:  # noqa: BLE001 - retried at the next attempt
                    self._warn_once("relocate", f"cannot start the local server again: {error}")
            self._channel = open_channel(self.server, self._token, self._ca_cert)
            state: dict[str, grpc.ChannelConnectivity] = {}
            self._channel.subscribe(lambda s: state.__setitem__("now", s), try_to_connect=True)
            self._connecting = (state, now + self.connect_timeout)
            return
        state, give_up = self._connecting
        current = state.get("now")
        if current == grpc.ChannelConnectivity.TRANSIENT_FAILURE:
            self._connect_failed("connection refused or lost")
            return
        if current != grpc.ChannelConnectivity.READY:
            if now >= give_up:
                self._connect_failed(f"no answer within {self.connect_timeout:g} s")
            return
        self._connecting = None
        try:
            if not self._run_created:
                self._create_run()
        except grpc.RpcError as error:
            if error.code() in _HALTING:
                self._halt(error)
            self._connect_failed(_describe(error), error)
            return
        except Exception as error:  # noqa: BLE001
            self._connect_failed(repr(error))
            return
        self._generation += 1
        assert self._channel is not None
        self._stream = _Stream(self._channel, self._generation, self._post_event)
        self._unreachable = False
        if self._failures and "unreachable" in self._warned:
            print(f"steplake: reconnected to {self.server}; sending "
                  f"{len(self._spooled)} spooled batches", file=sys.stderr)
        self._failures = 0

    def _create_run(self) -> None:
        assert self._channel is not None
        stub = self._channel.unary_unary(
            "/steplake.v1.Ingest/CreateRun",
            request_serializer=pb.CreateRunRequest.SerializeToString,
            response_deserializer=pb.CreateRunResponse.FromString,
        )
        response = stub(create_run_request(self.run), timeout=10.0)
        self.resumed = response.resumed
        self._run_created = True

    def _halt(self, error: grpc.RpcError) -> None:
        """The server expects another sequence number than we sent (a batch
        it needs is gone from here), or our token may not write here.
        Resending cannot fix either: send nothing more, and keep everything
        in the spool for a person to look at."""
        self._halted = True
        self._warn_once("halted", f"the server refused this writer's batches ({_describe(error)}); "
                        f"the points are kept in {self.spool.directory}; upload them with "
                        f"`steplake sync {self.spool.directory}` once that is fixed")

    def _connect_failed(self, reason: str, error: grpc.RpcError | None = None) -> None:
        self._connecting = None
        self._unreachable = True
        while self._waiting:
            self._to_spool(self._waiting.popleft())
        self._close_connection()
        self._failures += 1
        self._next_attempt = time.monotonic() + min(0.1 * 2 ** self._failures, 5.0)
        if error is not None and error.code() not in _RETRYABLE:
            self._warn_once("create-run", f"the server refused to create run "
                            f"{self.run['run_id']!r}: {reason}")
        if self._halted:
            return
        self._warn_once(
            "unreachable",
            f"cannot reach the steplake server at {self.server} ({reason}); "
            f"points are kept in {self.spool.directory} and sent when it is back "
            f"(or upload them later with `steplake sync {self.spool.directory}`)",
        )

    def _handle_event(self, event: tuple) -> None:
        kind, generation, value = event
        if generation != self._generation or self._stream is None:
            return  # from a stream already abandoned
        if kind == "ack":
            outgoing = self._inflight.get(value)
            if outgoing is not None:
                self._settle(outgoing)
                self.points_delivered += outgoing.points
            return
        # The stream ended (server gone, or it refused a request).
        error = value if kind == "error" else None
        lost_run = isinstance(error, grpc.RpcError) and error.code() == grpc.StatusCode.NOT_FOUND
        if lost_run:
            # The server does not know the run (e.g. a fresh data directory):
            # create it again, then resend as a new writer (below).
            self._run_created = False
        elif isinstance(error, grpc.RpcError) and error.code() in _HALTING:
            self._halt(error)
        elif isinstance(error, grpc.RpcError) and error.code() not in _RETRYABLE and self._inflight:
            # The first unacknowledged request is the one refused: it takes
            # its sequence number as an empty batch, so the ones after it
            # can be stored (the server stores nothing past a refused one).
            refused = next(iter(self._inflight.values()))
            self._skip(refused, _describe(error))
        self._disconnect()
        if lost_run:
            self._start_new_writer()

    def _settle(self, outgoing: _Outgoing) -> None:
        """Forgets a request the server is done with (applied, or refused)."""
        self._inflight.pop(outgoing.sequence, None)
        self._inflight_bytes -= len(outgoing.payload)
        if outgoing.on_disk:
            self.spool.remove(outgoing.sequence)
        with self._cond:
            self._delivered_through = max(self._delivered_through, outgoing.sequence + self._ordinal_base)
            self._cond.notify_all()

    def _skip(self, outgoing: _Outgoing, reason: str) -> None:
        """Replaces a refused request by an empty batch with its sequence
        number (in flight, and in the spool when it is there)."""
        skip = self._empty_request(outgoing)
        if outgoing.on_disk:
            self.spool.put(skip.sequence, skip.payload)
        if outgoing.sequence in self._inflight:
            self._inflight[outgoing.sequence] = skip
            self._inflight_bytes += len(skip.payload) - len(outgoing.payload)
        self.points_dropped += outgoing.points
        print(f"steplake: the server refused a batch of {counted(outgoing.points, 'point', 'points')} "
              f"and it was dropped: {reason}", file=sys.stderr)

    def _empty_request(self, outgoing: _Outgoing) -> _Outgoing:
        """A request that takes ``outgoing``'s sequence number and stores nothing."""
        payload = _wire.encode_write_request(self.writer_id, outgoing.sequence, self.run["run_id"], b"")
        return _Outgoing(outgoing.sequence, payload, 0, outgoing.on_disk)

    def _close_connection(self) -> None:
        """Ends the stream and closes the channel (an open channel also makes
        grpc wait in its finaliser at interpreter exit)."""
        if self._stream is not None:
            self._stream.cancel()
            self._stream = None
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def _disconnect(self) -> None:
        """Puts everything in flight back in the spool, in order; retries soon."""
        self._close_connection()
        waiting = list(self._spooled)
        self._spooled.clear()
        for outgoing in self._inflight.values():
            self._to_spool(outgoing)
        self._spooled.extend(waiting)
        self._inflight.clear()
        self._inflight_bytes = 0
        self._unreachable = True
        self._generation += 1
        self._failures += 1
        self._next_attempt = time.monotonic() + 0.1

    def _start_new_writer(self) -> None:
        """Continues under a new writer id, numbering every request not
        acknowledged from 1 again.

        Called when the server lost the run: it then holds none of this
        writer's requests and does not know its id, and it refuses an unknown
        writer whose first sequence is not 1. Everything unacknowledged is in
        the spool at this point (``_disconnect`` put it there, in order)."""
        old = self.spool
        self.writer_id = f"{self.run['run_id']}-{uuid.uuid4().hex[:12]}"
        self.spool = Spool(old.directory.parent / self.writer_id)
        pending = list(self._spooled)
        first_pending = pending[0] if pending else self._next_sequence
        self._spooled.clear()
        for number, sequence in enumerate(pending, start=1):
            try:
                request = pb.WriteRequest.FromString(old.get(sequence))
            except Exception as error:  # noqa: BLE001 - unreadable or damaged
                self._warn_once("spool-read", f"cannot read spooled batch {sequence} ({error}); "
                                f"its points are lost")
                request = pb.WriteRequest(run_id=self.run["run_id"])
                request.scalars.SetInParent()
            request.writer_id = self.writer_id
            request.sequence = number
            self._to_spool(_Outgoing(number, request.SerializeToString(), 0, False))
            old.remove(sequence)
        old.remove_all()
        self._next_sequence = len(pending) + 1
        with self._cond:
            self._ordinal_base = first_pending - 1

    def _finish_run(self) -> None:
        try:
            self._deliver_finish()
        finally:
            self._close_connection()

    def _deliver_finish(self) -> None:
        status = self._stop_status or "finished"
        if self._stream is not None:
            self._stream.close()
        delivered = self._stream is not None and not (self._inflight or self._spooled or self._waiting)
        if delivered:
            try:
                assert self._channel is not None
                stub = self._channel.unary_unary(
                    "/steplake.v1.Ingest/FinishRun",
                    request_serializer=pb.FinishRunRequest.SerializeToString,
                    response_deserializer=pb.FinishRunResponse.FromString,
                )
                stub(pb.FinishRunRequest(run_id=self.run["run_id"], status=status), timeout=10.0)
                self.spool.remove_all()
                return
            except grpc.RpcError as error:
                reason = _describe(error)
        else:
            reason = "the server did not acknowledge everything in time"
        for outgoing in [*self._inflight.values(), *self._waiting]:
            self._to_spool(outgoing)
        self._inflight.clear()
        self._waiting.clear()
        self.spool.write_run(self.run, self.writer_id, self.server)
        self.spool.mark_finished(status)
        print(f"steplake: run {self.run['run_id']} is not fully delivered ({reason}); "
              f"{counted(len(self._spooled), 'batch is', 'batches are')} kept in {self.spool.directory}: "
              f"upload them with `steplake sync {self.spool.directory}`", file=sys.stderr)

    def _warn_once(self, kind: str, message: str) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            print(f"steplake: {message}", file=sys.stderr)


def create_run_request(run: dict[str, Any]) -> pb.CreateRunRequest:
    """The CreateRun request for a run as ``Run`` describes it."""
    request = pb.CreateRunRequest(
        project=run.get("project") or "",
        name=run.get("name") or "",
        config_json=run.get("config_json") or "",
        tags=list(run.get("tags") or []),
        run_id=run["run_id"],
        parent_run_id=run.get("parent_run_id") or "",
    )
    if run.get("fork_step") is not None:
        request.fork_step = int(run["fork_step"])
    return request


def _points_in(payload: bytes) -> int:
    request = pb.WriteRequest.FromString(payload)
    return len(request.scalars.steps) if request.HasField("scalars") else 1


def _describe(error: BaseException | None) -> str:
    if isinstance(error, grpc.RpcError):
        try:
            return f"{error.code().name}: {error.details()}"
        except Exception:  # noqa: BLE001
            pass
    return repr(error)
