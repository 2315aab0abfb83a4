"""The pose stage over the tables: plan shards of clips, extract one shard, write its parts.

A shard is up to ``shard_clips`` clips of one source (in clip order), so a source's shards stay
the same until the source is cut again, and a shard's Parquet parts (named after it) are replaced
whole. A clip that fails lands in ``failures`` (stage ``pose``) and the shard goes on.
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

import pyarrow as pa

from animate_anyone.errors import AnimateAnyoneError, MediaError
from animate_anyone.ids import sha256_json
from animate_anyone.pose.extract import POSE_VERSION, NoPersonError, extract_clip, pose_rows, summarise
from animate_anyone.tables import failures
from animate_anyone.tables.io import DataRoot, delete_part, list_parts, read_part, read_table, write_part
from animate_anyone.tables.schemas import POSE_FRAMES

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Shard:
    """A small manifest: which clips one task extracts (ids, paths, hashes; never arrays)."""

    shard_id: str
    source_id: str
    clips: tuple[dict, ...] = field(default_factory=tuple)

    @property
    def content(self) -> list[str]:
        return [c["sha256"] for c in self.clips]


def clip_path(clip: dict) -> Path:
    uri = clip["clip_uri"]
    return Path(unquote(urlparse(uri).path)) if uri.startswith("file://") else Path(uri)


def plan_shards(root: DataRoot, dataset: str, shard_clips: int) -> list[Shard]:
    """Every clip of ``dataset`` in shards of at most ``shard_clips`` clips of one source."""
    clips = read_table(root, "clips", dataset).to_pylist()
    by_source: dict[str, list[dict]] = {}
    for c in sorted(clips, key=lambda c: (c["source_id"], c["start_frame"], c["clip_id"])):
        c.pop("dataset", None)
        by_source.setdefault(c["source_id"], []).append(c)
    shards = []
    for source_id, rows in by_source.items():
        for k in range(0, len(rows), shard_clips):
            shards.append(Shard(f"{source_id}-{k // shard_clips:03d}", source_id, tuple(rows[k: k + shard_clips])))
    return shards


def stale_parts(root: DataRoot, dataset: str, shards: list[Shard]) -> list[str]:
    """Pose parts whose shard no longer exists (the source was cut again, or removed)."""
    keep = {s.shard_id for s in shards}
    return [p for p in list_parts(root, "clip_pose_summary", dataset) if p not in keep]


def drop_parts(root: DataRoot, dataset: str, parts: list[str]) -> None:
    for p in parts:
        delete_part(root, "pose_frames", dataset, p)
        delete_part(root, "clip_pose_summary", dataset, p)


def extract_shard(backend, root: DataRoot, dataset: str, shard: Shard, batch: int = 8) -> dict:
    """Extract poses for every clip of ``shard`` and replace the shard's two parts.

    Returns a small manifest: clip counts, failures and warnings (one line each).
    """
    now = dt.datetime.now(dt.timezone.utc)
    model = backend.model_name
    tables, summaries, failed, warnings = [], [], [], []
    for clip in shard.clips:
        clip_id, path = clip["clip_id"], clip_path(clip)
        where = f"clip {clip_id} ({path})"
        try:
            if not path.exists():
                raise MediaError(f"{where}: file is missing; run ingest again to cut it", "missing_file")
            poses = extract_clip(backend, path, batch)
            row = summarise(clip, poses, model, now)
            if row["frames_with_person"] == 0:
                raise NoPersonError(f"{where}: no person found in any of its {row['num_frames']} frames", "no_person")
        except AnimateAnyoneError as exc:
            failures.record(root, dataset, "pose", clip_id, str(path), exc, part=f"pose-{clip_id}")
            failed.append({"clip_id": clip_id, "reason": exc.reason, "message": exc.message})
            continue
        if row["max_persons"] > 1:
            several = row["frames_with_person"] - row["frames_one_person"]
            warnings.append(f"{where}: several people in {several} of {row['num_frames']} frames "
                            f"(up to {row['max_persons']}); kept, person 0 is the main subject")
        tables.append(pose_rows(clip_id, poses, float(clip["fps"]), model))
        summaries.append(row)
        failures.clear(root, dataset, f"pose-{clip_id}")
    frames = pa.concat_tables(tables) if tables else POSE_FRAMES.empty_table()
    # frames first, the summary last: a summary part means its shard's frames are complete
    write_part(root, "pose_frames", dataset, shard.shard_id, frames)
    write_part(root, "clip_pose_summary", dataset, shard.shard_id, summaries)
    return {"shard_id": shard.shard_id, "clips": len(shard.clips), "ok": len(summaries), "failed": failed,
            "warnings": warnings, "rows": frames.num_rows, "model": model}


def shard_written(root: DataRoot, dataset: str, shard: Shard, model: str) -> bool:
    """True when the shard's summary part holds its successful clips from ``model`` at this version."""
    rows = read_part(root, "clip_pose_summary", dataset, shard.shard_id)
    if not rows:
        return False
    ids = {c["clip_id"] for c in shard.clips}
    return all(r["clip_id"] in ids and r["model"] == model and r["pose_version"] == POSE_VERSION for r in rows)


def failing_clips(root: DataRoot, dataset: str, shard: Shard) -> list[list]:
    """``[clip_id, attempts]`` of the shard's clips that have failed and not succeeded since."""
    out = []
    for c in shard.clips:
        rows = read_part(root, "failures", dataset, f"pose-{c['clip_id']}")
        if rows:
            out.append([c["clip_id"], len(rows)])
    return out


def shard_key(shard: Shard, fingerprint: dict) -> str:
    """What decides a shard's rows: its clips' bytes and ids, the backend and its model files."""
    return sha256_json([shard.shard_id, [c["clip_id"] for c in shard.clips], shard.content, fingerprint, POSE_VERSION])
