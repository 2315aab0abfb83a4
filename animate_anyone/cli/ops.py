"""Deployments, model files and the tables: deploy, convert, new-model, query, puppets."""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from animate_anyone import progress as progress_events
from animate_anyone.cli.app import _bar, _config, _fail, app, err, out
from animate_anyone.errors import AnimateAnyoneError


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
    url = _prefect_server(api_url, "deploy needs a running Prefect server: start one (`prefect server start`, or "
                                   "infra/compose.yaml) and give its API with --api-url or PREFECT_API_URL "
                                   "(e.g. http://127.0.0.1:4200/api)")
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


def _prefect_server(api_url: str | None, missing: str) -> str:
    """The Prefect API a command works against: ``--api-url`` (checked, then set for the process) or
    PREFECT_API_URL; ``missing`` is the message when there is none. Fails unless a server answers."""
    if api_url is not None and not re.match(r"^https?://[^/\s]+", api_url):
        _fail(AnimateAnyoneError(f"--api-url {api_url!r}: not an http(s) URL (e.g. http://127.0.0.1:4200/api)"))
    if api_url:
        os.environ["PREFECT_API_URL"] = api_url
    url = _prefect_api_url()
    if not url:
        _fail(AnimateAnyoneError(missing))
    _check_server(url)
    return url


def _prefect_api_url() -> str | None:
    """PREFECT_API_URL from the environment or the active Prefect profile (`prefect config set`)."""
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value()


def _check_server(url: str, patience_s: float = 60.0, ask_s: float = 15.0) -> None:
    """Fail at once where nothing listens; a server that is there but slow (a busy scheduler, a
    loaded machine) is asked again until ``patience_s`` has passed, not called absent."""
    import time
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + patience_s
    while True:
        try:
            with urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=ask_s) as r:
                if r.status == 200:
                    return
                _fail(AnimateAnyoneError(f"the Prefect server at {url} is not healthy (HTTP {r.status})"))
        except urllib.error.HTTPError as exc:
            _fail(AnimateAnyoneError(f"the Prefect server at {url} is not healthy (HTTP {exc.code} {exc.reason})"))
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            slow = isinstance(reason, TimeoutError)  # socket.timeout is TimeoutError
            if slow and time.monotonic() < deadline:
                continue
            waited = f", asked for {patience_s:.0f} s" if slow else ""
            _fail(AnimateAnyoneError(f"no Prefect server answers at {url} ({reason}{waited}); "
                                     "start one with `prefect server start`"))


@app.command()
def convert(
    out_dir: Path = typer.Argument(..., help="The pipeline folder to write."),
    moore: Optional[Path] = typer.Option(None, "--moore", help="Folder with Moore-AnimateAnyone's reference_unet.pth, denoising_unet.pth, pose_guider.pth (and motion_module.pth)."),
    base: Optional[Path] = typer.Option(None, "--base", help="SD-1.5-style folder: unet/config.json, vae/, image_encoder/ (feature_extractor/ optional)."),
    motion: Optional[Path] = typer.Option(None, "--motion", help="Motion modules instead of MOORE/motion_module.pth, e.g. AnimateDiff mm_sd_v15_v2.ckpt."),
    vae: Optional[Path] = typer.Option(None, "--vae", help="VAE folder (default BASE/vae), e.g. sd-vae-ft-mse."),
    image_encoder: Optional[Path] = typer.Option(None, "--image-encoder", help="CLIP vision folder (default BASE/image_encoder)."),
    unianimate: Optional[Path] = typer.Option(None, "--unianimate", help="UniAnimate's released unianimate_16f_32f_non_ema_223000.pth (research use only); needs --vae (SD-2.1's, diffusers format) and --clip."),
    clip: Optional[Path] = typer.Option(None, "--clip", help="With --unianimate: OpenCLIP ViT-H-14 (open_clip_pytorch_model.bin) or a transformers CLIP folder."),
    half: bool = typer.Option(False, "--fp16", help="Store float16 weights."),
) -> None:
    """Import Moore-AnimateAnyone and AnimateDiff weights, or UniAnimate's, into a pipeline folder (exact, every key checked)."""
    if unianimate is not None or clip is not None:  # the flags and files are checked before torch loads
        if moore is not None or base is not None or motion is not None or image_encoder is not None:
            err.print("error: --unianimate takes --vae and --clip only; --moore, --base, --motion and --image-encoder "
                      "are for Animate Anyone")
            raise typer.Exit(2)
        if unianimate is None or clip is None or vae is None:
            err.print("error: a UniAnimate import needs --unianimate FILE, --vae DIR and --clip PATH")
            raise typer.Exit(2)
        from animate_anyone.models import store

        missing = store.missing_unianimate_inputs(unianimate, vae, clip)  # the import's own check, without torch
        if missing:
            err.print(f"error: {missing}")
            raise typer.Exit(2)
    absent = [f"{flag} {path}" for flag, path in (("--moore", moore), ("--base", base), ("--motion", motion),
                                                  ("--vae", vae), ("--image-encoder", image_encoder))
              if path is not None and not path.exists()]
    if absent:  # Animate Anyone's: what is inside the folders is checked as they are read
        err.print(f"error: missing input(s): {', '.join(absent)} (no such file or folder)")
        raise typer.Exit(2)
    import torch

    dtype = torch.float16 if half else torch.float32
    if unianimate is not None:
        from animate_anyone.unianimate_pipeline import convert_unianimate_files

        try:
            info = convert_unianimate_files(unianimate, vae, clip, out_dir, dtype=dtype)
        except AnimateAnyoneError as exc:
            _fail(exc)
        out.print(f"wrote {info['out']}: UniAnimate ({info['size']}), {info['tensors']} tensors checked; the released "
                  "weights are for research use only", highlight=False)
        return
    from animate_anyone.pipeline import convert_moore

    try:
        info = convert_moore(moore, base, out_dir, motion=motion, vae=vae, image_encoder=image_encoder, dtype=dtype)
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
    family: str = typer.Option("animate-anyone", "--family", help="animate-anyone (ReferenceNet + motion modules) or unianimate (a video UNet with the reference as frame 0)."),
    temporal: str = typer.Option("transformer", "--temporal", help="unianimate only: the trunk's temporal layers, transformer (attention over time) or mamba (linear in frames)."),
) -> None:
    """Write a randomly initialised pipeline folder (for tests, benchmarks, or training from scratch)."""
    from animate_anyone.models import store  # no torch: the flags are checked before it loads

    if size not in store.SIZES:
        err.print(f"error: --size must be one of {', '.join(store.SIZES)}; got {size!r}")
        raise typer.Exit(2)
    if family not in store.FAMILIES:
        err.print(f"error: --family must be one of {', '.join(store.FAMILIES)}; got {family!r}")
        raise typer.Exit(2)
    if temporal not in ("transformer", "mamba"):
        err.print(f"error: --temporal must be transformer or mamba; got {temporal!r}")
        raise typer.Exit(2)
    if temporal != "transformer" and family != "unianimate":
        err.print(f"error: --temporal {temporal} is for --family unianimate (Animate Anyone's motion modules are "
                  "transformers)")
        raise typer.Exit(2)
    extra = {"temporal": temporal} if family == "unianimate" else {}
    path = store.family_module(family).create_model(out_dir, size, seed, **extra)
    shown = f", {temporal}" if extra else ""
    out.print(f"wrote {path} ({family}, {size}{shown}, seed {seed})", highlight=False)


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
        done_by: dict[str, int] = {}

        def on(what: str, done: int, _total: int, details: dict) -> None:
            done_by[details.get("video", what)] = done
            bar.update(task, completed=sum(done_by.values()))

        with progress_events.listen(on):
            paths = synthetic.generate_world(out_dir, count, seed, (w, h), seconds)
    for p in paths:
        out.print(str(p))


