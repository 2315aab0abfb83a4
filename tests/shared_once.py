"""Test data made once per test run, whichever pytest-xdist worker asks first, and read by all.

A session fixture is per worker: with three workers, the puppet videos, the pose video and the
used Prefect home were each made three times (about 20 CPU-s a set on 2 cores). Here the first
worker builds the folder under a file lock, in the run's own temporary folder, and the others wait
for it and read it. What is built must be read only: a test that changes files copies them first.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock

_base: Path | None = None


def set_base(tmp_path_factory) -> None:
    """The run's folder: under xdist, the parent of every worker's own (pytest-N/popen-gwK)."""
    global _base
    base = tmp_path_factory.getbasetemp()
    _base = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def built_once(name: str, build: Callable[[Path], object]) -> Path:
    """``base/shared-name``, made by ``build(folder)`` in the first process that asks; a build that
    failed half-way (no ``shared-name.done`` beside it) is made again from empty."""
    if _base is None:
        raise RuntimeError("tests/conftest.py sets the shared folder's base at the session's start")
    dest, done = _base / f"shared-{name}", _base / f"shared-{name}.done"
    with FileLock(f"{dest}.lock"):
        if not done.is_file():
            if dest.exists():
                shutil.rmtree(dest)
            dest.mkdir(parents=True)
            build(dest)
            done.touch()
    return dest
