"""Atomic writes and the data-root lock: the two habits that make concurrent and killed runs safe.

Every file the project writes appears under its name only when complete: it is written to a
temporary name unique to the writer (machine, process id and a random part, so two runs never
share one), then renamed into place. Readers glob real names only, so they never see a half file.
A run killed by SIGKILL cannot remove its temporary files; the next writer in the same folder on
the same machine removes those whose process is gone (:func:`sweep_temporaries`). In the
mirror of an object-storage data root the rename is followed by the upload (``storage.publish``).
Writes to the tables and the catalog of one local data root are serialised by
:func:`data_root_lock`; on a store there is no lock, and none is needed (every writer writes its
own parts).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from filelock import FileLock, Timeout

from animate_anyone import storage
from animate_anyone.errors import PermanentError

LOCK_NAME = ".lock"
LOCK_TIMEOUT_S = float(os.environ.get("ANIMATE_ANYONE_LOCK_TIMEOUT", "600"))


HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]  # names this machine in temporary names
TEMP = re.compile(r"^\..+\.(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-[0-9a-f]{8}\.[a-z0-9]+$")
_swept: set[Path] = set()
_swept_lock = threading.Lock()


def temp_name(dest: Path) -> Path:
    """A hidden sibling of ``dest`` that no other writer uses and no reader globs.

    The first call for a folder in a process removes the leftovers of dead writers there
    (:func:`sweep_temporaries`)."""
    dest = Path(dest)
    sweep_temporaries(dest.parent)
    return dest.with_name(f".{dest.name}.{HOST}-{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        pass
    return True


def sweep_temporaries(folder: Path) -> list[Path]:
    """Remove the temporary files and folders in ``folder`` that a writer on this machine left when
    it was killed (its process is gone); once per folder and process. Another machine's temporary
    names are left alone (its processes cannot be seen from here), and so are a running writer's."""
    folder = Path(folder)
    with _swept_lock:
        if folder in _swept:
            return []
        _swept.add(folder)
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:  # not there yet, or not ours to list
        return removed
    for entry in entries:
        m = TEMP.match(entry.name)
        if not m or m["host"] != HOST or _running(int(m["pid"])):
            continue
        path = Path(entry.path)
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
        except OSError:  # another sweeper was first, or not ours to remove
            continue
    return removed


@contextmanager
def atomic_path(dest: Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``dest`` (and is uploaded when
    ``dest`` lies in a store's mirror), on error it goes."""
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
    storage.publish(dest)


def write_text(dest: Path, text: str) -> Path:
    with atomic_path(dest) as tmp:
        tmp.write_text(text)
    return Path(dest)


def write_json(dest: Path, data: Any) -> Path:
    return write_text(dest, json.dumps(data, indent=1, default=str))


class UnsafeRemoval(PermanentError):
    """A removal was asked for a path outside the folder the code owns; nothing was removed."""


def remove_tree(path: Path, owner: Path) -> bool:
    """Remove ``path`` (a folder, a file or a link; a link itself, never what it points to) only
    when it lies strictly inside ``owner``. This is the project's one way to delete a tree: names
    from a configuration (``.``, ``..``, ``a/../..``) can never turn it on the data root or above.
    Returns whether something was removed."""
    path, owner = Path(path), Path(owner).resolve()
    if path.name in ("", ".", ".."):
        raise UnsafeRemoval(f"refusing to remove {path}: not a plain name inside {owner}", "unsafe_remove")
    real = path.parent.resolve() / path.name  # the parent resolved, the last part kept (a link stays a link)
    if owner not in real.parents:
        raise UnsafeRemoval(f"refusing to remove {path}: it is not strictly inside {owner}", "unsafe_remove")
    removed = False
    if real.is_symlink() or real.is_file():
        real.unlink()
        removed = True
    elif real.is_dir():
        shutil.rmtree(real)
        removed = True
    if storage.store_of(real) is not None and storage.exists(real):
        storage.unpublish(real)
        removed = True
    return removed


def check_name(name: str, what: str) -> str:
    """``name`` if it is one plain folder or file name (no separator, not ``.``/``..``, not hidden)."""
    if not name or name.startswith(".") or "/" in name or "\\" in name or name.strip() != name:
        raise PermanentError(f"{what} {name!r}: give a plain name (letters, digits, '_', '.', '-'; no path separator, "
                             "not starting with a dot)", "bad_name")
    return name


def replace_dir(tmp: Path, dest: Path) -> None:
    """Put the finished folder ``tmp`` where ``dest`` is (the old one, if any, is removed after;
    in a store's mirror the folder is uploaded, its marker file last)."""
    dest = Path(dest)
    if dest.exists() or dest.is_symlink():
        old = temp_name(dest)
        os.replace(dest, old)
        os.replace(tmp, dest)
        if old.is_symlink() or old.is_file():
            old.unlink()
        else:
            shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, dest)
    storage.publish(dest)


class UnusableDataRoot(PermanentError):
    """The data root is a file, cannot be created or cannot be written; the message names it."""


def unusable_message(root_path: Path, exc: OSError) -> str:
    """What is wrong with a data root, from the error its first write raised."""
    if isinstance(exc, (FileExistsError, NotADirectoryError)):
        why = "it (or a folder above it) is a file, not a folder"
    elif isinstance(exc, PermissionError):
        why = "no permission to write there"
    else:
        why = exc.strerror or str(exc)
    return f"data root {root_path}: cannot be used ({why}); give a folder you can write with --data-root or data_root"


def check_data_root(root_path: Path, write: bool = True) -> None:
    """Refuse a data root that is a file or (``write``) cannot be written, before anything runs.
    A store's mirror is checked by a probe object in the store."""
    root_path = Path(root_path)
    store = storage.store_of(root_path)
    if store is not None:
        store.prepare(write)
        return
    existing = next(p for p in (root_path, *root_path.parents) if p.exists())  # nothing is created here
    if not existing.is_dir():
        raise UnusableDataRoot(unusable_message(root_path, NotADirectoryError()), "unusable_data_root")
    if not write:
        return
    try:
        probe = temp_name(existing / "write-probe")
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise UnusableDataRoot(unusable_message(root_path, exc), "unusable_data_root") from exc


class LockTimeout(PermanentError):
    """Another run held the data root's lock for longer than the timeout."""


@contextmanager
def data_root_lock(root_path: Path, timeout: float | None = None) -> Iterator[None]:
    """Hold the data root's write lock (re-entrant within a process and thread).

    Several runs on one data root wait their turn for table and catalog writes; after
    ``timeout`` seconds (``$ANIMATE_ANYONE_LOCK_TIMEOUT``, default 600) the run stops with a
    message that names the lock file. In a store's mirror only the threads of this process take
    turns: a store has no lock that other machines would see, and its writers need none.
    """
    root_path = Path(root_path)
    if storage.store_of(root_path) is not None:
        with _registry:
            thread_lock = _store_locks.setdefault(str(root_path), threading.RLock())
        with thread_lock:
            yield
        return
    path = root_path / LOCK_NAME
    try:
        root_path.mkdir(parents=True, exist_ok=True)
        path.touch(exist_ok=True)
    except OSError as exc:
        raise UnusableDataRoot(unusable_message(root_path, exc), "unusable_data_root") from exc
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
_store_locks: dict[str, threading.RLock] = {}
