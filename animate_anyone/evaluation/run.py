"""The evaluate use case: score models on the held-out clips of a snapshot, beside their baselines.

What is scored (``candidates``): a model folder or name, every checkpoint of a training run
(``RUN_ID``), or ``all-new`` — every checkpoint of each stage's newest training run and the
pipeline's trained model that this bench has not scored yet. Beside them, always: the reference
frame held still, the driving skeleton drawn in the training clips' mean colours
(``baselines``), the untrained model of ``train.size`` (what training starts from), and any
model ``evaluate.baselines`` names.

Three parts do the work: ``bench`` (what to score), ``scoring`` (one clip's values) and
``results`` (the tables, the lock, resuming); this module runs them in order.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from animate_anyone.clipstore import ClipStore, TrainClip, snapshot_clips
from animate_anyone.config import PipelineConfig
from animate_anyone.devices import resolve_device
from animate_anyone.errors import AnimateAnyoneError
from animate_anyone.evaluation import report, results
from animate_anyone.evaluation.baselines import mean_colours, pose_drawing
from animate_anyone.evaluation.bench import (
    POSE_ONLY,
    Bench,
    Candidate,
    EvalInputError,
    baseline_candidates,
    candidates,
    eval_id_of,
    export_checkpoint,
    prepare,
    run_checkpoints,
)
from animate_anyone.evaluation.scoring import (
    Scorers,
    driving_pixels,
    frechet,
    generate_clip,
    make_scorers,
    score_clip,
)
from animate_anyone.files import remove_tree
from animate_anyone.models import store
from animate_anyone.tables import failures

__all__ = ["EvalInputError", "evaluate", "evaluate_candidate", "export_checkpoint", "make_scorers", "prepare",
           "run_checkpoints", "score_clip"]


def _load(cand: Candidate, rec: results.Record, dtype: torch.dtype, device: str):
    """The candidate's pipeline (a checkpoint exported first), or None for the still reference."""
    if not rec.todo or cand.path is None:
        return None
    t0 = time.perf_counter()
    if cand.checkpoint:
        export_checkpoint(cand)
    pipe = store.load_pipeline(Path(cand.path), dtype=dtype, device=device)
    pipe.set_progress_bar_config(disable=True)
    rec.timings["load"] = rec.timings.get("load", 0.0) + time.perf_counter() - t0
    return pipe


def _baseline_video(b: Bench, cand: Candidate, clip: TrainClip, real01: torch.Tensor, colours) -> torch.Tensor:
    """The still reference (frame 0 held) or the pose-only drawing (frame 0: the reference)."""
    n = len(real01)
    if cand.name != POSE_ONLY:
        return real01[:1].expand(n, -1, -1, -1).clone()
    e = b.cfg.evaluate
    drawn = pose_drawing(driving_pixels(b.ds, clip, e.width, e.height, n), colours, e.width, e.height)
    video = torch.from_numpy(drawn).permute(0, 3, 1, 2).float() / 255
    video[0] = real01[0]
    return video


def _score_one(b: Bench, cand: Candidate, clip: TrainClip, pipe, scorers: Scorers, clips: ClipStore,
               rec: results.Record, device: str, log, colours=None) -> list[dict] | None:
    """Generate and score one clip and save it; None (recorded in ``failures``) when it cannot be."""
    e = b.cfg.evaluate
    try:
        real, poses = clips.get(clip)
        n = min(e.frames, len(real))
        real01 = (real[:n] / 2 + 0.5).clamp(0, 1)
        t0 = time.perf_counter()
        if pipe is None:
            generated = _baseline_video(b, cand, clip, real01, colours)
        else:
            generated = generate_clip(pipe, real01, poses[:n], e, device)
        rec.timings["generate"] = rec.timings.get("generate", 0.0) + time.perf_counter() - t0
        rows, features = score_clip(b.ds, clip, real01, generated, scorers, b.cfg, rec.timings)
    except AnimateAnyoneError as exc:  # a clip without poses, a changed file: the others go on
        failures.record(b.ds, "evaluate", clip.clip_id, rec.eval_id, exc, part=f"evaluate-{clip.clip_id}")
        log(f"evaluate {cand.name}: clip {clip.clip_id} skipped: {exc.message}")
        return None
    rec.timings["clip_seconds"] = rec.timings.get("clip_seconds", 0.0) + (n - 1) / clip.fps
    rec.timings["frames_scored"] = rec.timings.get("frames_scored", 0) + n - 1
    results.save_clip(rec, clip, rows, generated, features, e.width, e.height)
    return rows


def _score_set(b: Bench, cand: Candidate, scorers: Scorers, rec: results.Record, log) -> None:
    """The whole clip set's values: the Fréchet distances over every scored clip's features."""
    rows = []
    for metric in ("fid", "fvd"):
        if getattr(scorers, metric) is None:
            continue
        t0 = time.perf_counter()
        try:
            rows.append({"metric": metric, "value": frechet(metric, results.clip_features(rec, b.clips, metric))})
        except AnimateAnyoneError as exc:
            failures.record(b.ds, "evaluate", f"{rec.eval_id}:{metric}", rec.eval_id, exc,
                            part=f"evaluate-{rec.eval_id}-{metric}")
            log(f"evaluate {cand.name}: {metric} not scored: {exc.message}")
        rec.timings[metric] = rec.timings.get(metric, 0.0) + time.perf_counter() - t0
    results.save_set_values(rec, rows)


def evaluate_candidate(b: Bench, cand: Candidate, scorers: Scorers, clips: ClipStore, device: str,
                       dtype: torch.dtype, log=print, on_clip=None) -> dict:
    """Score ``cand`` on the bench's clips (only those not scored yet); returns its eval_runs row."""
    eval_id = eval_id_of(b.bench_id, cand)
    with results.locked(results.folder_of(b.ds.root, eval_id)):
        rec = results.open_record(b, cand, eval_id)
        if rec.cached:
            return {**rec.row, "cached": True}
        try:
            pipe = _load(cand, rec, dtype, device)
        except (AnimateAnyoneError, OSError, ValueError, RuntimeError) as exc:
            message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
            error = EvalInputError(f"model {cand.name} ({cand.path}) does not load: {message}", "model_unloadable")
            failures.record(b.ds, "evaluate", cand.name, cand.path or "", error, part=f"evaluate-{eval_id}")
            log(f"evaluate: {error.message}")
            return results.fail(rec, error.message)
        failed = 0
        colours = None
        if cand.name == POSE_ONLY and rec.todo:
            e = b.cfg.evaluate
            colours = mean_colours(b.ds, snapshot_clips(b.ds, b.snapshot), e.width, e.height)
        for clip in rec.todo:
            rows = _score_one(b, cand, clip, pipe, scorers, clips, rec, device, log, colours)
            failed += rows is None
            if rows is not None and on_clip:
                on_clip(cand, clip, rows)
        _score_set(b, cand, scorers, rec, log)
        row = results.finish(rec, failed, len(b.clips))
        if cand.checkpoint and row["status"] == "finished":
            remove_tree(cand.path, b.ds.root.evaluations_dir / "models")  # the export; the checkpoint itself stays
        return row


def _scorers(cfg: PipelineConfig, b: Bench, device: str, log) -> Scorers:
    scorers = make_scorers(cfg, device)
    for name, exc in scorers.unavailable.items():
        failures.record(b.ds, "evaluate", f"{b.bench_id}:{name}", b.bench_id, exc,
                        part=f"evaluate-{b.bench_id}-{name}")
        log(f"evaluate: {name} not scored: {exc.message}")
    return scorers


def evaluate(cfg: PipelineConfig, what: str | None = None, snapshot_id: str | None = None, split: str | None = None,
             clips: int | None = None, baselines: list[str] = (), base: Path | None = None, log=print,
             on_clip=None, pictures: bool = True) -> dict:
    """Score ``what`` (default ``evaluate.what``) and the baselines; returns the bench, one eval_runs
    row per candidate and the report's files."""
    b = prepare(cfg, snapshot_id, split, clips)
    e = cfg.evaluate
    found = candidates(cfg, what or e.what, base)
    found += [c for c in baseline_candidates(cfg, list(baselines), base, b.snapshot["snapshot_id"]) if c.fingerprint not in
              {f.fingerprint for f in found}]
    device = resolve_device(e.device)
    dtype = torch.float32 if device == "cpu" else getattr(torch, e.dtype)
    scorers = _scorers(cfg, b, device, log)
    frames = ClipStore(b.ds, e.width, e.height, cache=len(b.clips))
    try:
        rows = [evaluate_candidate(b, cand, scorers, frames, device, dtype, log, on_clip) for cand in found]
    finally:
        scorers.close()
    files = report.write_reports(b, rows) if pictures else {}
    return {"bench": b.bench_id, "snapshot_id": b.snapshot["snapshot_id"], "split": b.split,
            "clips": [c.clip_id for c in b.clips], "runs": rows,
            "unavailable": {k: v.message for k, v in scorers.unavailable.items()}, **files}
