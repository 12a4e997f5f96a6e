"""Read a steplake tensors Parquet file with pyarrow and with DuckDB, without steplake.

Usage: read_tensors.py FILE ; prints JSON:
  {"pyarrow": {name: {"dtype": d, "shape": [...], "column": c, "bits": hex}},
   "duckdb":  {name: {"column": c, "tensor": [repr(v), ...]}}}
pyarrow's "bits" is the exact little-endian buffer of the stored numbers
(float32, float64 or int64), so the caller compares bit for bit. DuckDB's
values are repr() strings of Python numbers (NaN and infinities survive JSON).
"""

import json
import sys

import duckdb
import numpy as np
import pyarrow.parquet as pq

VALUE_COLUMNS = ["tensor", "tensor_f64", "tensor_int"]


def pyarrow_tensors(path):
    table = pq.read_table(path)
    out = {}
    for i, name in enumerate(table.column("name").to_pylist()):
        entry = {
            "dtype": table.column("dtype")[i].as_py(),
            "shape": table.column("shape")[i].as_py(),
            "column": None,
            "bits": None,
        }
        for column in VALUE_COLUMNS:
            cell = table.column(column)[i]
            if cell.is_valid:
                entry["column"] = column
                entry["bits"] = np.asarray(cell.values.to_numpy(zero_copy_only=False)).tobytes().hex()
        out[name] = entry
    return out


def duckdb_tensors(path):
    con = duckdb.connect()
    rows = con.execute(
        "SELECT name, " + ", ".join(VALUE_COLUMNS) + " FROM read_parquet(?)", [path]
    ).fetchall()
    out = {}
    for name, *columns in rows:
        entry = {"column": None, "tensor": None}
        for column, values in zip(VALUE_COLUMNS, columns):
            if values is not None:
                entry["column"] = column
                entry["tensor"] = [repr(float(v)) if column != "tensor_int" else str(v) for v in values]
        out[name] = entry
    return out


def main():
    path = sys.argv[1]
    print(json.dumps({"pyarrow": pyarrow_tensors(path), "duckdb": duckdb_tensors(path)}))


if __name__ == "__main__":
    main()
