"""The ``refresh`` flow: a dataset refresh as one deployment runs it on a schedule.

Ingest (download, shots, clips) → pose extraction → training-clip selection, each the same flow
or task the CLI runs, so a scheduled refresh only fetches and extracts what is new: sources and
clips already on disk are skipped. Items that failed are named in a failure notice (log, artifact
and the pipeline's notification block) with how to retry them; a run that fails outright sends one
too. Two refreshes of one data root at once do not duplicate rows (the data root's lock and the
content-derived ids); the deployment also lets only one run at a time by default.
"""
from __future__ import annotations

from prefect import flow, get_run_logger

from animate_anyone.config import PipelineConfig
from animate_anyone.tables.io import DataRoot
from flows.common import resolve_config
from flows.ingest import run_ingest
from flows.notify import on_run_failure, send
from flows.pose import run_extract_poses, select_task


def refresh_steps(cfg: PipelineConfig, sources: list[str] | None = None, refresh: bool = False) -> dict:
    """Ingest, poses and selection in order; shared with the main job (``flows/pipeline.py``)."""
    summary = {"ingest": run_ingest(cfg, sources=sources, refresh=refresh)}
    summary["pose"] = run_extract_poses(cfg)
    summary["select"] = select_task(str(DataRoot.from_uri(cfg.data_root).path), cfg.dataset, cfg.select.where,
                                    cfg.select.splits, cfg.name)
    return summary


def failed_items(summary: dict) -> list[dict]:
    """The refresh's failed items as {stage, item, error} rows, in the order the stages ran."""
    items = [{"stage": f"ingest/{o.get('stage') or 'write'}", "item": o["url"], "error": o["error"]}
             for o in summary["ingest"]["outcomes"] if o["status"] == "failed"]
    items += [{"stage": "pose", "item": f["clip_id"], "error": f["message"]}
              for r in summary["pose"]["shard_results"] for f in r["failed"]]
    return items


@flow(name="refresh", on_failure=[on_run_failure], on_crashed=[on_run_failure])
def refresh_flow(pipeline: str | None = None, config: str | None = None, cfg: PipelineConfig | None = None,
                 data_root: str | None = None, sources: list[str] | None = None, refresh: bool = False) -> dict:
    """Refresh the pipeline's dataset: ingest its sources (or ``sources``), extract the new clips'
    poses and select the training clips into a new snapshot."""
    cfg = resolve_config(cfg, pipeline, config, data_root=data_root)
    summary = refresh_steps(cfg, sources, refresh)
    items = failed_items(summary)
    if items:
        send(cfg, "refresh", cfg.name, items)
    get_run_logger().info("refresh of %s: %d clips, %d with poses, snapshot %s (%d clips); %d items failed", cfg.name,
                          summary["ingest"]["clips"], summary["pose"]["ok"], summary["select"]["snapshot_id"],
                          summary["select"]["num_clips"], len(items))
    return {"pipeline": cfg.name, "failed": len(items), **summary}
