"""Progress reports from long work to whoever listens (the CLI's progress bars).

The library and the flows call :func:`report`; nothing listens unless a caller wraps the work in
:func:`listen`, so library code stays free of terminal output.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

Listener = Callable[[str, int, int], None]  # (what, done, total)
_listeners: list[Listener] = []


def report(what: str, done: int, total: int) -> None:
    for fn in list(_listeners):
        fn(what, done, total)


@contextmanager
def listen(fn: Listener) -> Iterator[None]:
    _listeners.append(fn)
    try:
        yield
    finally:
        _listeners.remove(fn)
