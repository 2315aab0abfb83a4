"""Selecting training clips with SQL, saved as a dataset snapshot that training names.

A pipeline's ``select.where`` is a WHERE clause over ``clip_pose_summary`` (alias ``s``) joined
with ``clips`` (alias ``c``); qualify a column both have (``split``, ``source_id``, ``fps``…).
The snapshot is ``snapshots/<dataset>/<snapshot_id>.json``: the clip ids and the hash of the
clips' ids and contents. The same selection over the same clips gives the same id.
"""
from __future__ import annotations

import json
from pathlib import Path

import duckdb

from animate_anyone.files import write_json
from animate_anyone.ids import sha256_json
from animate_anyone.provenance import now
from animate_anyone.tables.catalog import QueryError, query
from animate_anyone.tables.io import Dataset


def check_where(where: str) -> str:
    """``where`` if it is one SQL expression on its own (DuckDB's parser decides); a fragment
    that would close the clause's parentheses (``true) OR (1=1``) or add a statement is refused."""
    try:
        duckdb.SQLExpression(where)
    except duckdb.Error as exc:
        raise QueryError(f"not one SQL expression: {str(exc).splitlines()[0]}", "bad_selection") from None
    return where


def selection_sql(dataset: str, where: str, splits: list[str]) -> tuple[str, dict]:
    """The clips of ``dataset`` in ``splits`` that pass ``where`` (SQL and its parameters). The
    expression is checked on its own and filters an inner query; the dataset and split filters
    apply outside it, as parameters, so no expression can widen them."""
    inner = ("SELECT c.clip_id, c.sha256, c.clip_uri, c.split AS _split, s.dataset AS _dataset "
             "FROM clip_pose_summary s JOIN clips c ON c.clip_id = s.clip_id AND c.dataset = s.dataset "
             f"WHERE (\n{check_where(where)}\n)")
    sql = (f"SELECT clip_id, sha256, clip_uri FROM ({inner}) AS chosen "
           "WHERE _dataset = $dataset AND list_contains($splits, _split) ORDER BY clip_id")
    return sql, {"dataset": dataset, "splits": list(splits)}


def _stamp(path: Path) -> list[int] | None:
    """(size, mtime_ns) of a clip file, which training compares before it hashes the file."""
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def snapshots_dir(ds: Dataset) -> Path:
    return ds.root.snapshots_dir / ds.name


def select_clips(ds: Dataset, where: str, splits: list[str], pipeline: str = "",
                 field_name: str = "select.where") -> dict:
    """Run the selection and save its snapshot (kept as it is if the same one exists)."""
    dataset = ds.name
    try:
        sql, params = selection_sql(dataset, where, splits)
        rows = query(ds.root, sql, params=params).to_pylist()
    except QueryError as exc:
        raise QueryError(f"{field_name} {where!r} cannot select clips: {exc.message}", "bad_selection") from exc
    pairs = [[r["clip_id"], r["sha256"]] for r in rows]
    # a store's clips are not fetched to be selected: training hashes each one when it fetches it
    stamps = {} if ds.root.store is not None else {r["clip_id"]: _stamp(ds.root.media_path(r["clip_uri"])) for r in rows}
    digest = sha256_json(pairs)
    snap = {"snapshot_id": "s" + sha256_json([dataset, pairs])[:15], "dataset": dataset, "pipeline": pipeline,
            "where": where, "splits": list(splits), "num_clips": len(pairs), "clips_sha256": digest,
            "clip_ids": [p[0] for p in pairs], "clip_sha256": dict(pairs), "clip_stamp": stamps, "created_at": now().isoformat()}
    folder = snapshots_dir(ds)
    path = folder / f"{snap['snapshot_id']}.json"
    with ds.lock():
        if ds.root.fetch(path):
            snap = json.loads(path.read_text())
        else:
            write_json(path, snap)
        write_json(folder / "latest.json", {"snapshot_id": snap["snapshot_id"]})
    return {**snap, "path": str(path)}


def load_snapshot(ds: Dataset, snapshot_id: str = "latest") -> dict:
    """A saved snapshot by id (``latest``: the last one selected for the dataset)."""
    dataset = ds.name
    folder = snapshots_dir(ds)
    if snapshot_id == "latest":
        pointer = folder / "latest.json"
        if not ds.root.fetch(pointer):
            raise QueryError(f"{folder}: no snapshot selected yet for dataset {dataset!r}", "no_snapshot")
        snapshot_id = json.loads(pointer.read_text())["snapshot_id"]
    path = folder / f"{snapshot_id}.json"
    if not ds.root.fetch(path):
        known = sorted(p.stem for p in ds.root.glob(folder, "s*.json"))
        raise QueryError(f"no snapshot {snapshot_id!r} for dataset {dataset!r} in {folder}; known: {known}", "no_snapshot")
    snap = json.loads(path.read_text())
    return snap
