"""``python -m steplake``: the package's command line (``sync``)."""

from __future__ import annotations

import argparse
import sys

from steplake._address import counted
from steplake.sync import SyncError, sync


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m steplake", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    sync_parser = commands.add_parser(
        "sync", help="upload what runs spooled while the server was unreachable"
    )
    sync_parser.add_argument("directory", help="a spool directory, as a run printed it, or a parent of several")
    sync_parser.add_argument("--server", help="server address (default: the one each run used)")
    sync_parser.add_argument("--token", help="token to send (default: STEPLAKE_TOKEN)")
    sync_parser.add_argument("--ca-cert", help="PEM file of the CA for https:// servers (default: STEPLAKE_CA_CERT)")
    args = parser.parse_args(argv)
    try:
        report = sync(args.directory, args.server, token=args.token, ca_cert=args.ca_cert)
    except SyncError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"uploaded {counted(report.batches, 'batch', 'batches')} of {counted(report.runs, 'run', 'runs')} "
          f"({report.duplicates} the server already had)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
