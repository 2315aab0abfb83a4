"""Atomic writes and the data-root lock: the two habits that make concurrent and killed runs safe.

Every file the project writes appears under its name only when complete: it is written to a
temporary name unique to the writer (process id and a random part, so two runs never share one),
then renamed into place. Readers glob real names only, so they never see a half file. Writes to
the tables and the catalog of one data root are serialised by :func:`data_root_lock`.
"""
from __future__ import annotations

import json
import os
import shutil
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from filelock import FileLock, Timeout

from animate_anyone.errors import PermanentError

LOCK_NAME = ".lock"
LOCK_TIMEOUT_S = float(os.environ.get("ANIMATE_ANYONE_LOCK_TIMEOUT", "600"))


def temp_name(dest: Path) -> Path:
    """A hidden sibling of ``dest`` that no other writer uses and no reader globs."""
    dest = Path(dest)
    return dest.with_name(f".{dest.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")


@contextmanager
def atomic_path(dest: Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``dest``, on error it goes."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(dest)
    try:
        yield tmp
        os.replace(tmp, dest)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def write_text(dest: Path, text: str) -> Path:
    with atomic_path(dest) as tmp:
        tmp.write_text(text)
    return Path(dest)


def write_json(dest: Path, data: Any) -> Path:
    return write_text(dest, json.dumps(data, indent=1, default=str))


def replace_dir(tmp: Path, dest: Path) -> None:
    """Put the finished folder ``tmp`` where ``dest`` is (the old one, if any, is removed after)."""
    dest = Path(dest)
    if dest.exists():
        old = temp_name(dest)
        os.replace(dest, old)
        os.replace(tmp, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, dest)


class LockTimeout(PermanentError):
    """Another run held the data root's lock for longer than the timeout."""


@contextmanager
def data_root_lock(root_path: Path, timeout: float | None = None) -> Iterator[None]:
    """Hold the data root's write lock (re-entrant within a process and thread).

    Several runs on one data root wait their turn for table and catalog writes; after
    ``timeout`` seconds (``$ANIMATE_ANYONE_LOCK_TIMEOUT``, default 600) the run stops with a
    message that names the lock file.
    """
    root_path = Path(root_path)
    root_path.mkdir(parents=True, exist_ok=True)
    path = root_path / LOCK_NAME
    with _registry:
        thread_lock, file_lock = _locks.setdefault(str(path), (threading.RLock(), FileLock(str(path), thread_local=False)))
    wait = LOCK_TIMEOUT_S if timeout is None else timeout
    started = time.monotonic()
    message = (f"{path}: another run has held this data root's write lock for over {wait:g} s; wait for it to "
               "finish (or set ANIMATE_ANYONE_LOCK_TIMEOUT)")
    # threads of this process queue on the RLock; processes on the file lock (one holder at a time)
    if not thread_lock.acquire(timeout=wait):
        raise LockTimeout(message, "lock_timeout")
    try:
        try:
            file_lock.acquire(timeout=max(0.0, wait - (time.monotonic() - started)))
        except Timeout as exc:
            raise LockTimeout(message, "lock_timeout") from exc
        try:
            yield
        finally:
            file_lock.release()
    finally:
        thread_lock.release()


_registry = threading.Lock()
_locks: dict[str, tuple[threading.RLock, FileLock]] = {}
