"""Where the server is: the one rule every entry point (logging, queries, sync) uses.

Kept free of heavy imports, so that ``import steplake`` stays fast.
"""

from __future__ import annotations

import os

#: The server address when neither ``server=`` nor ``STEPLAKE_SERVER`` is given.
DEFAULT_SERVER = "127.0.0.1:50051"


def server_address(server: str | None) -> str:
    """The server to use: the argument, else ``STEPLAKE_SERVER``, else the default."""
    return server or os.environ.get("STEPLAKE_SERVER") or DEFAULT_SERVER
