#!/usr/bin/env python3
"""Reads a ducktail Parquet export with no ducktail code: DuckDB's own read_parquet and pyarrow.

Usage (with the test virtualenv's interpreter, which has duckdb and pyarrow):
    python tests/support/parquet_check.py DIR TABLE...

Output (stdout, JSON): per reader, per table, the row count; and per reader, per session, the
sums over `messages` of tokens_input, tokens_output and cost (rounded to 9 places), and the
machines and days seen. Exits non-zero if the two readers disagree.
"""
import json
import sys

import duckdb
import pyarrow.compute as pc
import pyarrow.dataset as ds


def with_duckdb(root, tables):
    connection = duckdb.connect()
    result = {"rows": {}, "machines": set(), "days": set()}
    for table in tables:
        pattern = f"{root}/{table}/*/*.parquet"
        result["rows"][table] = connection.execute(
            f"SELECT count(*) FROM read_parquet('{pattern}', hive_partitioning = true)"
        ).fetchall()[0][0]
        for machine, day in connection.execute(
            f"SELECT DISTINCT machine, CAST(date AS VARCHAR) FROM read_parquet('{pattern}', hive_partitioning = true)"
        ).fetchall():
            result["machines"].add(machine)
            result["days"].add(f"{table}/{day}")
    sessions = connection.execute(
        f"""SELECT session_id, sum(tokens_input), sum(tokens_output), round(sum(cost), 9)
            FROM read_parquet('{root}/messages/*/*.parquet', hive_partitioning = true)
            GROUP BY session_id"""
    ).fetchall()
    result["sessions"] = {row[0]: [row[1] or 0, row[2] or 0, row[3] or 0.0] for row in sessions}
    return result


def with_pyarrow(root, tables):
    result = {"rows": {}, "machines": set(), "days": set()}
    for table in tables:
        dataset = ds.dataset(f"{root}/{table}", format="parquet", partitioning="hive")
        data = dataset.to_table()
        result["rows"][table] = data.num_rows
        for machine, day in zip(data.column("machine").to_pylist(), data.column("date").to_pylist()):
            result["machines"].add(machine)
            result["days"].add(f"{table}/{day}")
    messages = ds.dataset(f"{root}/messages", format="parquet", partitioning="hive").to_table()
    sessions = {}
    for session, tokens_input, tokens_output, cost in zip(
        messages.column("session_id").to_pylist(),
        messages.column("tokens_input").to_pylist(),
        messages.column("tokens_output").to_pylist(),
        messages.column("cost").to_pylist(),
    ):
        totals = sessions.setdefault(session, [0, 0, 0.0])
        totals[0] += tokens_input or 0
        totals[1] += tokens_output or 0
        totals[2] += cost or 0.0
    result["sessions"] = {session: [t[0], t[1], round(t[2], 9)] for session, t in sessions.items()}
    return result


def main():
    root, tables = sys.argv[1], sys.argv[2:]
    readers = {"duckdb": with_duckdb(root, tables), "pyarrow": with_pyarrow(root, tables)}
    for reader in readers.values():
        reader["machines"] = sorted(reader["machines"])
        reader["days"] = sorted(reader["days"])
    if readers["duckdb"]["rows"] != readers["pyarrow"]["rows"] or readers["duckdb"]["days"] != readers["pyarrow"]["days"]:
        sys.exit(f"duckdb and pyarrow disagree: {json.dumps(readers)}")
    for session, totals in readers["duckdb"]["sessions"].items():
        other = readers["pyarrow"]["sessions"].get(session)
        if other is None or other[:2] != totals[:2] or abs(other[2] - totals[2]) > 1e-6:
            sys.exit(f"duckdb and pyarrow disagree on session {session}: {totals} vs {other}")
    json.dump(readers, sys.stdout)


if __name__ == "__main__":
    main()
