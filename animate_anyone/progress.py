"""Progress reports from long work to whoever listens: the one shape of progress in the project.

The library and the flows call :func:`report` (what, done, total, and details such as a training
step's loss); nothing listens unless a caller wraps the work in :func:`listen`, so library code
stays free of terminal output. The command line draws bars from the reports, the flows log them,
and a training run's launched processes pass theirs up as lines (``training.launch``).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

Listener = Callable[[str, int, int, dict], None]  # (what, done, total, details)
_listeners: list[Listener] = []


def report(what: str, done: int, total: int, **details) -> None:
    for fn in list(_listeners):
        fn(what, done, total, details)


@contextmanager
def listen(fn: Listener) -> Iterator[None]:
    _listeners.append(fn)
    try:
        yield
    finally:
        _listeners.remove(fn)
