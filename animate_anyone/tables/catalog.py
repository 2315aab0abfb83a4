"""The DuckDB catalog: one file of views over the Parquet tables, rebuilt after each run.

Views use absolute paths (DuckDB resolves relative ones against the reader's working
directory). A table with no parts yet is an empty typed table, so queries never fail on a
missing glob. ``query`` opens the file read-only and runs only SELECT-like statements.
"""
from __future__ import annotations

import os

import duckdb
import pyarrow as pa

from animate_anyone.errors import PermanentError
from animate_anyone.tables.io import DataRoot
from animate_anyone.tables.schemas import SCHEMAS

CATALOG_NAME = "catalog.duckdb"
ALLOWED_STATEMENTS = {"SELECT", "EXPLAIN"}


class QueryError(PermanentError):
    """A query was refused or failed; the message says why."""


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def refresh_catalog(root: DataRoot) -> list[str]:
    """Rebuild ``catalog.duckdb`` with a view per table; returns the table names."""
    root.path.mkdir(parents=True, exist_ok=True)
    tmp = root.catalog.with_name(f".{root.catalog.name}.tmp")
    tmp.unlink(missing_ok=True)
    con = duckdb.connect(str(tmp))
    try:
        for table, schema in SCHEMAS.items():
            folder = root.tables_dir / table
            if any(folder.glob("dataset=*/*.parquet")):
                glob = _sql_str(str(folder / "dataset=*" / "*.parquet"))
                con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet({glob}, hive_partitioning = true, union_by_name = true)")
            else:
                empty = schema.empty_table().append_column("dataset", pa.array([], pa.string()))  # noqa: F841 - read by DuckDB
                con.execute(f"CREATE TABLE {table} AS SELECT * FROM empty")
        # DuckDB reads Arrow fixed-size lists back as LIST; these views give FLOAT[n] arrays
        # for array functions (array_distance, array_inner_product, ...)
        con.execute("CREATE VIEW pose_frames_arrays AS SELECT * REPLACE (bbox::FLOAT[4] AS bbox, "
                    "keypoints::FLOAT[266] AS keypoints, scores::FLOAT[133] AS scores) FROM pose_frames")
        con.execute("CHECKPOINT")
    finally:
        con.close()
    os.replace(tmp, root.catalog)
    return list(SCHEMAS) + ["pose_frames_arrays"]


def query(root: DataRoot, sql: str) -> pa.Table:
    """Run one read-only statement against the catalog; returns an Arrow table."""
    if not root.catalog.exists():
        raise QueryError(f"{root.catalog}: no catalog yet; run `animate-anyone ingest` (or `run`) first")
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryError(f"cannot parse query: {exc}") from exc
    if len(statements) != 1:
        raise QueryError(f"give exactly one SQL statement; got {len(statements)}")
    kind = statements[0].type.name
    if kind not in ALLOWED_STATEMENTS:
        raise QueryError(f"only read-only queries (SELECT) are allowed; got a {kind} statement")
    con = duckdb.connect(str(root.catalog), read_only=True)
    try:
        return con.sql(sql).to_arrow_table()
    except duckdb.Error as exc:
        raise QueryError(f"query failed: {exc}") from exc
    finally:
        con.close()
