"""What every table row that records work says about when and by what: the time (UTC) and the
code's version."""
from __future__ import annotations

import datetime as dt
import subprocess
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


def now() -> dt.datetime:
    """The current time, in UTC (what the tables' timestamp columns hold)."""
    return dt.datetime.now(dt.timezone.utc)


@lru_cache(maxsize=1)
def _commit() -> str:
    repo = Path(__file__).resolve().parents[1]
    if not (repo / ".git").exists():
        return ""
    try:
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return f"+g{commit}" + (".dirty" if dirty else "") if commit else ""


def code_version() -> str:
    """The package version and, in a git checkout, the commit (with '.dirty' for local changes)."""
    try:
        v = version("animate-anyone")
    except PackageNotFoundError:
        v = "unknown"
    return v + _commit()
