"""Where training meets the rest of the house: a checkpoint, or the untrained start, as a model
folder in the model store. Evaluation scores checkpoints and the untrained baseline through this
one function and imports nothing else of training."""
from __future__ import annotations

from pathlib import Path

from animate_anyone.config import Train
from animate_anyone.models import store
from animate_anyone.models.denoiser import AnimateModel
from animate_anyone.training import model as tm
from animate_anyone.training import unianimate as ua


def export_model(out: Path, *, checkpoint: Path | None = None, train: Train | None = None,
                 base_dir: Path | None = None, source: dict | None = None) -> Path:
    """A model folder at ``out``: the run's starting model with ``checkpoint``'s trained weights
    (accelerate's state of a stage ≥ 1, its run's ``job.json`` beside it), or, without a
    checkpoint, the model ``train`` starts from (random at ``train.size`` with ``train.init``'s
    parts). A folder already there is kept."""
    out = Path(out)
    if store.is_model(out):
        return out
    if checkpoint is None:
        if train is None:
            raise ValueError("export_model: give a checkpoint or the train settings")
        return store.save_components(tm.initial_components(train, base_dir), out, source)
    return _export_checkpoint(Path(checkpoint), out, source)


def _export_checkpoint(ck: Path, out: Path, source: dict | None) -> Path:
    from safetensors.torch import load_file

    job = store.run_job(ck.parent)
    if job is None:
        raise tm.TrainModelError(f"checkpoint {ck}: its run's {store.RUN_JOB} is missing", "bad_checkpoint")
    train = Train.model_validate(job["train_cfg"])
    base = Path(job["base_dir"]) if job["base_dir"] else None
    c = tm.initial_components(train, base, Path(job["start"]) if job["start"] else None)
    if job["stage"] == 2 and train.init.motion:
        tm.load_motion(c, train.init.motion, base)
    if train.family == ua.FAMILY:
        module = ua.UniAnimateModel(c["unet"], c["conditioner"])
    else:
        module = AnimateModel(c["reference_unet"], c["unet"], c["pose_guider"])
    weights = ck / "model.safetensors"
    if not weights.is_file():
        raise tm.TrainModelError(f"checkpoint {ck}: no model.safetensors (not accelerate's state of a "
                                 f"stage-{job['stage']} run)", "bad_checkpoint")
    missing, unexpected = module.load_state_dict(load_file(str(weights)), strict=False)
    if unexpected or missing:
        raise tm.TrainModelError(f"checkpoint {ck}: its weights do not fit the run's model ({len(missing)} missing, "
                                 f"{len(unexpected)} unexpected, e.g. {(missing + unexpected)[:3]})", "bad_checkpoint")
    trained = {"run_id": job["run_id"], "stage": job["stage"], "step": store.checkpoint_step(ck),
               "pipeline": job["pipeline"], "checkpoint": str(ck)}
    return store.save_components(c, out, source or {"trained": trained})
