"""The ``extract_poses`` flow: a task per shard of clips, then the catalog; and the selection task.

The disk decides what is done: a shard task extracts only the clips whose poses are not in the
tables yet (a clip that failed is retried alone, the others' rows are kept), and opens the pose
backend only when there is such a clip. Shards run in a thread pool of ``pose.workers``. GPU
backends take a slot of the strict global concurrency limit ``gpu`` (size ``gpu_slots``).
"""
from __future__ import annotations

from functools import partial

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed

from animate_anyone import progress
from animate_anyone.config import PipelineConfig, Pose
from animate_anyone.pose import stages
from animate_anyone.pose.backends import backend_uses_gpu, load_backend
from animate_anyone.tables.catalog import refresh_catalog
from animate_anyone.tables.io import DataRoot, Dataset
from animate_anyone.tables.selection import select_clips
from flows.common import GPU_LIMIT, gpu_slot, resolve_config, task_runner, use_gpu_slot


@task(name="extract-poses", cache_policy=NO_CACHE)
def extract_task(shard: stages.Shard, root: str, dataset: str, cfg: Pose, backend: str, base_dir: str,
                 model: str, held: bool) -> dict:
    open_backend = partial(load_backend, cfg, backend, base_dir)
    with gpu_slot(held):
        return stages.extract_shard(open_backend, Dataset(root, dataset), shard, model=model)


@task(name="select-clips", cache_policy=NO_CACHE, persist_result=False)
def select_task(root: str, dataset: str, where: str, splits: list[str], pipeline: str) -> dict:
    snap = select_clips(Dataset(root, dataset), where, splits, pipeline)
    get_run_logger().info("selected %d clips into snapshot %s (%s)", snap["num_clips"], snap["snapshot_id"], snap["path"])
    return {k: v for k, v in snap.items() if k != "clip_ids"}


def run_extract_poses(cfg: PipelineConfig, backend: str | None = None, **kwargs):
    """The pose flow with the task runner the pipeline asks for (``pose.workers`` threads)."""
    return extract_poses.with_options(task_runner=task_runner(cfg, cfg.pose.workers))(cfg=cfg, backend=backend, **kwargs)


@flow(name="extract_poses")
def extract_poses(pipeline: str | None = None, config: str | None = None, cfg: PipelineConfig | None = None,
                  data_root: str | None = None, dataset: str | None = None, backend: str | None = None) -> dict:
    """Whole-body poses for every clip of the dataset not done yet, into ``pose_frames`` and
    ``clip_pose_summary`` (what is done is read from the tables)."""
    cfg = resolve_config(cfg, pipeline, config, data_root=data_root, dataset=dataset)
    log = get_run_logger()
    root, pose = DataRoot.from_uri(cfg.data_root), cfg.pose
    name = backend or pose.backend
    # 1. load the backend once here: a missing or wrong model stops the run before any task
    probe = load_backend(pose, name, cfg.base_dir)
    on_gpu, model = backend_uses_gpu(probe), probe.model_name
    probe.close()
    held = use_gpu_slot(cfg, pose.use_gpu_slot, on_gpu)
    log.info("pose backend %s (%s)%s", name, model, f", {cfg.gpu_slots} '{GPU_LIMIT}' slot(s)" if held else "")
    # 2. shards of clips; parts of shards that no longer exist go
    ds = Dataset(root, cfg.dataset)
    shards = stages.plan_shards(ds, pose.shard_clips)
    stages.drop_parts(ds, stages.stale_parts(ds, shards))
    total = len(shards)
    bar = create_progress_artifact(progress=0.0, key="pose-progress", description=f"{total} shards")
    progress.report("shards", 0, total)
    args = (root.uri, cfg.dataset, pose, name, cfg.base_dir, model, held)
    futures = {extract_task.submit(shard, *args): shard for shard in shards}
    results = []
    for fut in as_completed(list(futures)):
        results.append(_finish(futures[fut], fut, log))
        update_progress_artifact(bar, progress=100.0 * len(results) / max(total, 1))
        progress.report("shards", len(results), total)
    results.sort(key=lambda r: r["shard_id"])
    refresh_catalog(root)
    summary = {"pipeline": cfg.name, "dataset": cfg.dataset, "backend": name, "model": model, "shards": total,
               "clips": sum(r["clips"] for r in results), "ok": sum(r["ok"] for r in results),
               "failed": sum(len(r["failed"]) for r in results), "rows": sum(r["rows"] for r in results),
               "extracted": sum(r.get("extracted", 0) for r in results),
               "skipped": sum(r.get("skipped", 0) for r in results)}
    create_table_artifact(table=[{k: r[k] for k in ("shard_id", "clips", "ok", "rows")} | {"failed": len(r["failed"])}
                                 for r in results] or [{}], key="pose-summary", description=f"poses: {summary}")
    log.info("pose extraction finished: %s", summary)
    return {**summary, "shard_results": results}


def _finish(shard, fut, log) -> dict:
    value = fut.result(raise_on_failure=False)
    if isinstance(value, BaseException):  # a whole shard failed: not one clip's fault, so say so loudly
        log.error("FAILED shard %s at pose: %s: %s", shard.shard_id, type(value).__name__, value)
        return {"shard_id": shard.shard_id, "clips": len(shard.clips), "ok": 0, "rows": 0,
                "failed": [{"clip_id": c["clip_id"], "reason": "shard_failed", "message": str(value)} for c in shard.clips],
                "warnings": []}
    for f in value["failed"]:
        log.error("FAILED clip %s at pose: %s", f["clip_id"], f["message"])
    for w in value["warnings"]:
        log.warning("%s", w)
    return value
