"""The `animate` flow: a reference image and a pose source → a video, its grid and its manifest.

Two tasks. `poses` draws a clip's stored keypoints (retargeted onto the reference when asked)
into a pose video, or passes a pose video through. `generate` loads the model, generates and
encodes, inside a slot of the global concurrency limit `gpu` when it runs on a GPU. Both are
cached by the content of their inputs and the model's files, so a rerun with the same inputs
skips them.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.concurrency.sync import concurrency

from animate_anyone import animate as lib
from animate_anyone.config import load_pipeline
from animate_anyone.ids import sha256_file, sha256_json
from animate_anyone.models import ensure_model, model_fingerprint
from animate_anyone.tables import failures
from animate_anyone.tables.io import DataRoot
from flows.common import cached_task_options
from flows.pose import GPU_LIMIT, ensure_gpu_limit


def _key(_ctx, params) -> str:
    return sha256_json(params)


@task(name="poses", cache_key_fn=_key, retries=0)
def poses_task(root: str, reference: str, pose: str, retarget: bool, frames: int | None, pose_cfg: dict,
               content: str) -> str:
    """A pose video path (content: hashes of the inputs, for the cache key)."""
    from animate_anyone.config import Pose

    data = DataRoot.from_uri(root)
    _, seq = lib.prepare_inputs(Path(reference), pose, root=data, pose_cfg=Pose(**pose_cfg), retarget=retarget,
                                frames=frames)
    if lib.is_pose_video(pose):
        return pose
    out = data.path / "outputs" / "animate" / "poses" / f"{pose}.{content[:12]}.mp4"
    lib.write_video(out, seq.frames, seq.fps)
    return str(out)


@task(name="generate", cache_key_fn=_key, retries=0)
def generate_task(model: str, reference: str, pose_video: str, out: str, options: dict, gpu: bool,
                  content: str) -> dict:
    if gpu:
        with concurrency(GPU_LIMIT, occupy=1, strict=True):
            return lib.animate(Path(model), Path(reference), pose_video, Path(out), **options)
    return lib.animate(Path(model), Path(reference), pose_video, Path(out), **options)


@flow(name="animate", log_prints=False)
def animate_flow(pipeline: str | None = None, data_root: str | None = None, reference: str | None = None,
                 pose: str | None = None, out: str | None = None, config: str | None = None,
                 refresh: bool = False, **overrides) -> dict:
    """Animate `reference` along `pose` (a pose video or a clip id) with the pipeline's `animate` settings."""
    logger = get_run_logger()
    cfg = load_pipeline(pipeline, config)
    a = cfg.animate.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    root = DataRoot.from_uri(data_root or cfg.data_root)
    try:
        reference, pose = lib.resolve_sources(root, cfg.dataset, reference or a.reference, pose or a.pose)
        if not reference or not pose:
            raise lib.AnimateInputError("animate needs a reference image and a pose source (animate.reference, "
                                        "animate.pose, or --reference/--pose)", "missing_input")
        # the configured retarget applies to clips; asking for it explicitly with a pose video is an error
        retarget = a.retarget if ("retarget" in overrides or not lib.is_pose_video(pose)) else False
        model = ensure_model(a.model, root.path, a.seed)
        ref_hash = sha256_file(Path(reference)) if Path(reference).is_file() else reference
        pose_hash = sha256_file(Path(pose)) if Path(pose).is_file() else lib.clip_content(root, pose)
        content = sha256_json([ref_hash, pose_hash, retarget, a.frames, cfg.pose.model_dump()])
        opts = cached_task_options(root, refresh)
        pose_video = poses_task.with_options(**opts)(str(root.path), reference, pose, retarget, a.frames,
                                                     cfg.pose.model_dump(), content)
        device = lib.resolve_device(a.device)
        gpu = a.use_gpu_slot if a.use_gpu_slot is not None else device.startswith("cuda")
        if gpu:
            ensure_gpu_limit(cfg.pose.gpu_slots)
        name = f"{Path(reference).stem}.{Path(pose).stem}.{content[:8]}.mp4"
        dest = out or str(root.path / "outputs" / "animate" / name)
        options = dict(frames=a.frames, height=a.height, width=a.width, steps=a.steps, guidance=a.guidance, window=a.window,
                       overlap=a.overlap, seed=a.seed, device=device, dtype=a.dtype)
        gen_content = sha256_json([content, model_fingerprint(model), options, dest])
        result = generate_task.with_options(**opts)(str(model), reference, pose_video, dest, options, gpu, gen_content)
    except lib.AnimateInputError as exc:
        logger.error("FAILED animate %s: %s", pose, exc.message)
        item = f"{Path(str(reference)).stem}:{Path(str(pose)).stem}"
        failures.record(root, cfg.dataset, "animate", item, f"{reference} + {pose}", exc,
                        part="animate-" + sha256_json([str(reference), str(pose)])[:16])
        return {"status": "failed", "error": exc.message, "reason": exc.reason}
    logger.info("animate: %s (%d frames %dx%d, generated in %.1f s)", result["out"], result["frames"],
                result["width"], result["height"], result["generate_s"])
    return {"status": "ok", **result}
