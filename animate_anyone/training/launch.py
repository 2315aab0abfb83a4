"""Entry point of each process under `accelerate launch` (or `torchrun`): run one stage job,
write its summary. The main process's ``progress`` reports go to stdout as ``PROGRESS`` lines
(JSON), which the launching process reports again as its own (`run.launch`).

    accelerate launch --num_processes N -m animate_anyone.training.launch JOB.json RESULT.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from animate_anyone import progress
from animate_anyone.training.loop import StageJob, run_stage

PROGRESS = "@@progress "


def print_report(what: str, done: int, total: int, details: dict) -> None:
    """A ``progress`` report as one line on stdout."""
    print(PROGRESS + json.dumps({"what": what, "done": done, "total": total, "details": details}), flush=True)


def main(argv: list[str]) -> int:
    import warnings

    # DDP's note on 1x1 convolutions' gradient strides (channels-last grads): a copy, not an error
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    job = StageJob.from_json(Path(argv[0]).read_text())
    with progress.listen(print_report):
        summary = run_stage(job)
    from accelerate import PartialState

    if PartialState().is_main_process and len(argv) > 1:
        Path(argv[1]).write_text(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
