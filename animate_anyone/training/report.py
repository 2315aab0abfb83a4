"""What a training run leaves for people to watch: the `train_runs` and `train_metrics` tables, a
`failures` row when it stops, and a loss-curve picture."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from animate_anyone.files import atomic_path
from animate_anyone.provenance import code_version, now
from animate_anyone.tables import failures
from animate_anyone.tables.io import Dataset


def _ds(job) -> Dataset:
    return Dataset(job.data_root, job.dataset)


def _write_run(job, **fields) -> None:
    ds = _ds(job)
    with ds.lock():
        rows = ds.read_part("train_runs", job.run_id)
        row = rows[0] if rows else {
            "run_id": job.run_id, "pipeline": job.pipeline, "stage": job.stage,
            "snapshot_id": job.snapshot.get("snapshot_id"),
            "config": json.dumps({"stage": job.stage_cfg, "train": job.train_cfg}, sort_keys=True),
            "code_version": code_version(), "started_at": now(), "steps": job.stage_cfg.get("steps")}
        row.update(fields)
        ds.write("train_runs", job.run_id, [row])


def run_started(job, start_step: int) -> None:
    _write_run(job, start_step=start_step, status="running", ended_at=None, error=None,
               final_step=start_step, code_version=code_version())


def run_finished(job, step: int, status: str, error: str | None, output) -> None:
    _write_run(job, final_step=step, status=status, error=error, ended_at=now(),
               output=str(output) if output else None)
    failures.clear(_ds(job), f"train-{job.run_id}")


def run_failed(job, exc: BaseException) -> None:
    """The run's row says failed, and the `failures` table gets the reason (stage `train`)."""
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    try:
        _write_run(job, status="failed", error=message, ended_at=now())
        failures.record(_ds(job), "train", job.run_id, f"{job.pipeline} stage {job.stage}", exc,
                        part=f"train-{job.run_id}")
    except Exception:  # noqa: BLE001 - reporting must not hide the original error
        pass


def write_metrics(job, metrics: list[dict]) -> None:
    rows = [{"run_id": job.run_id, "stage": job.stage, **m} for m in metrics]
    _ds(job).write("train_metrics", job.run_id, rows)
    loss_curve(metrics, Path(job.run_dir) / "loss.png", f"{job.pipeline} stage {job.stage} ({job.run_id})")


def loss_curve(metrics: list[dict], out: Path, title: str) -> Path | None:
    """Loss per step (and a 50-step running mean) as a PNG, written atomically."""
    if not metrics:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.array([m["step"] for m in metrics])
    loss = np.array([m["loss"] for m in metrics], dtype=float)
    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=100)
    ax.plot(steps, loss, lw=0.6, alpha=0.4, label="loss")
    k = min(50, len(loss))
    if k > 1:
        ax.plot(steps[k - 1:], np.convolve(loss, np.ones(k) / k, mode="valid"), lw=1.5, label=f"mean of {k}")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title, fontsize=9)
    ax.legend()
    fig.tight_layout()
    with atomic_path(Path(out)) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(out)
