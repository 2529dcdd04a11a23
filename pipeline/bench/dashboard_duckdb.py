#!/usr/bin/env python3
"""The DuckDB side of `tidemark bench dashboard`.

Reads a JSON file {"root", "tenant", "tables", "warmup", "iterations", "queries": {name: sql}},
registers one view per table over the tenant's Parquet files
(`<root>/<table>/tenant=<tenant>/*.parquet`, the files Tidemark reads), runs each query `warmup`
times untimed and `iterations` times timed, and prints JSON on stdout:
{"duckdb_version", "threads", "queries": {name: {"samples_ms": [...], "rows": n, "result": [...]}}}.
`result` holds the first 200 rows (as strings) so the bench can check both engines agree.

Needs the `duckdb` package from PyPI: `python3 -m pip install duckdb`.
"""

import json
import sys
import time


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: dashboard_duckdb.py <plan.json>", file=sys.stderr)
        return 2
    try:
        import duckdb
    except ImportError:
        print("the duckdb Python package is missing: python3 -m pip install duckdb", file=sys.stderr)
        return 3
    with open(sys.argv[1], encoding="utf-8") as f:
        plan = json.load(f)
    con = duckdb.connect(database=":memory:")
    for table in plan["tables"]:
        files = f"{plan['root']}/{table}/tenant={plan['tenant']}/*.parquet"
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{files}')")
    threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
    out = {"duckdb_version": duckdb.__version__, "threads": threads, "queries": {}}
    for name, sql in plan["queries"].items():
        rows = None
        for _ in range(plan["warmup"]):
            rows = con.execute(sql).fetchall()
        samples = []
        for _ in range(plan["iterations"]):
            started = time.perf_counter()
            rows = con.execute(sql).fetchall()
            samples.append((time.perf_counter() - started) * 1000.0)
        rows = rows or []
        out["queries"][name] = {
            "samples_ms": samples,
            "rows": len(rows),
            "result": [[None if v is None else str(v) for v in row] for row in rows[:200]],
        }
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
