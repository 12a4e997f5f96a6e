"""Tokens and TLS from Python: the logger, ``steplake.connect`` and the
ADBC Flight SQL driver (Go), against the real binary."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

import steplake
from conftest import Server, make_certs

adbc = pytest.importorskip("adbc_driver_flightsql.dbapi", reason="adbc_driver_flightsql is not installed")


def count(server: Server, token: str, **options) -> int:
    sql = "SELECT count(*) AS n FROM scalars"
    return steplake.connect(server.address, token=token, **options).sql(sql).arrow().column("n")[0].as_py()


def test_a_project_write_token_logs_there_and_nowhere_else(server, capsys, monkeypatch):
    writer = server.token("trainer", "write:vision")
    reader = server.token("notebook", "read")
    with steplake.init(project="vision", server=server.address, token=writer) as run:
        run.log_many({"loss": [3.0, 2.0, 1.0]}, steps=[0, 1, 2])
    assert count(server, reader) == 3

    # Another project: refused, nothing stored, and the points stay in the spool.
    run = steplake.init(project="audio", server=server.address, token=writer)
    run.log({"loss": 1.0}, step=0)
    run.finish(timeout=5)
    assert "may not write to project \"audio\"" in capsys.readouterr().err
    assert count(server, reader) == 3
    assert list(Path(run._writer.spool.directory).glob("*.req")), "the refused points were not kept"

    # A read token cannot write; STEPLAKE_TOKEN is the default token.
    monkeypatch.setenv("STEPLAKE_TOKEN", reader)
    with steplake.init(project="vision", server=server.address) as run:
        run.log({"loss": 0.5}, step=3)
    assert "(scope read) may not write" in capsys.readouterr().err
    assert count(server, reader) == 3


def test_queries_need_a_token_that_may_read(server, monkeypatch):
    reader = server.token("notebook", "read")
    writer = server.token("trainer", "write:*")
    with pytest.raises(steplake.QueryError, match="requires a token"):
        steplake.connect(server.address).sql("SELECT 1")
    with pytest.raises(steplake.QueryError, match="may not read"):
        steplake.connect(server.address, token=writer).sql("SELECT 1")
    monkeypatch.setenv("STEPLAKE_TOKEN", reader)
    assert steplake.connect(server.address).sql("SELECT 1 AS one").arrow().column("one")[0].as_py() == 1


def adbc_connect(uri: str, **db_kwargs: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "cannot disable autocommit": steplake is read-only
        return adbc.connect(uri, db_kwargs=db_kwargs, autocommit=True)


def adbc_rows(connection) -> list:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) AS n FROM scalars")
        return cursor.fetchall()


def test_adbc_logs_in_with_basic_credentials_or_a_bearer_header(server):
    writer = server.token("trainer", "write:*")
    reader = server.token("notebook", "read")
    with steplake.init(project="p", server=server.address, token=writer) as run:
        run.log({"loss": 1.0}, step=0)
    uri = f"grpc://{server.address}"
    # Basic user:token in the handshake, then the Bearer token it answers.
    with adbc_connect(uri, username="steplake", password=reader) as connection:
        assert adbc_rows(connection) == [(1,)]
    with adbc_connect(uri, **{"adbc.flight.sql.authorization_header": f"Bearer {reader}"}) as connection:
        assert adbc_rows(connection) == [(1,)]
    with pytest.raises(Exception, match="may not read|PermissionDenied|permission"):
        with adbc_connect(uri, username="steplake", password=writer) as connection:
            adbc_rows(connection)
    with pytest.raises(Exception, match="requires a token|Unauthenticated|unauthenticated"):
        with adbc_connect(uri) as connection:
            adbc_rows(connection)


@pytest.fixture
def tls_server(tmp_path: Path):
    certs = make_certs(tmp_path)
    s = Server(tmp_path / "data", extra=["--tls-cert", str(certs["cert"]), "--tls-key", str(certs["key"])]).start()
    s.certs = certs  # type: ignore[attr-defined]
    yield s
    s.kill()


def test_the_logger_queries_and_adbc_over_tls(tls_server, monkeypatch):
    ca = str(tls_server.certs["ca"])
    assert tls_server.address.startswith("https://")
    with steplake.init(project="p", server=tls_server.address, ca_cert=ca) as run:
        run.log_many({"loss": [2.0, 1.0]}, steps=[0, 1])
    assert run._writer.points_delivered == 2
    result = steplake.connect(tls_server.address, ca_cert=ca).sql("SELECT sum(value) AS s FROM scalars")
    assert result.arrow().column("s")[0].as_py() == 3.0
    # STEPLAKE_CA_CERT is the default CA.
    monkeypatch.setenv("STEPLAKE_CA_CERT", ca)
    assert steplake.connect(tls_server.address).sql("SELECT 1 AS one").arrow().num_rows == 1
    host = tls_server.address.removeprefix("https://")
    pem = Path(ca).read_text()
    with adbc_connect(f"grpc+tls://{host}", **{"adbc.flight.sql.client_option.tls_root_certs": pem}) as c:
        assert adbc_rows(c) == [(2,)]
    # Without the CA the server's certificate is not trusted.
    monkeypatch.delenv("STEPLAKE_CA_CERT")
    with pytest.raises(steplake.QueryError):
        steplake.connect(tls_server.address).sql("SELECT 1")
