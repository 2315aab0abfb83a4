"""The model commands: animate, train, evaluate."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from animate_anyone import progress as progress_events
from animate_anyone.cli.app import (
    EXIT_BAD_INPUT,
    EXIT_ITEMS_FAILED,
    _bar,
    _check_snapshot,
    _config,
    _fail,
    app,
    err,
    out,
)
from animate_anyone.cli.show import _print_evaluation, _print_train, _train_bar
from animate_anyone.errors import AnimateAnyoneError


@app.command()
def animate(
    reference: Optional[str] = typer.Option(None, "--reference", help="Reference image (RGB, RGBA or greyscale), or clip:ID for a clip's first frame."),
    pose: Optional[str] = typer.Option(None, "--pose", help="Pose video (mp4 of rendered skeletons) or a CLIP_ID from the tables."),
    model: Optional[str] = typer.Option(None, "--model", help="Pipeline folder (a path, from where you stand), or a NAME under DATA_ROOT/models (tiny-random builds one)."),
    retarget: Optional[bool] = typer.Option(None, "--retarget/--no-retarget", help="Fit the clip's skeleton to the reference's body (CLIP_ID only; default: the pipeline's, for clips)."),
    frames: Optional[int] = typer.Option(None, "--frames", min=1, help="Only the first N pose frames."),
    out_file: Optional[Path] = typer.Option(None, "--out", help="Output mp4 (default under DATA_ROOT/outputs/animate/); the grid goes beside it."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="DDIM steps (default: the pipeline's, else the model family's: Animate Anyone 20, UniAnimate 30)."),
    guidance: Optional[float] = typer.Option(None, "--guidance", min=0.0, help="Classifier-free guidance scale (default: the pipeline's, else the family's: 3.5, UniAnimate 2.5; 1 turns it off)."),
    window: Optional[int] = typer.Option(None, "--window", min=1, help="Frames generated together; longer videos go in overlapping windows (default: the family's, 24; UniAnimate 32; Animate Anyone at most 32)."),
    overlap: Optional[int] = typer.Option(None, "--overlap", min=0, help="Frames shared by neighbouring windows, averaged (default: the family's, 4; UniAnimate 8)."),
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
    cfg = _config(pipeline, config, data_root=data_root)
    if device is not None and not (device in ("auto", "cpu") or device.startswith("cuda")):
        err.print(f"error: --device must be auto, cpu, cuda or cuda:N; got {device!r}")
        raise typer.Exit(EXIT_BAD_INPUT)
    from animate_anyone import animate as lib  # torch and diffusers: after the checks above (seconds)
    request = lib.AnimateRequest(
        reference=reference, pose=pose, model=model, out=str(out_file) if out_file else None, retarget=retarget,
        frames=frames, height=height, width=width, steps=steps, guidance=guidance, window=window, overlap=overlap,
        seed=seed, device=device, fit=fit,
        background=background, fps=fps, audio_from=str(audio_from) if audio_from else None, base_dir=str(Path.cwd()))
    try:
        with _bar() as bar:
            job = bar.add_task("generating", total=None)
            with progress_events.listen(lambda what, done, total, _: bar.update(job, completed=done, total=total)):
                info = lib.run_animate(cfg, request)
    except AnimateAnyoneError as exc:
        _fail(exc)
    for note in info["notes"]:
        out.print(f"note: {note}", highlight=False)
    out.print(f"wrote {info['out']} ({info['frames']} frames, {info['width']}x{info['height']} at {info['fps']:g} fps, "
              f"{info['generate_s']:.1f} s on {info['device']}) and {info['grid']}", highlight=False)


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
    cfg = _config(pipeline, config, data_root=data_root)
    from animate_anyone.training.request import parse_stages

    try:
        parse_stages(stage, cfg)  # at once: before torch and diffusers load
    except AnimateAnyoneError as exc:
        _fail(exc)
    _check_snapshot(cfg, snapshot)
    from animate_anyone.training.loop import TrainingStopped  # torch and diffusers: after the checks
    from animate_anyone.training.run import train as run_train
    try:
        with _bar() as bar:
            with progress_events.listen(_train_bar(bar)):
                result = run_train(cfg, stage, snapshot, resume, max_steps,
                                   stream=lambda line: err.print(line, highlight=False, markup=False))
    except TrainingStopped as exc:
        _fail(exc, EXIT_ITEMS_FAILED)
    except AnimateAnyoneError as exc:
        _fail(exc)
    _print_train(result)


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
    cfg = _config(pipeline, config, data_root=data_root)
    if split is not None and not split.strip():
        _fail(AnimateAnyoneError("--split must name a split (test, val or train)"))
    _check_snapshot(cfg, snapshot)
    from animate_anyone.evaluation.run import evaluate as run_evaluate  # torch and diffusers: after the checks
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


