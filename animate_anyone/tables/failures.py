"""The ``failures`` table: one part per failing item, every attempt kept until the item succeeds."""
from __future__ import annotations

from animate_anyone.errors import is_retryable
from animate_anyone.provenance import now
from animate_anyone.tables.io import Dataset


def record(ds: Dataset, stage: str, item_id: str, source: str, exc: BaseException,
           part: str | None = None) -> dict:
    """Append an attempt for ``item_id`` (the part is ``part`` or the item id); returns the row."""
    part = part or item_id
    with ds.lock():  # read, append, write: one writer at a time
        previous = ds.read_part("failures", part)
        row = _row(stage, item_id, source, exc, len(previous) + 1)
        ds.write("failures", part, previous + [row])
    return row


def _row(stage: str, item_id: str, source: str, exc: BaseException, attempt: int) -> dict:
    return {"stage": stage, "item_id": item_id, "source": source, "error_class": type(exc).__name__,
            "reason": getattr(exc, "reason", type(exc).__name__),
            "message": getattr(exc, "message", None) or str(exc) or type(exc).__name__,
            "retryable": is_retryable(exc), "attempt": attempt, "at": now()}


def clear(ds: Dataset, part: str) -> bool:
    """The item succeeded: its failure history goes (its own table now says it is fine)."""
    return ds.delete("failures", part)
