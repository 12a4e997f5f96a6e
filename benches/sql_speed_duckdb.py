"""DuckDB's side of benches/sql_speed.rs.

Reads {"files": [...], "queries": [...], "repeats": n} on stdin, makes the
view `scalars` over the Parquet files, runs each query `repeats` times
(results fetched in full as Arrow, as steplake's are) and prints the
median seconds of each as a JSON list.
"""

import json
import statistics
import sys
import time

import duckdb


def main() -> None:
    request = json.load(sys.stdin)
    con = duckdb.connect()
    files = ", ".join("'" + f.replace("'", "''") + "'" for f in request["files"])
    con.execute(f"CREATE VIEW scalars AS SELECT * FROM read_parquet([{files}])")
    medians = []
    for sql in request["queries"]:
        times = []
        for _ in range(request["repeats"]):
            started = time.perf_counter()
            con.execute(sql).fetch_arrow_table()
            times.append(time.perf_counter() - started)
        medians.append(statistics.median(times))
    json.dump(medians, sys.stdout)


if __name__ == "__main__":
    main()
