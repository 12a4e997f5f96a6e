"""``python -m steplake``: the package's command line (``sync``,
``import-wandb``, ``ui``)."""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys

from steplake._address import counted
from steplake._local import binary, program
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
    wandb_parser = commands.add_parser(
        "import-wandb",
        help="import W&B runs (run directories, offline or synced, or Parquet histories) through "
             "W&B's own reader; runs `steplake import wandb` with the `wandb` program of this Python",
    )
    wandb_parser.add_argument("paths", nargs="+", help="wandb directories, run directories, .wandb or .parquet files")
    wandb_parser.add_argument("--server", help="server address (default: STEPLAKE_SERVER, else 127.0.0.1:50051)")
    wandb_parser.add_argument("--project", help="project of every run (default: each run's W&B project)")
    wandb_parser.add_argument("--dry-run", action="store_true", help="read and check everything, send nothing")
    ui_parser = commands.add_parser(
        "ui", help="open the dashboard of the local data directory (the one steplake.init() uses "
                   "with no server configured) in the browser; runs `steplake ui`")
    ui_parser.add_argument("--http", help="dashboard address (default 127.0.0.1:6006)")
    ui_parser.add_argument("--no-browser", action="store_true", help="print the address only")
    args = parser.parse_args(argv)
    if args.command == "import-wandb":
        return import_wandb(args)
    if args.command == "ui":
        return ui(args)
    try:
        report = sync(args.directory, args.server, token=args.token, ca_cert=args.ca_cert)
    except SyncError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"uploaded {counted(report.batches, 'batch', 'batches')} of {counted(report.runs, 'run', 'runs')} "
          f"({report.duplicates} the server already had)")
    return 0


def ui(args: argparse.Namespace) -> int:
    """``steplake ui``, with the program the wheel installed."""
    steplake = binary()
    if steplake is None:
        print("error: the steplake program was not found: put it on PATH or set STEPLAKE_BIN", file=sys.stderr)
        return 1
    command = [steplake, "ui"]
    if args.http:
        command += ["--http", args.http]
    if args.no_browser:
        command.append("--no-browser")
    child = subprocess.Popen(command)
    try:
        return child.wait()
    except KeyboardInterrupt:
        # Passed on: the server flushes and stops.
        child.send_signal(signal.SIGINT)
        return child.wait()


def import_wandb(args: argparse.Namespace) -> int:
    """``steplake import wandb``, given the ``wandb`` program of this Python."""
    steplake = binary()
    if steplake is None:
        print("error: the steplake program was not found: put it on PATH or set STEPLAKE_BIN", file=sys.stderr)
        return 1
    wandb = program("wandb", "STEPLAKE_WANDB")
    if wandb is None:
        print("error: W&B's library is not installed in this Python: pip install wandb", file=sys.stderr)
        return 1
    command = [steplake, "import", "wandb", "--wandb", wandb]
    if args.server:
        server = args.server if "://" in args.server else f"http://{args.server}"
        command += ["--server", server]
    if args.project:
        command += ["--project", args.project]
    if args.dry_run:
        command.append("--dry-run")
    return subprocess.call(command + list(args.paths))


if __name__ == "__main__":
    sys.exit(main())
