"""Small shared rules kept free of heavy imports (so that ``import steplake``
stays fast): where the server is and how to reach it (token, TLS), which
every entry point (logging, queries, sync) uses, and how counts are
written in messages.
"""

from __future__ import annotations

import os

#: The server address when neither ``server=`` nor ``STEPLAKE_SERVER`` is given.
DEFAULT_SERVER = "127.0.0.1:50051"


def server_address(server: str | None) -> str:
    """The server to use: the argument, else ``STEPLAKE_SERVER``, else the default."""
    return server or os.environ.get("STEPLAKE_SERVER") or DEFAULT_SERVER


def token_value(token: str | None) -> str | None:
    """The token to send: the argument, else ``STEPLAKE_TOKEN``, else none."""
    value = token or os.environ.get("STEPLAKE_TOKEN") or None
    return value.strip() if value else None


def ca_cert_pem(ca_cert: str | os.PathLike[str] | None) -> bytes | None:
    """The PEM of the CA certificate to trust for ``https://`` servers: the
    file ``ca_cert``, else the file ``STEPLAKE_CA_CERT`` names, else none
    (the system's CAs)."""
    path = ca_cert or os.environ.get("STEPLAKE_CA_CERT") or None
    if path is None:
        return None
    with open(path, "rb") as file:
        return file.read()


def uses_tls(server: str) -> bool:
    """Whether ``server`` is an ``https://`` (or ``grpc+tls://``) address."""
    return server.startswith(("https://", "grpc+tls://"))


def host_port(server: str) -> str:
    """``host:port`` from ``host:port`` or a URL (``http``, ``https``, ``grpc``, ``grpc+tls``)."""
    for prefix in ("http://", "https://", "grpc://", "grpc+tcp://", "grpc+tls://"):
        if server.startswith(prefix):
            return server[len(prefix) :].rstrip("/")
    return server.rstrip("/")


def counted(n: int, one: str, many: str) -> str:
    """``n`` and a noun that agrees with it: "1 batch", "2 batches"."""
    return f"1 {one}" if n == 1 else f"{n} {many}"
