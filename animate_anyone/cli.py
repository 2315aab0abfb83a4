"""``animate-anyone``: one command, a subcommand per stage (the application layer, with ``flows``).

Exit codes: 0 everything succeeded; 1 the run finished but some items failed (they are in the
``failures`` table, and running the same command again retries them); 2 nothing ran: a bad
option, configuration or input (the message says which).

The configuration is loaded and checked before anything starts. Flows run against
``PREFECT_API_URL`` when it is set, else against a temporary Prefect server that this command
starts and that dies with it (``flows/server.py``). Prefect is imported only by the subcommands
that run flows, so ``query``, ``puppets`` and the library work without an orchestrator.
"""
from __future__ import annotations

import atexit
import json
import logging
import os
import re
import signal
import sys
import threading
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from animate_anyone import progress as progress_events
from animate_anyone.errors import AnimateAnyoneError

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Animate Anyone as a data and training pipeline: ingest videos, extract poses, train, animate. "
                       "Exit codes: 0 all ok, 1 some items failed (see the failures table), 2 bad option or input.")
err = Console(stderr=True)
out = Console()
EXIT_ITEMS_FAILED = 1
EXIT_BAD_INPUT = 2
# native loggers (MediaPipe's TFLite and glog, absl) write straight to stderr; quiet unless --verbose
QUIET_NATIVE = {"GLOG_minloglevel": "2", "TF_CPP_MIN_LOG_LEVEL": "3", "TRANSFORMERS_VERBOSITY": "error",
                "DIFFUSERS_VERBOSITY": "error", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
# lines that C++ libraries write to file descriptor 2 themselves (absl/glog: "W0000 00:00:…")
# and TensorFlow Lite's own ("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.")
NATIVE_LINE = re.compile(rb"^([IWEF]\d{4} [\d:.]+ +\d+ [\w.\-/]+:\d+\] |WARNING: All log messages before absl"
                         rb"|INFO: Created TensorFlow Lite|INFO: Initialized TensorFlow Lite)")


def _filter_native_stderr() -> None:
    """Route file descriptor 2 through a filter that drops the native libraries' log lines.

    MediaPipe's TFLite logs through absl straight to fd 2 (about a hundred "Feedback manager…"
    lines per demo), which no environment variable silences. Python's own ``sys.stderr`` keeps
    the terminal (progress bars stay live); only what C++ code writes to fd 2 passes the filter.
    """
    sys.stderr.flush()
    terminal = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    sys.stderr = open(terminal, "w", buffering=1, encoding=sys.stderr.encoding or "utf-8",  # noqa: SIM115
                      errors="backslashreplace", closefd=False)

    def pump() -> None:
        with open(read_end, "rb", buffering=0) as src:
            for line in iter(src.readline, b""):
                if not NATIVE_LINE.match(line):
                    os.write(terminal, line)

    thread = threading.Thread(target=pump, name="stderr-filter", daemon=True)
    thread.start()

    def close() -> None:  # end of the pipe: the pump writes what is left, then stops
        os.dup2(terminal, 2)
        thread.join(timeout=2)

    atexit.register(close)


@app.callback()
def _options(verbose: bool = typer.Option(False, "--verbose", help="Show the native libraries' own log lines.")) -> None:
    """Animate Anyone as a data and training pipeline."""
    if not verbose:
        for k, v in QUIET_NATIVE.items():
            os.environ.setdefault(k, v)
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
    else:
        os.environ["PREFECT_LOGGING_LEVEL"] = "DEBUG"


def _bar() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), console=err, transient=False)


def _start_prefect() -> None:
    """Prefect defaults for the command line (the user's own settings win), and an API server."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from flows.server import start_temporary_server

    start_temporary_server()


def _fail(exc: AnimateAnyoneError, code: int = EXIT_BAD_INPUT) -> None:
    err.print(f"[red]error:[/red] {exc.message}", highlight=False, markup=True)
    raise typer.Exit(code)


def _config(pipeline: str | None, config: Path | None, write: bool = True, **overrides):
    """The pipeline's configuration and its data root, checked before anything starts (the root
    must be a folder, and one this command can write unless it only reads); an error is one
    message."""
    from animate_anyone.config import load_config
    from animate_anyone.files import check_data_root
    from animate_anyone.tables.io import DataRoot

    try:
        cfg = load_config(pipeline, config, **overrides)
        check_data_root(DataRoot.from_uri(cfg.data_root).path, write=write)
        return cfg
    except AnimateAnyoneError as exc:
        _fail(exc)


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
    max_train_steps: Optional[int] = typer.Option(None, "--max-train-steps", min=1, help="Stop each training stage after N steps (a quick look; a later run continues)."),
) -> None:
    """Run the main job: every stage of PIPELINE (default `demo`), end to end, as a Prefect flow."""
    cfg = _config(pipeline, config, data_root=data_root)
    _start_prefect()
    from flows.pipeline import run_pipeline
    from animate_anyone.training.loop import TrainingStopped

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


@app.command()
def animate(
    reference: Optional[str] = typer.Option(None, "--reference", help="Reference image (RGB, RGBA or greyscale), or clip:ID for a clip's first frame."),
    pose: Optional[str] = typer.Option(None, "--pose", help="Pose video (mp4 of rendered skeletons) or a CLIP_ID from the tables."),
    model: Optional[str] = typer.Option(None, "--model", help="Pipeline folder (a path, from where you stand), or a NAME under DATA_ROOT/models (tiny-random builds one)."),
    retarget: Optional[bool] = typer.Option(None, "--retarget/--no-retarget", help="Fit the clip's skeleton to the reference's body (CLIP_ID only; default: the pipeline's, for clips)."),
    frames: Optional[int] = typer.Option(None, "--frames", min=1, help="Only the first N pose frames."),
    out_file: Optional[Path] = typer.Option(None, "--out", help="Output mp4 (default under DATA_ROOT/outputs/animate/); the grid goes beside it."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="DDIM steps (default: the pipeline's, 20)."),
    guidance: Optional[float] = typer.Option(None, "--guidance", min=0.0, help="Classifier-free guidance scale (default 3.5; 0 turns it off)."),
    height: Optional[int] = typer.Option(None, "--height", min=8, help="Output height (rounded down to a multiple of 8; the width follows the poses' aspect)."),
    width: Optional[int] = typer.Option(None, "--width", min=8, help="Output width (multiple of 8)."),
    fit: Optional[str] = typer.Option(None, "--fit", help="A reference of another aspect ratio than the poses: pad (default: fit inside, pad with its border colour), crop (cover, cut the centre) or stretch."),
    background: Optional[str] = typer.Option(None, "--background", help="Colour a transparent (RGBA) reference is composited onto (default white)."),
    fps: Optional[float] = typer.Option(None, "--fps", min=0.001, help="Refuse a pose source at another frame rate."),
    audio_from: Optional[Path] = typer.Option(None, "--audio-from", help="Carry this video's audio into the result."),
    seed: Optional[int] = typer.Option(None, "--seed"),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N."),
    pipeline: Optional[str] = typer.Option(None, "--pipeline", help="Pipeline whose animate and pose settings to use."),
    data_root: Optional[str] = typer.Option(None, "--data-root", help="Data root (default: the pipeline's)."),
    config: Optional[Path] = typer.Option(None, "--config", help="Pipelines file."),
) -> None:
    """Animate a reference image along a pose video or a clip's poses; writes an mp4 and a grid."""
    from animate_anyone import animate as lib

    cfg = _config(pipeline, config, data_root=data_root)
    if device is not None and not (device in ("auto", "cpu") or device.startswith("cuda")):
        err.print(f"error: --device must be auto, cpu, cuda or cuda:N; got {device!r}")
        raise typer.Exit(EXIT_BAD_INPUT)
    request = lib.AnimateRequest(
        reference=reference, pose=pose, model=model, out=str(out_file) if out_file else None, retarget=retarget,
        frames=frames, height=height, width=width, steps=steps, guidance=guidance, seed=seed, device=device, fit=fit,
        background=background, fps=fps, audio_from=str(audio_from) if audio_from else None, base_dir=str(Path.cwd()))
    try:
        with _bar() as bar:
            job = bar.add_task("generating", total=None)
            info = lib.run_animate(cfg, request, progress=lambda i, n: bar.update(job, completed=i, total=n))
    except AnimateAnyoneError as exc:
        _fail(exc)
    for note in info["notes"]:
        out.print(f"note: {note}", highlight=False)
    out.print(f"wrote {info['out']} ({info['frames']} frames, {info['width']}x{info['height']} at {info['fps']:g} fps, "
              f"{info['generate_s']:.1f} s on {info['device']}) and {info['grid']}", highlight=False)


def _train_bar(bar: Progress):
    """The loop's progress hook: one bar per stage with loss, steps/s and the time left."""

    def start(first: int, end: int, stage: int):
        task = bar.add_task(f"stage {stage}", total=end, completed=first)

        def on_step(step: int, row: dict) -> None:
            bar.update(task, completed=step, description=f"stage {stage} loss {row['loss']:.4f} "
                                                           f"{row['samples_per_s']:.1f} samples/s")
        return on_step
    return start


def _print_train(result: dict) -> None:
    table = Table(title=f"training on snapshot {result['snapshot_id']}")
    for col in ("stage", "run", "steps", "loss", "val PSNR (still ref.)", "model"):
        table.add_column(col, overflow="fold")
    for s in result["stages"]:
        val = "" if s.get("val_psnr") is None else f"{s['val_psnr']:.2f} ({s['val_psnr_still']:.2f})"
        loss = "cached" if s.get("cached") else ("" if s.get("loss") is None else f"{s['loss']:.4f}")
        table.add_row(str(s["stage"]), s["run_id"], str(s["step"]), loss, val, s["output"])
    out.print(table)
    out.print(f"trained model: {result['model']} (animate-anyone animate --model {Path(result['model']).name} ...)",
              highlight=False)


@app.command()
def train(
    pipeline: Optional[str] = typer.Option(None, "--pipeline", help="Pipeline whose train section to run."),
    stage: str = typer.Option("all", "--stage", help="0 (the VAE, puppet world), 1 (image), 2 (motion) or all (every configured stage, in order)."),
    snapshot: Optional[str] = typer.Option(None, "--snapshot", help="Selection snapshot id (default: the pipeline's train.snapshot, 'latest')."),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Continue from the newest checkpoint of the same run (default), or start it over."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1, help="Stop each stage after N steps (a quick look; a later run continues)."),
    data_root: Optional[str] = typer.Option(None, "--data-root", help="Override the pipeline's data root."),
    config: Optional[Path] = typer.Option(None, "--config", help="Pipelines file."),
) -> None:
    """Train the model on a selection snapshot: stage 0 (VAE), 1 (image), 2 (motion), resuming by itself."""
    from animate_anyone.training.loop import TrainingStopped
    from animate_anyone.training.run import train as run_train

    cfg = _config(pipeline, config, data_root=data_root)
    try:
        with _bar() as bar:
            result = run_train(cfg, stage, snapshot, resume, max_steps, progress=_train_bar(bar),
                               stream=lambda line: err.print(line, highlight=False, markup=False))
    except TrainingStopped as exc:
        _fail(exc, EXIT_ITEMS_FAILED)
    except AnimateAnyoneError as exc:
        _fail(exc)
    _print_train(result)


def _print_evaluation(result: dict) -> None:
    """The bench's leaderboard as a table, with where its files are."""
    from animate_anyone.evaluation.report import COLUMNS, TERMINAL

    rows = result.get("table", [])
    cols = [c for c in COLUMNS if c[0] in TERMINAL and any(c[0] in r for r in rows)]
    table = Table(title=f"evaluation: snapshot {result['snapshot_id']}, split {result['split']}, "
                        f"{len(result['clips'])} clips (bench {result['bench']})")
    for col in ["model", "kind", "step", "clips"] + [f"{m} {'↑' if up else '↓'}" for m, up, _ in cols]:
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["model_name"], r["kind"], str(r["checkpoint_step"] or ""), f"{r['clips_done']}/{r['num_clips']}",
                      *[("–" if r.get(m) is None else f"{r[m]:.3g}") for m, _, _ in cols])
    out.print(table)
    for name, message in result.get("unavailable", {}).items():
        out.print(f"not scored: {name}: {message}", highlight=False)
    out.print(f"leaderboard: {result['leaderboard']}", highlight=False)
    if result.get("plot"):
        out.print(f"metrics over training steps: {result['plot']}", highlight=False)
    for grid in result.get("grids", []):
        out.print(f"grid (reference | pose | generated | real | error): {grid}", highlight=False)


@app.command()
def evaluate(
    model: Optional[str] = typer.Option(None, "--model", help="What to score: a pipeline folder (a path from where you stand), a NAME under DATA_ROOT/models, a training RUN_ID (all its checkpoints) or all-new (every checkpoint of the newest runs and the trained model, each once; the default: evaluate.what)."),
    snapshot: Optional[str] = typer.Option(None, "--snapshot", help="Selection snapshot id whose held-out clips to use (default: the pipeline's train.snapshot, 'latest')."),
    split: Optional[str] = typer.Option(None, "--split", help="Which clips: test (default: evaluate.split), val or train."),
    clips: Optional[int] = typer.Option(None, "--clips", min=1, help="Score only the first N clips (default: evaluate.clips)."),
    baseline: Optional[list[str]] = typer.Option(None, "--baseline", help="Another model to score beside (repeatable); the still reference and the untrained model always are."),
    pipeline: Optional[str] = typer.Option(None, "--pipeline", help="Pipeline whose evaluate settings to use."),
    data_root: Optional[str] = typer.Option(None, "--data-root", help="Override the pipeline's data root."),
    config: Optional[Path] = typer.Option(None, "--config", help="Pipelines file."),
) -> None:
    """Score models on the held-out clips of a snapshot beside their baselines; results go to the
    eval_runs and eval_results tables, the leaderboard and pictures under DATA_ROOT/evaluations/."""
    from animate_anyone.evaluation.run import evaluate as run_evaluate

    cfg = _config(pipeline, config, data_root=data_root)
    if split is not None and not split.strip():
        _fail(AnimateAnyoneError("--split must name a split (test, val or train)"))
    try:
        with _bar() as bar:
            task = bar.add_task("evaluate", total=None)

            def on_clip(cand, clip, rows):
                bar.update(task, advance=1, description=f"evaluate {cand.name}: {clip.clip_id}")

            result = run_evaluate(cfg, model, snapshot, split, clips, baseline or [], Path.cwd(),
                                  log=lambda line: err.print(line, highlight=False, markup=False), on_clip=on_clip)
    except AnimateAnyoneError as exc:
        _fail(exc)
    _print_evaluation(result)
    if any(r["status"] != "finished" for r in result["runs"]):
        out.print("Some models or clips could not be scored: see the failures table "
                  "(animate-anyone query \"SELECT * FROM failures WHERE stage = 'evaluate'\"); running the same "
                  "command again scores only what is missing.", highlight=False)
        raise typer.Exit(EXIT_ITEMS_FAILED)


@app.command()
def deploy(
    flow: Optional[list[str]] = typer.Option(None, "--flow", help="Deploy only this flow (repeatable): refresh, train, evaluate or animate (default: all four)."),
    api_url: Optional[str] = typer.Option(None, "--api-url", help="The Prefect server's API (default: PREFECT_API_URL, e.g. http://127.0.0.1:4200/api)."),
    pipeline: Optional[str] = typer.Option(None, "--pipeline", help="Pipeline to deploy (default: the file's default)."),
    data_root: Optional[str] = typer.Option(None, "--data-root", help="Override the pipeline's data root (made absolute: workers start in the project's folder)."),
    config: Optional[Path] = typer.Option(None, "--config", help="Pipelines file."),
) -> None:
    """Deploy a pipeline's flows to a Prefect server: work pools, the gpu limit, schedules."""
    from animate_anyone.config import DEPLOYABLE_FLOWS

    cfg = _config(pipeline, config, write=False, data_root=data_root)
    for name in flow or []:
        if name not in DEPLOYABLE_FLOWS:
            _fail(AnimateAnyoneError(f"--flow {name!r}: not a deployable flow; one of {', '.join(DEPLOYABLE_FLOWS)}"))
    if api_url is not None and not re.match(r"^https?://[^/\s]+", api_url):
        _fail(AnimateAnyoneError(f"--api-url {api_url!r}: not an http(s) URL (e.g. http://127.0.0.1:4200/api)"))
    if api_url:
        os.environ["PREFECT_API_URL"] = api_url
    url = _prefect_api_url()
    if not url:
        _fail(AnimateAnyoneError("deploy needs a running Prefect server: start one (`prefect server start`, or "
                                 "infra/compose.yaml) and give its API with --api-url or PREFECT_API_URL "
                                 "(e.g. http://127.0.0.1:4200/api)"))
    _check_server(url)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from flows.deploy import deploy as run_deploy

    result = run_deploy(cfg, config, only=flow or None)
    table = Table(title=f"deployments of {cfg.name} on {url}")
    for col in ("deployment", "work pool", "schedule", "runs at once"):
        table.add_column(col, overflow="fold")
    for d in result["deployments"]:
        table.add_row(d["deployment"], d["pool"], d["schedule"], str(d["concurrency"] or "any"))
    out.print(table)
    limits = ", ".join(f"{p['pool']} ({p['state']}, limit {p['concurrency_limit'] or 'none'})" for p in result["pools"])
    out.print(f"work pools: {limits}; global concurrency limit gpu: {result['gpu_slots']} slot(s)", highlight=False)
    out.print(f"data root: {result['parameters']['data_root']}", highlight=False)
    pools = sorted({d["pool"] for d in result["deployments"]})
    out.print("next: start a worker for each pool where its hardware is: "
              + "; ".join(f"prefect worker start --pool {p}" for p in pools)
              + f". Then: prefect deployment run 'refresh/{cfg.name}'", highlight=False)


def _prefect_api_url() -> str | None:
    """PREFECT_API_URL from the environment or the active Prefect profile (`prefect config set`)."""
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value()


def _check_server(url: str) -> None:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=10) as r:
            if r.status == 200:
                return
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        _fail(AnimateAnyoneError(f"no Prefect server answers at {url} ({reason}); start one with `prefect server start`"))
    _fail(AnimateAnyoneError(f"the Prefect server at {url} is not healthy"))


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

    from animate_anyone.pipeline import convert_moore

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
    size: str = typer.Option("tiny", "--size", help="tiny (a few MB), puppet (the demo's trainable size) or full (SD-1.5 shapes, about 8 GB)."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Write a randomly initialised pipeline folder (for tests, benchmarks, or training from scratch)."""
    from animate_anyone.models.sizes import SIZES
    from animate_anyone.pipeline import create_model

    if size not in SIZES:
        err.print(f"error: --size must be one of {', '.join(SIZES)}; got {size!r}")
        raise typer.Exit(2)
    path = create_model(out_dir, size, seed)
    out.print(f"wrote {path} ({size}, seed {seed})", highlight=False)


@app.command()
def query(
    sql: str = typer.Argument(..., help="One read-only SQL statement over the catalog's tables."),
    data_root: Optional[str] = typer.Option(None, "--data-root", help="Data root (default: the pipeline's)."),
    pipeline: Optional[str] = typer.Option(None, "--pipeline", help="Pipeline whose data root to use."),
    fmt: str = typer.Option("table", "--format", help="table, csv or json."),
    memory_limit: Optional[str] = typer.Option(None, "--memory-limit", help="Memory the query may use, e.g. 4GB (default: $ANIMATE_ANYONE_QUERY_MEMORY, else 4GB)."),
    temp_limit: Optional[str] = typer.Option(None, "--temp-limit", help="Temporary disk for what spills, e.g. 8GB (default: $ANIMATE_ANYONE_QUERY_TEMP, else 8GB)."),
    timeout: Optional[str] = typer.Option(None, "--timeout", help="Seconds before the query is stopped (default: $ANIMATE_ANYONE_QUERY_TIMEOUT, else 300)."),
    config: Optional[Path] = typer.Option(None, "--config", help="Pipelines file."),
) -> None:
    """Run read-only SQL over the DuckDB catalog (tables: sources, shots, clips, failures), within
    memory, disk and time limits."""
    from animate_anyone.tables import DataRoot
    from animate_anyone.tables import query as run_query
    from animate_anyone.tables.catalog import QueryLimits

    if fmt not in ("table", "csv", "json"):
        err.print(f"error: --format must be table, csv or json; got {fmt!r}")
        raise typer.Exit(2)
    cfg = _config(pipeline, config, write=False, data_root=data_root)
    try:
        limits = QueryLimits.from_env(memory_limit, temp_limit, timeout)
        root = DataRoot.from_uri(cfg.data_root)
        result = run_query(root, sql, limits)
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


def _terminate(signum, _frame) -> None:
    """SIGTERM (``kill PID``) ends the run like Ctrl-C: cleanup runs, the temporary server stops."""
    raise SystemExit(128 + signum)


def main() -> None:
    if "--verbose" not in sys.argv[1:2]:
        _filter_native_stderr()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, _terminate)
    app()


if __name__ == "__main__":
    main()
