"""``animate-anyone``: one command, a subcommand per stage.

Prefect is imported only inside the subcommands that run flows, so the library (and ``query``,
``puppets``) work without starting an orchestrator.
"""
from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from animate_anyone import progress as progress_events
from animate_anyone.errors import AnimateAnyoneError

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Animate Anyone as a data and training pipeline: ingest videos, extract poses, train, animate.")
err = Console(stderr=True)
out = Console()


def _bar() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), console=err, transient=False)


def _prefect_env() -> None:
    """Defaults for running flows from the command line; the user's own settings win."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")


def _fail(exc: AnimateAnyoneError, code: int = 2) -> None:
    err.print(f"[red]error:[/red] {exc.message}", highlight=False, markup=True)
    raise typer.Exit(code)


def _with_source_bar(fn, *args, **kwargs):
    with _bar() as bar:
        task = bar.add_task("sources", total=None)

        def on(what: str, done: int, total: int) -> None:
            bar.update(task, completed=done, total=total, description=what)

        with progress_events.listen(on):
            return fn(*args, **kwargs)


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
) -> None:
    """Run the main job: every stage of PIPELINE (default `demo`), end to end, as a Prefect flow."""
    _prefect_env()
    from flows.pipeline import run_pipeline

    try:
        result = _with_source_bar(run_pipeline, pipeline=pipeline, data_root=data_root,
                                  config_path=str(config) if config else None)
    except AnimateAnyoneError as exc:
        _fail(exc)
    _print_ingest(result["ingest"])
    _print_pose(result["pose"])
    _print_select(result["select"])
    if "animate" in result:
        a = result["animate"]
        if a["status"] == "ok":
            out.print(f"animated {a['frames']} frames ({a['width']}x{a['height']}, {a['generate_s']:.1f} s on "
                      f"{a['device']}): {a['out']} and {a['grid']}", highlight=False)
        else:
            out.print(f"animate failed: {a['error']}", highlight=False)


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
    out.print(f"selected {snap['num_clips']} training clips: snapshot {snap['snapshot_id']} ({snap['path']})",
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
    """Download SOURCES, split them into shots and cut 2-10 s clips into the tables."""
    _prefect_env()
    from flows.ingest import ingest as ingest_flow

    try:
        summary = _with_source_bar(ingest_flow, pipeline=pipeline, sources=sources or None, data_root=data_root,
                                   dataset=dataset, config_path=str(config) if config else None, refresh_cache=refresh)
    except AnimateAnyoneError as exc:
        _fail(exc)
    _print_ingest(summary)


@app.command()
def pose(
    pipeline: Optional[str] = typer.Option(None, "--pipeline", help="Pipeline name (default: the file's default)."),
    data_root: Optional[str] = typer.Option(None, "--data-root", help="Override the pipeline's data root."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Dataset whose clips to process."),
    backend: Optional[str] = typer.Option(None, "--backend", help="dwpose or mediapipe (default: the pipeline's)."),
    config: Optional[Path] = typer.Option(None, "--config", help="Pipelines file."),
    refresh: bool = typer.Option(False, "--refresh", help="Ignore cached task results."),
) -> None:
    """Extract whole-body poses for every clip into pose_frames and clip_pose_summary."""
    _prefect_env()
    from flows.pose import extract_poses

    try:
        summary = _with_source_bar(extract_poses, pipeline=pipeline, data_root=data_root, dataset=dataset,
                                   backend=backend, config_path=str(config) if config else None, refresh_cache=refresh)
    except AnimateAnyoneError as exc:
        _fail(exc)
    _print_pose(summary)


@app.command()
def select(
    pipeline: Optional[str] = typer.Option(None, "--pipeline", help="Pipeline whose select.where to run."),
    data_root: Optional[str] = typer.Option(None, "--data-root", help="Override the pipeline's data root."),
    where: Optional[str] = typer.Option(None, "--where", help="Override select.where (SQL over s = clip_pose_summary, c = clips)."),
    config: Optional[Path] = typer.Option(None, "--config", help="Pipelines file."),
) -> None:
    """Select training clips with the pipeline's SQL and save them as a dataset snapshot."""
    from animate_anyone.config import load_pipeline
    from animate_anyone.tables import DataRoot
    from animate_anyone.tables.selection import select_clips

    try:
        pipe = load_pipeline(pipeline, config, data_root=data_root)
        snap = select_clips(DataRoot.from_uri(pipe.data_root), pipe.dataset, where or pipe.select.where,
                            pipe.select.splits, pipe.name, "--where" if where else "select.where")
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
    from animate_anyone.config import load_pipeline
    from animate_anyone.pose.render import render_clip
    from animate_anyone.tables import DataRoot

    try:
        root = DataRoot.from_uri(data_root or load_pipeline(pipeline, config).data_root)
        suffix = "overlay" if overlay else "pose"
        dest = out_file or root.path / "outputs" / "poses" / f"{clip_id}.{suffix}.mp4"
        info = render_clip(root, clip_id, dest, overlay=overlay, face=not no_face, weighted=weighted)
    except AnimateAnyoneError as exc:
        _fail(exc)
    out.print(f"wrote {info['out']}: {info['frames']} frames, {info['width']}x{info['height']} at {info['fps']:g} fps",
              highlight=False)


@app.command()
def animate(
    reference: Optional[str] = typer.Option(None, "--reference", help="Reference image (RGB), or clip:ID for a clip's first frame."),
    pose: Optional[str] = typer.Option(None, "--pose", help="Pose video (mp4 of rendered skeletons) or a CLIP_ID from the tables."),
    model: Optional[str] = typer.Option(None, "--model", help="Pipeline folder (convert / save_pretrained), or tiny-random."),
    retarget: Optional[bool] = typer.Option(None, "--retarget/--no-retarget", help="Fit the clip's skeleton to the reference's body (CLIP_ID only)."),
    frames: Optional[int] = typer.Option(None, "--frames", help="Only the first N pose frames."),
    out_file: Optional[Path] = typer.Option(None, "--out", help="Output mp4 (default under DATA_ROOT/outputs/animate/); the grid goes beside it."),
    steps: Optional[int] = typer.Option(None, "--steps", help="DDIM steps (default 20)."),
    guidance: Optional[float] = typer.Option(None, "--guidance", help="Classifier-free guidance scale (default 3.5)."),
    height: Optional[int] = typer.Option(None, "--height", help="Output height (multiple of 8; default: the pose source's)."),
    width: Optional[int] = typer.Option(None, "--width", help="Output width (multiple of 8)."),
    fps: Optional[float] = typer.Option(None, "--fps", help="Refuse a pose source at another frame rate."),
    audio_from: Optional[Path] = typer.Option(None, "--audio-from", help="Carry this video's audio into the result."),
    seed: Optional[int] = typer.Option(None, "--seed"),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N."),
    pipeline: Optional[str] = typer.Option(None, "--pipeline", help="Pipeline whose animate and pose settings to use."),
    data_root: Optional[str] = typer.Option(None, "--data-root", help="Data root (default: the pipeline's)."),
    config: Optional[Path] = typer.Option(None, "--config", help="Pipelines file."),
) -> None:
    """Animate a reference image along a pose video or a clip's poses; writes an mp4 and a grid."""
    from animate_anyone import animate as lib
    from animate_anyone.config import load_pipeline
    from animate_anyone.models import ensure_model
    from animate_anyone.tables import DataRoot

    try:
        cfg = load_pipeline(pipeline, config)
        a = cfg.animate
        root = DataRoot.from_uri(data_root or cfg.data_root)
        ref, pose_src = lib.resolve_sources(root, cfg.dataset, reference or a.reference, pose or a.pose)
        if not ref or not pose_src:
            raise lib.AnimateInputError("give --reference IMAGE and --pose VIDEO|CLIP_ID (or set animate.reference "
                                        "and animate.pose in the pipeline)", "missing_input")
        model_dir = ensure_model(model or a.model, root.path, a.seed)
        dest = out_file or root.path / "outputs" / "animate" / f"{Path(ref).stem}.{Path(pose_src).stem}.mp4"
        with _bar() as bar:
            job = bar.add_task("generating", total=None)
            info = lib.animate(
                model_dir, Path(ref), pose_src, dest, root=root, pose_cfg=cfg.pose,
                retarget=a.retarget if retarget is None else retarget, frames=frames or a.frames,
                height=height or a.height, width=width or a.width, steps=steps or a.steps,
                guidance=a.guidance if guidance is None else guidance, window=a.window, overlap=a.overlap,
                seed=a.seed if seed is None else seed, device=device or a.device, dtype=a.dtype, fps=fps,
                audio_from=audio_from, progress=lambda i, n: bar.update(job, completed=i, total=n))
    except AnimateAnyoneError as exc:
        _fail(exc)
    out.print(f"wrote {info['out']} ({info['frames']} frames, {info['width']}x{info['height']} at {info['fps']:g} fps, "
              f"{info['generate_s']:.1f} s on {info['device']}) and {info['grid']}", highlight=False)


@app.command()
def convert(
    out_dir: Path = typer.Argument(..., help="The pipeline folder to write."),
    moore: Optional[Path] = typer.Option(None, "--moore", help="Folder with Moore-AnimateAnyone's reference_unet.pth, denoising_unet.pth, pose_guider.pth (and motion_module.pth)."),
    base: Optional[Path] = typer.Option(None, "--base", help="SD-1.5-style folder: unet/config.json, vae/, image_encoder/ (feature_extractor/ optional)."),
    motion: Optional[Path] = typer.Option(None, "--motion", help="Motion modules instead of MOORE/motion_module.pth, e.g. AnimateDiff mm_sd_v15_v2.ckpt."),
    vae: Optional[Path] = typer.Option(None, "--vae", help="VAE folder (default BASE/vae), e.g. sd-vae-ft-mse."),
    image_encoder: Optional[Path] = typer.Option(None, "--image-encoder", help="CLIP vision folder (default BASE/image_encoder)."),
    half: bool = typer.Option(False, "--fp16", help="Store float16 weights."),
) -> None:
    """Import Moore-AnimateAnyone and AnimateDiff weights into a pipeline folder (exact, every key checked)."""
    import torch

    from animate_anyone.models.convert import convert_moore

    try:
        info = convert_moore(moore, base, out_dir, motion=motion, vae=vae, image_encoder=image_encoder,
                             dtype=torch.float16 if half else torch.float32)
    except AnimateAnyoneError as exc:
        _fail(exc)
    out.print(f"wrote {info['out']}: reference_unet {info['reference_unet']} tensors, denoising_unet "
              f"{info['denoising_unet']} + motion {info['motion_modules']}, pose_guider {info['pose_guider']}",
              highlight=False)


@app.command("new-model")
def new_model(
    out_dir: Path = typer.Argument(..., help="The pipeline folder to write."),
    size: str = typer.Option("tiny", "--size", help="tiny (a few MB) or full (SD-1.5 shapes, about 8 GB)."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Write a randomly initialised pipeline folder (for tests, benchmarks, or training from scratch)."""
    from animate_anyone.models import create_model

    if size not in ("tiny", "full"):
        err.print(f"error: --size must be tiny or full; got {size!r}")
        raise typer.Exit(2)
    path = create_model(out_dir, size, seed)
    out.print(f"wrote {path} ({size}, seed {seed})", highlight=False)


@app.command()
def query(
    sql: str = typer.Argument(..., help="One read-only SQL statement over the catalog's tables."),
    data_root: Optional[str] = typer.Option(None, "--data-root", help="Data root (default: the pipeline's)."),
    pipeline: Optional[str] = typer.Option(None, "--pipeline", help="Pipeline whose data root to use."),
    fmt: str = typer.Option("table", "--format", help="table, csv or json."),
    config: Optional[Path] = typer.Option(None, "--config", help="Pipelines file."),
) -> None:
    """Run read-only SQL over the DuckDB catalog (tables: sources, shots, clips, failures)."""
    from animate_anyone.config import load_pipeline
    from animate_anyone.tables import DataRoot
    from animate_anyone.tables import query as run_query

    if fmt not in ("table", "csv", "json"):
        err.print(f"error: --format must be table, csv or json; got {fmt!r}")
        raise typer.Exit(2)
    try:
        root = DataRoot.from_uri(data_root or load_pipeline(pipeline, config).data_root)
        result = run_query(root, sql)
    except AnimateAnyoneError as exc:
        _fail(exc)
    if fmt == "csv":
        import pyarrow.csv as pacsv

        sys.stdout.flush()
        pacsv.write_csv(result, sys.stdout.buffer)
        sys.stdout.buffer.flush()
    elif fmt == "json":
        sys.stdout.write(json.dumps(result.to_pylist(), default=str, indent=1) + "\n")
    else:
        table = Table(show_lines=False)
        for name in result.column_names:
            table.add_column(name, overflow="fold")
        for row in result.to_pylist():
            table.add_row(*["" if v is None else str(v) for v in row.values()])
        out.print(table)
        out.print(f"{result.num_rows} rows")


@app.command()
def puppets(
    out_dir: Path = typer.Argument(..., help="Folder for the videos and their ground truth."),
    count: int = typer.Option(4, "--count", min=1, help="How many videos."),
    seed: int = typer.Option(0, "--seed", help="World seed; the same seed gives the same videos."),
    size: str = typer.Option("360x640", "--size", help="WIDTHxHEIGHT in pixels."),
    seconds: float = typer.Option(14.0, "--seconds", min=1.0, help="Length of each video."),
) -> None:
    """Generate puppet-world videos (multi-shot, 30 fps) with ground-truth cuts and 133 keypoints per frame."""
    from animate_anyone import synthetic

    try:
        w, h = (int(x) for x in size.lower().split("x"))
        if w < 64 or h < 64:
            raise ValueError
    except ValueError:
        err.print(f"error: --size must be WIDTHxHEIGHT with both at least 64, like 360x640; got {size!r}")
        raise typer.Exit(2)
    total = count * int(round(seconds * synthetic.FPS))
    with _bar() as bar:
        task = bar.add_task("frames", total=total)
        paths = synthetic.generate_world(out_dir, count, seed, (w, h), seconds, progress=lambda n: bar.advance(task, n))
    for p in paths:
        out.print(str(p))


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    app()


if __name__ == "__main__":
    main()
