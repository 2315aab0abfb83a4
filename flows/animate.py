"""The `animate` flow: the library's animate use case as two cached tasks.

`poses` checks the reference and the pose source and hands the poses on as keypoints (or the
pose video's path) in an `.npz`; `generate` draws them, loads the model and writes the video,
inside a slot of the global concurrency limit `gpu` when it runs on a GPU. Both are cached on the
content of their inputs and the model's fingerprint, so a rerun with the same inputs skips them.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.concurrency.sync import concurrency

from animate_anyone import animate as lib
from animate_anyone.config import PipelineConfig
from animate_anyone.ids import sha256_json
from animate_anyone.pipeline import model_fingerprint
from animate_anyone.tables import failures
from animate_anyone.tables.io import DataRoot, Dataset
from flows.common import GPU_LIMIT, cached_task_options, ensure_gpu_limit, resolve_config


def _key(_ctx, params) -> str:
    return sha256_json({k: v for k, v in params.items() if k != "job"})


@task(name="poses", cache_key_fn=_key, retries=0)
def poses_task(job: lib.AnimateJob, content: str) -> str:
    return str(lib.prepare_poses(job))


@task(name="generate", cache_key_fn=_key, retries=0)
def generate_task(job: lib.AnimateJob, poses: str, gpu: bool, content: str) -> dict:
    if gpu:
        with concurrency(GPU_LIMIT, occupy=1, strict=True):
            return lib.generate(job, Path(poses))
    return lib.generate(job, Path(poses))


@flow(name="animate", log_prints=False)
def animate_flow(pipeline: str | None = None, config: str | None = None, cfg: PipelineConfig | None = None,
                 data_root: str | None = None, refresh: bool = False, **request) -> dict:
    """Animate `reference` along `pose` (a pose video or a clip id) with the pipeline's `animate`
    settings; `request` takes the fields of `AnimateRequest` (None = the pipeline's value)."""
    logger = get_run_logger()
    cfg = resolve_config(cfg, pipeline, config, data_root=data_root)
    req = lib.AnimateRequest(**request)
    root = DataRoot.from_uri(cfg.data_root)
    try:
        job = lib.plan(cfg, req)
        content = job.content()
        opts = cached_task_options(root, refresh)
        poses = poses_task.with_options(**opts)(job, content)
        device = lib.resolve_device(job.device)
        gpu = cfg.animate.use_gpu_slot if cfg.animate.use_gpu_slot is not None else device.startswith("cuda")
        if gpu:
            ensure_gpu_limit(cfg.gpu_slots)
        settings = {k: v for k, v in vars(job).items() if k not in ("pose_cfg",)}
        result = generate_task.with_options(**opts)(
            job, poses, gpu, sha256_json([content, model_fingerprint(Path(job.model)), settings]))
    except lib.AnimateInputError as exc:
        reference, pose = req.reference or cfg.animate.reference, req.pose or cfg.animate.pose
        logger.error("FAILED animate %s: %s", pose, exc.message)
        item = f"{Path(str(reference)).stem}:{Path(str(pose)).stem}"
        failures.record(Dataset(root, cfg.dataset), "animate", item, f"{reference} + {pose}", exc,
                        part="animate-" + sha256_json([str(reference), str(pose)])[:16])
        return {"status": "failed", "error": exc.message, "reason": exc.reason}
    for note in result.get("notes", []):
        logger.info("%s", note)
    logger.info("animate: %s (%d frames %dx%d, generated in %.1f s)", result["out"], result["frames"],
                result["width"], result["height"], result["generate_s"])
    return {"status": "ok", **result}
