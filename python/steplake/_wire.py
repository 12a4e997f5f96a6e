"""Turning what a trainer logs into ``steplake.v1.WriteRequest`` messages.

Everything here runs either on the caller's thread (tensor conversion, which
must copy before the caller changes the tensor) or on the logger's thread
(batch encoding). Nothing here does I/O.
"""

from __future__ import annotations

import time
from typing import Any, Iterable, Iterator, NamedTuple, Sequence

import numpy as np

from steplake.v1 import ingest_pb2 as pb

#: Bytes of tensor data per write request; larger tensors go in chunks.
TENSOR_CHUNK_BYTES = 4 << 20

#: numpy dtype name -> steplake dtype name.
_NUMPY_DTYPES = {
    "float32": "f32",
    "float16": "f16",
    "float64": "f64",
    "bfloat16": "bf16",
    "int8": "i8",
    "int16": "i16",
    "int32": "i32",
    "int64": "i64",
    "uint8": "u8",
    "bool": "bool",
}

#: steplake dtype name -> numpy dtype (bf16 needs ml_dtypes; see numpy_dtype).
WIRE_TO_NUMPY = {wire: name for name, wire in _NUMPY_DTYPES.items()}


def now_us() -> int:
    """Wall-clock time in microseconds since the Unix epoch."""
    return time.time_ns() // 1000


def numpy_dtype(wire: str) -> np.dtype:
    """The numpy dtype for a steplake dtype name.

    ``bf16`` is ``ml_dtypes.bfloat16`` when ml_dtypes is installed, else
    ``float32`` (bf16 widens to float32 exactly).
    """
    if wire == "bf16":
        try:
            import ml_dtypes  # type: ignore[import-not-found]

            return np.dtype(ml_dtypes.bfloat16)
        except ImportError:
            return np.dtype("float32")
    try:
        return np.dtype(WIRE_TO_NUMPY[wire])
    except KeyError:
        raise ValueError(f"unknown steplake dtype {wire!r}") from None


def tensor_bytes(array: Any) -> tuple[str, list[int], bytes]:
    """(steplake dtype, shape, little-endian bytes) of a numpy array or torch tensor.

    Torch tensors (CPU or GPU) are copied to host memory; bfloat16 is kept as
    bf16. Raises ``TypeError`` for a dtype steplake does not store.
    """
    module = type(array).__module__
    if module.startswith("torch"):
        return _torch_tensor_bytes(array)
    values = np.asarray(array)
    dtype = _NUMPY_DTYPES.get(values.dtype.name)
    if dtype is None:
        raise TypeError(
            f"tensor dtype {values.dtype} is not stored by steplake; "
            f"convert it to one of {', '.join(sorted(_NUMPY_DTYPES))}"
        )
    if values.dtype.byteorder == ">":
        values = values.astype(values.dtype.newbyteorder("<"))
    return dtype, list(values.shape), np.ascontiguousarray(values).tobytes()


def _torch_tensor_bytes(tensor: Any) -> tuple[str, list[int], bytes]:
    import torch  # type: ignore[import-not-found]

    tensor = tensor.detach()
    shape = list(tensor.shape)
    if tensor.dtype == torch.bfloat16:
        raw = tensor.contiguous().view(torch.int16).cpu().numpy()
        return "bf16", shape, raw.tobytes()
    values = tensor.contiguous().cpu().numpy()
    dtype = _NUMPY_DTYPES.get(values.dtype.name)
    if dtype is None:
        raise TypeError(f"tensor dtype {tensor.dtype} is not stored by steplake")
    return dtype, shape, values.tobytes()


def tensor_requests(
    name: str,
    step: int,
    dtype: str,
    shape: Sequence[int],
    data: bytes,
    wall_time_us: int,
    stats: pb.TensorStatistics | None = None,
) -> Iterator[pb.Tensor]:
    """The tensor as one message, or as chunks of ``TENSOR_CHUNK_BYTES``."""
    total = len(data)
    if total == 0:
        yield pb.Tensor(
            name=name, step=step, dtype=dtype, shape=shape, total_bytes=0,
            offset=0, data=b"", wall_time_us=wall_time_us, stats=stats,
        )
        return
    view = memoryview(data)
    for offset in range(0, total, TENSOR_CHUNK_BYTES):
        chunk = view[offset : offset + TENSOR_CHUNK_BYTES]
        yield pb.Tensor(
            name=name, step=step, dtype=dtype, shape=shape, total_bytes=total,
            offset=offset, data=bytes(chunk), wall_time_us=wall_time_us,
            stats=stats if offset == 0 else None,
        )


def stats_only_tensor(
    name: str, step: int, dtype: str, shape: Sequence[int],
    stats: pb.TensorStatistics, wall_time_us: int,
) -> pb.Tensor:
    """A tensor message that carries statistics only (no data)."""
    return pb.Tensor(
        name=name, step=step, dtype=dtype, shape=shape, total_bytes=0,
        wall_time_us=wall_time_us, stats=stats, stats_only=True,
    )


class EncodedScalars(NamedTuple):
    """A serialized ``ScalarBatch`` and the points in it."""

    payload: bytes
    points: int


_VARINT_LIMITS = np.array([1 << (7 * k) for k in range(1, 10)], dtype=np.uint64)
_VARINT_SHIFTS = np.arange(0, 70, 7, dtype=np.uint64)


def varints(values: np.ndarray) -> bytes:
    """Protobuf base-128 varints of non-negative integers, vectorised.

    The same bytes protobuf writes for a packed ``int64``/``uint32`` field of
    non-negative values (negative values never occur: steps, wall times and
    indices are >= 0).
    """
    x = np.ascontiguousarray(values, dtype=np.uint64)
    if len(x) == 0:
        return b""
    length = np.searchsorted(_VARINT_LIMITS, x, side="right") + 1
    width = int(length.max())
    groups = ((x[:, None] >> _VARINT_SHIFTS[None, :width]) & np.uint64(0x7F)).astype(np.uint8)
    if int(length.min()) == width:  # one width for all (the usual case): no gather
        groups[:, :-1] |= 0x80
        return groups.tobytes()
    position = np.arange(width)
    groups[position[None, :] < (length[:, None] - 1)] |= 0x80
    return groups[position[None, :] < length[:, None]].tobytes()


def _varint(n: int) -> bytes:
    return varints(np.array([n], dtype=np.uint64))


def length_delimited(field: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field (strings, bytes, messages, packed)."""
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def varint_field(field: int, value: int) -> bytes:
    """One varint protobuf field."""
    return _varint(field << 3) + _varint(value)


def encode_scalar_batch(
    names: Sequence[str], index: np.ndarray, steps: np.ndarray, values: np.ndarray, wall_us: np.ndarray
) -> bytes:
    """A serialized ``steplake.v1.ScalarBatch``, built with numpy.

    Byte-identical to ``pb.ScalarBatch(...).SerializeToString()`` (a test
    checks it) and an order of magnitude faster for large batches, which
    is what lets bulk logging stream millions of points per second.
    """
    parts = [length_delimited(1, name.encode("utf-8")) for name in names]
    if len(steps):
        parts.append(length_delimited(2, varints(index)))
        parts.append(length_delimited(3, varints(steps)))
        parts.append(length_delimited(4, np.ascontiguousarray(values, dtype="<f8").tobytes()))
        parts.append(length_delimited(5, varints(wall_us)))
    return b"".join(parts)


def encode_write_request(writer_id: str, sequence: int, run_id: str, scalars: bytes) -> bytes:
    """A serialized ``steplake.v1.WriteRequest`` carrying an encoded ScalarBatch."""
    return b"".join([
        length_delimited(1, writer_id.encode("utf-8")),
        varint_field(2, sequence),
        length_delimited(3, run_id.encode("utf-8")),
        length_delimited(4, scalars),
    ])


class ScalarColumns:
    """Points being gathered for the next batch.

    ``log()`` appends here under the writer's lock, as cheap Python lists;
    the bulk API appends whole numpy columns. The logger thread swaps the
    whole object out and encodes it (:meth:`encode`).
    """

    __slots__ = ("name_index", "values", "calls", "columns", "points")

    def __init__(self) -> None:
        #: Per point logged by ``log()``: index into the writer's name table.
        self.name_index: list[int] = []
        #: Per point logged by ``log()``: the value as logged (any real number type).
        self.values: list[Any] = []
        #: Per ``log()`` call: (step, wall time in µs, points in the call).
        self.calls: list[tuple[int, int, int]] = []
        #: Bulk columns: (name index, steps, values, wall times in µs).
        self.columns: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self.points = 0

    def add(self, indices: Sequence[int], values: Iterable[Any], step: int, wall_us: int) -> None:
        """Appends one ``log()`` call's points."""
        self.name_index.extend(indices)
        self.values.extend(values)
        self.calls.append((step, wall_us, len(indices)))
        self.points += len(indices)

    def add_columns(
        self, indices: np.ndarray, steps: np.ndarray, values: np.ndarray, wall_us: np.ndarray
    ) -> None:
        """Appends many points at once (the bulk API)."""
        self.columns.append((indices, steps, values, wall_us))
        self.points += len(steps)

    def encode(self, names: Sequence[str], max_points: int) -> tuple[list["EncodedScalars"], int]:
        """The points as serialized ``ScalarBatch`` messages of at most
        ``max_points`` each, carrying only the names they use, and the number
        of values dropped because they were not numbers."""
        calls = np.array(self.calls, dtype=np.int64).reshape(-1, 3)
        counts = calls[:, 2]
        index = [np.asarray(self.name_index, dtype=np.int64)]
        steps = [np.repeat(calls[:, 0], counts)]
        wall = [np.repeat(calls[:, 1], counts)]
        values, keep = _as_float64(self.values)
        dropped = 0
        if keep is not None:
            dropped = int((~keep).sum())
            index[0], steps[0], wall[0], values = index[0][keep], steps[0][keep], wall[0][keep], values[keep]
        value_parts = [values]
        for column in self.columns:
            index.append(column[0])
            steps.append(column[1])
            value_parts.append(column[2])
            wall.append(column[3])
        all_index = np.concatenate(index)
        all_steps = np.concatenate(steps)
        all_values = np.concatenate(value_parts)
        all_wall = np.concatenate(wall)
        batches = []
        for start in range(0, len(all_steps), max(1, max_points)):
            part = slice(start, start + max_points)
            used, local = np.unique(all_index[part], return_inverse=True)
            batches.append(
                EncodedScalars(
                    encode_scalar_batch(
                        [names[i] for i in used.tolist()], local,
                        all_steps[part], all_values[part], all_wall[part],
                    ),
                    len(local),
                )
            )
        return batches, dropped


def _as_float64(values: list[Any]) -> tuple[np.ndarray, np.ndarray | None]:
    """The values as float64; with a keep-mask when some are not numbers."""
    try:
        return np.fromiter(values, dtype=np.float64, count=len(values)), None
    except (TypeError, ValueError):
        pass
    out = np.empty(len(values), dtype=np.float64)
    keep = np.ones(len(values), dtype=bool)
    for i, value in enumerate(values):
        try:
            out[i] = float(value)
        except (TypeError, ValueError):
            keep[i] = False
    return out, keep
