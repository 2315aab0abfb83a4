"""One training stage, start to finish, in every process of a run (accelerate).

The loop (nanoGPT's shape): build the model and data, resume from the newest checkpoint if there
is one, then for each step: micro-batches (gradient accumulation, gradients synchronised on the
last), a non-finite loss skips the step, clip, step, log; every `checkpoint_every` steps an atomic
checkpoint, every `validate_every` steps a validation pass. At the end, a pipeline folder that
`animate --model` loads.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from animate_anyone.errors import PermanentError
from animate_anyone.training import checkpoints


class TrainingStopped(PermanentError):
    """The run stopped on purpose (non-finite losses in a row); its last good checkpoint is kept."""


@dataclass(frozen=True)
class StageJob:
    """Everything one stage needs, plain values only (it travels as JSON to `accelerate launch`)."""

    data_root: str
    dataset: str
    pipeline: str
    stage: int
    stage_cfg: dict
    train_cfg: dict
    base_dir: str
    snapshot: dict
    run_id: str
    run_dir: str
    start: str | None  # the previous stage's pipeline folder
    output: str  # where this stage's pipeline folder goes
    max_steps: int | None = None  # stop early (the schedule stays the configured one)
    resume: bool = True

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "StageJob":
        return cls(**json.loads(text))


def _device(spec: str) -> str:
    if spec == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return spec


def make_accelerator(job: StageJob, stage):
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration

    from animate_anyone.config import Train

    cpu = _device(Train.model_validate(job.train_cfg).device) == "cpu"
    trackers = []
    import importlib.util

    if importlib.util.find_spec("tensorboard") is not None:  # accelerate's tracker, when installed
        trackers = ["tensorboard"]
    return Accelerator(cpu=cpu, mixed_precision="no" if cpu else stage.mixed_precision, log_with=trackers or None,
                       project_config=ProjectConfiguration(project_dir=job.run_dir, logging_dir=str(Path(job.run_dir) / "logs")))


def _optimizer(params, stage, on_gpu: bool):
    if stage.use_8bit_adam and on_gpu:
        try:
            import bitsandbytes as bnb
        except ImportError as exc:
            raise PermanentError("train.*.use_8bit_adam needs bitsandbytes (pip install bitsandbytes)",
                                 "missing_package") from exc
        return bnb.optim.AdamW8bit(params, lr=stage.lr, weight_decay=stage.weight_decay)
    return torch.optim.AdamW(params, lr=stage.lr, weight_decay=stage.weight_decay)


def build(job: StageJob, accelerator):
    """Components, the trained module, data and the objective of ``job``'s stage."""
    from animate_anyone.config import Train, TrainStage
    from animate_anyone.models.denoiser import AnimateModel
    from animate_anyone.tables.io import Dataset
    from animate_anyone.training import data, model, objective

    train, stage = Train.model_validate(job.train_cfg), TrainStage.model_validate(job.stage_cfg)
    base = Path(job.base_dir) if job.base_dir else None
    components = model.initial_components(train, base, Path(job.start) if job.start else None)
    if job.stage == 2 and train.init.motion:  # stage 1 never trains them: AnimateDiff's start stage 2
        model.load_motion(components, train.init.motion, base)
    where = f"train.stage{job.stage}"
    model.check_size(components, stage.width, stage.height, where)
    if stage.frames > components["unet"].config.motion_max_seq_length:
        raise model.TrainModelError(f"{where}.frames = {stage.frames}: the motion modules take at most "
                                    f"{components['unet'].config.motion_max_seq_length}", "bad_frames")
    model.set_trainable(job.stage, components)
    if stage.gradient_checkpointing:
        for name in ("unet", "reference_unet"):
            components[name].enable_gradient_checkpointing()
    ds = Dataset(job.data_root, job.dataset)
    clips = data.snapshot_clips(ds, job.snapshot)
    store = data.ClipStore(ds, stage.width, stage.height, stage.cache_clips)
    train_clips = [c for c in clips if c.split == "train"] or clips
    samples = data.TrainSamples(train_clips, store, train.seed, frames=stage.frames, stride=stage.stride)
    val_clips = ([c for c in clips if c.split == "val"] or train_clips)[: stage.val_clips]
    if job.stage == 0:
        module, loss_fn = objective.VaeAutoencoder(components["vae"]), objective.vae_loss
    else:
        # stage 1: the image model alone (motion modules skipped); stage 2 adds them
        module = AnimateModel(components["reference_unet"], components["unet"], components["pose_guider"],
                              motion=job.stage != 1)
        loss_fn = objective.diffusion_loss
    device = accelerator.device
    for name in ("vae", "image_encoder"):
        components[name].to(device)
    return train, stage, components, module, loss_fn, samples, store, val_clips


def run_stage(job: StageJob, progress=None) -> dict:
    """Train ``job``'s stage in this process (one of the run's); returns the stage's summary."""
    from diffusers.optimization import get_scheduler

    from animate_anyone.training import report

    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()  # "Writing model shards" at every save
    transformers.utils.logging.disable_progress_bar()
    run_dir = Path(job.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    accelerator = None
    try:
        from animate_anyone.config import TrainStage

        accelerator = make_accelerator(job, TrainStage.model_validate(job.stage_cfg))
        train, stage, components, module, loss_fn, samples, store, val_clips = build(job, accelerator)
        params = [p for p in module.parameters() if p.requires_grad]
        optimizer = _optimizer(params, stage, accelerator.device.type == "cuda")
        lr_schedule = get_scheduler("constant_with_warmup", optimizer, num_warmup_steps=stage.warmup_steps)
        module, optimizer, lr_schedule = accelerator.prepare(module, optimizer, lr_schedule)

        # 1. Resume from the newest complete checkpoint (the data position is its step).
        trainer = {"step": 0, "bad_streak": 0, "bad_total": 0, "metrics": []}
        if accelerator.is_main_process:
            checkpoints.remove_temporary(run_dir)
        newest = checkpoints.latest(run_dir) if job.resume else None
        if newest is not None:
            trainer = checkpoints.load(accelerator, newest)
        elif not job.resume and accelerator.is_main_process:
            checkpoints.remove_all(run_dir)  # --no-resume: start the run over
        start, end = trainer["step"], stage.steps if job.max_steps is None else min(stage.steps, job.max_steps)
        if accelerator.is_main_process:
            report.run_started(job, start)
        if accelerator.log_with:  # TensorBoard under RUN/logs/ (the trackers exist after this)
            accelerator.init_trackers(f"stage{job.stage}")

        # 2. The loop.
        from animate_anyone.training.data import StepBatches

        loader = torch.utils.data.DataLoader(
            samples, batch_sampler=StepBatches(start, end, stage.batch, stage.grad_accum, accelerator.process_index),
            num_workers=stage.workers, persistent_workers=False)
        batches = iter(loader)
        bar = progress(start, end, job.stage) if progress and accelerator.is_main_process else None
        for step in range(start, end):
            t0 = time.perf_counter()
            bad, total = False, 0.0
            for micro in range(stage.grad_accum):
                batch = next(batches)
                sync = micro == stage.grad_accum - 1
                ctx = contextlib.nullcontext() if sync else accelerator.no_sync(module)
                with ctx, accelerator.autocast():
                    loss, _ = loss_fn(module, components, batch, stage, accelerator.device)
                finite = bool(accelerator.gather(torch.isfinite(loss.detach()).float()[None]).min() > 0)
                if not finite:  # every process skips together
                    bad = True
                    break
                accelerator.backward(loss / stage.grad_accum)
                total += float(accelerator.reduce(loss.detach(), "mean")) / stage.grad_accum
            if bad:
                optimizer.zero_grad(set_to_none=True)
                trainer["step"] = step + 1  # the data position moves on: a resume does not retry it
                trainer["bad_streak"] += 1
                trainer["bad_total"] += 1
                accelerator.print(f"stage {job.stage} step {step + 1}: non-finite loss, step skipped "
                                  f"({trainer['bad_streak']} in a row, {trainer['bad_total']} in all)")
                if trainer["bad_streak"] >= stage.max_bad_steps:
                    kept = checkpoints.latest(run_dir)
                    where = (f"the last good checkpoint ({kept.name}) is kept in {run_dir}" if kept else
                             "no checkpoint was written yet (the run starts over when run again)")
                    raise TrainingStopped(
                        f"stage {job.stage} stopped at step {step + 1}: {trainer['bad_streak']} non-finite losses in a "
                        f"row (train.stage{job.stage}.max_bad_steps); {where}; lower train.stage{job.stage}.lr or "
                        "check the data", "non_finite_loss")
                continue
            trainer["bad_streak"] = 0
            grad_norm = float(accelerator.clip_grad_norm_(params, stage.max_grad_norm))
            optimizer.step()
            lr_schedule.step()
            optimizer.zero_grad(set_to_none=True)
            trainer["step"] = step + 1
            seconds = time.perf_counter() - t0
            row = {"step": step + 1, "loss": total, "lr": lr_schedule.get_last_lr()[0], "grad_norm": grad_norm,
                   "samples_per_s": stage.batch * stage.grad_accum * accelerator.num_processes / seconds,
                   "memory_mb": _memory_mb(accelerator.device)}
            if stage.validate_every and (step + 1) % stage.validate_every == 0 and step + 1 < end:
                row.update(_validate(job, accelerator, module, components, store, val_clips, stage, step + 1))
            trainer["metrics"].append(row)
            if accelerator.trackers:
                accelerator.log({k: v for k, v in row.items() if k != "step" and v is not None}, step=step + 1)
            if bar is not None:
                bar(step + 1, row)
            if (step + 1) % stage.checkpoint_every == 0 and step + 1 < end:
                checkpoints.save(accelerator, run_dir, step + 1, trainer, stage.keep_checkpoints)
                if accelerator.is_main_process:
                    report.write_metrics(job, trainer["metrics"])

        # 3. The end: a last checkpoint, validation, the stage's pipeline folder, the tables.
        final = {}
        if trainer["step"] > start or checkpoints.latest(run_dir) is None:
            checkpoints.save(accelerator, run_dir, trainer["step"], trainer, stage.keep_checkpoints)
        if trainer["metrics"] and "val_psnr" not in trainer["metrics"][-1]:
            final = _validate(job, accelerator, module, components, store, val_clips, stage, trainer["step"])
            trainer["metrics"][-1].update(final)
        out = None
        if job.stage == 0:  # latents of unit variance, as SD's 0.18215 was chosen
            from animate_anyone.training.model import set_latent_scale

            set_latent_scale(components["vae"], [store.get(c)[0] for c in samples.clips[:8]])
        if accelerator.is_main_process:
            out = _save_pipeline(job, accelerator, module, components, trainer)
            report.write_metrics(job, trainer["metrics"])
            report.run_finished(job, trainer["step"], "finished", None, out)
        accelerator.wait_for_everyone()
        accelerator.end_training()
        return {"stage": job.stage, "run_id": job.run_id, "step": trainer["step"], "steps": end,
                "loss": trainer["metrics"][-1]["loss"] if trainer["metrics"] else None, "output": str(out or job.output),
                "skipped_steps": trainer["bad_total"], **{k: v for k, v in final.items()}}
    except BaseException as exc:
        if accelerator is None or accelerator.is_main_process:
            report.run_failed(job, exc)
        raise


def _memory_mb(device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _validate(job, accelerator, module, components, store, val_clips, stage, step) -> dict:
    from animate_anyone.training import validate

    result = {}
    if accelerator.is_main_process and val_clips:
        with torch.no_grad():
            result = validate.validate(job, accelerator.unwrap_model(module), components, store, val_clips, stage, step)
    accelerator.wait_for_everyone()
    return result


def _save_pipeline(job, accelerator, module, components, trainer) -> Path:
    from animate_anyone.pipeline import AnimateAnyonePipeline, save_animate_pipeline

    unwrapped = accelerator.unwrap_model(module)
    pipe = AnimateAnyonePipeline(**{k: components[k] for k in ("vae", "image_encoder", "feature_extractor",
                                                               "reference_unet", "unet", "pose_guider", "scheduler")})
    out = save_animate_pipeline(pipe, Path(job.output), source={
        "trained": {"run_id": job.run_id, "stage": job.stage, "step": trainer["step"],
                    "snapshot": job.snapshot.get("snapshot_id"), "pipeline": job.pipeline}})
    if hasattr(unwrapped, "install"):
        unwrapped.install()  # the pipeline took the processors over; training's bank is the model's
    return out

