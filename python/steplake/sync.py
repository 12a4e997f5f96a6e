"""Uploading spools: what runs logged while the server was unreachable.

``python -m steplake sync DIR`` (or :func:`sync`) finds every spool under
DIR, creates (or resumes) its run, sends its requests in sequence order with
their original writer id and sequence numbers (so anything the server already
has is acknowledged as a duplicate, not applied twice), finishes the run if
it was finished, and deletes each request once acknowledged.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import grpc

from steplake._spool import Spool, find_spools
from steplake._address import ca_cert_pem, token_value
from steplake._writer import create_run_request, open_channel, write_call
from steplake.v1 import ingest_pb2 as pb


@dataclass
class SyncReport:
    """What :func:`sync` uploaded."""

    runs: int = 0
    batches: int = 0
    duplicates: int = 0


class SyncError(RuntimeError):
    """A spool could not be uploaded; the message says why and what to do."""


def empty_request(payload: bytes) -> bytes:
    """``payload`` (a serialized WriteRequest) with its data taken out: it
    keeps its writer and sequence number and stores nothing."""
    request = pb.WriteRequest.FromString(payload)
    request.ClearField("tensor")
    request.ClearField("scalars")
    request.scalars.SetInParent()
    return request.SerializeToString()


def sync(
    directory: str | os.PathLike[str],
    server: str | None = None,
    timeout: float = 60.0,
    token: str | None = None,
    ca_cert: str | os.PathLike[str] | None = None,
) -> SyncReport:
    """Uploads every spool under ``directory``; ``server`` overrides the one
    recorded. ``token`` (default ``STEPLAKE_TOKEN``) and ``ca_cert`` (default
    ``STEPLAKE_CA_CERT``) are as for :func:`steplake.init`: spools never
    record a token."""
    root = Path(directory)
    if not root.exists():
        raise SyncError(f"{root} does not exist; pass the directory a run printed")
    report = SyncReport()
    access = (token_value(token), ca_cert_pem(ca_cert))
    for spool in find_spools(root):
        _sync_one(spool, server, timeout, report, access)
    return report


def _sync_one(
    spool: Spool,
    server: str | None,
    timeout: float,
    report: SyncReport,
    access: tuple[str | None, bytes | None],
) -> None:
    meta = spool.run_meta()
    target = server or meta.get("server")
    if not target:
        raise SyncError(f"{spool.directory}/run.json names no server; pass --server")
    channel = open_channel(target, *access)
    try:
        try:
            grpc.channel_ready_future(channel).result(timeout=min(timeout, 10.0))
        except grpc.FutureTimeoutError:
            raise SyncError(f"cannot reach the steplake server at {target}; is it running?") from None
        create = channel.unary_unary(
            "/steplake.v1.Ingest/CreateRun",
            request_serializer=pb.CreateRunRequest.SerializeToString,
            response_deserializer=pb.CreateRunResponse.FromString,
        )
        create(create_run_request(meta["run"]), timeout=timeout)
        while sequences := spool.sequences():
            responses = write_call(channel)((spool.get(s) for s in sequences), timeout=timeout)
            try:
                for response in responses:
                    spool.remove(response.sequence)
                    report.batches += 1
                    report.duplicates += int(response.duplicate)
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.INVALID_ARGUMENT:
                    raise SyncError(
                        f"the server stopped the upload of {spool.directory}: "
                        f"{error.code().name}: {error.details()}; what was acknowledged is removed, "
                        "run sync again for the rest"
                    ) from None
                # The first request not acknowledged was refused for its
                # content: it takes its sequence number as an empty batch,
                # so the ones after it can be stored.
                refused = spool.sequences()[0]
                print(f"steplake: the server refused spooled batch {refused} and it is skipped: "
                      f"{error.details()}", file=sys.stderr)
                spool.put(refused, empty_request(spool.get(refused)))
        status = spool.finished_status()
        if status is not None:
            finish = channel.unary_unary(
                "/steplake.v1.Ingest/FinishRun",
                request_serializer=pb.FinishRunRequest.SerializeToString,
                response_deserializer=pb.FinishRunResponse.FromString,
            )
            finish(pb.FinishRunRequest(run_id=meta["run"]["run_id"], status=status), timeout=timeout)
        if not spool.sequences():
            spool.remove_all()
        report.runs += 1
    except grpc.RpcError as error:
        raise SyncError(f"{target}: {error.code().name}: {error.details()}") from None
    finally:
        channel.close()
