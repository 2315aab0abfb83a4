"""The read-only `query`: DuckDB itself refuses every write or escape, and a copied or moved data
root reads its own files."""
from __future__ import annotations

import datetime as dt
import json
import shlex
import shutil
from pathlib import Path

import duckdb
import pytest

from animate_anyone.tables import DataRoot, read_table, refresh_catalog, write_part


def _root(path) -> DataRoot:
    root = DataRoot.from_uri(path)
    rows = [{"clip_id": f"c{i}", "source_id": "s", "start_s": 0.0, "end_s": 2.0, "start_frame": 0, "end_frame": 60,
             "fps": 30.0, "width": 256, "height": 448, "num_frames": 60, "shot_idx": 0, "shot_detector": "adaptive",
             "shot_params": "{}", "clip_uri": f"file:///x/c{i}.mp4", "sha256": "0" * 64, "split": "train"}
            for i in range(3)]
    write_part(root, "clips", "demo", "s", rows)
    write_part(root, "failures", "demo", "a", [{"stage": "ingest", "item_id": "a", "source": "x", "error_class": "E",
                                                "reason": "r", "message": "m", "retryable": False, "attempt": 1,
                                                "at": dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)}])
    refresh_catalog(root)
    return root


def _files(root: DataRoot) -> set:
    return {str(p.relative_to(root.path)) for p in root.path.rglob("*") if p.is_file()}


ATTEMPTS = [
    "COPY (SELECT * EXCLUDE (dataset) FROM clips) TO '{root}/tables/clips/dataset=demo/x.parquet' (FORMAT parquet)",
    "EXPLAIN ANALYZE COPY (SELECT * EXCLUDE (dataset) FROM clips) TO '{root}/tables/clips/dataset=demo/x.parquet' (FORMAT parquet)",
    "COPY clips TO 'clips.csv'",
    "EXPORT DATABASE '{root}/export'",
    "ATTACH '{root}/catalog.duckdb' AS c",
    "ATTACH '{root}/new.duckdb' AS n",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET enable_external_access = true",
    "RESET lock_configuration",
    "PRAGMA enable_profiling = 'json'",
    "CREATE TABLE t AS SELECT 1",
    "DELETE FROM clips",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_text('/etc/hostname')",
    "SELECT * FROM read_blob('{root}/catalog.duckdb')",
    "SELECT * FROM read_parquet('{root}/tables/clips/dataset=demo/s.parquet')",
    "SELECT * FROM glob('/etc/*')",
    "SELECT 1; SELECT 2",
]


@pytest.mark.parametrize("sql", ATTEMPTS)
def test_no_statement_can_write_or_escape(cli, sql):
    root = _root(cli.cwd / "data")
    before = _files(root)
    res = cli("query", sql.format(root=root.path), check=2, timeout=120)
    assert "error:" in res.stderr and "Traceback" not in res.stderr
    assert _files(root) == before and not (cli.cwd / "clips.csv").exists()
    counted = cli("query", "SELECT count(*) AS n FROM clips", "--format", "json")
    assert json.loads(counted.stdout) == [{"n": 3}]


def test_a_moved_data_root_reads_its_own_files(cli):
    old = _root(cli.cwd / "old")
    moved = cli.cwd / "moved"
    shutil.copytree(old.path, moved)
    shutil.rmtree(old.path)
    res = cli("query", "SELECT clip_id, dataset FROM clips ORDER BY clip_id", "--data-root", "moved", "--format", "json")
    assert [r["clip_id"] for r in json.loads(res.stdout)] == ["c0", "c1", "c2"]
    # the catalog file too, for DuckDB's own CLI: its paths are relative to the data root
    con = duckdb.connect(str(moved / "catalog.duckdb"), read_only=True)
    con.execute(f"SET file_search_path = '{moved}'")
    assert con.sql("SELECT count(*) FROM clips").fetchall() == [(3,)]
    con.close()


def test_readme_examples_run_as_written(cli):
    import re

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = re.search(r"Examples \(run by the tests.*?```bash\n(.*?)```", readme, re.S).group(1)
    lines = [shlex.split(line) for line in block.splitlines() if line.strip()]
    assert [words[1] for words in lines] == ["puppets", "ingest", "query", "query"]
    for words in lines:
        res = cli(*words[1:], check=1 if words[1] == "ingest" else 0, timeout=600)
    failures = json.loads(res.stdout)
    assert [(f["stage"], f["reason"]) for f in failures] == [("download", "missing_file")]
    clips = read_table(DataRoot.from_uri(cli.cwd / "data"), "clips", "mine")
    assert clips.num_rows >= 2
