"""The data commands: run, ingest, pose, select, render."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from animate_anyone.cli.app import (
    EXIT_BAD_INPUT,
    EXIT_ITEMS_FAILED,
    _config,
    _fail,
    _start_prefect,
    _with_source_bar,
    app,
    err,
    out,
)
from animate_anyone.cli.show import _print_evaluation, _print_train
from animate_anyone.errors import AnimateAnyoneError
from animate_anyone.storage import shown


def _print_ingest(summary: dict) -> None:
    table = Table(title=f"ingest: {summary['pipeline']} → {summary['data_root']} (dataset {summary['dataset']})")
    for col in ("status", "clips", "url", "error"):
        table.add_column(col, overflow="fold")
    for o in summary["outcomes"]:
        table.add_row(o["status"], str(o["clips"]), o["url"], (o.get("error") or "")[:200])
    out.print(table)
    out.print(f"{summary['ok']} ok, {summary['duplicate']} duplicate, {summary['failed']} failed; {summary['clips']} clips")
    if summary["failed"]:
        out.print("Failed sources are in the `failures` table (animate-anyone query \"SELECT * FROM failures\"); "
                  "running the same command again retries only them.")


@app.command()
def run(
    pipeline: str = typer.Argument("demo", help="Pipeline name from pipelines.yaml."),
    data_root: Optional[str] = typer.Option(None, "--data-root", help="Override the pipeline's data root."),
    config: Optional[Path] = typer.Option(None, "--config", help="Pipelines file (default: ./pipelines.yaml or the bundled one)."),
    max_train_steps: Optional[int] = typer.Option(None, "--max-train-steps", min=1, help="Stop each training stage after N steps (a quick look; a later run continues)."),
) -> None:
    """Run the main job: every stage of PIPELINE (default `demo`), end to end, as a Prefect flow."""
    cfg = _config(pipeline, config, data_root=data_root)
    _start_prefect()
    from animate_anyone.training.loop import TrainingStopped
    from flows.pipeline import run_pipeline

    try:
        result = _with_source_bar(run_pipeline, cfg=cfg, max_train_steps=max_train_steps)
    except TrainingStopped as exc:
        _fail(exc, EXIT_ITEMS_FAILED)
    except AnimateAnyoneError as exc:
        _fail(exc)
    _print_ingest(result["ingest"])
    _print_pose(result["pose"])
    _print_select(result["select"])
    if "train" in result:
        _print_train(result["train"])
    failed = result["ingest"]["failed"] + result["pose"]["failed"]
    if "animate" in result:
        a = result["animate"]
        if a["status"] == "ok":
            for note in a.get("notes", []):
                out.print(f"note: {note}", highlight=False)
            out.print(f"animated {a['frames']} frames ({a['width']}x{a['height']}, {a['generate_s']:.1f} s on "
                      f"{a['device']}): {a['out']} and {a['grid']}", highlight=False)
        else:
            failed += 1
            out.print(f"animate failed: {a['error']}", highlight=False)
    if "evaluate" in result:
        if "error" in result["evaluate"]:
            failed += 1
            out.print(f"evaluation skipped: {result['evaluate']['error']}", highlight=False)
        else:
            _print_evaluation(result["evaluate"])
    if failed:
        raise typer.Exit(EXIT_ITEMS_FAILED)


def _print_pose(summary: dict) -> None:
    table = Table(title=f"poses: {summary['backend']} ({summary['model']}), dataset {summary['dataset']}")
    for col in ("shard", "clips", "ok", "failed", "rows"):
        table.add_column(col)
    for r in summary["shard_results"]:
        table.add_row(r["shard_id"], str(r["clips"]), str(r["ok"]), str(len(r["failed"])), str(r["rows"]))
    out.print(table)
    out.print(f"{summary['ok']} of {summary['clips']} clips have poses ({summary['rows']} rows); {summary['failed']} failed")
    for r in summary["shard_results"]:
        for f in r["failed"]:
            out.print(f"  failed: {f['clip_id']}: {f['message']}", highlight=False)
        for w in r["warnings"]:
            out.print(f"  note: {w}", highlight=False)
    if summary["failed"]:
        out.print("Failed clips are in the `failures` table (stage = 'pose'); running the same command again retries them.")


def _print_select(snap: dict) -> None:
    out.print(f"selected {snap['num_clips']} training clips: snapshot {snap['snapshot_id']} ({shown(snap['path'])})",
              highlight=False)


@app.command()
def ingest(
    sources: Optional[list[str]] = typer.Argument(None, help="URLs or local video paths (default: the pipeline's sources)."),
    pipeline: Optional[str] = typer.Option(None, "--pipeline", help="Pipeline name (default: the file's default)."),
    data_root: Optional[str] = typer.Option(None, "--data-root", help="Override the pipeline's data root."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Dataset partition the rows go to."),
    config: Optional[Path] = typer.Option(None, "--config", help="Pipelines file."),
    refresh: bool = typer.Option(False, "--refresh", help="Ignore cached task results (after deleting files by hand)."),
) -> None:
    """Download SOURCES, split them into shots and cut 2-10 s clips into the tables. Exit 1 if any failed."""
    cfg = _config(pipeline, config, data_root=data_root, dataset=dataset)
    _start_prefect()
    from flows.ingest import run_ingest

    try:
        summary = _with_source_bar(run_ingest, cfg, sources=sources or None, refresh=refresh)
    except AnimateAnyoneError as exc:
        _fail(exc)
    _print_ingest(summary)
    if summary["failed"]:
        raise typer.Exit(EXIT_ITEMS_FAILED)


@app.command()
def pose(
    pipeline: Optional[str] = typer.Option(None, "--pipeline", help="Pipeline name (default: the file's default)."),
    data_root: Optional[str] = typer.Option(None, "--data-root", help="Override the pipeline's data root."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Dataset whose clips to process."),
    backend: Optional[str] = typer.Option(None, "--backend", help="dwpose or mediapipe (default: the pipeline's)."),
    config: Optional[Path] = typer.Option(None, "--config", help="Pipelines file."),
) -> None:
    """Extract whole-body poses for every clip not done yet into pose_frames and clip_pose_summary. Exit 1 if any failed."""
    cfg = _config(pipeline, config, data_root=data_root, dataset=dataset)
    if backend is not None and backend not in ("dwpose", "mediapipe"):
        err.print(f"error: --backend must be dwpose or mediapipe; got {backend!r}")
        raise typer.Exit(EXIT_BAD_INPUT)
    _start_prefect()
    from flows.pose import run_extract_poses

    try:
        summary = _with_source_bar(run_extract_poses, cfg, backend=backend)
    except AnimateAnyoneError as exc:
        _fail(exc)
    _print_pose(summary)
    if summary["failed"]:
        raise typer.Exit(EXIT_ITEMS_FAILED)


@app.command()
def select(
    pipeline: Optional[str] = typer.Option(None, "--pipeline", help="Pipeline whose select.where to run."),
    data_root: Optional[str] = typer.Option(None, "--data-root", help="Override the pipeline's data root."),
    where: Optional[str] = typer.Option(None, "--where", help="Override select.where (SQL over s = clip_pose_summary, c = clips)."),
    config: Optional[Path] = typer.Option(None, "--config", help="Pipelines file."),
) -> None:
    """Select training clips with the pipeline's SQL and save them as a dataset snapshot."""
    from animate_anyone.tables.io import Dataset
    from animate_anyone.tables.selection import select_clips

    cfg = _config(pipeline, config, data_root=data_root)
    try:
        snap = select_clips(Dataset.of(cfg), cfg.select.where if where is None else where,
                            cfg.select.splits, cfg.name, "--where" if where is not None else "select.where")
    except AnimateAnyoneError as exc:
        _fail(exc)
    _print_select(snap)


@app.command()
def render(
    clip_id: str = typer.Argument(..., help="Clip id (see: animate-anyone query \"SELECT clip_id FROM clips\")."),
    out_file: Optional[Path] = typer.Option(None, "--out", help="Output mp4 (default: DATA_ROOT/outputs/poses/CLIP_ID.mp4)."),
    overlay: bool = typer.Option(False, "--overlay", help="Draw the skeleton over the clip's own frames."),
    no_face: bool = typer.Option(False, "--no-face", help="Leave out the 68 face dots."),
    weighted: bool = typer.Option(False, "--weighted", help="Scale colours by confidence."),
    pipeline: Optional[str] = typer.Option(None, "--pipeline", help="Pipeline whose data root to use."),
    data_root: Optional[str] = typer.Option(None, "--data-root", help="Data root (default: the pipeline's)."),
    config: Optional[Path] = typer.Option(None, "--config", help="Pipelines file."),
) -> None:
    """Write CLIP_ID's pose video (OpenPose style) from the stored keypoints."""
    from animate_anyone.pose.render import render_clip
    from animate_anyone.tables import DataRoot

    cfg = _config(pipeline, config, data_root=data_root)
    try:
        root = DataRoot.from_uri(cfg.data_root)
        suffix = "overlay" if overlay else "pose"
        dest = out_file or root.path / "outputs" / "poses" / f"{clip_id}.{suffix}.mp4"
        info = render_clip(root, clip_id, dest, overlay=overlay, face=not no_face, weighted=weighted)
    except AnimateAnyoneError as exc:
        _fail(exc)
    out.print(f"wrote {info['out']}: {info['frames']} frames, {info['width']}x{info['height']} at {info['fps']:g} fps",
              highlight=False)


