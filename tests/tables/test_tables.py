"""Parquet parts and the DuckDB catalog: atomic, replace-not-append, read-only queries."""
from __future__ import annotations

import datetime as dt

import pytest

from animate_anyone.errors import ConfigError
from animate_anyone.tables import DataRoot, QueryError, query, read_table, refresh_catalog, write_part


def _failure(item: str, attempt: int) -> dict:
    return {"stage": "download", "item_id": item, "source": f"http://x/{item}", "error_class": "DownloadError",
            "reason": "http_404", "message": "gone", "retryable": False, "attempt": attempt,
            "at": dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)}


def test_parts_replace_rows_and_leave_no_temporary_files(tmp_path):
    root = DataRoot.from_uri(tmp_path)
    write_part(root, "failures", "ds", "a", [_failure("a", 1)])
    write_part(root, "failures", "ds", "a", [_failure("a", 1), _failure("a", 2)])
    write_part(root, "failures", "other", "b", [_failure("b", 1)])
    t = read_table(root, "failures")
    assert sorted(zip(t["item_id"].to_pylist(), t["attempt"].to_pylist())) == [("a", 1), ("a", 2), ("b", 1)]
    assert set(t["dataset"].to_pylist()) == {"ds", "other"}
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert (tmp_path / "tables/failures/dataset=ds/a.parquet").exists()


def test_catalog_views_work_from_any_directory_and_refuse_writes(tmp_path, monkeypatch):
    root = DataRoot.from_uri(tmp_path / "root")
    write_part(root, "failures", "ds", "a", [_failure("a", 1)])
    refresh_catalog(root)
    monkeypatch.chdir(tmp_path)  # from another directory
    assert query(root, "SELECT count(*) AS n, any_value(dataset) AS d FROM failures").to_pylist() == [{"n": 1, "d": "ds"}]
    assert query(root, "SELECT count(*) AS n FROM clips").to_pylist() == [{"n": 0}]  # empty but typed
    assert "clip_id" in query(root, "SELECT * FROM clips").column_names
    for sql in ("DROP VIEW failures", "COPY (SELECT 1) TO 'x.csv'", "CREATE TABLE t AS SELECT 1", "SELECT 1; SELECT 2"):
        with pytest.raises(QueryError):
            query(root, sql)
    assert not (tmp_path / "x.csv").exists()
    with pytest.raises(QueryError) as e:
        query(root, "SELECT nope FROM failures")
    assert "nope" in str(e.value)


def test_query_without_catalog_says_what_to_run(tmp_path):
    with pytest.raises(QueryError) as e:
        query(DataRoot.from_uri(tmp_path), "SELECT 1")
    assert "ingest" in str(e.value)


def test_data_root_uris(tmp_path):
    assert DataRoot.from_uri(f"file://{tmp_path}").path == tmp_path.resolve()
    with pytest.raises(ConfigError) as e:
        DataRoot.from_uri("memory://bucket/data")
    assert "lives inside one process" in str(e.value)
    with pytest.raises(ConfigError) as e:
        DataRoot.from_uri("nosuchstore://bucket/data")
    assert "nosuchstore" in str(e.value)
