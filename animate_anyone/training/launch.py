"""Entry point of each process under `accelerate launch` (or `torchrun`): run one stage job,
write its summary. The main process reports every step on stdout as one ``PROGRESS`` line (JSON),
which the launching process turns back into its progress bar or log (`run.launch`).

    accelerate launch --num_processes N -m animate_anyone.training.launch JOB.json RESULT.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from animate_anyone.training.loop import StageJob, run_stage

PROGRESS = "@@progress "


def progress_lines(first: int, end: int, stage: int):
    """The loop's progress hook, as lines on stdout (the main process calls it)."""
    def on_step(step: int, row: dict) -> None:
        fields = {k: row[k] for k in ("loss", "samples_per_s") if k in row}
        print(PROGRESS + json.dumps({"first": first, "end": end, "stage": stage, "step": step, **fields}), flush=True)
    return on_step


def main(argv: list[str]) -> int:
    import warnings

    # DDP's note on 1x1 convolutions' gradient strides (channels-last grads): a copy, not an error
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    job = StageJob.from_json(Path(argv[0]).read_text())
    summary = run_stage(job, progress_lines)
    from accelerate import PartialState

    if PartialState().is_main_process and len(argv) > 1:
        Path(argv[1]).write_text(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
