"""The ``failures`` table: every failed attempt of an item, kept until the item succeeds.

Each attempt is its own part (``<item>~<attempt>-<random>``): recording one reads nothing and
rewrites nothing, so two machines failing the same item at once keep both attempts without a lock
(they may both number theirs the same; ``at`` orders them). Success removes the item's parts.
"""
from __future__ import annotations

import uuid

from animate_anyone.errors import is_retryable
from animate_anyone.provenance import now
from animate_anyone.tables.io import Dataset


def record(ds: Dataset, stage: str, item_id: str, source: str, exc: BaseException,
           part: str | None = None) -> dict:
    """Add an attempt for ``item_id`` (its parts are named after ``part`` or the item id); returns the row."""
    part = part or item_id
    row = _row(stage, item_id, source, exc, len(attempts(ds, part)) + 1)
    ds.write("failures", f"{part}~{row['attempt']:04d}-{uuid.uuid4().hex[:8]}", [row])
    return row


def attempts(ds: Dataset, part: str) -> list[str]:
    """The part names holding ``part``'s attempts (and a part of the layout before attempts had their own)."""
    folder = ds.part_path("failures", part).parent
    names = [p.stem for p in ds.root.glob(folder, f"{part}~*.parquet")]
    return ([part] if ds.root.exists(ds.part_path("failures", part)) else []) + sorted(names)


def _row(stage: str, item_id: str, source: str, exc: BaseException, attempt: int) -> dict:
    return {"stage": stage, "item_id": item_id, "source": source, "error_class": type(exc).__name__,
            "reason": getattr(exc, "reason", type(exc).__name__),
            "message": getattr(exc, "message", None) or str(exc) or type(exc).__name__,
            "retryable": is_retryable(exc), "attempt": attempt, "at": now()}


def clear(ds: Dataset, part: str) -> bool:
    """The item succeeded: its failure history goes (its own table now says it is fine)."""
    removed = False
    for name in attempts(ds, part):
        removed = ds.delete("failures", name) or removed
    return removed
