"""The web page's command: app."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from animate_anyone.cli.app import _config, _fail, app, out
from animate_anyone.cli.ops import _prefect_server
from animate_anyone.errors import AnimateAnyoneError


@app.command("app")
def web_app(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to serve on (0.0.0.0: every interface; the page has no login)."),
    port: int = typer.Option(7860, "--port", min=1, max=65535, help="Port to serve on."),
    deployment: bool = typer.Option(False, "--deployment", help="Send each request to the pipeline's animate deployment (its GPU workers do the work) and follow the run, instead of animating in this process."),
    api_url: Optional[str] = typer.Option(None, "--api-url", help="With --deployment: the Prefect server's API (default: PREFECT_API_URL)."),
    open_browser: bool = typer.Option(False, "--open/--no-open", help="Open the page in this machine's browser."),
    pipeline: Optional[str] = typer.Option(None, "--pipeline", help="Pipeline whose data root, models and animate settings to use."),
    data_root: Optional[str] = typer.Option(None, "--data-root", help="Override the pipeline's data root."),
    config: Optional[Path] = typer.Option(None, "--config", help="Pipelines file."),
) -> None:
    """Open the web page: animate a picture along a pose video, a video or a clip; browse clips, failures, training runs and leaderboards."""
    cfg = _config(pipeline, config, data_root=data_root)
    if not host.strip() or any(c.isspace() for c in host):
        _fail(AnimateAnyoneError(f"--host {host!r}: not an address (e.g. 127.0.0.1, or 0.0.0.0 for every interface)"))
    try:
        import gradio  # noqa: F401
    except ImportError:
        _fail(AnimateAnyoneError("the web page needs Gradio: pip install 'animate-anyone[app]' (or: make install)"))
    from animate_anyone.app.service import AppService, RequestError

    name = None
    if deployment:
        if "://" in cfg.data_root:
            _fail(AnimateAnyoneError(f"--deployment: the data root {cfg.data_root} is on object storage; the page "
                                     "hands the workers file paths, so it and they need a data root on a shared file "
                                     "system (or run the page without --deployment)"))
        _prefect_server(api_url, "--deployment needs the Prefect server the pipeline is deployed on: give its API "
                                 "with --api-url or PREFECT_API_URL (e.g. http://127.0.0.1:4200/api)")
        name = f"animate/{cfg.name}"
    elif api_url is not None:
        _fail(AnimateAnyoneError("--api-url is for --deployment (without it the page animates in this process)"))
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    service = AppService(cfg, config, deployment=name)
    if name:
        try:
            service.check_deployment()
        except RequestError as exc:
            _fail(exc)
    from animate_anyone.app.page import launch

    out.print(f"the page for pipeline {cfg.name} ({'deployment ' + name if name else 'animating in this process'}), "
              f"data root {service.root.uri}; Ctrl-C stops it", highlight=False)
    launch(service, host, port, open_browser)
