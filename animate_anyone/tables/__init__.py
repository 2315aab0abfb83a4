"""Parquet tables (hive-partitioned by dataset, written atomically) and the DuckDB catalog."""
from animate_anyone.tables.catalog import QueryError, query, refresh_catalog
from animate_anyone.tables.io import DataRoot, read_table, write_part
from animate_anyone.tables.schemas import SCHEMAS

__all__ = ["DataRoot", "QueryError", "SCHEMAS", "query", "read_table", "refresh_catalog", "write_part"]
