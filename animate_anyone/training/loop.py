"""One training stage, start to finish, in every process of a run (accelerate).

The loop (nanoGPT's shape): build the model and data, resume from the newest checkpoint if there
is one, then for each step: micro-batches (gradient accumulation, gradients synchronised on the
last), a non-finite loss skips the step, clip, step, log; every `checkpoint_every` steps an atomic
checkpoint, every `validate_every` steps a validation pass. At the end, a model folder that
`animate --model` loads.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import resource
import time
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable

import diffusers
import torch
import transformers
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, ProjectConfiguration
from diffusers.optimization import get_scheduler

from animate_anyone import progress
from animate_anyone.clipstore import ClipStore, TrainClip
from animate_anyone.config import Train, TrainStage
from animate_anyone.devices import resolve_device
from animate_anyone.errors import PermanentError
from animate_anyone.models import store
from animate_anyone.models.denoiser import AnimateModel
from animate_anyone.tables.io import Dataset
from animate_anyone.training import checkpoints, data, model, objective, report, validate
from animate_anyone.training import unianimate as ua


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
    start: str | None  # the previous stage's model folder
    output: str  # where this stage's model folder goes
    max_steps: int | None = None  # stop early (the schedule stays the configured one)
    resume: bool = True

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "StageJob":
        return cls(**json.loads(text))

    @cached_property
    def settings(self) -> TrainStage:
        """The stage's settings, validated once."""
        return TrainStage.model_validate(self.stage_cfg)

    @cached_property
    def train(self) -> Train:
        return Train.model_validate(self.train_cfg)

    @property
    def end(self) -> int:
        """The step this job stops at."""
        steps = self.settings.steps
        return steps if self.max_steps is None else min(steps, self.max_steps)


@dataclass
class TrainState:
    """What a checkpoint keeps besides accelerate's state (``trainer.json``)."""

    step: int = 0
    bad_streak: int = 0  # non-finite losses in a row
    bad_total: int = 0
    metrics: list[dict] = field(default_factory=list)


@dataclass
class StageParts:
    """What ``build`` makes of a job: the model, what trains, the data and the loss."""

    components: dict
    module: torch.nn.Module
    loss_fn: Callable
    samples: data.TrainSamples
    clips: ClipStore
    val_clips: list[TrainClip]


def make_accelerator(job: StageJob) -> Accelerator:
    cpu = resolve_device(job.train.device) == "cpu"
    trackers = ["tensorboard"] if importlib.util.find_spec("tensorboard") is not None else None
    # UniAnimate's first-frame encoder gets a gradient only from continuation samples: DDP must
    # expect parameters that a step did not use
    ddp = [DistributedDataParallelKwargs(find_unused_parameters=True)] if job.train.family == ua.FAMILY else []
    return Accelerator(cpu=cpu, mixed_precision="no" if cpu else job.settings.mixed_precision, log_with=trackers,
                       kwargs_handlers=ddp,
                       project_config=ProjectConfiguration(project_dir=job.run_dir,
                                                           logging_dir=str(Path(job.run_dir) / "logs")))


def _optimizer(params, stage: TrainStage, on_gpu: bool):
    if stage.use_8bit_adam and on_gpu:
        try:
            import bitsandbytes as bnb
        except ImportError as exc:
            raise PermanentError("train.*.use_8bit_adam needs bitsandbytes (pip install bitsandbytes)",
                                 "missing_package") from exc
        return bnb.optim.AdamW8bit(params, lr=stage.lr, weight_decay=stage.weight_decay)
    return torch.optim.AdamW(params, lr=stage.lr, weight_decay=stage.weight_decay)


def _start_components(job: StageJob) -> dict:
    """The stage's starting model, checked against its settings, with what it trains unfrozen."""
    train, stage = job.train, job.settings
    base = Path(job.base_dir) if job.base_dir else None
    components = model.initial_components(train, base, Path(job.start) if job.start else None)
    if job.stage == 2 and train.init.motion:  # stage 1 never trains them: AnimateDiff's start stage 2
        model.load_motion(components, train.init.motion, base)
    where = f"train.stage{job.stage}"
    model.check_size(components, stage.width, stage.height, where)
    limit = components["unet"].config.get("motion_max_seq_length")  # UniAnimate: no position table
    if limit is not None and stage.frames > limit:
        raise model.TrainModelError(f"{where}.frames = {stage.frames}: the motion modules take at most "
                                    f"{components['unet'].config.motion_max_seq_length}", "bad_frames")
    model.set_trainable(job.stage, components)
    if stage.gradient_checkpointing:
        for name in ("unet", "reference_unet"):
            if name in components:
                components[name].enable_gradient_checkpointing()
    return components


def build(job: StageJob, accelerator: Accelerator) -> StageParts:
    """Components, the trained module, data and the objective of ``job``'s stage."""
    train, stage = job.train, job.settings
    components = _start_components(job)
    ds = Dataset(job.data_root, job.dataset)
    clips = data.snapshot_clips(ds, job.snapshot)
    frames = ClipStore(ds, stage.width, stage.height, stage.cache_clips, mirror=stage.augment.flip > 0)
    train_clips = [c for c in clips if c.split == "train"] or clips
    samples = data.TrainSamples(train_clips, frames, train.seed, frames=stage.frames, stride=stage.stride,
                                augment=stage.augment)
    val_clips = ([c for c in clips if c.split == "val"] or train_clips)[: stage.val_clips]
    if job.stage == 0:
        module, loss_fn = objective.VaeAutoencoder(components["vae"]), objective.vae_loss
    elif train.family == ua.FAMILY:
        module, loss_fn = ua.UniAnimateModel(components["unet"], components["conditioner"]), ua.diffusion_loss
    else:
        # stage 1: the image model alone (motion modules skipped); stage 2 adds them
        module = AnimateModel(components["reference_unet"], components["unet"], components["pose_guider"],
                              motion=job.stage != 1)
        loss_fn = objective.diffusion_loss
    for name in ("vae", "image_encoder"):
        components[name].to(accelerator.device)
    return StageParts(components, module, loss_fn, samples, frames, val_clips)


class StageRun:
    """One stage in this process: the prepared model, optimizer and schedule, and its state."""

    def __init__(self, job: StageJob, accelerator: Accelerator, parts: StageParts):
        self.job, self.acc, self.parts, self.stage = job, accelerator, parts, job.settings
        self.run_dir = Path(job.run_dir)
        self.params = [p for p in parts.module.parameters() if p.requires_grad]
        optimizer = _optimizer(self.params, self.stage, accelerator.device.type == "cuda")
        schedule = get_scheduler("constant_with_warmup", optimizer, num_warmup_steps=self.stage.warmup_steps)
        self.module, self.optimizer, self.schedule = accelerator.prepare(parts.module, optimizer, schedule)
        self.state = TrainState()

    def resume(self) -> None:
        """From the newest complete checkpoint (the data position is its step); with
        ``resume=False`` the run's checkpoints are removed and it starts over."""
        if self.acc.is_main_process:
            checkpoints.remove_temporary(self.run_dir)
        newest = checkpoints.latest(self.run_dir) if self.job.resume else None
        if newest is not None:
            self.state = TrainState(**checkpoints.load(self.acc, newest))
        elif not self.job.resume and self.acc.is_main_process:
            checkpoints.remove_all(self.run_dir)

    def loader(self, start: int, end: int):
        sampler = data.StepBatches(start, end, self.stage.batch, self.stage.grad_accum, self.acc.process_index)
        return iter(torch.utils.data.DataLoader(self.parts.samples, batch_sampler=sampler,
                                                num_workers=self.stage.workers, persistent_workers=False))

    def forward_backward(self, batches) -> float | None:
        """One step's micro-batches; the mean loss, or None when a loss was not finite (every
        process skips together)."""
        total, accum = 0.0, self.stage.grad_accum
        for micro in range(accum):
            batch = next(batches)
            ctx = contextlib.nullcontext() if micro == accum - 1 else self.acc.no_sync(self.module)
            with ctx, self.acc.autocast():
                loss, _ = self.parts.loss_fn(self.module, self.parts.components, batch, self.stage, self.acc.device)
            if not bool(self.acc.gather(torch.isfinite(loss.detach()).float()[None]).min() > 0):
                return None
            self.acc.backward(loss / accum)
            total += float(self.acc.reduce(loss.detach(), "mean")) / accum
        return total

    def skip(self, step: int) -> None:
        """A non-finite step: no update; the data position moves on, so a resume does not retry it."""
        s = self.state
        self.optimizer.zero_grad(set_to_none=True)
        s.step, s.bad_streak, s.bad_total = step + 1, s.bad_streak + 1, s.bad_total + 1
        self.acc.print(f"stage {self.job.stage} step {step + 1}: non-finite loss, step skipped "
                       f"({s.bad_streak} in a row, {s.bad_total} in all)")
        if s.bad_streak >= self.stage.max_bad_steps:
            kept = checkpoints.latest(self.run_dir)
            where = (f"the last good checkpoint ({kept.name}) is kept in {self.run_dir}" if kept else
                     "no checkpoint was written yet (the run starts over when run again)")
            raise TrainingStopped(
                f"stage {self.job.stage} stopped at step {step + 1}: {s.bad_streak} non-finite losses in a "
                f"row (train.stage{self.job.stage}.max_bad_steps); {where}; lower train.stage{self.job.stage}.lr or "
                "check the data", "non_finite_loss")

    def update(self, step: int, loss: float, seconds: float) -> dict:
        """Clip, step the optimizer and schedule; the step's metrics row."""
        grad_norm = float(self.acc.clip_grad_norm_(self.params, self.stage.max_grad_norm))
        self.optimizer.step()
        self.schedule.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.state.step, self.state.bad_streak = step + 1, 0
        return {"step": step + 1, "loss": loss, "lr": self.schedule.get_last_lr()[0], "grad_norm": grad_norm,
                "samples_per_s": self.stage.batch * self.stage.grad_accum * self.acc.num_processes / seconds,
                "memory_mb": _memory_mb(self.acc.device)}

    def validate(self, step: int) -> dict:
        result = {}
        if self.acc.is_main_process and self.parts.val_clips:
            with torch.no_grad():
                result = validate.validate(self.job, self.acc.unwrap_model(self.module), self.parts.components,
                                           self.parts.clips, self.parts.val_clips, self.stage, step)
        self.acc.wait_for_everyone()
        return result

    def checkpoint(self) -> None:
        checkpoints.save(self.acc, self.run_dir, self.state.step, asdict(self.state), self.stage.keep_checkpoints)

    def after_step(self, row: dict, start: int, end: int) -> None:
        """Validation, logging, progress and the checkpoint a finished step may call for."""
        step, stage = row["step"], self.stage
        if stage.validate_every and step % stage.validate_every == 0 and step < end:
            row.update(self.validate(step))
        self.state.metrics.append(row)
        if self.acc.trackers:
            self.acc.log({k: v for k, v in row.items() if k != "step" and v is not None}, step=step)
        if self.acc.is_main_process:
            progress.report(f"stage {self.job.stage}", step, end, stage=self.job.stage, first=start, loss=row["loss"],
                            samples_per_s=row["samples_per_s"])
        if step % stage.checkpoint_every == 0 and step < end:
            self.checkpoint()
            if self.acc.is_main_process:
                report.write_metrics(self.job, self.state.metrics)

    def save_model(self) -> Path:
        """The stage's model folder, through the store."""
        s = self.state
        out = store.save_components(self.parts.components, Path(self.job.output), source={
            "trained": {"run_id": self.job.run_id, "stage": self.job.stage, "step": s.step,
                        "snapshot": self.job.snapshot.get("snapshot_id"), "pipeline": self.job.pipeline}})
        unwrapped = self.acc.unwrap_model(self.module)
        if hasattr(unwrapped, "install"):
            unwrapped.install()  # the pipeline took the processors over; training's bank is the model's
        return out

    def finish(self, start: int) -> tuple[dict, Path | None]:
        """A last checkpoint and validation, the VAE's latent scale (stage 0), the model folder and
        the tables; the final validation's values and the folder (main process)."""
        s, final, out = self.state, {}, None
        if s.step > start or checkpoints.latest(self.run_dir) is None:
            self.checkpoint()
        if s.metrics and "val_psnr" not in s.metrics[-1]:
            final = self.validate(s.step)
            s.metrics[-1].update(final)
        if self.job.stage == 0:  # latents of unit variance, as SD's 0.18215 was chosen
            model.set_latent_scale(self.parts.components["vae"],
                                   [self.parts.clips.get(c)[0] for c in self.parts.samples.clips[:8]])
        if self.acc.is_main_process:
            out = self.save_model()
            report.write_metrics(self.job, s.metrics)
            report.run_finished(self.job, s.step, "finished", None, out)
        self.acc.wait_for_everyone()
        self.acc.end_training()
        return final, out


def _train(job: StageJob, accelerator: Accelerator) -> dict:
    run = StageRun(job, accelerator, build(job, accelerator))
    run.resume()
    start, end = run.state.step, job.end
    if accelerator.is_main_process:
        report.run_started(job, start)
    if accelerator.log_with:  # TensorBoard under RUN/logs/ (the trackers exist after this)
        accelerator.init_trackers(f"stage{job.stage}")
    batches = run.loader(start, end)
    for step in range(start, end):
        t0 = time.perf_counter()
        loss = run.forward_backward(batches)
        if loss is None:
            run.skip(step)
            continue
        run.after_step(run.update(step, loss, time.perf_counter() - t0), start, end)
    final, out = run.finish(start)
    s = run.state
    return {"stage": job.stage, "run_id": job.run_id, "step": s.step, "steps": end,
            "loss": s.metrics[-1]["loss"] if s.metrics else None, "output": str(out or job.output),
            "skipped_steps": s.bad_total, **final}


def run_stage(job: StageJob) -> dict:
    """Train ``job``'s stage in this process (one of the run's); returns the stage's summary. The
    main process reports every step (``progress``: "stage K", with its loss and speed)."""
    diffusers.utils.logging.disable_progress_bar()  # "Writing model shards" at every save
    transformers.utils.logging.disable_progress_bar()
    Path(job.run_dir).mkdir(parents=True, exist_ok=True)
    accelerator = None
    try:
        accelerator = make_accelerator(job)
        return _train(job, accelerator)
    except BaseException as exc:
        if accelerator is None or accelerator.is_main_process:
            report.run_failed(job, exc)
        raise


def _memory_mb(device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
