"""The `animate` flow: the library's animate use case as two cached tasks.

`poses` checks the reference and the pose source and hands the poses on as keypoints (or the
pose video's path) in an `.npz`; `generate` draws them, loads the model and writes the video,
inside a slot of the global concurrency limit `gpu` when it runs on a GPU. Both are cached on the
content of their inputs and the model's fingerprint, so a rerun with the same inputs skips them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from prefect import flow, get_run_logger, task
from prefect.concurrency.sync import concurrency
from prefect.states import Failed
from pydantic import Field

from animate_anyone import animate as lib
from animate_anyone.config import PipelineConfig
from animate_anyone.devices import resolve_device
from animate_anyone.ids import sha256_json
from animate_anyone.tables.io import DataRoot
from flows.common import GPU_LIMIT, cached_task_options, ensure_gpu_limit, resolve_config
from flows.notify import on_run_failure


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


Size = Annotated[int, Field(ge=8, le=4096)]


@flow(name="animate", log_prints=False, on_failure=[on_run_failure], on_crashed=[on_run_failure])
def animate_flow(pipeline: str | None = None, config: str | None = None, cfg: PipelineConfig | None = None,
                 data_root: str | None = None, refresh: bool = False, reference: str | None = None,
                 pose: str | None = None, model: str | None = None, out: str | None = None,
                 retarget: bool | None = None, frames: Annotated[int, Field(ge=1)] | None = None,
                 height: Size | None = None, width: Size | None = None,
                 steps: Annotated[int, Field(ge=1, le=1000)] | None = None,
                 guidance: Annotated[float, Field(ge=0.0)] | None = None,
                 window: Annotated[int, Field(ge=1)] | None = None, overlap: Annotated[int, Field(ge=0)] | None = None,
                 seed: int | None = None,
                 device: Annotated[str, Field(pattern=r"^(auto|cpu|cuda(:\d+)?)$")] | None = None,
                 fit: Literal["pad", "crop", "stretch"] | None = None, background: str | None = None,
                 fps: Annotated[float, Field(gt=0.0)] | None = None, audio_from: str | None = None,
                 base_dir: str | None = None) -> dict:
    """Animate `reference` (an image, or clip:ID) along `pose` (a pose video or a clip id) with the
    pipeline's `animate` settings; every other parameter left None takes the pipeline's value.
    The parameters are typed and bounded, so a deployment refuses a bad value before a run starts."""
    from animate_anyone.pipeline import model_fingerprint  # torch and diffusers: not when deploying

    logger = get_run_logger()
    cfg = resolve_config(cfg, pipeline, config, data_root=data_root)
    req = lib.AnimateRequest(reference=reference, pose=pose, model=model, out=out, retarget=retarget, frames=frames,
                             height=height, width=width, steps=steps, guidance=guidance, window=window,
                             overlap=overlap, seed=seed, device=device,
                             fit=fit, background=background, fps=fps, audio_from=audio_from, base_dir=base_dir)
    root = DataRoot.from_uri(cfg.data_root)
    try:
        job = lib.plan(cfg, req)
        content = job.content()
        opts = cached_task_options(root, refresh)
        poses = poses_task.with_options(**opts)(job, content)
        device = resolve_device(job.device)
        gpu = cfg.animate.use_gpu_slot if cfg.animate.use_gpu_slot is not None else device.startswith("cuda")
        if gpu:
            ensure_gpu_limit(cfg.gpu_slots)
        settings = {k: v for k, v in vars(job).items() if k not in ("pose_cfg",)}
        result = generate_task.with_options(**opts)(
            job, poses, gpu, sha256_json([content, model_fingerprint(Path(job.model)), settings]))
    except lib.AnimateInputError as exc:
        reference, pose = req.reference or cfg.animate.reference, req.pose or cfg.animate.pose
        logger.error("FAILED animate %s: %s", pose, exc.message)
        lib.record_failure(cfg, req, exc)
        # the run ends Failed (a watching `prefect deployment run` exits non-zero; the on_failure
        # hook sends the notice) and still carries the failure as its result, for the pipeline
        # flow that goes on after it
        return Failed(message=f"animate `{reference} + {pose}`: {exc.message}",
                      data={"status": "failed", "error": exc.message, "reason": exc.reason})
    for note in result.get("notes", []):
        logger.info("%s", note)
    logger.info("animate: %s (%d frames %dx%d, generated in %.1f s)", result["out"], result["frames"],
                result["width"], result["height"], result["generate_s"])
    return {"status": "ok", **result}
