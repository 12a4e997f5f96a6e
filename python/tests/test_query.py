"""connect().sql(): Arrow results, pandas and polars views, clear errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

import steplake


@pytest.fixture
def logged(server):
    with steplake.init(name="q", server=server.address) as run:
        for step in range(100):
            run.log({"loss": 1.0 / (step + 1), "acc": step / 100}, step=step)
        run.log_tensor("emb", np.arange(6, dtype=np.float16).reshape(2, 3), step=10)
        run.log_tensor("mask", np.array([True, False, True]), step=10)
    return server, run


def test_results_are_arrow_pandas_and_polars(logged):
    server, run = logged
    result = steplake.connect(server.address).sql(
        "SELECT step, value FROM scalars WHERE name = 'loss' ORDER BY step")
    table = result.arrow()
    assert isinstance(table, pa.Table)
    assert table.schema.field("step").type == pa.int64()
    assert pa.table(result).num_rows == 100  # the Arrow PyCapsule interface
    assert len(result) == result.num_rows == 100
    frame = result.df()
    assert list(frame.columns) == ["step", "value"]
    assert frame["value"].iloc[3] == 0.25
    polars_frame = result.pl()
    assert polars_frame.shape == (100, 2)
    assert polars_frame["step"].to_list()[:3] == [0, 1, 2]


def test_strings_are_plain_utf8(logged):
    server, _ = logged
    table = steplake.connect(server.address).sql("SELECT DISTINCT name FROM scalars ORDER BY name").arrow()
    assert table.schema.field("name").type == pa.string()
    assert table.column("name").to_pylist() == ["acc", "loss"]


def test_tensor_rows_restore_dtype_and_shape(logged):
    server, _ = logged
    result = steplake.connect(server.address).sql(
        "SELECT name, dtype, shape, tensor, tensor_int FROM tensors ORDER BY name")
    emb, mask = result.tensors()
    assert emb.dtype == np.float16 and emb.shape == (2, 3)
    np.testing.assert_array_equal(emb, np.arange(6, dtype=np.float16).reshape(2, 3))
    assert mask.dtype == np.bool_ and mask.tolist() == [True, False, True]
    frame = result.df()
    assert "tensor_int" not in frame.columns
    assert frame["tensor"][0].shape == (2, 3)


def test_statistics_only_queries_need_no_tensor_column(logged):
    server, _ = logged
    result = steplake.connect(server.address).sql("SELECT name, l2 FROM tensors ORDER BY name")
    assert result.arrow().column("l2").to_pylist()[1] == pytest.approx(np.sqrt(2.0))
    with pytest.raises(ValueError, match="dtype and shape"):
        result.tensors()


def test_bad_sql_raises_with_the_servers_reason(logged):
    server, _ = logged
    connection = steplake.connect(server.address)
    with pytest.raises(steplake.QueryError, match="No field named nosuchcolumn") as caught:
        connection.sql("SELECT nosuchcolumn FROM scalars")
    assert not str(caught.value).startswith("Flight returned")
    with pytest.raises(steplake.QueryError, match="read-only"):
        connection.sql("DROP TABLE scalars")


def test_df_without_pandas_says_what_to_install(logged, monkeypatch):
    server, _ = logged
    result = steplake.connect(server.address).sql("SELECT 1 AS x")
    monkeypatch.setitem(sys.modules, "pandas", None)  # as if not installed
    with pytest.raises(ImportError, match=r"pip install 'steplake\[pandas\]'"):
        result.df()
    assert result.arrow().num_rows == 1


def test_import_steplake_loads_neither_grpc_nor_flight_nor_pandas():
    # What a first query pays for: only what it uses, imported on first use.
    code = (
        "import sys, steplake\n"
        "heavy = ('grpc', 'pyarrow.flight', 'pandas', 'polars', 'google.protobuf')\n"
        "print([m for m in heavy if m in sys.modules])\n"
        "steplake.connect\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    at_import, after_connect = out.stdout.splitlines()
    assert at_import == "[]"
    assert after_connect == "['pyarrow.flight']"
