"""Selecting training clips with SQL, saved as a dataset snapshot that training names.

A pipeline's ``select.where`` is a WHERE clause over ``clip_pose_summary`` (alias ``s``) joined
with ``clips`` (alias ``c``); qualify a column both have (``split``, ``source_id``, ``fps``…).
The snapshot is ``snapshots/<dataset>/<snapshot_id>.json``: the clip ids and the hash of the
clips' ids and contents. The same selection over the same clips gives the same id.
"""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from animate_anyone.files import write_json
from animate_anyone.ids import sha256_json
from animate_anyone.tables.catalog import QueryError, _sql_str, query
from animate_anyone.tables.io import Dataset


def selection_sql(dataset: str, where: str, splits: list[str]) -> str:
    split_list = ", ".join(_sql_str(s) for s in splits)
    return ("SELECT c.clip_id, c.sha256 FROM clip_pose_summary s "
            "JOIN clips c ON c.clip_id = s.clip_id AND c.dataset = s.dataset "
            f"WHERE s.dataset = {_sql_str(dataset)} AND c.split IN ({split_list}) AND ({where}) "
            "ORDER BY c.clip_id")


def snapshots_dir(ds: Dataset) -> Path:
    return ds.root.path / "snapshots" / ds.name


def select_clips(ds: Dataset, where: str, splits: list[str], pipeline: str = "",
                 field_name: str = "select.where") -> dict:
    """Run the selection and save its snapshot (kept as it is if the same one exists)."""
    dataset = ds.name
    try:
        rows = query(ds.root, selection_sql(dataset, where, splits)).to_pylist()
    except QueryError as exc:
        raise QueryError(f"{field_name} {where!r} cannot select clips: {exc.message}", "bad_selection") from exc
    pairs = [[r["clip_id"], r["sha256"]] for r in rows]
    digest = sha256_json(pairs)
    snap = {"snapshot_id": "s" + sha256_json([dataset, pairs])[:15], "dataset": dataset, "pipeline": pipeline,
            "where": where, "splits": list(splits), "num_clips": len(pairs), "clips_sha256": digest,
            "clip_ids": [p[0] for p in pairs], "clip_sha256": dict(pairs), "created_at": dt.datetime.now(dt.timezone.utc).isoformat()}
    folder = snapshots_dir(ds)
    path = folder / f"{snap['snapshot_id']}.json"
    with ds.lock():
        if path.exists():
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
        if not pointer.exists():
            raise QueryError(f"{folder}: no snapshot selected yet for dataset {dataset!r}", "no_snapshot")
        snapshot_id = json.loads(pointer.read_text())["snapshot_id"]
    path = folder / f"{snapshot_id}.json"
    if not path.exists():
        known = sorted(p.stem for p in folder.glob("s*.json"))
        raise QueryError(f"no snapshot {snapshot_id!r} for dataset {dataset!r} in {folder}; known: {known}", "no_snapshot")
    snap = json.loads(path.read_text())
    return snap
