"""Querying the tables with DuckDB, and the catalog file for people who open DuckDB themselves.

``query`` runs one statement in a sandbox: an in-memory DuckDB whose tables are the Parquet
parts under the data root, scanned through Arrow datasets (filters and columns are pushed down),
with DuckDB's external access switched off and its configuration locked. No statement can read
or write a file, attach a database, install or load an extension or change a setting: DuckDB
itself refuses, whatever the statement is (COPY, EXPLAIN ANALYZE COPY, ATTACH, SET, PRAGMA…).

Every query runs within three limits, set before the configuration is locked: memory
(``--memory-limit`` / ``$ANIMATE_ANYONE_QUERY_MEMORY``, default 4GB), temporary disk space for
what spills (``--temp-limit`` / ``$ANIMATE_ANYONE_QUERY_TEMP``, default 8GB, in a private folder
removed afterwards) and wall-clock time (``--timeout`` / ``$ANIMATE_ANYONE_QUERY_TIMEOUT``,
default 300 s; the connection is interrupted). The error says which limit stopped the query.

``catalog.duckdb`` holds the same views for the DuckDB CLI or a notebook. Its paths are relative
to the data root, so a copied or moved data root keeps working: open it from the data root, or
run ``SET file_search_path = '<data root>'`` first. On an object store the catalog's views name
the store's URLs (``s3://bucket/prefix/tables/…``): it is built here through fsspec, and a DuckDB
that opens it reads them with its ``httpfs`` extension and a secret for the store (docs/scale.md).
"""
from __future__ import annotations

import os
import re
import tempfile
import threading
import time
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from animate_anyone.errors import PermanentError
from animate_anyone.files import atomic_path, data_root_lock
from animate_anyone.tables.io import DataRoot, table_dataset
from animate_anyone.tables.schemas import SCHEMAS

QUERY_STATEMENTS = {"SELECT", "EXPLAIN"}
# views over the tables, in both the sandbox and the catalog file. DuckDB reads Arrow fixed-size
# lists back as LIST; pose_frames_arrays gives FLOAT[n] for array functions (array_distance, …)
EXTRA_VIEWS = {
    "pose_frames_arrays": "SELECT * REPLACE (bbox::FLOAT[4] AS bbox, keypoints::FLOAT[266] AS keypoints, "
                          "scores::FLOAT[133] AS scores) FROM pose_frames",
}


class QueryError(PermanentError):
    """A query was refused or failed; the message says why."""


SIZE = re.compile(r"^\d+(\.\d+)?\s*([KMGT]i?B|B)$", re.IGNORECASE)
LIMIT_ENV = {"memory": "ANIMATE_ANYONE_QUERY_MEMORY", "temp": "ANIMATE_ANYONE_QUERY_TEMP",
             "timeout_s": "ANIMATE_ANYONE_QUERY_TIMEOUT"}


@dataclass(frozen=True)
class QueryLimits:
    """What one query may use: memory and temporary disk (DuckDB sizes like ``4GB``, ``500MiB``)
    and wall-clock seconds."""

    memory: str = "4GB"
    temp: str = "8GB"
    timeout_s: float = 300.0

    @classmethod
    def from_env(cls, memory: str | None = None, temp: str | None = None,
                 timeout_s: float | None = None) -> "QueryLimits":
        """The given values, else the environment's, else the defaults; each one checked."""
        given = {"memory": (memory, "--memory-limit"), "temp": (temp, "--temp-limit"),
                 "timeout_s": (timeout_s, "--timeout")}
        values = {}
        for name, (value, flag) in given.items():
            if value is None and os.environ.get(LIMIT_ENV[name]):
                value, flag = os.environ[LIMIT_ENV[name]], LIMIT_ENV[name]
            if value is not None:
                values[name] = _seconds(value, flag) if name == "timeout_s" else _size(value, flag)
        return cls(**values)


def _seconds(value, flag: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= 7 * 86400:
        raise QueryError(f"{flag}: give seconds above 0 (at most a week); got {value!r}", "bad_option")
    return seconds


def _size(value, flag: str) -> str:
    text = str(value).strip()
    if not SIZE.match(text) or float(re.match(r"[\d.]+", text).group()) <= 0:
        raise QueryError(f"{flag}: give a size above 0 like 4GB or 500MiB; got {value!r}", "bad_option")
    return text


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def sandbox(root: DataRoot, limits: QueryLimits | None = None, temp_dir: str | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory connection over the tables where no statement can touch a file, within
    ``limits`` (what spills goes to ``temp_dir``)."""
    limits = limits or QueryLimits()
    con = duckdb.connect(":memory:")
    for table in SCHEMAS:
        con.register(table, table_dataset(root, table))
    for name, sql in EXTRA_VIEWS.items():
        con.execute(f"CREATE VIEW {name} AS {sql}")
    con.execute(f"SET memory_limit = {_sql_str(limits.memory)}")
    if temp_dir is not None:
        con.execute(f"SET temp_directory = {_sql_str(temp_dir)}")
    con.execute(f"SET max_temp_directory_size = {_sql_str(limits.temp)}")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def refresh_catalog(root: DataRoot) -> list[str]:
    """Rebuild ``catalog.duckdb`` (views with paths relative to the data root, or the store's URLs);
    returns the names. Its content follows from the tables alone, so two machines that refresh it
    at once write the same file (one PUT wins, either is right)."""
    root.path.mkdir(parents=True, exist_ok=True)
    with data_root_lock(root.path), atomic_path(root.catalog) as tmp:
        con = duckdb.connect(str(tmp))
        try:
            if root.store is not None:  # DuckDB reads the store through fsspec to bind the views
                con.register_filesystem(root.store.fs)
                prefix = f"{root.store.url}/"
            else:
                con.execute(f"SET file_search_path = {_sql_str(str(root.path))}")  # binds the relative paths
                prefix = ""
            for table, schema in SCHEMAS.items():
                if root.glob(root.tables_dir / table, "dataset=*/*.parquet"):
                    glob = _sql_str(f"{prefix}tables/{table}/dataset=*/*.parquet")
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


def query(root: DataRoot, sql: str, limits: QueryLimits | None = None, params: dict | None = None) -> pa.Table:
    """Run one statement over the data root's tables, read-only and within ``limits`` (see the
    module's notes). Values go in ``params`` (``$name`` in the SQL), never into the SQL text."""
    if not root.exists(root.tables_dir) and not root.exists(root.catalog):
        raise QueryError(f"{root.uri}: no tables yet; run `animate-anyone ingest` (or `run`) first", "no_tables")
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryError(f"cannot parse query: {exc}") from exc
    if len(statements) != 1:
        raise QueryError(f"give exactly one SQL statement; got {len(statements)}")
    kind = statements[0].type.name
    if kind not in QUERY_STATEMENTS:  # a clear message; the sandbox is what guarantees it
        words = statements[0].query.split()
        word = re.sub(r"[^A-Za-z_]", "", words[0]).upper() if words else kind
        raise QueryError(f"only read-only queries (SELECT, EXPLAIN) are taken; got a {word or kind} statement")
    limits = limits or QueryLimits.from_env()
    with tempfile.TemporaryDirectory(prefix="animate-anyone-query-") as temp_dir:
        con = sandbox(root, limits, temp_dir)
        try:
            return _run_bounded(con, sql, limits, params)
        finally:
            con.close()


def _run_bounded(con: duckdb.DuckDBPyConnection, sql: str, limits: QueryLimits, params: dict | None = None) -> pa.Table:
    """Run ``sql`` in a worker thread while this one keeps the clock and stays free for signals:
    past the time limit, or on Ctrl-C / ``kill``, the connection is interrupted."""
    outcome: dict = {}

    def work() -> None:
        try:
            result = con.sql(sql, params=params)
            outcome["table"] = None if result is None else result.to_arrow_table()
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    worker = threading.Thread(target=work, name="query", daemon=True)
    deadline = time.monotonic() + limits.timeout_s
    timed_out = False
    worker.start()
    try:
        while worker.is_alive():
            worker.join(timeout=0.1)
            if worker.is_alive() and time.monotonic() > deadline and not timed_out:
                timed_out = True
                con.interrupt()
    except BaseException:  # Ctrl-C or SIGTERM: stop the query before leaving
        con.interrupt()
        worker.join(timeout=10)
        raise
    error = outcome.get("error")
    if timed_out and (error is not None or "table" not in outcome):
        raise QueryError(f"query stopped by the time limit ({limits.timeout_s:g} s; raise it with --timeout or "
                         f"{LIMIT_ENV['timeout_s']})", "query_timeout")
    if isinstance(error, duckdb.OutOfMemoryException):
        if "max_temp_directory_size" in str(error):
            raise QueryError(f"query stopped by the temporary disk limit ({limits.temp} of spilled data; raise it "
                             f"with --temp-limit or {LIMIT_ENV['temp']})", "query_temp_limit") from error
        raise QueryError(f"query stopped by the memory limit ({limits.memory}; raise it with --memory-limit or "
                         f"{LIMIT_ENV['memory']}, or aggregate more before returning rows)", "query_memory_limit") from error
    if isinstance(error, duckdb.Error):
        raise QueryError(f"query failed: {error} (queries are read-only: no file, setting or table can be "
                         "changed)") from error
    if error is not None:
        raise error
    if outcome.get("table") is None:
        raise QueryError("the statement returned no rows to show; queries are read-only (SELECT, DESCRIBE, "
                         "SUMMARIZE, EXPLAIN …)", "no_result")
    return outcome["table"]
