"""Entry point of each process under `accelerate launch`: run one stage job, write its summary.

    accelerate launch --num_processes N -m animate_anyone.training.launch JOB.json RESULT.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from animate_anyone.training.loop import StageJob, run_stage


def main(argv: list[str]) -> int:
    job = StageJob.from_json(Path(argv[0]).read_text())
    summary = run_stage(job)
    from accelerate import PartialState

    if PartialState().is_main_process and len(argv) > 1:
        Path(argv[1]).write_text(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
