"""The bench's storage: an evaluation's ``eval_runs`` row, its per-clip ``eval_results`` parts,
videos and Fréchet features under ``DATA_ROOT/evaluations/EVAL_ID/``, one process per evaluation
at a time (a file lock), and resuming: a killed evaluation finishes only its missing clips, a
finished one is not redone. Every part is written atomically, so a reader sees a clip's results
whole or not at all."""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from filelock import FileLock

from animate_anyone.clipstore import TrainClip
from animate_anyone.evaluation.bench import Bench, Candidate
from animate_anyone.files import atomic_path
from animate_anyone.media.frames import to_uint8
from animate_anyone.media.video import VideoWriter
from animate_anyone.provenance import code_version, now
from animate_anyone.tables import failures
from animate_anyone.tables.io import Dataset


def folder_of(root, eval_id: str) -> Path:
    return root.evaluations_dir / eval_id


def part_of(eval_id: str, clip_id: str) -> str:
    return f"{eval_id}-{clip_id}"


@contextmanager
def locked(folder: Path):
    """One process works on an evaluation at a time; another waits, then finds its work done."""
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder / ".lock")):
        yield


@dataclass
class Record:
    """One evaluation's ``eval_runs`` row, written again whenever it changes."""

    ds: Dataset
    folder: Path
    row: dict
    todo: list[TrainClip]
    cached: bool = False
    timings: dict = field(default_factory=dict)

    @property
    def eval_id(self) -> str:
        return self.row["eval_id"]

    def save(self) -> None:
        self.row["timings"] = json.dumps(self.timings)
        self.ds.write("eval_runs", self.eval_id, [self.row])


def open_record(b: Bench, cand: Candidate, eval_id: str) -> Record:
    """The evaluation's row, marked running, and the clips it has not scored yet; ``cached`` when
    it finished before (nothing is written then)."""
    ds = b.ds
    previous = ds.read_part("eval_runs", eval_id)
    done = set(ds.parts("eval_results"))
    todo = [c for c in b.clips if part_of(eval_id, c.clip_id) not in done]
    folder = folder_of(ds.root, eval_id)
    if previous and previous[0]["status"] == "finished" and not todo:
        return Record(ds, folder, previous[0], [], cached=True)
    row = {"eval_id": eval_id, "bench": b.bench_id, "pipeline": b.cfg.name, "model": cand.path or cand.name,
           "model_name": cand.name, "kind": cand.kind, "model_fingerprint": cand.fingerprint,
           "train_run_id": cand.train_run_id, "stage": cand.stage, "checkpoint_step": cand.step,
           "snapshot_id": b.snapshot["snapshot_id"], "split": b.split, "num_clips": len(b.clips),
           "clips_done": len(b.clips) - len(todo), "clips_failed": 0, "settings": json.dumps(b.settings),
           "timings": None, "code_version": code_version(), "status": "running", "error": None,
           "started_at": now(), "ended_at": None}
    rec = Record(ds, folder, row, todo, timings=json.loads(previous[0]["timings"] or "{}") if previous else {})
    rec.save()
    return rec


def save_clip(rec: Record, clip: TrainClip, rows: list[dict], generated, features: dict, width: int,
              height: int) -> None:
    """A scored clip: its features, its video, then its ``eval_results`` part (the mark of done)."""
    if features:
        with atomic_path(rec.folder / "features" / f"{clip.clip_id}.npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **features)
    with VideoWriter(rec.folder / "videos" / f"{clip.clip_id}.mp4", width, height, clip.fps) as writer:
        for frame in to_uint8(generated):
            writer.write(frame)
    rec.ds.write("eval_results", part_of(rec.eval_id, clip.clip_id), [{"eval_id": rec.eval_id, **r} for r in rows])
    failures.clear(rec.ds, f"evaluate-{clip.clip_id}")
    rec.row["clips_done"] += 1
    rec.save()


def clip_features(rec: Record, clips: list[TrainClip], metric: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every scored clip's (real, generated) features of ``metric`` (fid or fvd)."""
    out = []
    for clip in clips:
        path = rec.folder / "features" / f"{clip.clip_id}.npz"
        if rec.ds.root.fetch(path):  # scored on another machine: from the store
            with np.load(path) as z:
                if f"{metric}_real" in z and len(z[f"{metric}_real"]):
                    out.append((z[f"{metric}_real"], z[f"{metric}_generated"]))
    return out


def save_set_values(rec: Record, rows: list[dict]) -> None:
    """Values of the whole clip set (the Fréchet distances)."""
    if rows:
        rec.ds.write("eval_results", f"{rec.eval_id}-all", [{"eval_id": rec.eval_id, "clip_id": None,
                                                              "frame_idx": None, "moved": None, **r} for r in rows])


def finish(rec: Record, failed: int, num_clips: int) -> dict:
    """The final status: finished (every clip), partial (some) or failed (none)."""
    done = rec.row["clips_done"]
    rec.row.update(clips_failed=failed, ended_at=now(),
                   status="finished" if done == num_clips else ("partial" if done else "failed"))
    if rec.row["status"] == "failed":
        rec.row["error"] = "no clip could be scored (see the failures table)"
    rec.save()
    return rec.row


def fail(rec: Record, message: str) -> dict:
    rec.row.update(status="failed", error=message, ended_at=now())
    rec.save()
    return rec.row
