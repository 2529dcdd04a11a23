#!/usr/bin/env python3
"""The DuckDB side of `tidemark bench dashboard`.

Reads a JSON file {"root", "tenant", "tables", "queries": {name: sql}}, registers one view per
table over the tenant's Parquet files (`<root>/<table>/tenant=<tenant>/*.parquet`, the files
Tidemark reads) and prints one JSON line {"duckdb_version", "threads"}. Then it answers on
stdin, one line per run: a query's name in, one JSON line out, {"ms": <the run's time>, "rows":
n, "result": [...]} (`result` the first 200 rows as strings, so the bench can check both engines
agree) or {"error": "..."}. The bench alternates these runs with its own, so a change in the
machine's speed reaches both engines alike. It ends at the end of its input.

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
    reply({"duckdb_version": duckdb.__version__, "threads": threads})
    for line in sys.stdin:
        name = line.strip()
        sql = plan["queries"].get(name)
        if sql is None:
            reply({"error": f"no query named {name!r}"})
            continue
        started = time.perf_counter()
        rows = con.execute(sql).fetchall()
        ms = (time.perf_counter() - started) * 1000.0
        reply({
            "ms": ms,
            "rows": len(rows),
            "result": [[None if v is None else str(v) for v in row] for row in rows[:200]],
        })
    return 0


def reply(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
