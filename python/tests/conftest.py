"""Fixtures: the real ``steplake`` binary on a free loopback port.

``STEPLAKE_BIN`` names the binary (``scripts/test.sh`` sets it to the one
cargo just built); tests fail with that hint when it is missing.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest


def steplake_binary() -> str:
    path = os.environ.get("STEPLAKE_BIN")
    if not path or not Path(path).is_file():
        pytest.fail(
            "set STEPLAKE_BIN to the steplake binary (scripts/test.sh does: "
            "cargo builds it, then this suite runs against it)"
        )
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A ``steplake serve`` process that can be killed and started again."""

    def __init__(self, data_dir: Path, port: int | None = None, extra: list[str] | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.extra = list(extra or [])
        #: What clients connect to: ``host:port``, or ``https://host:port`` with TLS.
        self.address = f"127.0.0.1:{self.port}"
        if "--tls-cert" in self.extra:
            self.address = f"https://{self.address}"
        self.process: subprocess.Popen[str] | None = None

    def token(self, name: str, scope: str) -> str:
        """``steplake token create`` in this server's data directory."""
        done = subprocess.run(
            [steplake_binary(), "token", "create", "--data-dir", str(self.data_dir),
             "--name", name, "--scope", scope],
            capture_output=True, text=True, check=True,
        )
        return done.stdout.strip()

    def start(self) -> "Server":
        deadline = time.monotonic() + 30
        while True:
            self.process = subprocess.Popen(
                [steplake_binary(), "serve", "--data-dir", str(self.data_dir),
                 "--listen", f"127.0.0.1:{self.port}", "--http", "off", *self.extra],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                env={**os.environ, "STEPLAKE_LOG": "warn"},
            )
            assert self.process.stdout is not None
            line = self.process.stdout.readline()
            if "listening on" in line:
                return self
            # The port may still be held by the process we just killed.
            self.process.wait()
            if time.monotonic() > deadline:
                raise RuntimeError(f"steplake serve did not start: {line!r} {self.process.stderr.read() if self.process.stderr else ''}")
            time.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL: no flush, no goodbye."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def stop(self) -> None:
        """SIGTERM and a clean exit."""
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=60)
            self.process = None


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = Server(tmp_path / "data").start()
    yield s
    s.kill()


@pytest.fixture(autouse=True)
def spool_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test spools into its own directory, and has its own local data
    directory."""
    directory = tmp_path / "spool"
    monkeypatch.setenv("STEPLAKE_SPOOL_DIR", str(directory))
    # A local server a test starts (no server configured) keeps its data
    # here, not in the home directory, and stops soon after.
    monkeypatch.setenv("STEPLAKE_DATA_DIR", str(tmp_path / "local-data"))
    monkeypatch.setenv("STEPLAKE_LOCAL_IDLE_SECS", "5")
    return directory


def make_certs(directory: Path) -> dict[str, Path]:
    """A throwaway CA and a certificate it signed for 127.0.0.1 and
    localhost, as PEM files: ``ca``, ``cert`` and ``key``."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "steplake test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        ]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = {"ca": directory / "ca.pem", "cert": directory / "server.pem", "key": directory / "server.key"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption(),
    ))
    return paths
