"""What a bench scores: its clips (a snapshot's held-out split), its settings, and the candidates
(models, training checkpoints and the baselines beside them).

A bench is the clip set and the settings (not the model); an evaluation is one model on one
bench, its id derived from both. The weights' fingerprint decides "the same model"
(``models.store.fingerprint``); a checkpoint's is its run, step and files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from animate_anyone.clipstore import TrainClip, snapshot_clips
from animate_anyone.config import PipelineConfig
from animate_anyone.errors import AnimateAnyoneError, PermanentError
from animate_anyone.ids import sha256_json
from animate_anyone.models import store
from animate_anyone.pipeline import resolve_model
from animate_anyone.tables import failures
from animate_anyone.tables.catalog import QueryError, query
from animate_anyone.tables.io import DataRoot, Dataset
from animate_anyone.tables.selection import load_snapshot, selection_sql
from animate_anyone.training.export import export_model

EVAL_VERSION = "4"  # bump when the scores change for the same inputs (4: appearance, the pose-only baseline)
STILL = "still-reference"
POSE_ONLY = "pose-only-drawing"  # the driving skeleton drawn in the training clips' mean colours
RUN_ID = re.compile(r"[A-Za-z0-9_.-]+-s[0-2]-[0-9a-f]{12}")


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


@dataclass
class Bench:
    """The clips and settings every candidate is scored on; ``bench_id`` names the pair."""

    cfg: PipelineConfig
    ds: Dataset
    snapshot: dict
    split: str
    clips: list[TrainClip]
    settings: dict
    bench_id: str


# --- the clips and settings ----------------------------------------------------------------------

def eval_clips(ds: Dataset, snapshot: dict, split: str, limit: int | None, where: str | None = None) -> list[TrainClip]:
    """The clips of ``split`` that pass ``where`` (default: the snapshot's selection), first
    ``limit`` by id."""
    try:
        where = where or snapshot.get("where") or "TRUE"
        sql, params = selection_sql(ds.name, where, [split])
        rows = query(ds.root, sql, params=params).to_pylist()
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


def settings_of(cfg: PipelineConfig) -> dict:
    """What decides the scores besides the model and the clips."""
    e = cfg.evaluate
    return {"version": EVAL_VERSION, "frames": e.frames, "width": e.width, "height": e.height, "steps": e.steps,
            "guidance": e.guidance, "seed": e.seed, "window": e.window, "overlap": e.overlap,
            "pose_backend": e.pose_backend or cfg.pose.backend, "pose_min_side": e.pose_min_side, "moved": e.moved,
            "lpips": e.lpips, "fid": e.fid.model_dump() if e.fid else None,
            "fvd": e.fvd.model_dump() if e.fvd else None, "identity": e.identity}


def bench_of(snapshot: dict, split: str, clips: list[TrainClip], settings: dict) -> str:
    return "b" + sha256_json({"dataset": snapshot.get("dataset"), "split": split,
                              "clips": [[c.clip_id, c.sha256] for c in clips], "settings": settings})[:15]


def eval_id_of(bench_id: str, cand: Candidate) -> str:
    return "e" + sha256_json([bench_id, cand.fingerprint])[:15]


def prepare(cfg: PipelineConfig, snapshot_id: str | None = None, split: str | None = None,
            clips: int | None = None) -> Bench:
    """The bench of ``cfg``'s evaluation: the snapshot's ``split`` clips and the settings."""
    if clips is not None and clips < 1:
        raise EvalInputError(f"--clips must be at least 1; got {clips}", "bad_option")
    ds = Dataset.of(cfg)
    split = split or cfg.evaluate.split
    snap = load_snapshot(ds, snapshot_id or cfg.train.snapshot)
    part = f"evaluate-{snap['snapshot_id']}-{split}"
    try:
        chosen = eval_clips(ds, snap, split, clips or cfg.evaluate.clips, cfg.evaluate.where)
    except AnimateAnyoneError as exc:
        failures.record(ds, "evaluate", f"{snap['snapshot_id']}:{split}", snap["snapshot_id"], exc, part=part)
        raise
    failures.clear(ds, part)
    settings = settings_of(cfg)
    return Bench(cfg, ds, snap, split, chosen, settings, bench_of(snap, split, chosen, settings))


# --- the candidates ------------------------------------------------------------------------------

def model_candidate(path: Path, name: str | None = None, kind: str = "model") -> Candidate:
    path = Path(path)
    real = path.resolve()
    if not store.is_model(real):
        raise EvalInputError(f"model {path}: no model folder there (no model_index.json); give a pipeline folder, a "
                             "name under DATA_ROOT/models, a training run id or all-new", "missing_model")
    trained = store.trained_by(real)
    return Candidate(name or path.name, kind, str(real), store.fingerprint(real), trained.get("run_id"),
                     trained.get("stage"), trained.get("step"))


def run_checkpoints(root: DataRoot, run_id: str) -> list[Candidate]:
    """Every complete checkpoint of training run ``run_id`` (stages 1 and 2), as candidates."""
    run_dir = root.checkpoints_dir / run_id
    if not root.exists(run_dir):
        raise EvalInputError(f"no training run {run_id!r}: {run_dir} does not exist", "unknown_run")
    job = store.run_job(run_dir)
    if job is None:
        raise EvalInputError(f"training run {run_id}: {run_dir / store.RUN_JOB} is missing (a run from before "
                             "evaluation existed); train it again or evaluate its model folder", "no_job")
    if job["stage"] == 0:
        return []  # the VAE alone animates nothing
    out = []
    for ck in store.checkpoints(run_dir):
        step = store.checkpoint_step(ck)
        root.fetch(ck)  # a store's checkpoint: its files here, for the fingerprint and the export
        export = root.evaluations_dir / "models" / run_id / ck.name
        out.append(Candidate(f"{run_id}@{step}", "checkpoint", str(export),
                             sha256_json(["checkpoint", run_id, step, store.fingerprint(ck)]), run_id, job["stage"],
                             step, str(ck)))
    return out


def newest_runs(cfg: PipelineConfig) -> list[str]:
    """The newest training run of each stage ≥ 1 of the pipeline (by start time)."""
    rows = Dataset.of(cfg).read("train_runs", columns=["run_id", "pipeline", "stage", "started_at"]).to_pylist()
    best: dict[int, dict] = {}
    for r in rows:
        if r["pipeline"] == cfg.name and r["stage"] >= 1 and (r["stage"] not in best or
                                                               r["started_at"] > best[r["stage"]]["started_at"]):
            best[r["stage"]] = r
    return [best[k]["run_id"] for k in sorted(best)]


def _all_new(cfg: PipelineConfig, root: DataRoot) -> list[Candidate]:
    found = []
    for run_id in newest_runs(cfg):
        try:
            found += run_checkpoints(root, run_id)
        except EvalInputError:
            continue
    final = store.ModelStore(root.path).path(cfg.train.output)
    if store.is_model(final):
        model = model_candidate(final, cfg.train.output)
        # the trained model is its run's last checkpoint: scored once, as the model
        found = [c for c in found if (c.train_run_id, c.step) != (model.train_run_id, model.step)] + [model]
    return found


def candidates(cfg: PipelineConfig, what: str, base: Path | None = None) -> list[Candidate]:
    """``what``: all-new, a training run id, or a model folder / name (``pipeline.resolve_model``)."""
    root = DataRoot.from_uri(cfg.data_root)
    if what == "all-new":
        return _all_new(cfg, root)
    if RUN_ID.fullmatch(what) and root.exists(root.checkpoints_dir / what):
        found = run_checkpoints(root, what)
        if not found:
            raise EvalInputError(f"training run {what} has no checkpoint a model can be made of (stage 0 trains the "
                                 "VAE alone)", "no_checkpoint")
        return found
    return [model_candidate(resolve_model(what, root.path, base), what if "/" not in what else None)]


def baseline_candidates(cfg: PipelineConfig, extra: list[str], base: Path | None = None,
                        snapshot_id: str | None = None) -> list[Candidate]:
    """The still reference, the pose-only drawing (its colours from snapshot ``snapshot_id``'s
    clips), the untrained model of ``train.size`` and the named models."""
    root = DataRoot.from_uri(cfg.data_root)
    out = [Candidate(STILL, "baseline", None, STILL)]
    if snapshot_id:
        out.append(Candidate(POSE_ONLY, "baseline", None, sha256_json([POSE_ONLY, snapshot_id])))
    if cfg.evaluate.untrained:
        out.append(model_candidate(untrained_model(cfg), untrained_label(cfg.train), "baseline"))
    for spec in list(cfg.evaluate.baselines) + list(extra):
        where = Path(cfg.base_dir) if spec in cfg.evaluate.baselines else base
        out.append(model_candidate(resolve_model(spec, root.path, where), None, "baseline"))
    return out


def untrained_label(train) -> str:
    """The untrained baseline's name on the leaderboard: ``untrained-SIZE`` for Animate Anyone,
    with the family (and the temporal layers when not transformers) for the others."""
    if train.family == "animate-anyone":
        return f"untrained-{train.size}"
    temporal = f"-{train.temporal}" if train.temporal != "transformer" else ""
    return f"untrained-{train.family}{temporal}-{train.size}"


def untrained_model(cfg: PipelineConfig) -> Path:
    """The model training starts from (random at ``train.size``, with ``train.init``'s parts, of
    ``train.family``), saved once under DATA_ROOT/models/baselines/."""
    root = DataRoot.from_uri(cfg.data_root)
    init = cfg.train.init.model_dump()
    key = [cfg.train.size, cfg.train.seed, init]
    if cfg.train.family != "animate-anyone":  # Animate Anyone's folders keep the names they had
        key += [cfg.train.family, cfg.train.temporal]
    out = store.ModelStore(root.path).baseline(f"{untrained_label(cfg.train)}-" + sha256_json(key)[:8])
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock"):
        return export_model(out, train=cfg.train, base_dir=Path(cfg.base_dir) if cfg.base_dir else None,
                            source={"created": f"untrained {cfg.train.size}", "seed": cfg.train.seed, "init": init})


def export_checkpoint(cand: Candidate) -> Path:
    """A training checkpoint as a model folder at ``cand.path`` (training's ``export_model``)."""
    return export_model(Path(cand.path), checkpoint=Path(cand.checkpoint))
