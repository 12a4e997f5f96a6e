"""``steplake.connect(server).sql(...)``: SQL from a notebook, over Flight SQL.

Results arrive as Arrow record batches (no row-by-row conversion) and come
back as a :class:`QueryResult`: the ``pyarrow.Table`` itself is
``result.arrow()`` (and ``pa.table(result)`` works, through the Arrow
PyCapsule interface), ``result.df()`` is a pandas DataFrame, ``result.pl()``
a polars DataFrame. Tensors: when a result has the ``tensors`` table's
``dtype`` and ``shape`` columns next to its value columns, ``df()`` and
:meth:`QueryResult.tensors` give each stored tensor back as a numpy array of
its original dtype and shape.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Iterator

import pyarrow as pa
import pyarrow.flight as flight

from steplake import _local
from steplake._address import ca_cert_pem, host_port, server_address, token_value, uses_tls

if TYPE_CHECKING:
    import numpy as np

_STATEMENT_QUERY = "type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery"
#: Value columns of the tensors table, by the kind of dtype they hold.
_TENSOR_COLUMNS = ("tensor", "tensor_f64", "tensor_int")


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def length_delimited(field: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field (a string, bytes or a message)."""
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def statement_command(sql: str) -> bytes:
    """``Any(CommandStatementQuery(query=sql))``, encoded: a Flight SQL query descriptor."""
    command = length_delimited(1, sql.encode("utf-8"))
    return length_delimited(1, _STATEMENT_QUERY.encode()) + length_delimited(2, command)


class QueryError(Exception):
    """The server refused or failed a query; the message is the server's reason."""


def _query_error(error: Exception) -> QueryError:
    message = str(error)
    marker = "with message: "
    if marker in message:
        message = message.split(marker, 1)[1]
    return QueryError(message.strip())


class QueryResult:
    """The result of a query: Arrow data with pandas, polars and numpy views."""

    def __init__(self, table: pa.Table) -> None:
        self._table = table

    def arrow(self) -> pa.Table:
        """The result as a ``pyarrow.Table``."""
        return self._table

    def df(self) -> Any:
        """The result as a pandas DataFrame; stored tensors as numpy arrays."""
        _require("pandas", "df()")
        frame = self._table.to_pandas()
        if self._has_tensors():
            frame = frame.drop(columns=[c for c in _TENSOR_COLUMNS if c in frame.columns])
            frame["tensor"] = self.tensors()
        return frame

    def pl(self) -> Any:
        """The result as a polars DataFrame (tensor values stay lists)."""
        _require("polars", "pl()")
        import polars as pl

        return pl.from_arrow(self._table)

    def tensors(self) -> list[np.ndarray | None]:
        """Per row, the stored tensor with its dtype and shape; None where only
        statistics were stored. Needs the ``dtype`` and ``shape`` columns."""
        if not self._has_tensors():
            raise ValueError(
                "the result needs the tensors table's dtype and shape columns and a "
                "value column (tensor, tensor_f64 or tensor_int)"
            )
        dtypes = self._table.column("dtype").to_pylist()
        shapes = self._table.column("shape").to_pylist()
        value_columns = [
            self._table.column(c) for c in _TENSOR_COLUMNS if c in self._table.column_names
        ]
        out: list[np.ndarray | None] = []
        for row, (dtype, shape) in enumerate(zip(dtypes, shapes)):
            out.append(_restore(dtype, shape, [column[row] for column in value_columns]))
        return out

    def _has_tensors(self) -> bool:
        names = set(self._table.column_names)
        return {"dtype", "shape"} <= names and any(c in names for c in _TENSOR_COLUMNS)

    def __arrow_c_stream__(self, requested_schema: Any = None) -> Any:
        return self._table.__arrow_c_stream__(requested_schema)

    def __len__(self) -> int:
        return self._table.num_rows

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self._table.to_pylist())

    def __getattr__(self, name: str) -> Any:
        # Everything else a pyarrow.Table offers: num_rows, schema, column(), ...
        if name.startswith("__") or name == "_table":
            raise AttributeError(name)
        return getattr(self._table, name)

    def __repr__(self) -> str:
        return f"steplake.QueryResult\n{self._table}"


def _require(package: str, method: str) -> None:
    """Raises an ImportError that says what to install when ``package`` is missing."""
    import importlib

    try:
        importlib.import_module(package)
    except ImportError as error:
        raise ImportError(
            f"QueryResult.{method} needs {package}, which is not installed: "
            f"pip install 'steplake[{package}]' (or pip install {package}); "
            "QueryResult.arrow() needs nothing more"
        ) from error


def _restore(dtype: str | None, shape: list[int] | None, cells: list[Any]) -> np.ndarray | None:
    from steplake._wire import numpy_dtype

    if dtype is None or shape is None:
        return None
    for cell in cells:
        if cell.is_valid:
            values = cell.values.to_numpy(zero_copy_only=False)
            target = numpy_dtype(dtype)
            return values.astype(target, copy=False).reshape(shape)
    return None


class Connection:
    """A Flight SQL connection to a steplake server."""

    def __init__(
        self,
        server: str | None = None,
        token: str | None = None,
        ca_cert: str | os.PathLike[str] | None = None,
    ) -> None:
        address = server_address(server)
        if _local.wanted(server):
            address = _local.ensure()
        #: The server, as ``host:port``.
        self.server = host_port(address)
        root = ca_cert_pem(ca_cert)
        if uses_tls(address):
            self._client = flight.FlightClient(f"grpc+tls://{self.server}", tls_root_certs=root)
        elif root is not None:
            raise ValueError(f"a CA certificate was given for {address!r}; use an https:// address for TLS")
        else:
            self._client = flight.FlightClient(f"grpc://{self.server}")
        bearer = token_value(token)
        headers = [(b"authorization", f"Bearer {bearer}".encode())] if bearer else []
        self._options = flight.FlightCallOptions(headers=headers)

    def sql(self, query: str) -> QueryResult:
        """Runs a read-only SQL query; the whole result, as a :class:`QueryResult`.

        Raises :class:`QueryError` with the server's reason when the query is
        refused (a syntax error, an unknown column, a write) or fails.
        """
        descriptor = flight.FlightDescriptor.for_command(statement_command(query))
        try:
            info = self._client.get_flight_info(descriptor, self._options)
            tables = [self._client.do_get(e.ticket, self._options).read_all() for e in info.endpoints]
        except pa.ArrowException as error:
            raise _query_error(error) from error
        if not tables:
            return QueryResult(info.schema.empty_table())
        return QueryResult(pa.concat_tables(tables) if len(tables) > 1 else tables[0])

    def close(self) -> None:
        """Closes the connection."""
        self._client.close()

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def connect(
    server: str | None = None,
    token: str | None = None,
    ca_cert: str | os.PathLike[str] | None = None,
) -> Connection:
    """A SQL connection to ``server`` (default ``STEPLAKE_SERVER``, else
    ``127.0.0.1:50051`` when a server listens there, else the local server
    ``steplake.init()`` uses, started if needed; ``https://host:port`` for
    TLS), sending ``token``
    (default ``STEPLAKE_TOKEN``; a ``read`` token) and trusting the CA in the
    PEM file ``ca_cert`` (default ``STEPLAKE_CA_CERT``)."""
    return Connection(server, token, ca_cert)
