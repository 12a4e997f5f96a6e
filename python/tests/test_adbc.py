"""Flight SQL through an independent client: the ADBC Flight SQL driver (Go)
and polars over it. JDBC tools use the same calls: prepare with the dataset
schema, bind parameters, GetObjects, GetInfo."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import steplake

adbc = pytest.importorskip("adbc_driver_flightsql.dbapi", reason="adbc_driver_flightsql is not installed")


@pytest.fixture
def connection(server):
    with steplake.init(project="adbc", name="clients", server=server.address) as run:
        run.log_many({"loss": 1.0 / (np.arange(50) + 1.0), "acc": np.arange(50) / 50},
                     steps=np.arange(50))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "cannot disable autocommit": steplake is read-only
        conn = adbc.connect(f"grpc://{server.address}", autocommit=True)
    yield conn
    conn.close()


def test_execute_and_fetch_arrow_table(connection):
    with connection.cursor() as cursor:
        cursor.execute("SELECT name, step, value FROM scalars WHERE name = 'loss' AND step < 3 ORDER BY step")
        table = cursor.fetch_arrow_table()
    assert table.column_names == ["name", "step", "value"]
    assert str(table.schema.field("name").type) == "string"
    assert table.column("value").to_pylist() == [1.0, 0.5, 1.0 / 3.0]


def test_parameters_bound_to_a_prepared_statement(connection):
    with connection.cursor() as cursor:
        sql = "SELECT step, value FROM scalars WHERE name = $1 AND step >= $2 ORDER BY step"
        cursor.execute(sql, ("acc", 47))
        assert cursor.fetch_arrow_table().column("step").to_pylist() == [47, 48, 49]
        cursor.execute(sql, ("loss", 49))  # the same statement, new values
        assert cursor.fetchall() == [(49, 1.0 / 50)]


def test_dbapi_rows_and_description(connection):
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) AS n, max(step) AS last FROM scalars")
        assert cursor.fetchone() == (100, 49)
        assert [d[0] for d in cursor.description] == ["n", "last"]


def test_get_objects_lists_catalog_schemas_tables_and_columns(connection):
    objects = connection.adbc_get_objects(depth="all").read_all().to_pylist()
    assert [c["catalog_name"] for c in objects] == ["steplake"]
    schemas = objects[0]["catalog_db_schemas"]
    assert [s["db_schema_name"] for s in schemas] == ["public"]
    tables = {t["table_name"]: t for t in schemas[0]["db_schema_tables"]}
    assert set(tables) == {"conditions", "events", "runs", "scalars", "tensors"}
    assert all(t["table_type"] == "TABLE" for t in tables.values())
    columns = [c["column_name"] for c in tables["scalars"]["table_columns"]]
    assert columns == ["run_id", "name", "step", "value", "wall_time"]


def test_get_info_names_the_server(connection):
    info = connection.adbc_get_info()
    assert info["vendor_name"] == "steplake"
    assert info["vendor_version"] == steplake.__version__
    assert info["vendor_arrow_version"]


def test_get_table_schema(connection):
    schema = connection.adbc_get_table_schema("scalars", catalog_filter="steplake", db_schema_filter="public")
    assert schema.names == ["run_id", "name", "step", "value", "wall_time"]


def test_polars_read_database_over_adbc(connection):
    polars = pytest.importorskip("polars", reason="polars is not installed")
    frame = polars.read_database(
        "SELECT name, count(*) AS points FROM scalars GROUP BY name ORDER BY name", connection=connection)
    assert frame.to_dicts() == [{"name": "acc", "points": 50}, {"name": "loss", "points": 50}]


def test_writes_are_refused_with_the_reason(connection):
    with connection.cursor() as cursor:
        with pytest.raises(Exception, match="read-only"):
            cursor.execute("INSERT INTO scalars VALUES ('r', 'x', 1, 1.0, now())")
