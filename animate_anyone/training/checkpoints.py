"""Training checkpoints: atomic folders `step-NNNNNNNN/` under a run's folder, the last N kept.

A checkpoint holds accelerate's state (model, optimizer, LR scheduler, RNG states) and
`trainer.json` (step, the NaN streak, the metrics so far). It is written under a temporary name
and renamed into place, so a crash or a full disk during a save leaves the previous checkpoint as
the newest complete one; only complete folders are ever resumed from.
"""

from __future__ import annotations

import json
from pathlib import Path

from animate_anyone import storage
from animate_anyone.errors import PermanentError
from animate_anyone.files import remove_tree
from animate_anyone.models import store


class CheckpointSaveError(PermanentError):
    """A checkpoint could not be written (a full disk, no permission); the previous one is kept."""


def checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first (the layout is the model store's)."""
    return store.checkpoints(run_dir)


def latest(run_dir: Path) -> Path | None:
    found = checkpoints(run_dir)
    return found[-1] if found else None


def save(accelerator, run_dir: Path, step: int, trainer: dict, keep: int) -> Path:
    """Save on every process (accelerate gathers), rename on the main one; prune to ``keep``."""
    run_dir = Path(run_dir)
    final = run_dir / f"step-{step:08d}"
    tmp = run_dir / f".step-{step:08d}.tmp"
    if accelerator.is_main_process and tmp.exists():
        remove_tree(tmp, run_dir)
    accelerator.wait_for_everyone()
    try:
        accelerator.save_state(str(tmp), safe_serialization=True)
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            (tmp / "trainer.json").write_text(json.dumps(trainer))
            if final.exists():
                remove_tree(final, run_dir)
            tmp.rename(final)
            storage.publish(final)  # a store's mirror: uploaded, trainer.json last
    except BaseException as exc:
        if accelerator.is_main_process and tmp.exists():
            remove_tree(tmp, run_dir)
        if isinstance(exc, OSError):
            kept = latest(run_dir)
            raise CheckpointSaveError(
                f"cannot save the step {step} checkpoint in {run_dir} ({exc.strerror or exc}); "
                + (f"the previous checkpoint {kept.name} is intact" if kept else "no earlier checkpoint exists"),
                "checkpoint_failed") from exc
        raise
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        for old in checkpoints(run_dir)[:-keep]:
            remove_tree(old, run_dir)
    return final


def load(accelerator, path: Path) -> dict:
    storage.fetch(path)
    accelerator.load_state(str(path))
    return json.loads((Path(path) / "trainer.json").read_text())


def remove_all(run_dir: Path) -> None:
    for p in checkpoints(run_dir):
        remove_tree(p, run_dir)


def remove_temporary(run_dir: Path) -> None:
    """Leftovers of saves that a crash interrupted."""
    for p in Path(run_dir).glob(".step-*.tmp"):
        remove_tree(p, run_dir)
