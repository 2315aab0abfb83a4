"""What every flow shares: where task results persist, and retry delays from the config."""
from __future__ import annotations

from prefect.filesystems import LocalFileSystem

from animate_anyone.config import Retries
from animate_anyone.ids import sha256_json
from animate_anyone.tables.io import DataRoot


def cached_task_options(root: DataRoot, refresh: bool = False) -> dict:
    """Persist task results under the data root, so the cache lives and dies with the data.

    ``refresh`` recomputes every step and overwrites its cache entry (after deleting files by hand).
    """
    name = "animate-anyone-results-" + sha256_json(str(root.path))[:12]
    LocalFileSystem(basepath=str(root.path / ".prefect" / "results")).save(name, overwrite=True)
    return {"persist_result": True, "result_storage": f"local-file-system/{name}", "refresh_cache": refresh}


def retry_delays(r: Retries) -> list[float]:
    """Exponential backoff: backoff_s, 2×, 4×… capped at max_backoff_s (jitter is Prefect's)."""
    return [min(r.backoff_s * 2**i, r.max_backoff_s) for i in range(max(r.attempts - 1, 0))]
