"""The e2e lane: the installed `animate-anyone` in a new process per step, from a clean working
directory, with relative paths, exactly as the README writes the commands."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import shared_once

BIN = Path(sys.executable).parent / "animate-anyone"


def pytest_collection_modifyitems(items):
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


class Cli:
    """Runs `animate-anyone ARGS` in ``cwd`` with a private Prefect home and no configured server."""

    def __init__(self, cwd: Path, home: Path):
        self.cwd, self.home = cwd, home
        self.env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                    "COLUMNS": "250"}  # rich wraps at 80 columns without a terminal
        for k in ("PREFECT_API_URL", "ANIMATE_ANYONE_CONFIG"):
            self.env.pop(k, None)

    def __call__(self, *args: str, timeout: float = 600, check: int | None = 0) -> subprocess.CompletedProcess:
        out = subprocess.run([str(BIN), *args], cwd=self.cwd, env=self.env, capture_output=True, text=True,
                             timeout=timeout, stdin=subprocess.DEVNULL)
        if check is not None:
            assert out.returncode == check, f"exit {out.returncode}\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
        return out

    def served(self, url: str) -> "Cli":
        """The same CLI with a Prefect server configured (``PREFECT_API_URL``), as an operator who
        runs `prefect server start` has it: the flow commands then start no server of their own
        (about 4 CPU-s each). The path without one is the default, and the killed, concurrent and
        first-run tests keep it."""
        return self._with(PREFECT_API_URL=url)

    def without_torch(self) -> "Cli":
        """The same CLI where importing torch fails: for refusals that must come before it loads
        (it and diffusers cost a process 5 CPU-s before anything is checked)."""
        poison = self.cwd.parent / "no-torch" / "torch"
        poison.mkdir(parents=True, exist_ok=True)
        (poison / "__init__.py").write_text("raise ImportError('torch was imported before the flags were checked')\n")
        return self._with(PYTHONPATH=os.pathsep.join(filter(None, [str(poison.parent), self.env.get("PYTHONPATH")])))

    def _with(self, **env: str) -> "Cli":
        other = Cli(self.cwd, self.home)
        other.env.update(env)
        return other

    def start(self, *args: str, log: str) -> subprocess.Popen:
        fh = open(self.cwd / log, "w")  # noqa: SIM115 - closed by the caller's wait
        return subprocess.Popen([str(BIN), *args], cwd=self.cwd, env=self.env, stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)


def _migrated_home(home: Path) -> None:
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    subprocess.run([sys.executable, "-c", "from flows.server import start_temporary_server; start_temporary_server()"],
                   env=env, check=True, timeout=300, stdin=subprocess.DEVNULL)
    assert (home / "prefect.db").is_file(), sorted(p.name for p in home.iterdir())


@pytest.fixture(scope="session")
def used_prefect_home() -> Path:
    """A Prefect home as a user's is after their first command: its database made and migrated
    (read only: each test copies it). A fresh home costs each first command about 10 s of
    migrations on 2 cores; the first-run path itself is the demo's test (tests/test_cli.py), which
    starts from an empty home."""
    return shared_once.built_once("prefect-home-used", _migrated_home)


@pytest.fixture()
def cli(tmp_path, used_prefect_home) -> Cli:
    work = tmp_path / "work"
    work.mkdir()
    shutil.copytree(used_prefect_home, tmp_path / "prefect-home")
    return Cli(work, tmp_path / "prefect-home")


@pytest.fixture()
def prefect_url(prefect_server) -> str:
    """The API of this worker's Prefect test server, for `Cli.served`."""
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value()
