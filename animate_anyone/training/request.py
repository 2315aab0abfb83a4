"""What a train request may ask, checked without torch: the command line refuses a bad `--stage`
at once instead of after loading the model libraries (seconds on a small machine)."""
from __future__ import annotations

from animate_anyone.config import PipelineConfig
from animate_anyone.errors import PermanentError


class TrainInputError(PermanentError):
    """A train request cannot run as asked; the message says what to change."""


def parse_stages(spec: str | int | None, cfg: PipelineConfig) -> list[int]:
    """``all`` (every configured stage), or one stage number that the pipeline configures."""
    configured = sorted(cfg.train.stages())
    if spec is None or str(spec) == "all":
        if not configured:
            raise TrainInputError(f"pipeline {cfg.name!r} configures no training stage (train.stage0/1/2)", "no_stage")
        return configured
    try:
        stage = int(spec)
    except ValueError:
        raise TrainInputError(f"--stage must be 0, 1, 2 or all; got {spec!r}", "bad_option") from None
    if stage not in (0, 1, 2):
        raise TrainInputError(f"--stage must be 0, 1, 2 or all; got {spec!r}", "bad_option")
    if stage not in configured:
        raise TrainInputError(f"pipeline {cfg.name!r} has no train.stage{stage} section; configured: "
                              f"{configured or 'none'}", "no_stage")
    return [stage]
