"""The main job: every stage of a named pipeline in order: ingest, poses, training-clip selection,
then (when the pipeline names a pose source) one animation."""
from __future__ import annotations

from prefect import flow, get_run_logger

from animate_anyone.config import load_pipeline
from animate_anyone.tables.io import DataRoot
from flows.animate import animate_flow
from flows.ingest import ingest
from flows.pose import extract_poses, select_task


@flow(name="pipeline")
def run_pipeline(pipeline: str = "demo", data_root: str | None = None, config_path: str | None = None) -> dict:
    """Run pipeline ``pipeline`` end to end: ingest, pose extraction, then select the training clips."""
    pipe = load_pipeline(pipeline, config_path, data_root=data_root)
    summary = {"ingest": ingest(pipeline=pipeline, data_root=data_root, config_path=config_path)}
    summary["pose"] = extract_poses(pipeline=pipeline, data_root=data_root, config_path=config_path)
    summary["select"] = select_task(str(DataRoot.from_uri(pipe.data_root).path), pipe.dataset, pipe.select.where,
                                    pipe.select.splits, pipe.name)
    if pipe.animate.pose:
        summary["animate"] = animate_flow(pipeline=pipeline, data_root=data_root, config=config_path)
    get_run_logger().info("pipeline %s finished", pipeline)
    return summary
