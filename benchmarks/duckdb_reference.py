"""DuckDB, the reference engine of benchmark suite `query`: the same queries over exactly the
telemetry table's live Parquet files (the Delta table's current file list, read by the
`deltalake` package), timed inside Python.

    duckdb_reference.py INPUT.json

INPUT: {"table": <Delta table dir>, "hourly_table": <telemetry_hourly dir>, "tenant": <tenant id>, "devices": [[id, type], ...],
        "queries": {name: sql}, "warmup": n, "runs": n, "threads": n}
Prints one JSON object: {name: {"times_ms": [...], "rows": [[...], ...]}} plus "files".
"""

import json
import sys
import time

import duckdb
from deltalake import DeltaTable


def main() -> None:
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    files = DeltaTable(spec["table"]).file_uris()
    con = duckdb.connect()
    con.execute(f"SET threads = {int(spec['threads'])}")
    # The partition columns (tenant_id, day) live in the files' paths (hive style), as in Delta.
    file_list = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    con.execute(
        f"CREATE VIEW telemetry_all AS SELECT * FROM read_parquet([{file_list}], hive_partitioning = true, "
        "hive_types = {'tenant_id': VARCHAR, 'day': DATE})"
    )
    # The tenant's rows, as Thinglake's `telemetry` view shows them to the tenant.
    tenant = spec["tenant"].replace("'", "''")
    con.execute(f"CREATE VIEW telemetry AS SELECT * FROM telemetry_all WHERE tenant_id = '{tenant}'")
    # The hourly rollup: partial rows of one (entity, key, hour) merged, as Thinglake's view does.
    hourly_files = ", ".join("'" + f.replace("'", "''") + "'" for f in DeltaTable(spec["hourly_table"]).file_uris())
    con.execute(
        f"CREATE VIEW telemetry_hourly AS SELECT entity_type, entity_id, key, ts, sum(count) AS count, "
        "sum(long_count) + sum(double_count) AS numeric_count, sum(long_sum) + sum(double_sum) AS sum "
        f"FROM read_parquet([{hourly_files}], hive_partitioning = true, hive_types = {{'tenant_id': VARCHAR, 'month': VARCHAR}}) "
        f"WHERE tenant_id = '{tenant}' GROUP BY ALL"
    )
    con.execute("CREATE TABLE devices (id VARCHAR, type VARCHAR)")
    con.executemany("INSERT INTO devices VALUES (?, ?)", spec["devices"])
    out = {"files": len(files)}
    for name, sql in spec["queries"].items():
        times = []
        rows = []
        for i in range(spec["warmup"] + spec["runs"]):
            start = time.perf_counter()
            rows = con.execute(sql).fetchall()
            elapsed = (time.perf_counter() - start) * 1000.0
            if i >= spec["warmup"]:
                times.append(elapsed)
        out[name] = {"times_ms": times, "rows": [[str(v) if not isinstance(v, (int, float)) else v for v in r] for r in rows]}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
