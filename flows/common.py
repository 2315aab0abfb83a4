"""What every flow shares: the resolved configuration, where task results persist, retry delays
from the config, and the global concurrency limit `gpu`."""
from __future__ import annotations

from contextlib import contextmanager

from prefect.client.orchestration import get_client
from prefect.concurrency.sync import concurrency
from prefect.filesystems import LocalFileSystem, RemoteFileSystem
from prefect.task_runners import ThreadPoolTaskRunner

from animate_anyone.config import PipelineConfig, Retries, load_config
from animate_anyone.ids import sha256_json
from animate_anyone.tables.io import DataRoot

GPU_LIMIT = "gpu"


def resolve_config(cfg: PipelineConfig | None, pipeline: str | None, config: str | None, **overrides) -> PipelineConfig:
    """The run's configuration: ``cfg`` as given by the caller (loaded once per run), else loaded
    from ``config`` (the pipelines file) by name; non-None ``overrides`` (data_root, dataset) apply."""
    if cfg is None:
        return load_config(pipeline, config, **overrides)
    changes = {k: v for k, v in overrides.items() if v is not None}
    return PipelineConfig.model_validate({**cfg.model_dump(), **changes}) if changes else cfg


def task_runner(cfg: PipelineConfig, workers: int):
    """The task runner the pipeline's ``runner`` asks for: ``workers`` threads (the stage's own
    setting), or a Dask cluster: the scheduler at ``runner.address``, else a local cluster of
    ``runner.workers`` (default ``workers``) processes that lives as long as the flow run."""
    r = cfg.runner
    if r.type == "threads":
        return ThreadPoolTaskRunner(max_workers=workers)
    from prefect_dask import DaskTaskRunner

    if r.address:
        return DaskTaskRunner(address=r.address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": r.workers or workers, "threads_per_worker": r.threads_per_worker,
                                          "processes": True, "dashboard_address": None})


def cached_task_options(root: DataRoot, refresh: bool = False) -> dict:
    """Persist task results under the data root, so the cache lives and dies with the data.

    ``refresh`` recomputes every step and overwrites its cache entry (after deleting files by hand).
    On an object store the results live in the store (``.prefect/results`` under its prefix), so
    every machine's task runs share one cache.
    """
    name = "animate-anyone-results-" + sha256_json(root.uri)[:12]
    if root.store is not None:
        RemoteFileSystem(basepath=root.store.url_of(root.results_dir)).save(name, overwrite=True)
        return {"persist_result": True, "result_storage": f"remote-file-system/{name}", "refresh_cache": refresh}
    LocalFileSystem(basepath=str(root.results_dir)).save(name, overwrite=True)
    return {"persist_result": True, "result_storage": f"local-file-system/{name}", "refresh_cache": refresh}


def artifact_key(text: str) -> str:
    """A Prefect artifact key from any text: lowercase letters, digits and dashes, 100 at most."""
    return "".join(ch if ch.isalnum() else "-" for ch in text.lower())[:100]


def retry_delays(r: Retries) -> list[float]:
    """Exponential backoff: backoff_s, 2×, 4×… capped at max_backoff_s (jitter is Prefect's)."""
    return [min(r.backoff_s * 2**i, r.max_backoff_s) for i in range(max(r.attempts - 1, 0))]


def ensure_gpu_limit(slots: int) -> None:
    """Create (or resize) the global concurrency limit ``gpu``; strict slots need it to exist."""
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(GPU_LIMIT, slots)


def use_gpu_slot(cfg: PipelineConfig, setting: bool | None, on_gpu: bool) -> bool:
    """Whether a step holds a slot of ``gpu``: its ``use_gpu_slot`` setting, else whether it runs
    on a GPU. When it does, the limit is made (or resized to ``gpu_slots``) first."""
    gpu = setting if setting is not None else on_gpu
    if gpu:
        ensure_gpu_limit(cfg.gpu_slots)
    return gpu


@contextmanager
def gpu_slot(held: bool):
    """One slot of the strict global limit ``gpu`` while the block runs, when ``held``."""
    if not held:
        yield
        return
    with concurrency(GPU_LIMIT, occupy=1, strict=True):
        yield
