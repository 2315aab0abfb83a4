"""What every section shares: strict, frozen models and the plain-name pattern."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict

NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"  # a folder name: no separator, never `.`, `..` or hidden


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_cron(value: str | None) -> str | None:
    """A cron expression as Prefect's schedules read it (cronsim, Prefect's own dependency)."""
    if value is not None:
        import datetime as dt

        from cronsim import CronSim, CronSimError

        try:
            CronSim(value, dt.datetime.now(dt.timezone.utc))
        except CronSimError as exc:
            raise ValueError(f"{value!r} is not a cron expression (minute hour day month weekday): {exc}") from None
    return value
