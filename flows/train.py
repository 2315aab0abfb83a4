"""The `train` flow: the library's train use case, one cached task per stage.

A stage task is cached on its run id (the snapshot's content, the stage's settings, the run's
settings and the starting weights' fingerprint) and the step cap; it holds a slot of the global
concurrency limit `gpu` when it trains on a GPU, and a retry resumes from the stage's newest
checkpoint. With `train.processes` > 1 it runs `accelerate launch` as a subprocess and streams its
output into the task's log. The loss curve and the validation video become artifacts.
"""
from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_image_artifact, create_markdown_artifact

from animate_anyone import progress
from animate_anyone.config import PipelineConfig
from animate_anyone.tables.io import DataRoot
from flows.common import artifact_key, cached_task_options, gpu_slot, resolve_config, use_gpu_slot
from flows.notify import on_run_failure


def _key(_ctx, params) -> str:
    from animate_anyone.training.loop import StageJob

    job = StageJob.from_json(params["job"])
    return f"train-{job.run_id}-{job.max_steps}"


def _log_progress(logger):
    """A ``progress`` listener that logs a stage's steps about every 5 %."""
    def on(what: str, done: int, total: int, details: dict) -> None:
        if "loss" not in details:
            return
        every = max(1, (total - details.get("first", 0)) // 20)
        if done % every == 0 or done == total:
            logger.info("%s step %d/%d loss %.4f (%.1f samples/s)", what, done, total, details["loss"],
                        details["samples_per_s"])
    return on


@task(name="train-stage", cache_key_fn=_key, retries=1, retry_delay_seconds=5)
def stage_task(job: str, processes: int, accelerate_config: str | None, gpu: bool) -> dict:
    from animate_anyone.training import run as lib  # torch and diffusers: not when deploying
    from animate_anyone.training.loop import StageJob

    logger = get_run_logger()
    stage_job = StageJob.from_json(job)
    with gpu_slot(gpu), progress.listen(_log_progress(logger)):
        return lib.run_stage_job(stage_job, processes, accelerate_config, logger.info)


def _artifacts(summary: dict, run_dir: Path) -> None:
    lines = [f"# stage {summary['stage']}: {summary['run_id']}", "",
             f"- steps: {summary['step']}", f"- model: `{summary['output']}`"]
    if summary.get("val_psnr") is not None:
        lines.append(f"- validation PSNR {summary['val_psnr']:.2f} dB (still reference {summary['val_psnr_still']:.2f}), "
                     f"SSIM {summary['val_ssim']:.3f} ({summary['val_ssim_still']:.3f})")
    if summary.get("val_video"):
        lines.append(f"- validation video (real | pose | generated): `{summary['val_video']}`")
    if (run_dir / "loss.png").is_file():
        lines.append(f"- loss curve: `{run_dir / 'loss.png'}`")
        create_image_artifact(image_url=(run_dir / "loss.png").resolve().as_uri(),
                              key=artifact_key(f"loss-{summary['run_id']}"))
    create_markdown_artifact("\n".join(lines), key=artifact_key(f"train-{summary['run_id']}"))


@flow(name="train", on_failure=[on_run_failure], on_crashed=[on_run_failure])
def train_flow(pipeline: str | None = None, config: str | None = None, cfg: PipelineConfig | None = None,
               data_root: str | None = None, stage: str = "all", snapshot: str | None = None, resume: bool = True,
               max_steps: int | None = None, refresh: bool = False) -> dict:
    """Train the pipeline's configured stages in order on a selection snapshot."""
    from animate_anyone.training import run as lib  # torch and diffusers: not when deploying

    logger = get_run_logger()
    cfg = resolve_config(cfg, pipeline, config, data_root=data_root)
    plan = lib.plan_training(cfg, stage, snapshot, resume, max_steps)
    snap = plan.snapshot
    gpu = use_gpu_slot(cfg, cfg.train.use_gpu_slot, lib.train_device(cfg).startswith("cuda"))
    root = DataRoot.from_uri(cfg.data_root)
    opts = cached_task_options(root, refresh)
    results = []
    for k in plan.stages:
        job = lib.stage_job(cfg, plan, k)
        logger.info("stage %d: run %s on snapshot %s (%d clips)", k, job.run_id, snap["snapshot_id"], snap["num_clips"])
        summary = stage_task.with_options(**opts)(job.to_json(), cfg.train.processes, cfg.train.accelerate_config, gpu)
        _artifacts(summary, Path(job.run_dir))
        results.append(summary)
    return lib.finish_training(cfg, plan, results)
