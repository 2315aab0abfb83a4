"""The ``extract_poses`` flow: a task per shard of clips, then the catalog; and the selection task.

A shard's cache key covers its clips' ids and bytes, the backend, its model files' hashes and
settings, and the pose version, so a rerun skips finished shards across flow runs, and a new
model or clip reruns only what it changes. GPU backends take a slot of the strict global
concurrency limit ``gpu``, which the flow creates (or resizes) before submitting anything.
"""
from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.client.orchestration import get_client
from prefect.concurrency.sync import concurrency
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner

from animate_anyone import progress
from animate_anyone.ids import sha256_json
from animate_anyone.config import Pose, load_pipeline
from animate_anyone.config import config_path as resolve_config
from animate_anyone.pose import stages
from animate_anyone.pose.backends import backend_uses_gpu, load_backend
from animate_anyone.tables.catalog import refresh_catalog
from animate_anyone.tables.io import DataRoot
from animate_anyone.tables.selection import select_clips
from flows.common import cached_task_options

GPU_LIMIT = "gpu"


def ensure_gpu_limit(slots: int) -> None:
    """Create (or resize) the global concurrency limit ``gpu``; strict slots need it to exist."""
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(GPU_LIMIT, slots)


def _shard_key(ctx, p) -> str:
    root = DataRoot.from_uri(p["root"])
    # clips still failing change the key on every attempt, so a rerun retries them (and only their shards)
    where = sha256_json([str(root.path), p["dataset"], stages.failing_clips(root, p["dataset"], p["shard"])])[:12]
    return f"pose-{stages.shard_key(p['shard'], p['fingerprint'])[:40]}-{where}"


@task(name="extract-poses", cache_key_fn=_shard_key)
def extract_task(shard: stages.Shard, root: str, dataset: str, cfg: Pose, backend: str, base_dir: str,
                 fingerprint: dict, gpu_slot: bool) -> dict:
    model = load_backend(cfg, backend, base_dir)
    try:
        if gpu_slot:
            with concurrency(GPU_LIMIT, occupy=1, strict=True):
                return stages.extract_shard(model, DataRoot.from_uri(root), dataset, shard)
        return stages.extract_shard(model, DataRoot.from_uri(root), dataset, shard)
    finally:
        model.close()


@task(name="select-clips", cache_policy=None, persist_result=False)
def select_task(root: str, dataset: str, where: str, splits: list[str], pipeline: str) -> dict:
    snap = select_clips(DataRoot.from_uri(root), dataset, where, splits, pipeline)
    get_run_logger().info("selected %d clips into snapshot %s (%s)", snap["num_clips"], snap["snapshot_id"], snap["path"])
    return {k: v for k, v in snap.items() if k != "clip_ids"}


@flow(name="extract_poses", task_runner=ThreadPoolTaskRunner(max_workers=8))
def extract_poses(pipeline: str | None = None, data_root: str | None = None, dataset: str | None = None,
                  backend: str | None = None, config_path: str | None = None, refresh_cache: bool = False) -> dict:
    """Whole-body poses for every clip of the dataset, into ``pose_frames`` and ``clip_pose_summary``."""
    log = get_run_logger()
    pipe = load_pipeline(pipeline, config_path, data_root=data_root, dataset=dataset)
    root, cfg = DataRoot.from_uri(pipe.data_root), pipe.pose
    base_dir = str(resolve_config(config_path).parent)
    name = backend or cfg.backend
    # 1. load the backend once here: a missing or wrong model stops the run before any task
    probe = load_backend(cfg, name, base_dir)
    fingerprint, on_gpu, model = probe.fingerprint(), backend_uses_gpu(probe), probe.model_name
    probe.close()
    gpu_slot = cfg.use_gpu_slot if cfg.use_gpu_slot is not None else on_gpu
    if gpu_slot:
        ensure_gpu_limit(cfg.gpu_slots)
    log.info("pose backend %s (%s)%s", name, model, f", {cfg.gpu_slots} '{GPU_LIMIT}' slot(s)" if gpu_slot else "")
    # 2. shards of clips; parts of shards that no longer exist go
    shards = stages.plan_shards(root, pipe.dataset, cfg.shard_clips)
    stages.drop_parts(root, pipe.dataset, stages.stale_parts(root, pipe.dataset, shards))
    total = len(shards)
    bar = create_progress_artifact(progress=0.0, key="pose-progress", description=f"{total} shards")
    progress.report("shards", 0, total)
    run = extract_task.with_options(**cached_task_options(root, refresh_cache))
    args = (str(root.path), pipe.dataset, cfg, name, base_dir, fingerprint, gpu_slot)
    # 3. at most cfg.workers shards in flight
    results, pending, queue = [], [], list(shards)
    while queue or pending:
        while queue and len(pending) < cfg.workers:
            shard = queue.pop(0)
            pending.append((shard, run.submit(shard, *args)))
        first = next(as_completed([f for _, f in pending]))
        shard, fut = next((s, f) for s, f in pending if f is first)
        pending.remove((shard, fut))
        results.append(_finish(shard, fut, root, pipe.dataset, cfg, name, base_dir, model, log))
        update_progress_artifact(bar, progress=100.0 * len(results) / max(total, 1))
        progress.report("shards", len(results), total)
    refresh_catalog(root)
    summary = {"pipeline": pipe.name, "dataset": pipe.dataset, "backend": name, "model": model, "shards": total,
               "clips": sum(r["clips"] for r in results), "ok": sum(r["ok"] for r in results),
               "failed": sum(len(r["failed"]) for r in results), "rows": sum(r["rows"] for r in results)}
    create_table_artifact(table=[{k: r[k] for k in ("shard_id", "clips", "ok", "rows")} | {"failed": len(r["failed"])}
                                 for r in results] or [{}], key="pose-summary", description=f"poses: {summary}")
    log.info("pose extraction finished: %s", summary)
    return {**summary, "shard_results": results}


def _finish(shard, fut, root, dataset, cfg, name, base_dir, model, log) -> dict:
    value = fut.result(raise_on_failure=False)
    if isinstance(value, BaseException):  # a whole shard failed: not one clip's fault, so say so loudly
        log.error("FAILED shard %s at pose: %s: %s", shard.shard_id, type(value).__name__, value)
        return {"shard_id": shard.shard_id, "clips": len(shard.clips), "ok": 0, "rows": 0,
                "failed": [{"clip_id": c["clip_id"], "reason": "shard_failed", "message": str(value)} for c in shard.clips],
                "warnings": []}
    if not stages.shard_written(root, dataset, shard, model) and value["ok"]:
        backend = load_backend(cfg, name, base_dir)  # cached, but the parts are gone or another model's
        try:
            value = stages.extract_shard(backend, root, dataset, shard)
        finally:
            backend.close()
    for f in value["failed"]:
        log.error("FAILED clip %s at pose: %s", f["clip_id"], f["message"])
    for w in value["warnings"]:
        log.warning("%s", w)
    return value
