"""Small shared rules kept free of heavy imports (so that ``import steplake``
stays fast): where the server is, which every entry point (logging,
queries, sync) uses, and how counts are written in messages.
"""

from __future__ import annotations

import os

#: The server address when neither ``server=`` nor ``STEPLAKE_SERVER`` is given.
DEFAULT_SERVER = "127.0.0.1:50051"


def server_address(server: str | None) -> str:
    """The server to use: the argument, else ``STEPLAKE_SERVER``, else the default."""
    return server or os.environ.get("STEPLAKE_SERVER") or DEFAULT_SERVER


def counted(n: int, one: str, many: str) -> str:
    """``n`` and a noun that agrees with it: "1 batch", "2 batches"."""
    return f"1 {one}" if n == 1 else f"{n} {many}"
