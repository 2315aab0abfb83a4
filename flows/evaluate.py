"""The `evaluate` flow: the library's evaluate use case, runnable unattended with no arguments.

With nothing given it loads the default pipeline and scores ``evaluate.what`` (``all-new``: every
checkpoint of the newest training runs and the trained model that its bench has not scored yet)
beside the baselines, so a schedule can run it every night and only new checkpoints cost anything.
The library caches per model and bench and resumes a killed evaluation clip by clip, so the task
itself keeps no Prefect cache. The leaderboard, the metric-over-steps plot and the grid videos
become artifacts; a missing split or metric weights are logged and land in `failures`.
"""
from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_image_artifact, create_markdown_artifact, create_table_artifact

from animate_anyone.config import PipelineConfig
from animate_anyone.devices import resolve_device
from flows.common import artifact_key, gpu_slot, resolve_config, use_gpu_slot
from flows.notify import on_run_failure, send


@task(name="evaluate", retries=1, retry_delay_seconds=5)
def evaluate_task(cfg: PipelineConfig, what: str | None, snapshot: str | None, split: str | None,
                  clips: int | None, baselines: list[str], gpu: bool) -> dict:
    from animate_anyone.evaluation import run as lib  # torch and diffusers: not when deploying

    logger = get_run_logger()

    def on_clip(cand, clip, rows):
        logger.info("evaluate %s: clip %s scored", cand.name, clip.clip_id)

    with gpu_slot(gpu):
        result = lib.evaluate(cfg, what, snapshot, split, clips, baselines, Path(cfg.base_dir or "."),
                              log=logger.warning, on_clip=on_clip)
    return {k: v for k, v in result.items() if k != "runs"} | {
        "runs": [{k: (str(v) if hasattr(v, "isoformat") else v) for k, v in r.items()} for r in result["runs"]]}


def _artifacts(result: dict) -> None:
    key = artifact_key(f"eval-{result['bench']}")
    create_markdown_artifact(result["markdown"] + "".join(f"\n- grid video: `{g}`" for g in result["grids"]),
                             key=key, description="leaderboard: every model of the bench beside its baselines")
    create_table_artifact([{k: v for k, v in row.items()} for row in result["table"]], key=f"{key}-table")
    if result.get("plot"):
        create_image_artifact(image_url=Path(result["plot"]).resolve().as_uri(), key=f"{key}-steps")


@flow(name="evaluate", on_failure=[on_run_failure], on_crashed=[on_run_failure])
def evaluate_flow(pipeline: str | None = None, config: str | None = None, cfg: PipelineConfig | None = None,
                  data_root: str | None = None, model: str | None = None, snapshot: str | None = None,
                  split: str | None = None, clips: int | None = None, baselines: list[str] | None = None) -> dict:
    """Score ``model`` (default ``evaluate.what``) on the held-out clips beside the baselines."""
    logger = get_run_logger()
    cfg = resolve_config(cfg, pipeline, config, data_root=data_root)
    e = cfg.evaluate
    gpu = use_gpu_slot(cfg, e.use_gpu_slot, resolve_device(e.device).startswith("cuda"))
    result = evaluate_task(cfg, model, snapshot, split, clips, list(baselines or []), gpu)
    for r in result["runs"]:
        logger.info("%s %s: %s (%d/%d clips)%s", r["kind"], r["model_name"], r["status"], r["clips_done"],
                    r["num_clips"], " cached" if r.get("cached") else "")
    _artifacts(result)
    left_out = [{"stage": "evaluate", "item": r["model_name"], "error": f"{r['status']}: {r['clips_done']}/{r['num_clips']} clips scored"}
                for r in result["runs"] if r["status"] != "finished"]
    if left_out:
        send(cfg, "evaluate", cfg.name, left_out)
    return result
