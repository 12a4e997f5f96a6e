"""Read steplake Parquet files with pyarrow and with DuckDB, without steplake.

Usage: read_parquet.py FILE... ; prints JSON:
  {"pyarrow": [[run_id, name, step, repr(value), wall_time_us], ...],
   "duckdb":  [... same ...],
   "layout":  {encodings, compression, page index} of the first file}
Rows are sorted by (run_id, name, step). Values are repr() strings so that
NaN and infinities survive JSON.
"""

import json
import sys

import duckdb
import pyarrow.parquet as pq


def pyarrow_rows(files):
    rows = []
    for f in files:
        table = pq.read_table(f)
        wall = table.column("wall_time").cast("int64").to_pylist()
        for r, n, s, v, w in zip(
            table.column("run_id").to_pylist(),
            table.column("name").to_pylist(),
            table.column("step").to_pylist(),
            table.column("value").to_pylist(),
            wall,
        ):
            rows.append([r, n, s, repr(float(v)), w])
    rows.sort(key=lambda row: (row[0], row[1], row[2]))
    return rows


def duckdb_rows(files):
    con = duckdb.connect()
    result = con.execute(
        "SELECT run_id, name, step, value, epoch_us(wall_time) FROM read_parquet(?) ORDER BY run_id, name, step",
        [list(files)],
    ).fetchall()
    return [[r, n, s, repr(float(v)), w] for r, n, s, v, w in result]


def layout(path):
    meta = pq.ParquetFile(path).metadata
    rg = meta.row_group(0)
    cols = {rg.column(i).path_in_schema: rg.column(i) for i in range(rg.num_columns)}
    return {
        "value_encodings": ",".join(cols["value"].encodings),
        "step_encodings": ",".join(cols["step"].encodings),
        "compression": cols["value"].compression,
        "has_page_index": bool(cols["value"].has_column_index and cols["value"].has_offset_index),
    }


def main():
    files = sys.argv[1:]
    print(json.dumps({"pyarrow": pyarrow_rows(files), "duckdb": duckdb_rows(files), "layout": layout(files[0])}))


if __name__ == "__main__":
    main()
