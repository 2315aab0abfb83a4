"""The main job: every stage of a named pipeline in order (for now: ingest)."""
from __future__ import annotations

from prefect import flow, get_run_logger

from flows.ingest import ingest


@flow(name="pipeline")
def run_pipeline(pipeline: str = "demo", data_root: str | None = None, config_path: str | None = None) -> dict:
    """Run pipeline ``pipeline`` end to end: ingest (later stages join as they land)."""
    summary = {"ingest": ingest(pipeline=pipeline, data_root=data_root, config_path=config_path)}
    get_run_logger().info("pipeline %s finished", pipeline)
    return summary
