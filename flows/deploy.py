"""``animate-anyone deploy``: a pipeline's flows as Prefect deployments on the server in use.

From ``pipelines.yaml`` alone (its ``deploy`` section, and ``evaluate.schedule``):

1. the work pools it names (process type), each with its concurrency limit;
2. the strict global concurrency limit ``gpu`` (``gpu_slots``) that GPU steps occupy;
3. one deployment per flow, named after the pipeline: ``refresh/NAME`` (ingest + poses +
   selection), ``train/NAME``, ``evaluate/NAME`` and ``animate/NAME``, each on its pool, with its
   schedule and its limit on runs at once (later runs wait: collision strategy ENQUEUE).

The code is pulled from this project's folder (``flow.from_source`` with a local path), so a process
worker on this machine, or on any machine with the same checkout at the same path (a shared volume,
the project's image), runs it. Deploying again updates the deployments in place.
"""
from __future__ import annotations

from pathlib import Path

from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.exceptions import ObjectNotFound
from prefect.schedules import Cron, Interval

from animate_anyone.config import DEPLOYABLE_FLOWS, FlowDeployment, PipelineConfig, config_path
from animate_anyone.tables.io import DataRoot
from flows.common import ensure_gpu_limit

PROJECT = Path(__file__).resolve().parent.parent
ENTRYPOINTS = {"refresh": "flows/refresh.py:refresh_flow", "train": "flows/train.py:train_flow",
               "evaluate": "flows/evaluate.py:evaluate_flow", "animate": "flows/animate.py:animate_flow"}
DESCRIPTIONS = {"refresh": "Dataset refresh: ingest the sources, extract new clips' poses, select training clips.",
                "train": "Train the configured stages on the newest selection snapshot (resumes from checkpoints).",
                "evaluate": "Score every new checkpoint and the trained model on held-out clips beside the baselines.",
                "animate": "Animate a reference image along a pose video or a clip's poses (on demand)."}


def ensure_pools(pools: dict[str, int | None]) -> list[dict]:
    """Create each process work pool that is missing and set every pool's concurrency limit."""
    done = []
    with get_client(sync_client=True) as client:
        for name, limit in pools.items():
            try:
                pool = client.read_work_pool(name)
                client.update_work_pool(name, WorkPoolUpdate(concurrency_limit=limit))
                state = "updated"
            except ObjectNotFound:
                pool = client.create_work_pool(WorkPoolCreate(name=name, type="process", concurrency_limit=limit))
                state = "created"
            done.append({"pool": name, "type": pool.type, "concurrency_limit": limit, "state": state})
    return done


def schedules(kind: str, d: FlowDeployment, cfg: PipelineConfig) -> list:
    """The deployment's schedule: its own cron or interval; evaluate falls back on evaluate.schedule."""
    cron, timezone = d.cron, d.timezone
    if kind == "evaluate" and not d.cron and not d.interval_s:
        cron, timezone = cfg.evaluate.schedule, cfg.evaluate.timezone
    if cron:
        return [Cron(cron, timezone=timezone)]
    if d.interval_s:
        return [Interval(d.interval_s)]
    return []


def parameters(cfg: PipelineConfig, config: Path) -> dict:
    """What every run of the pipeline's deployments gets: the pipeline, the file it lives in and the
    data root as an absolute path (a worker's working directory is the project's folder)."""
    root = cfg.data_root if "://" in cfg.data_root else str(DataRoot.from_uri(cfg.data_root).path)
    return {"pipeline": cfg.name, "config": str(config), "data_root": root}


def deploy(cfg: PipelineConfig, config: str | Path | None = None, only: list[str] | None = None,
           project: Path = PROJECT) -> dict:
    """Pools, the ``gpu`` limit and the pipeline's deployments on the server at ``PREFECT_API_URL``."""
    kinds = only or list(DEPLOYABLE_FLOWS)  # the CLI has checked the names
    pools = ensure_pools(cfg.deploy.pools)
    ensure_gpu_limit(cfg.gpu_slots)
    params = parameters(cfg, config_path(config))
    deployments = []
    for kind in kinds:
        d: FlowDeployment = getattr(cfg.deploy, kind)
        limit = (ConcurrencyLimitConfig(limit=d.concurrency, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE)
                 if d.concurrency else None)
        scheds = schedules(kind, d, cfg)
        source = flow.from_source(source=str(project), entrypoint=ENTRYPOINTS[kind])
        dep_id = source.deploy(name=cfg.name, work_pool_name=d.pool, build=False, push=False, schedules=scheds,
                               paused=d.paused, concurrency_limit=limit, parameters=params,
                               description=DESCRIPTIONS[kind], tags=["animate-anyone", cfg.name, kind],
                               print_next_steps=False, ignore_warnings=True)
        deployments.append({"deployment": f"{source.name}/{cfg.name}", "id": str(dep_id), "pool": d.pool,
                            "schedule": _describe(scheds), "concurrency": d.concurrency})
    return {"pools": pools, "gpu_slots": cfg.gpu_slots, "deployments": deployments, "parameters": params}


def _describe(scheds: list) -> str:
    if not scheds:
        return "on demand"
    s = scheds[0]
    return f"cron {s.cron} ({s.timezone})" if s.cron else f"every {s.interval.total_seconds():g} s"
