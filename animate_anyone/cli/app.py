"""The command line's shared parts: the Typer app, its consoles and exit codes, the native-log
filter, configuration loading and error reporting."""
from __future__ import annotations

import atexit
import logging
import os
import re
import signal
import sys
import threading
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

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


def _check_snapshot(cfg, snapshot: str | None) -> None:
    """A ``--snapshot`` that names no saved snapshot is refused before torch and diffusers load
    (about 5 CPU-s); the command itself reads it again, with the same message."""
    if snapshot is None:
        return
    from animate_anyone.tables.io import Dataset
    from animate_anyone.tables.selection import load_snapshot

    try:
        load_snapshot(Dataset.of(cfg), snapshot)
    except AnimateAnyoneError as exc:
        _fail(exc)


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

        def on(what: str, done: int, total: int, details: dict) -> None:
            bar.update(task, completed=done, total=total, description=what)

        with progress_events.listen(on):
            return fn(*args, **kwargs)



def _terminate(signum, _frame) -> None:
    """SIGTERM (``kill PID``) ends the run like Ctrl-C: cleanup runs, the temporary server stops."""
    raise SystemExit(128 + signum)


def main() -> None:
    if "--verbose" not in sys.argv[1:2]:
        _filter_native_stderr()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, _terminate)
    app()



