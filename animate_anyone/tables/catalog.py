"""Querying the tables with DuckDB, and the catalog file for people who open DuckDB themselves.

``query`` runs one statement in a sandbox: an in-memory DuckDB whose tables are the Parquet
parts under the data root, scanned through Arrow datasets (filters and columns are pushed down),
with DuckDB's external access switched off and its configuration locked. No statement can read
or write a file, attach a database, install or load an extension or change a setting: DuckDB
itself refuses, whatever the statement is (COPY, EXPLAIN ANALYZE COPY, ATTACH, SET, PRAGMA…).

``catalog.duckdb`` holds the same views for the DuckDB CLI or a notebook. Its paths are relative
to the data root, so a copied or moved data root keeps working: open it from the data root, or
run ``SET file_search_path = '<data root>'`` first.
"""
from __future__ import annotations

import duckdb
import pyarrow as pa
import pyarrow.dataset as pads

from animate_anyone.errors import PermanentError
from animate_anyone.files import atomic_path, data_root_lock
from animate_anyone.tables.io import DataRoot
from animate_anyone.tables.schemas import SCHEMAS

CATALOG_NAME = "catalog.duckdb"
QUERY_STATEMENTS = {"SELECT", "EXPLAIN"}
# views over the tables, in both the sandbox and the catalog file. DuckDB reads Arrow fixed-size
# lists back as LIST; pose_frames_arrays gives FLOAT[n] for array functions (array_distance, …)
EXTRA_VIEWS = {
    "pose_frames_arrays": "SELECT * REPLACE (bbox::FLOAT[4] AS bbox, keypoints::FLOAT[266] AS keypoints, "
                          "scores::FLOAT[133] AS scores) FROM pose_frames",
}


class QueryError(PermanentError):
    """A query was refused or failed; the message says why."""


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def table_dataset(root: DataRoot, table: str) -> pads.Dataset | pa.Table:
    """All datasets of ``table`` as one Arrow dataset (the ``dataset`` column from the partition)."""
    folder = root.tables_dir / table
    files = sorted(str(p) for p in folder.glob("dataset=*/*.parquet"))
    schema = SCHEMAS[table].append(pa.field("dataset", pa.string()))
    if not files:
        return schema.empty_table()
    part = pads.partitioning(pa.schema([("dataset", pa.string())]), flavor="hive")
    return pads.dataset(files, schema=schema, format="parquet", partitioning=part, partition_base_dir=str(folder))


def sandbox(root: DataRoot) -> duckdb.DuckDBPyConnection:
    """An in-memory connection over the tables where no statement can touch a file."""
    con = duckdb.connect(":memory:")
    for table in SCHEMAS:
        con.register(table, table_dataset(root, table))
    for name, sql in EXTRA_VIEWS.items():
        con.execute(f"CREATE VIEW {name} AS {sql}")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def refresh_catalog(root: DataRoot) -> list[str]:
    """Rebuild ``catalog.duckdb`` (views with paths relative to the data root); returns the names."""
    root.path.mkdir(parents=True, exist_ok=True)
    with data_root_lock(root.path), atomic_path(root.catalog) as tmp:
        con = duckdb.connect(str(tmp))
        try:
            con.execute(f"SET file_search_path = {_sql_str(str(root.path))}")  # binds the relative paths
            for table, schema in SCHEMAS.items():
                if any((root.tables_dir / table).glob("dataset=*/*.parquet")):
                    glob = _sql_str(f"tables/{table}/dataset=*/*.parquet")
                    con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet({glob}, hive_partitioning = true, "
                                "union_by_name = true)")
                else:
                    empty = schema.empty_table().append_column("dataset", pa.array([], pa.string()))  # noqa: F841
                    con.execute(f"CREATE TABLE {table} AS SELECT * FROM empty")
            for name, sql in EXTRA_VIEWS.items():
                con.execute(f"CREATE VIEW {name} AS {sql}")
            con.execute("CHECKPOINT")
        finally:
            con.close()
    return list(SCHEMAS) + list(EXTRA_VIEWS)


def query(root: DataRoot, sql: str) -> pa.Table:
    """Run one statement over the data root's tables, read-only (see the module's notes)."""
    if not root.tables_dir.is_dir() and not root.catalog.exists():
        raise QueryError(f"{root.path}: no tables yet; run `animate-anyone ingest` (or `run`) first", "no_tables")
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryError(f"cannot parse query: {exc}") from exc
    if len(statements) != 1:
        raise QueryError(f"give exactly one SQL statement; got {len(statements)}")
    kind = statements[0].type.name
    if kind not in QUERY_STATEMENTS:  # a clear message; the sandbox is what guarantees it
        raise QueryError(f"only read-only queries (SELECT, EXPLAIN) are taken; got a {kind} statement")
    con = sandbox(root)
    try:
        result = con.sql(sql)
        if result is None:
            raise QueryError("the statement returned no rows to show; queries are read-only (SELECT, DESCRIBE, "
                             "SUMMARIZE, EXPLAIN …)", "no_result")
        return result.to_arrow_table()
    except duckdb.Error as exc:
        raise QueryError(f"query failed: {exc} (queries are read-only: no file, setting or table can be "
                         "changed)") from exc
    finally:
        con.close()
