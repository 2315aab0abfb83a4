"""A temporary Prefect API server that lives and dies with the command that started it.

Prefect's own ephemeral server is a uvicorn child process that outlives a killed parent (SIGKILL
leaves it running). This one is the same server, started the same way, but the kernel ends it
when its parent dies (``PR_SET_PDEATHSIG``), and a normal exit, Ctrl-C or SIGTERM stops it too.
Used only when ``PREFECT_API_URL`` is not set (a configured server is always preferred).
"""
from __future__ import annotations

import atexit
import ctypes
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGKILL it when the parent process goes away."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass  # not Linux: the atexit and signal handlers below still stop it on a normal exit
    os.setpgrp()  # out of the terminal's group: Ctrl-C reaches the CLI, which stops the server in order


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_temporary_server(timeout_s: float = 90.0) -> subprocess.Popen | None:
    """Start the server, wait until it answers, and point this process's Prefect client at it."""
    if os.environ.get("PREFECT_API_URL"):
        return None
    # prefect is not imported here: its settings are read at import, after PREFECT_API_URL is set
    package = Path(importlib.util.find_spec("prefect").origin).parent
    port = _free_port()
    env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
    cmd = [sys.executable, "-m", "uvicorn", "--app-dir", str(package.parent), "--factory",
           "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(port), "--log-level",
           "error", "--lifespan", "on"]
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(cmd, env=env, preexec_fn=_die_with_parent, stdout=subprocess.DEVNULL, stderr=log)
    atexit.register(stop, proc)
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            err = log.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"the temporary Prefect server exited with code {proc.returncode}: {err}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            time.sleep(0.2)
    else:
        stop(proc)
        raise RuntimeError(f"the temporary Prefect server did not answer within {timeout_s:g} s")
    os.environ["PREFECT_API_URL"] = url
    return proc


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
