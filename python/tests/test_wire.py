"""The hand-rolled protobuf encoding is byte-identical to protobuf's own."""

from __future__ import annotations

import numpy as np
import pytest

from steplake import _wire
from steplake.v1 import ingest_pb2 as pb


def test_varints_match_protobuf_for_every_width():
    values = np.array([0, 1, 127, 128, 300, 2**14, 2**21 - 1, 2**35 + 5, 2**56, 2**63 - 1], dtype=np.int64)
    expected = pb.ScalarBatch(steps=values.tolist()).SerializeToString()
    assert _wire.length_delimited(3, _wire.varints(values)) == expected


def test_scalar_batches_match_protobuf():
    rng = np.random.default_rng(1)
    n = 5000
    index = rng.integers(0, 3, n)
    steps = rng.integers(0, 2**40, n)
    values = rng.standard_normal(n)
    values[:3] = [np.nan, np.inf, -0.0]
    wall = rng.integers(1_600_000_000_000_000, 1_800_000_000_000_000, n)
    names = ["loss", "eval/acc", "ünïcode"]
    ours = _wire.encode_scalar_batch(names, index, steps, values, wall)
    theirs = pb.ScalarBatch(
        names=names, name_index=index.tolist(), steps=steps.tolist(),
        values=values.tolist(), wall_times_us=wall.tolist(),
    ).SerializeToString()
    assert ours == theirs
    request = _wire.encode_write_request("w-1", 300, "run.1", ours)
    assert request == pb.WriteRequest(
        writer_id="w-1", sequence=300, run_id="run.1", scalars=pb.ScalarBatch.FromString(ours)
    ).SerializeToString()


def test_an_empty_batch_is_empty():
    empty = np.array([], dtype=np.int64)
    assert _wire.encode_scalar_batch([], empty, empty, np.array([]), empty) == b""


def test_bytes_that_are_no_protobuf_message_get_invalid_argument(server):
    import grpc

    channel = grpc.insecure_channel(server.address)
    write = channel.stream_stream(
        "/steplake.v1.Ingest/Write",
        request_serializer=lambda raw: raw,
        response_deserializer=lambda raw: raw,
    )
    try:
        responses = write(iter([b"\xff\xff\xff\xff\x0f garbage"]), timeout=10)
        with pytest.raises(grpc.RpcError) as refused:
            list(responses)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, refused.value
        assert "not a WriteRequest" in refused.value.details()
    finally:
        channel.close()
