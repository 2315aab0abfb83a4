"""The four ingest steps for one source, each a plain function the Prefect tasks wrap.

download → detect → cut → write. Each takes and returns small frozen records (paths, ids,
frame ranges), never frames. ``flows/ingest.py`` chains them; ``benchmarks/ingest.py`` calls them directly.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from animate_anyone.config import Ingest, PipelineConfig
from animate_anyone.errors import AnimateAnyoneError, PermanentError
from animate_anyone.ids import sha256_json
from animate_anyone.ingest.clips import (
    CutClip,
    ShotDecision,
    assign_split,
    check_video,
    cut_clips,
    plan_clips,
    shot_params_json,
)
from animate_anyone.ingest.download import Fetched, fetch, parse_source
from animate_anyone.ingest.shots import Shots, auto_step, detect_shots
from animate_anyone.media.video import VideoInfo
from animate_anyone.provenance import now
from animate_anyone.tables import failures
from animate_anyone.tables.io import DataRoot, Dataset


@dataclass(frozen=True)
class Detected:
    fetched: Fetched
    info: VideoInfo
    shots: Shots


@dataclass(frozen=True)
class Cut:
    detected: Detected
    clips: tuple[CutClip, ...]
    decisions: tuple[ShotDecision, ...]


def download(text: str, root: DataRoot, cfg: Ingest) -> Fetched:
    return fetch(parse_source(text), root.sources_dir, cfg.download, checks=cfg.clips)


def detect(fetched: Fetched, cfg: Ingest, root: DataRoot | None = None) -> Detected:
    """Shots of the fetched video (``root``: read from this machine's copy, which may be fetched
    from the store when another machine downloaded it)."""
    path = root.media_path(fetched.path) if root is not None else Path(fetched.path)
    info = check_video(path, cfg.clips)
    shots = detect_shots(path, cfg.shots.detector, cfg.shots.params, cfg.shots.downscale,
                         workers=cfg.shots.workers, flash_frames=cfg.shots.flash_frames)
    return Detected(fetched, info, shots)


def cut(detected: Detected, root: DataRoot, cfg: Ingest) -> Cut:
    fetched = detected.fetched
    plan, decisions = plan_clips(detected.shots, cfg.clips, fetched.source_id, fetched.sha256)
    if not plan:
        reasons = "; ".join(f"shot {d.shot_idx}: {d.drop_reason}" for d in decisions)
        raise PermanentError(f"{fetched.uri}: no shot gives a clip of {cfg.clips.min_seconds:g}-{cfg.clips.max_seconds:g} s ({reasons})", "no_usable_shot")
    clips = cut_clips(root.media_path(fetched.path), plan, root.clips_dir / fetched.source_id, cfg.clips)
    return Cut(detected, tuple(clips), tuple(decisions))


def write(result: Cut, ds: Dataset, cfg: Ingest) -> dict:
    """Rows for shots, clips and the source (last: its row marks the source done). When the tables
    already hold exactly this result, nothing is rewritten (the disk decides, not a cache)."""
    with ds.lock():
        if written(result, ds):
            f = result.detected.fetched
            failures.clear(ds, f.source_id)
            return {"source_id": f.source_id, "url": f.uri, "status": "ok", "shots": len(result.detected.shots.ranges),
                    "clips": len(result.clips), "error": None}
        return _write(result, ds, cfg)


def written(result: Cut, ds: Dataset) -> bool:
    """Do the tables hold exactly ``result``'s clips for its source (same ids, same bytes)?"""
    src = result.detected.fetched.source_id
    rows = ds.read_part("sources", src)
    clips = ds.read_part("clips", src)
    return (bool(rows) and rows[0]["status"] == "ok" and {c["clip_id"] for c in clips} == {c.clip_id for c in result.clips}
            and {c["sha256"] for c in clips} == {c.sha256 for c in result.clips})


def _write(result: Cut, ds: Dataset, cfg: Ingest) -> dict:
    det = result.detected
    f, info, shots = det.fetched, det.info, det.shots
    fps = info.fps
    params = shot_params_json(shots, cfg.shots.downscale or auto_step(info.width))
    split = assign_split(f.source_id, cfg.clips.split)
    shot_rows = [
        {"source_id": f.source_id, "shot_idx": d.shot_idx, "start_frame": d.start_frame, "end_frame": d.end_frame,
         "start_s": d.start_frame / fps, "end_s": d.end_frame / fps, "num_clips": d.num_clips,
         "drop_reason": d.drop_reason, "shot_detector": shots.detector} for d in result.decisions]
    clip_rows = [
        {"clip_id": c.clip_id, "source_id": f.source_id, "start_s": c.start_frame / fps, "end_s": c.end_frame / fps,
         "start_frame": c.start_frame, "end_frame": c.end_frame, "fps": fps, "width": info.width - info.width % 2,
         "height": info.height - info.height % 2, "num_frames": c.num_frames, "shot_idx": c.shot_idx,
         "shot_detector": shots.detector, "shot_params": params, "clip_uri": ds.root.media_uri(Path(c.path)),
         "sha256": c.sha256, "split": split} for c in result.clips]
    row = source_row(f, info, status="ok", num_clips=len(result.clips), root=ds.root)
    # all three parts or none; the sources row (its status marks the source done) goes in last
    ds.write_all([("shots", f.source_id, shot_rows), ("clips", f.source_id, clip_rows),
                  ("sources", f.source_id, [row])])
    failures.clear(ds, f.source_id)
    return {"source_id": f.source_id, "url": f.uri, "status": "ok", "shots": len(shots.ranges),
            "clips": len(result.clips), "error": None}


def source_row(f: Fetched | None, info: VideoInfo | None, status: str, num_clips: int = 0,
               error: str | None = None, source_id: str | None = None, url: str | None = None,
               root: DataRoot | None = None) -> dict:
    return {
        "source_id": f.source_id if f else source_id, "url": f.uri if f else url,
        "extractor": f.extractor if f else None, "video_id": f.video_id if f else None,
        "title": f.title if f else None, "duration_s": info.duration_s if info else None,
        "fps": info.fps if info else None, "width": info.width if info else None,
        "height": info.height if info else None, "num_frames": info.num_frames if info else None,
        "sha256": f.sha256 if f else None, "file_uri": _file_uri(f, root),
        "status": status, "error": error, "duplicate_of": f.duplicate_of if f else None,
        "num_clips": num_clips, "fetched_at": now(),
    }


def _file_uri(f: Fetched | None, root: DataRoot | None) -> str | None:
    if f is None:
        return None
    return root.media_uri(Path(f.path)) if root is not None else Path(f.path).resolve().as_uri()


def write_duplicate(fetched: Fetched, ds: Dataset) -> dict:
    """A URL whose video another source already holds: recorded, not cut again."""
    row = source_row(fetched, None, status="duplicate", error=f"same video as source {fetched.duplicate_of}",
                     root=ds.root)
    ds.write("sources", fetched.source_id, [row])
    failures.clear(ds, fetched.source_id)
    return {"source_id": fetched.source_id, "url": fetched.uri, "status": "duplicate", "shots": 0, "clips": 0,
            "error": row["error"]}


def record_failure(ds: Dataset, stage: str, text: str, exc: BaseException) -> dict:
    """A ``failures`` row (history kept per item) and a ``sources`` row with status failed. (A file
    that can give no clip never entered the data root: download checks it first.)"""
    spec = parse_source(text) if _parses(text) else None
    # a rejected entry's id hashes all of it: two different rejected entries never share one
    item_id = spec.source_id if spec else "x" + sha256_json(text.strip())[:15]
    url = spec.uri if spec else text
    with ds.lock():
        message = failures.record(ds, stage, item_id, url, exc)["message"]
        old = ds.read_part("sources", item_id)
        if not (old and old[0]["status"] == "ok"):  # never overwrite a finished source with a failure
            ds.write("sources", item_id, [source_row(None, None, "failed", error=message, source_id=item_id, url=url)])
    return {"source_id": item_id, "url": url, "status": "failed", "shots": 0, "clips": 0, "error": message, "stage": stage}


def _parses(text: str) -> bool:
    try:
        parse_source(text)
        return True
    except AnimateAnyoneError:
        return False


def pipeline_sources(pipe: PipelineConfig, base_dir: Path | None = None) -> list[str]:
    """The pipeline's own URLs and paths (the puppet world is added by the flow that serves it)."""
    items = list(pipe.sources.urls) + list(pipe.sources.paths)
    if pipe.sources.url_file:
        path = Path(pipe.sources.url_file)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        if not path.exists():
            raise PermanentError(f"sources.url_file {pipe.sources.url_file!r}: no such file ({path})", "missing_file")
        for line in path.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                items.append(line)
    return list(dict.fromkeys(items))  # keep order, drop repeats
