"""How a pipeline runs unattended: the task `runner` and the `deploy` section (work pools,
schedules, concurrency)."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from animate_anyone.config.base import _check_cron, _Strict


class Runner(_Strict):
    """Where ingest and pose extraction run their tasks: a thread pool in the flow's process
    (``ingest.workers`` / ``pose.workers`` threads), or a Dask cluster (prefect-dask): the one at
    ``address`` (tcp://HOST:8786), or a local cluster of ``workers`` processes when no address."""

    type: Literal["threads", "dask"] = "threads"
    address: str | None = Field(None, min_length=1)
    workers: int | None = Field(None, ge=1, le=1024)  # local cluster's processes (None: the stage's workers)
    threads_per_worker: int = Field(1, ge=1, le=64)


class FlowDeployment(_Strict):
    """One deployment of a flow: its work pool, its schedule, and how many of its runs at once."""

    pool: str = Field("cpu", pattern=r"^[A-Za-z0-9_.-]+$")
    cron: str | None = None  # e.g. "0 1 * * *" (at most one of cron and interval_s)
    interval_s: float | None = Field(None, ge=1.0)
    timezone: str = "UTC"
    # runs of this deployment at once; a further run waits for a slot (it is never dropped)
    concurrency: int | None = Field(1, ge=1, le=1000)
    paused: bool = False  # deploy with the schedule switched off

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        return _check_cron(value)

    @model_validator(mode="after")
    def _one_schedule(self) -> "FlowDeployment":
        if self.cron is not None and self.interval_s is not None:
            raise ValueError("give cron or interval_s, not both")
        return self


DEPLOYABLE_FLOWS = ("refresh", "train", "evaluate", "animate")  # the fields of Deploy, in deploy order


class Deploy(_Strict):
    """What ``animate-anyone deploy`` creates on the Prefect server (see docs/operations.md)."""

    # process work pools and their concurrency limits (flow runs at once in the pool; None: no limit)
    pools: dict[str, int | None] = {"cpu": None, "gpu": 1}
    refresh: FlowDeployment = FlowDeployment(pool="cpu")  # ingest + poses + selection
    train: FlowDeployment = FlowDeployment(pool="gpu")
    evaluate: FlowDeployment = FlowDeployment(pool="gpu")  # cron: evaluate.schedule unless set here
    animate: FlowDeployment = FlowDeployment(pool="gpu", concurrency=None)
    # a Prefect notification block ("BLOCK_TYPE/NAME", e.g. "slack-webhook/ops") that hears of failed
    # items and failed runs; None: the failure notice is only logged and kept as an artifact
    notify: str | None = Field(None, pattern=r"^[a-z0-9-]+/[A-Za-z0-9_-]+$")

    @model_validator(mode="after")
    def _pools_exist(self) -> "Deploy":
        for name in DEPLOYABLE_FLOWS:
            pool = getattr(self, name).pool
            if pool not in self.pools:
                raise ValueError(f"{name}.pool {pool!r} is not among the pools {sorted(self.pools)}")
        for pool, limit in self.pools.items():
            if limit is not None and limit < 1:
                raise ValueError(f"pools.{pool}: a concurrency limit is at least 1 (or null for none); got {limit}")
        return self


