"""The main job: every stage of a named pipeline in order: ingest, poses, training-clip selection,
training (when the pipeline configures stages), then (when the pipeline names a pose source) one
animation, and (after training) an evaluation of what was trained beside its baselines on the
held-out clips. The configuration is loaded once here and passed down."""
from __future__ import annotations

from prefect import flow, get_run_logger

from animate_anyone.config import PipelineConfig
from flows.animate import animate_flow
from flows.common import resolve_config
from flows.evaluate import evaluate_flow
from flows.notify import on_run_failure
from flows.refresh import refresh_steps
from flows.train import train_flow


@flow(name="pipeline", on_failure=[on_run_failure], on_crashed=[on_run_failure])
def run_pipeline(pipeline: str | None = None, config: str | None = None, cfg: PipelineConfig | None = None,
                 data_root: str | None = None, max_train_steps: int | None = None) -> dict:
    """Run pipeline ``pipeline`` end to end: ingest, pose extraction, selection, training, animation.
    ``max_train_steps`` caps every training stage (a quick look; a later run continues)."""
    cfg = resolve_config(cfg, pipeline, config, data_root=data_root)
    summary = refresh_steps(cfg)
    if cfg.train.stages() and summary["select"]["num_clips"]:
        summary["train"] = train_flow(cfg=cfg, snapshot=summary["select"]["snapshot_id"], max_steps=max_train_steps)
    if cfg.animate.pose:
        # a failed animation is a failed run of its own (recorded in failures); the pipeline goes on
        summary["animate"] = animate_flow(cfg=cfg, return_state=True).result(raise_on_failure=False)
    if "train" in summary:
        from animate_anyone.errors import AnimateAnyoneError

        try:
            summary["evaluate"] = evaluate_flow(cfg=cfg)
        except AnimateAnyoneError as exc:  # e.g. no held-out clips: the pipeline's work stands
            get_run_logger().warning("evaluation skipped: %s", exc.message)
            summary["evaluate"] = {"error": exc.message}
    get_run_logger().info("pipeline %s finished", cfg.name)
    return summary
