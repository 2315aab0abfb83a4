"""The evaluate use case: score models on the held-out clips of a snapshot, beside their baselines.

Protocol (Animate Anyone, UniAnimate): each clip of ``evaluate.split`` that passes the snapshot's
selection (its ``where``, on the clips of that split) is animated from its first frame along its
own poses, with a fixed seed, steps and guidance, and compared frame by frame with its real frames
at the evaluation size (the centred crop of training). Frame 0 is the reference itself and is not
scored.

What is scored (``candidates``): a model folder or name, every checkpoint of a training run
(``RUN_ID``), or ``all-new`` — every checkpoint of each stage's newest training run and the
pipeline's trained model that this bench has not scored yet. Beside them, always: the reference
frame held still, and the untrained model of ``train.size`` (what training starts from), and any
model ``evaluate.baselines`` names.

Caching: a bench is the clip set and the settings (not the model); an evaluation is one model on
one bench, its id derived from both. Its per-clip results are parts of ``eval_results`` written
atomically, so an evaluation that was killed finishes only its missing clips, and a finished one
is not redone. The weights' fingerprint decides "the same model" (``pipeline.model_fingerprint``).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from animate_anyone.errors import AnimateAnyoneError, PermanentError
from animate_anyone.files import remove_tree
from animate_anyone.ids import sha256_json
from animate_anyone.models import store

EVAL_VERSION = "3"  # bump when the scores change for the same inputs (3: moving points at 0.2 of the box)
STILL = "still-reference"


class EvalInputError(PermanentError):
    """An evaluation cannot run as asked; the message says what to change."""


@dataclass(frozen=True)
class Candidate:
    """One thing to score: a model folder, a checkpoint (exported to a folder) or a baseline."""

    name: str
    kind: str  # model | checkpoint | baseline
    path: str | None  # None: the still reference
    fingerprint: str
    train_run_id: str | None = None
    stage: int | None = None
    step: int | None = None
    checkpoint: str | None = None  # a checkpoint folder, exported to ``path`` when scored


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def evaluations_dir(root) -> Path:
    return root.evaluations_dir


# --- what to score -------------------------------------------------------------------------------

def eval_clips(ds, snapshot: dict, split: str, limit: int | None, where: str | None = None):
    """The clips of ``split`` that pass ``where`` (default: the snapshot's selection), first
    ``limit`` by id."""
    from animate_anyone.tables.catalog import QueryError, query
    from animate_anyone.tables.selection import selection_sql
    from animate_anyone.training.data import snapshot_clips

    try:
        where = where or snapshot.get("where") or "TRUE"
        rows = query(ds.root, selection_sql(ds.name, where, [split])).to_pylist()
    except QueryError as exc:
        raise EvalInputError(f"snapshot {snapshot['snapshot_id']}: cannot select its {split} clips: {exc.message}",
                             "bad_selection") from exc
    if not rows:
        raise EvalInputError(
            f"snapshot {snapshot['snapshot_id']} of dataset {ds.name!r}: no {split!r} clips pass its selection "
            f"({where}); ingest videos whose split is {split!r} (ingest.clips.split) or evaluate "
            "another split (--split)", "no_eval_clips")
    rows = rows[:limit] if limit else rows
    pairs = [[r["clip_id"], r["sha256"]] for r in rows]
    held = {"snapshot_id": f"{snapshot['snapshot_id']}:{split}", "clip_ids": [p[0] for p in pairs],
            "clip_sha256": dict(pairs), "clips_sha256": sha256_json(pairs)}
    return snapshot_clips(ds, held)


def settings_of(cfg) -> dict:
    """What decides the scores besides the model and the clips."""
    e = cfg.evaluate
    return {"version": EVAL_VERSION, "frames": e.frames, "width": e.width, "height": e.height, "steps": e.steps,
            "guidance": e.guidance, "seed": e.seed, "window": e.window, "overlap": e.overlap,
            "pose_backend": e.pose_backend or cfg.pose.backend, "pose_min_side": e.pose_min_side, "moved": e.moved,
            "lpips": e.lpips, "fid": e.fid.model_dump() if e.fid else None,
            "fvd": e.fvd.model_dump() if e.fvd else None, "identity": e.identity}


def bench_of(snapshot: dict, split: str, clips, settings: dict) -> str:
    return "b" + sha256_json({"dataset": snapshot.get("dataset"), "split": split,
                              "clips": [[c.clip_id, c.sha256] for c in clips], "settings": settings})[:15]


def eval_id_of(bench: str, cand: Candidate) -> str:
    return "e" + sha256_json([bench, cand.fingerprint])[:15]


def _model_candidate(path: Path, name: str | None = None, kind: str = "model") -> Candidate:
    path = Path(path)
    real = path.resolve()
    if not store.is_model(real):
        raise EvalInputError(f"model {path}: no model folder there (no model_index.json); give a pipeline folder, a "
                             "name under DATA_ROOT/models, a training run id or all-new", "missing_model")
    trained = store.trained_by(real)
    return Candidate(name or path.name, kind, str(real), store.fingerprint(real), trained.get("run_id"),
                     trained.get("stage"), trained.get("step"))


def run_checkpoints(root, run_id: str) -> list[Candidate]:
    """Every complete checkpoint of training run ``run_id`` (stages 1 and 2), as candidates."""
    from animate_anyone.training import checkpoints

    run_dir = root.path / "checkpoints" / run_id
    job_file = run_dir / "job.json"
    if not run_dir.is_dir():
        raise EvalInputError(f"no training run {run_id!r}: {run_dir} does not exist", "unknown_run")
    if not job_file.is_file():
        raise EvalInputError(f"training run {run_id}: {job_file} is missing (a run from before evaluation existed); "
                             "train it again or evaluate its model folder", "no_job")
    stage = json.loads(job_file.read_text())["stage"]
    if stage == 0:
        return []  # the VAE alone animates nothing
    out = []
    for ck in checkpoints.checkpoints(run_dir):
        step = int(ck.name.split("-")[1])
        export = evaluations_dir(root) / "models" / run_id / ck.name
        out.append(Candidate(f"{run_id}@{step}", "checkpoint", str(export),
                             sha256_json(["checkpoint", run_id, step, store.fingerprint(ck)]), run_id, stage, step,
                             str(ck)))
    return out


def newest_runs(root, cfg) -> list[str]:
    """The newest training run of each stage ≥ 1 of the pipeline (by start time)."""
    from animate_anyone.tables.io import Dataset

    rows = Dataset.of(cfg).read("train_runs", columns=["run_id", "pipeline", "stage", "started_at"]).to_pylist()
    best: dict[int, dict] = {}
    for r in rows:
        if r["pipeline"] == cfg.name and r["stage"] >= 1 and (r["stage"] not in best or
                                                               r["started_at"] > best[r["stage"]]["started_at"]):
            best[r["stage"]] = r
    return [best[k]["run_id"] for k in sorted(best)]


def candidates(cfg, what: str, base: Path | None = None) -> list[Candidate]:
    """``what``: all-new, a training run id, or a model folder / name (see ``resolve_model``)."""
    from animate_anyone.pipeline import resolve_model
    from animate_anyone.tables.io import DataRoot

    root = DataRoot.from_uri(cfg.data_root)
    if what == "all-new":
        found = []
        for run_id in newest_runs(root, cfg):
            try:
                found += run_checkpoints(root, run_id)
            except EvalInputError:
                continue
        final = store.ModelStore(root.path).path(cfg.train.output)
        if store.is_model(final):
            model = _model_candidate(final, cfg.train.output)
            # the trained model is its run's last checkpoint: scored once, as the model
            found = [c for c in found if (c.train_run_id, c.step) != (model.train_run_id, model.step)] + [model]
        return found
    if re.fullmatch(r"[A-Za-z0-9_.-]+-s[0-2]-[0-9a-f]{12}", what) and (root.path / "checkpoints" / what).is_dir():
        found = run_checkpoints(root, what)
        if not found:
            raise EvalInputError(f"training run {what} has no checkpoint a model can be made of (stage 0 trains the "
                                 "VAE alone)", "no_checkpoint")
        return found
    return [_model_candidate(resolve_model(what, root.path, base), what if "/" not in what else None)]


def baseline_candidates(cfg, extra: list[str], base: Path | None = None) -> list[Candidate]:
    """The still reference, the untrained model of ``train.size`` and the named models."""
    from animate_anyone.pipeline import resolve_model
    from animate_anyone.tables.io import DataRoot

    root = DataRoot.from_uri(cfg.data_root)
    out = [Candidate(STILL, "baseline", None, STILL)]
    if cfg.evaluate.untrained:
        out.append(_model_candidate(untrained_model(cfg), f"untrained-{cfg.train.size}", "baseline"))
    for spec in list(cfg.evaluate.baselines) + list(extra):
        where = Path(cfg.base_dir) if spec in cfg.evaluate.baselines else base
        out.append(_model_candidate(resolve_model(spec, root.path, where), None, "baseline"))
    return out


def untrained_model(cfg) -> Path:
    """The model training starts from (random at ``train.size``, with ``train.init``'s parts), saved
    once under DATA_ROOT/models/baselines/."""
    from filelock import FileLock

    from animate_anyone.pipeline import AnimateAnyonePipeline, save_animate_pipeline
    from animate_anyone.tables.io import DataRoot
    from animate_anyone.training.model import initial_components

    root = DataRoot.from_uri(cfg.data_root)
    init = cfg.train.init.model_dump()
    out = store.ModelStore(root.path).baseline(f"untrained-{cfg.train.size}-" +
                                               sha256_json([cfg.train.size, cfg.train.seed, init])[:8])
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock"):
        if not store.is_model(out):
            c = initial_components(cfg.train, Path(cfg.base_dir) if cfg.base_dir else None)
            pipe = AnimateAnyonePipeline(**{k: c[k] for k in ("vae", "image_encoder", "feature_extractor",
                                                              "reference_unet", "unet", "pose_guider", "scheduler")})
            save_animate_pipeline(pipe, out, source={"created": f"untrained {cfg.train.size}", "seed": cfg.train.seed,
                                                      "init": init})
    return out


def export_checkpoint(cand: Candidate) -> Path:
    """A training checkpoint (accelerate's state) as a pipeline folder: the run's starting model
    with the checkpoint's trained weights."""
    from safetensors.torch import load_file

    from animate_anyone.config import Train
    from animate_anyone.models.denoiser import AnimateModel
    from animate_anyone.pipeline import AnimateAnyonePipeline, save_animate_pipeline
    from animate_anyone.training import model as tm
    from animate_anyone.training.loop import StageJob

    out = Path(cand.path)
    if store.is_model(out):
        return out
    ck = Path(cand.checkpoint)
    job = StageJob.from_json((ck.parent / "job.json").read_text())
    train = Train.model_validate(job.train_cfg)
    base = Path(job.base_dir) if job.base_dir else None
    c = tm.initial_components(train, base, Path(job.start) if job.start else None)
    if job.stage == 2 and train.init.motion:
        tm.load_motion(c, train.init.motion, base)
    module = AnimateModel(c["reference_unet"], c["unet"], c["pose_guider"])
    weights = ck / "model.safetensors"
    if not weights.is_file():
        raise EvalInputError(f"checkpoint {ck}: no model.safetensors (not accelerate's state of a stage-{job.stage} "
                             "run)", "bad_checkpoint")
    missing, unexpected = module.load_state_dict(load_file(str(weights)), strict=False)
    if unexpected or missing:
        raise EvalInputError(f"checkpoint {ck}: its weights do not fit the run's model ({len(missing)} missing, "
                             f"{len(unexpected)} unexpected, e.g. {(missing + unexpected)[:3]})", "bad_checkpoint")
    pipe = AnimateAnyonePipeline(**{k: c[k] for k in ("vae", "image_encoder", "feature_extractor", "reference_unet",
                                                      "unet", "pose_guider", "scheduler")})
    return save_animate_pipeline(pipe, out, source={"trained": {"run_id": job.run_id, "stage": job.stage,
                                                                "step": cand.step, "pipeline": job.pipeline,
                                                                "checkpoint": str(ck)}})


# --- scoring one clip ----------------------------------------------------------------------------

@dataclass
class Scorers:
    """The metrics that could be set up (the others are in ``unavailable`` with their reason)."""

    backend: object | None
    lpips: object | None
    fid: object | None
    fvd: object | None
    identity: object | None
    unavailable: dict

    def close(self) -> None:
        if self.backend is not None:
            self.backend.close()


def make_scorers(cfg, device: str) -> Scorers:
    from animate_anyone.evaluation import metrics
    from animate_anyone.pose.backends import load_backend

    e, base = cfg.evaluate, Path(cfg.base_dir) if cfg.base_dir else None
    made, unavailable = {}, {}
    wanted = {"pose": lambda: load_backend(cfg.pose, e.pose_backend, base),
              "lpips": (lambda: metrics.Lpips(e.lpips, device)) if e.lpips else None,
              "fid": (lambda: metrics.FeatureNet(e.fid, "evaluate.fid", base, device)) if e.fid and e.fid.weights else None,
              "fvd": (lambda: metrics.FeatureNet(e.fvd, "evaluate.fvd", base, device)) if e.fvd and e.fvd.weights else None,
              "identity": (lambda: metrics.Identity(e.identity, base, device)) if e.identity else None}
    for name, make in wanted.items():
        if make is None:
            continue
        try:
            made[name] = make()
        except AnimateAnyoneError as exc:
            unavailable[name] = exc
    return Scorers(made.get("pose"), made.get("lpips"), made.get("fid"), made.get("fvd"), made.get("identity"),
                   unavailable)


def driving_pixels(ds, clip, width: int, height: int, n: int) -> list:
    """The clip's own main-person poses in the evaluation frame's pixels (crop, then resize)."""
    from animate_anyone.pose.render import read_clip_poses
    from animate_anyone.training.data import crop_box

    _, people = read_clip_poses(ds.root, clip.clip_id)
    left, top, right, bottom = crop_box(clip.width, clip.height, width, height)
    scale = np.array([width / (right - left), height / (bottom - top)])
    out = []
    for i in range(n):
        kps, scores = people.get(i, (np.zeros((0, 133, 2)), np.zeros((0, 133))))
        if not len(kps):
            out.append(None)
            continue
        px = kps[0] * np.array([clip.width, clip.height]) - np.array([left, top])
        out.append(((px * scale).astype(np.float32), scores[0].astype(np.float32)))
    return out


def uint8(x: torch.Tensor) -> np.ndarray:
    """(F, 3, H, W) in [0, 1] → (F, H, W, 3) uint8."""
    return (x.clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)


def score_clip(ds, clip, real: torch.Tensor, generated: torch.Tensor, scorers: Scorers, cfg,
               timings: dict) -> tuple[list[dict], dict]:
    """Rows of ``eval_results`` (without eval_id) for one clip, and its Fréchet features.
    ``real``, ``generated``: (n, 3, H, W) in [0, 1]; frame 0 (the reference) is not scored."""
    from animate_anyone.evaluation import metrics
    from animate_anyone.evaluation.pose_fidelity import pose_fidelity

    e = cfg.evaluate
    n = len(real)
    per_frame: dict[str, np.ndarray] = {}

    def timed(group, fn):
        t0 = time.perf_counter()
        try:
            return fn()
        finally:
            timings[group] = timings.get(group, 0.0) + time.perf_counter() - t0

    g, r = generated[1:], real[1:]
    per_frame.update(timed("l1_psnr_ssim", lambda: metrics.frame_scores(g, r)))
    if scorers.lpips is not None:
        per_frame["lpips"] = timed("lpips", lambda: scorers.lpips(g, r))
    if scorers.identity is not None:
        per_frame["identity"] = timed("identity", lambda: scorers.identity(g, real[0]))
    moved = [None] * (n - 1)
    if scorers.backend is not None:
        driving = driving_pixels(ds, clip, e.width, e.height, n)
        rows = timed("pose", lambda: pose_fidelity(scorers.backend, uint8(generated), driving, e.pose_min_side,
                                                   e.moved))[1:]
        moved = [row.pop("moved") for row in rows]
        for key in rows[0] if rows else []:
            per_frame[key] = np.asarray([row.get(key, np.nan) for row in rows], np.float64)
    features = {}
    if scorers.fid is not None:
        features["fid_real"] = timed("fid", lambda: scorers.fid.images(r))
        features["fid_generated"] = timed("fid", lambda: scorers.fid.images(g))
    if scorers.fvd is not None:
        features["fvd_real"] = timed("fvd", lambda: scorers.fvd.video(real))
        features["fvd_generated"] = timed("fvd", lambda: scorers.fvd.video(generated))
    out = []
    moved_mask = np.asarray([m is True for m in moved])
    for metric, values in per_frame.items():
        values = np.asarray(values, np.float64)
        for i, v in enumerate(values):
            if np.isfinite(v):
                out.append({"clip_id": clip.clip_id, "metric": metric, "frame_idx": i + 1, "value": float(v),
                            "moved": moved[i]})
        ok = np.isfinite(values)
        if ok.any():
            out.append({"clip_id": clip.clip_id, "metric": metric, "frame_idx": None,
                        "value": float(values[ok].mean()), "moved": None})
        sel = ok & moved_mask
        if sel.any():
            out.append({"clip_id": clip.clip_id, "metric": f"{metric}_moved", "frame_idx": None,
                        "value": float(values[sel].mean()), "moved": True})
    out.append({"clip_id": clip.clip_id, "metric": "frames", "frame_idx": None, "value": float(n - 1), "moved": None})
    out.append({"clip_id": clip.clip_id, "metric": "frames_moved", "frame_idx": None,
                "value": float(moved_mask.sum()), "moved": None})
    return out, features


# --- one evaluation ------------------------------------------------------------------------------

@dataclass
class Bench:
    cfg: object
    ds: object
    snapshot: dict
    split: str
    clips: list
    settings: dict
    bench: str


def _part(eval_id: str, clip_id: str) -> str:
    return f"{eval_id}-{clip_id}"


def _write_run(ds, row: dict) -> None:
    ds.write("eval_runs", row["eval_id"], [row])


def generate_clip(pipe, real: torch.Tensor, poses: torch.Tensor, e, device: str) -> torch.Tensor:
    """The model's video for one clip: reference = its first frame, poses = its own, fixed seed."""
    n = len(real)
    window = min(e.window, n)
    ref = uint8(real[:1])[0]
    return pipe(ref, poses, height=e.height, width=e.width, num_inference_steps=e.steps, guidance_scale=e.guidance,
                window=window, overlap=min(e.overlap, window - 1), generator=torch.Generator().manual_seed(e.seed),
                output_type="pt").frames.float().cpu().clamp(0, 1)


def evaluate_candidate(b: Bench, cand: Candidate, scorers: Scorers, store, device: str, dtype: torch.dtype,
                       log=print, on_clip=None) -> dict:
    """Score ``cand`` on the bench's clips (only those not scored yet); returns its eval_runs row."""
    from filelock import FileLock

    from animate_anyone.media.video import VideoWriter
    from animate_anyone.tables import failures
    from animate_anyone.training.report import code_version

    ds, e = b.ds, b.cfg.evaluate
    eval_id = eval_id_of(b.bench, cand)
    folder = evaluations_dir(ds.root) / eval_id
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder / ".lock")):
        previous = ds.read_part("eval_runs", eval_id)
        done = set(ds.parts("eval_results"))
        todo = [c for c in b.clips if _part(eval_id, c.clip_id) not in done]
        if previous and previous[0]["status"] == "finished" and not todo:
            return {**previous[0], "cached": True}
        row = {"eval_id": eval_id, "bench": b.bench, "pipeline": b.cfg.name, "model": cand.path or STILL,
               "model_name": cand.name, "kind": cand.kind, "model_fingerprint": cand.fingerprint,
               "train_run_id": cand.train_run_id, "stage": cand.stage, "checkpoint_step": cand.step,
               "snapshot_id": b.snapshot["snapshot_id"], "split": b.split, "num_clips": len(b.clips),
               "clips_done": len(b.clips) - len(todo), "clips_failed": 0, "settings": json.dumps(b.settings),
               "timings": previous[0]["timings"] if previous else json.dumps({}), "code_version": code_version(),
               "status": "running", "error": None, "started_at": _now(), "ended_at": None}
        _write_run(ds, row)
        timings = json.loads(row["timings"] or "{}")
        pipe = None
        try:
            if todo and cand.path is not None:
                from animate_anyone.pipeline import load_animate_pipeline

                t0 = time.perf_counter()
                if cand.checkpoint:
                    export_checkpoint(cand)
                pipe = load_animate_pipeline(Path(cand.path), dtype=dtype, device=device)
                pipe.set_progress_bar_config(disable=True)
                timings["load"] = timings.get("load", 0.0) + time.perf_counter() - t0
        except (AnimateAnyoneError, OSError, ValueError, RuntimeError) as exc:
            message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
            error = EvalInputError(f"model {cand.name} ({cand.path}) does not load: {message}", "model_unloadable")
            failures.record(ds, "evaluate", cand.name, cand.path or "", error, part=f"evaluate-{eval_id}")
            row.update(status="failed", error=error.message, ended_at=_now())
            _write_run(ds, row)
            log(f"evaluate: {error.message}")
            return row
        failed = 0
        for clip in todo:
            try:
                real, poses = store.get(clip)
                n = min(e.frames, len(real))
                real01 = (real[:n] / 2 + 0.5).clamp(0, 1)
                t0 = time.perf_counter()
                if pipe is None:  # the still reference: frame 0 held
                    generated = real01[:1].expand(n, -1, -1, -1).clone()
                else:
                    generated = generate_clip(pipe, real01, poses[:n], e, device)
                timings["generate"] = timings.get("generate", 0.0) + time.perf_counter() - t0
                rows, feats = score_clip(ds, clip, real01, generated, scorers, b.cfg, timings)
            except AnimateAnyoneError as exc:  # a clip without poses, a changed file: the others go on
                failed += 1
                failures.record(ds, "evaluate", clip.clip_id, eval_id, exc, part=f"evaluate-{clip.clip_id}")
                log(f"evaluate {cand.name}: clip {clip.clip_id} skipped: {exc.message}")
                continue
            timings["clip_seconds"] = timings.get("clip_seconds", 0.0) + (n - 1) / clip.fps
            timings["frames_scored"] = timings.get("frames_scored", 0) + n - 1
            if feats:
                from animate_anyone.files import atomic_path

                with atomic_path(folder / "features" / f"{clip.clip_id}.npz") as tmp:
                    with open(tmp, "wb") as fh:
                        np.savez(fh, **feats)
            with VideoWriter(folder / "videos" / f"{clip.clip_id}.mp4", e.width, e.height, clip.fps) as writer:
                for frame in uint8(generated):
                    writer.write(frame)
            ds.write("eval_results", _part(eval_id, clip.clip_id), [{"eval_id": eval_id, **r} for r in rows])
            failures.clear(ds, f"evaluate-{clip.clip_id}")
            row["clips_done"] += 1
            row["timings"] = json.dumps(timings)
            _write_run(ds, row)
            if on_clip:
                on_clip(cand, clip, rows)
        # the whole clip set's values: the Fréchet distances over every scored clip's features
        run_rows = []
        for metric in ("fid", "fvd"):
            if getattr(scorers, metric) is None:
                continue
            real_f, gen_f = [], []
            for clip in b.clips:
                path = folder / "features" / f"{clip.clip_id}.npz"
                if path.is_file():
                    with np.load(path) as z:
                        if f"{metric}_real" in z and len(z[f"{metric}_real"]):
                            real_f.append(z[f"{metric}_real"])
                            gen_f.append(z[f"{metric}_generated"])
            t0 = time.perf_counter()
            try:
                from animate_anyone.evaluation.metrics import frechet_distance

                value = frechet_distance(np.concatenate(real_f) if real_f else np.zeros((0, 1)),
                                         np.concatenate(gen_f) if gen_f else np.zeros((0, 1)))
                run_rows.append({"eval_id": eval_id, "clip_id": None, "metric": metric, "frame_idx": None,
                                 "value": value, "moved": None})
            except AnimateAnyoneError as exc:
                failures.record(ds, "evaluate", f"{eval_id}:{metric}", eval_id, exc, part=f"evaluate-{eval_id}-{metric}")
                log(f"evaluate {cand.name}: {metric} not scored: {exc.message}")
            timings[metric] = timings.get(metric, 0.0) + time.perf_counter() - t0
        if run_rows:
            ds.write("eval_results", f"{eval_id}-all", run_rows)
        row.update(clips_failed=failed, timings=json.dumps(timings), ended_at=_now(),
                   status="finished" if row["clips_done"] == len(b.clips) else ("partial" if row["clips_done"] else "failed"))
        if row["status"] == "failed":
            row["error"] = "no clip could be scored (see the failures table)"
        _write_run(ds, row)
        if cand.checkpoint and row["status"] == "finished":
            remove_tree(cand.path, evaluations_dir(b.ds.root) / "models")  # the export; the checkpoint itself stays
        return row


def prepare(cfg, snapshot_id: str | None = None, split: str | None = None, clips: int | None = None) -> Bench:
    from animate_anyone.tables import failures
    from animate_anyone.tables.io import Dataset
    from animate_anyone.tables.selection import load_snapshot

    if clips is not None and clips < 1:
        raise EvalInputError(f"--clips must be at least 1; got {clips}", "bad_option")
    ds = Dataset.of(cfg)
    split = split or cfg.evaluate.split
    snap = load_snapshot(ds, snapshot_id or cfg.train.snapshot)
    try:
        chosen = eval_clips(ds, snap, split, clips or cfg.evaluate.clips, cfg.evaluate.where)
    except AnimateAnyoneError as exc:
        failures.record(ds, "evaluate", f"{snap['snapshot_id']}:{split}", snap["snapshot_id"], exc,
                        part=f"evaluate-{snap['snapshot_id']}-{split}")
        raise
    failures.clear(ds, f"evaluate-{snap['snapshot_id']}-{split}")
    settings = settings_of(cfg)
    return Bench(cfg, ds, snap, split, chosen, settings, bench_of(snap, split, chosen, settings))


def evaluate(cfg, what: str | None = None, snapshot_id: str | None = None, split: str | None = None,
             clips: int | None = None, baselines: list[str] = (), base: Path | None = None, log=print,
             on_clip=None, pictures: bool = True) -> dict:
    """Score ``what`` (default ``evaluate.what``) and the baselines; returns the bench, one eval_runs
    row per candidate and the report's files."""
    from animate_anyone.animate import resolve_device
    from animate_anyone.evaluation import report
    from animate_anyone.tables import failures
    from animate_anyone.training.data import ClipStore

    b = prepare(cfg, snapshot_id, split, clips)
    e = cfg.evaluate
    what = what or e.what
    found = candidates(cfg, what, base)
    found += [c for c in baseline_candidates(cfg, list(baselines), base) if c.fingerprint not in
              {f.fingerprint for f in found}]
    device = resolve_device(e.device)
    dtype = torch.float32 if device == "cpu" else getattr(torch, e.dtype)
    scorers = make_scorers(cfg, device)
    for name, exc in scorers.unavailable.items():
        failures.record(b.ds, "evaluate", f"{b.bench}:{name}", b.bench, exc, part=f"evaluate-{b.bench}-{name}")
        log(f"evaluate: {name} not scored: {exc.message}")
    store = ClipStore(b.ds, e.width, e.height, cache=len(b.clips))
    rows = []
    try:
        for cand in found:
            rows.append(evaluate_candidate(b, cand, scorers, store, device, dtype, log, on_clip))
    finally:
        scorers.close()
    files = report.write_reports(b, rows) if pictures else {}
    return {"bench": b.bench, "snapshot_id": b.snapshot["snapshot_id"], "split": b.split,
            "clips": [c.clip_id for c in b.clips], "runs": rows, "unavailable": {k: v.message for k, v in
                                                                                 scorers.unavailable.items()},
            **files}

