"""A real Prefect server (`prefect server start`), process workers and the project's CLI, each its
own process, as an operator starts them; everything started is stopped at the end, test failed or
not (the process and all its children)."""
from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import psutil
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_tree(proc: subprocess.Popen) -> None:
    """SIGTERM the process and everything it started (flow runs of a worker), then SIGKILL."""
    try:
        procs = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for p in procs:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=15)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    proc.wait(timeout=10)


class Stack:
    """One Prefect server and the workers started on it; ``env`` points a subprocess at it."""

    def __init__(self, home: Path, database_url: str | None = None):
        self.home, self.port = home, _free_port()
        self.url = f"http://127.0.0.1:{self.port}/api"
        self.env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_API_URL": self.url,
                    "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": "false",
                    # the scheduler every 2 s (default 60) and workers polling every second (default 15)
                    "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2", "PREFECT_WORKER_QUERY_SECONDS": "1",
                    "PREFECT_RUNNER_POLL_FREQUENCY": "1", "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
        self.env.pop("PREFECT_API_KEY", None)
        if database_url:
            self.env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
        self.procs: list[subprocess.Popen] = []
        self.logs: dict[str, Path] = {}

    def spawn(self, name: str, args: list[str], cwd: Path, env: dict | None = None) -> subprocess.Popen:
        log = self.home / f"{name}.log"
        self.logs[name] = log
        proc = subprocess.Popen(args, env={**self.env, **(env or {})}, cwd=cwd, stdout=open(log, "w"), stderr=subprocess.STDOUT)  # noqa: SIM115
        self.procs.append(proc)
        return proc

    def start_server(self, timeout_s: float = 180) -> None:
        proc = self.spawn("server", [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port",
                                     str(self.port)], self.home)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"prefect server exited ({proc.returncode}): {self.log('server')[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2):
                    return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"prefect server did not answer in {timeout_s} s: {self.log('server')[-3000:]}")

    def start_worker(self, pool: str, cwd: Path, env: dict | None = None, name: str | None = None) -> subprocess.Popen:
        """A process worker polling ``pool`` (``env``: what differs on its machine)."""
        name = name or f"test-{pool}"
        return self.spawn(f"worker-{name}" if name != f"test-{pool}" else f"worker-{pool}",
                          [str(BIN / "prefect"), "worker", "start", "--pool", pool, "--type", "process", "--name", name],
                          cwd, env)

    def log(self, name: str) -> str:
        return self.logs[name].read_text(errors="replace") if name in self.logs else ""

    def run(self, args: list[str], cwd: Path, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(args, env={**self.env, **(env or {})}, cwd=cwd, capture_output=True, text=True, timeout=timeout)

    @contextmanager
    def client(self):
        """A Prefect client of this server (not the test session's own temporary one)."""
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings({PREFECT_API_URL: self.url}), get_client(sync_client=True) as c:
            yield c

    def stop(self) -> None:
        for proc in reversed(self.procs):
            stop_tree(proc)


def write_pipelines(path: Path, data_root: Path, **deploy) -> Path:
    """The demo pipeline at its smallest: one short puppet video, tiny training, a tiny animation."""
    cfg = yaml.safe_load((REPO / "pipelines.yaml").read_text())
    demo = cfg["pipelines"]["demo"]
    demo["sources"]["puppets"].update({"count": 1, "seed": 5, "width": 256, "height": 448, "seconds": 7})
    demo["ingest"]["download"]["retries"] = {"attempts": 2, "backoff_s": 0.05, "max_backoff_s": 0.1, "jitter": 0.1}
    demo["data_root"] = str(data_root)
    # one video has no test split, so no stranger to take the reference from: another clip's frame
    demo["animate"].update(model="tiny-random", height=64, width=32, frames=4, steps=2, reference="clip:auto")
    demo["deploy"] = deploy
    cfg["pipelines"] = {"test": demo}
    cfg["default"] = "test"
    path.write_text(yaml.safe_dump(cfg))
    return path


ADMIN_URL = os.environ.get("POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def sql(statement: str, url: str = ADMIN_URL):
    import asyncpg

    async def go():
        conn = await asyncpg.connect(url, timeout=5)
        try:
            return await conn.fetch(statement)
        finally:
            await conn.close()

    return asyncio.run(go())
