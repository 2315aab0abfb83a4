"""The web page's test data root, made once per test run: two puppet videos cut into clips whose
poses are the puppet world's truth, a tiny model trained for a few steps of stage 1 (a training run
with its loss per step), its evaluation beside the still reference (a leaderboard and grid videos),
a tiny UniAnimate model (the store holds both families) and one request that could not be
animated (a `failures` row)."""
from __future__ import annotations

from pathlib import Path

import shared_once
from train_data import CONFIG, build_train_root

EVALUATE = """
    evaluate: {split: train, clips: 2, frames: 6, width: 32, height: 64, steps: 2, guidance: 1.0, window: 6,
               overlap: 2, device: cpu, dtype: float32, lpips: null, untrained: false}
    animate: {model: tiny-stage1, frames: 4, steps: 2, guidance: 1.0, device: cpu, dtype: float32, retarget: false}
"""


def write_config(folder: Path, root: Path) -> Path:
    path = folder / "pipelines.yaml"
    # no stage 0: stage 1 starts from the tiny model's random VAE (its six steps are what the loss curve shows)
    text = "\n".join(line for line in CONFIG.format(root=root, extra1="").splitlines() if "stage0:" not in line)
    path.write_text(text + "\n" + EVALUATE)
    return path


def build(out: Path) -> None:
    from animate_anyone import animate as lib
    from animate_anyone.config import load_config
    from animate_anyone.evaluation.run import evaluate
    from animate_anyone.training.run import train
    from animate_anyone.unianimate_pipeline import create_model

    root = out / "data"
    build_train_root(root, videos=2)
    cfg = load_config("t", write_config(out, root))
    train(cfg, "1", stream=lambda line: None)
    evaluate(cfg, "tiny-stage1", log=lambda line: None)
    create_model(root / "models" / "ua-tiny", "tiny", seed=0)
    try:  # a request that cannot be animated: its row in `failures`
        lib.run_animate(cfg, lib.AnimateRequest(reference=str(out / "no-such.png"), pose="c00", model="tiny-stage1"))
    except lib.AnimateInputError as exc:
        assert exc.reason == "missing_file", exc.message
    else:
        raise AssertionError("a missing reference was animated")


def app_root() -> Path:
    """The folder holding ``data/`` and ``pipelines.yaml`` (read only: a test that writes copies it)."""
    return shared_once.built_once("app-root", build)
