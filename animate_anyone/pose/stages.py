"""The pose stage over the tables: plan shards of clips, extract one shard, write its parts.

A shard is up to ``shard_clips`` clips of one source (in clip order), so a source's shards stay
the same until the source is cut again, and a shard's Parquet parts (named after it) are replaced
whole. A clip that fails lands in ``failures`` (stage ``pose``) and the shard goes on.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from animate_anyone import provenance
from animate_anyone.errors import AnimateAnyoneError, MediaError
from animate_anyone.pose.extract import POSE_VERSION, NoPersonError, extract_clip, pose_rows, summarise
from animate_anyone.tables import failures
from animate_anyone.tables.io import Dataset
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


def plan_shards(ds: Dataset, shard_clips: int) -> list[Shard]:
    """Every clip of ``dataset`` in shards of at most ``shard_clips`` clips of one source."""
    clips = ds.read("clips").to_pylist()
    by_source: dict[str, list[dict]] = {}
    for c in sorted(clips, key=lambda c: (c["source_id"], c["start_frame"], c["clip_id"])):
        c.pop("dataset", None)
        by_source.setdefault(c["source_id"], []).append(c)
    shards = []
    for source_id, rows in by_source.items():
        for k in range(0, len(rows), shard_clips):
            shards.append(Shard(f"{source_id}-{k // shard_clips:03d}", source_id, tuple(rows[k: k + shard_clips])))
    return shards


def stale_parts(ds: Dataset, shards: list[Shard]) -> list[str]:
    """Pose parts whose shard no longer exists (the source was cut again, or removed)."""
    keep = {s.shard_id for s in shards}
    return [p for p in ds.parts("clip_pose_summary") if p not in keep]


def drop_parts(ds: Dataset, parts: list[str]) -> None:
    for p in parts:
        ds.delete("pose_frames", p)
        ds.delete("clip_pose_summary", p)


def done_clips(ds: Dataset, shard: Shard, model: str) -> dict[str, dict]:
    """The shard's clips whose poses are on disk from ``model`` at this version, for their
    current bytes: ``{clip_id: summary row}``. The disk decides what is done."""
    current = {c["clip_id"] for c in shard.clips}  # a clip's id changes with its bytes
    rows = ds.read_part("clip_pose_summary", shard.shard_id)
    return {r["clip_id"]: r for r in rows
            if r["clip_id"] in current and r["model"] == model and r["pose_version"] == POSE_VERSION}


def extract_shard(backend, ds: Dataset, shard: Shard, batch: int = 8, model: str | None = None) -> dict:
    """Extract poses for the clips of ``shard`` that are not done on disk, and replace the shard's
    two parts with the kept rows plus the new ones (a failed clip is retried alone).

    ``backend`` is a pose backend, or a function that opens one (called only when some clip is
    not done; ``model`` then names it). Returns a small manifest: clip counts, failures and
    warnings (one line each).
    """
    now = provenance.now()
    model = model or backend.model_name
    done = done_clips(ds, shard, model)
    todo = [c for c in shard.clips if c["clip_id"] not in done]
    if todo and callable(backend) and not hasattr(backend, "process"):
        opened = backend()
        try:
            return extract_shard(opened, ds, shard, batch)
        finally:
            opened.close()
    tables, summaries, failed, warnings = [], list(done.values()), [], []
    if done:
        kept = ds.read("pose_frames", where={"clip_id": list(done)})
        tables.append(kept.drop_columns(["dataset"]))
    for clip in todo:
        clip_id, path = clip["clip_id"], ds.root.media_path(clip["clip_uri"])
        where = f"clip {clip_id} ({path})"
        try:
            if not path.exists():
                raise MediaError(f"{where}: file is missing; `animate-anyone ingest --refresh` cuts it again",
                                 "missing_file")
            poses = extract_clip(backend, path, batch)
            row = summarise(clip, poses, model, now)
            if row["frames_with_person"] == 0:
                raise NoPersonError(f"{where}: no person found in any of its {row['num_frames']} frames", "no_person")
        except AnimateAnyoneError as exc:
            failures.record(ds, "pose", clip_id, str(path), exc, part=f"pose-{clip_id}")
            failed.append({"clip_id": clip_id, "reason": exc.reason, "message": exc.message})
            continue
        if row["max_persons"] > 1:
            several = row["frames_with_person"] - row["frames_one_person"]
            warnings.append(f"{where}: several people in {several} of {row['num_frames']} frames "
                            f"(up to {row['max_persons']}); kept, person 0 is the main subject")
        tables.append(pose_rows(clip_id, poses, float(clip["fps"]), model))
        summaries.append(row)
        failures.clear(ds, f"pose-{clip_id}")
    if todo or not done:
        order = {c["clip_id"]: i for i, c in enumerate(shard.clips)}
        summaries.sort(key=lambda r: order[r["clip_id"]])
        frames = pa.concat_tables(tables).select(POSE_FRAMES.names) if tables else POSE_FRAMES.empty_table()
        ids = pa.array([c["clip_id"] for c in shard.clips])
        frames = frames.append_column("_order", pc.index_in(frames["clip_id"], value_set=ids)) \
            .sort_by([("_order", "ascending"), ("frame_idx", "ascending"), ("person_idx", "ascending")]) \
            .drop_columns(["_order"])
        # frames first, the summary last: a summary row means its clip's frames are complete
        with ds.lock():
            ds.write("pose_frames", shard.shard_id, frames)
            ds.write("clip_pose_summary", shard.shard_id, summaries)
        rows = frames.num_rows
    else:
        rows = tables[0].num_rows
    return {"shard_id": shard.shard_id, "clips": len(shard.clips), "ok": len(summaries), "failed": failed,
            "extracted": len(todo) - len(failed), "skipped": len(done), "warnings": warnings, "rows": rows,
            "model": model}
