"""`animate-anyone train` as a person types it: relative paths, one process per step, the trained
model loaded by `animate` in another process, a killed run started again, bad flags refused."""
from __future__ import annotations

import json
import shutil
import signal
import time
from pathlib import Path

import pytest
from train_data import CONFIG, build_train_root


@pytest.fixture()
def trainable(cli, tmp_path_factory) -> Path:
    """A data root at ./data (in the command's directory) and ./pipelines.yaml naming it relatively."""
    build_train_root(cli.cwd / "data", videos=2)
    (cli.cwd / "pipelines.yaml").write_text(CONFIG.format(root="./data", extra1=""))
    return cli.cwd / "data"


def test_train_then_animate_in_new_processes(cli, trainable):
    out = cli("train", "--max-steps", "2")
    assert "training on snapshot" in out.stdout and "trained model:" in out.stdout
    assert (trainable / "models" / "tiny" / "model_index.json").is_file()
    # a new process loads what training saved, by NAME and by relative path
    clip = json.loads((trainable / "snapshots" / "demo" / "latest.json").read_text())["snapshot_id"]
    snap = json.loads((trainable / "snapshots" / "demo" / f"{clip}.json").read_text())
    for model in ("tiny", "data/models/tiny-stage1"):
        res = cli("animate", "--model", model, "--reference", f"clip:{snap['clip_ids'][0]}", "--pose",
                  snap["clip_ids"][1], "--frames", "6", "--steps", "2", "--height", "64", "--out", f"a-{len(model)}.mp4")
        assert (cli.cwd / f"a-{len(model)}.mp4").is_file(), res.stdout
    # the same command again: every stage is already trained that far
    again = cli("train", "--max-steps", "2")
    assert again.stdout.count("cached") == 3


BAD_FLAGS = [(["--max-steps", "0"], "--max-steps"), (["--max-steps", "-3"], "--max-steps"),
             (["--max-steps", "two"], "--max-steps"), (["--stage", "5"], "--stage must be 0, 1, 2 or all"),
             (["--stage", "x"], "--stage must be 0, 1, 2 or all"), (["--snapshot", "snope"], "no snapshot 'snope'")]


def test_bad_flags_are_refused_before_anything_runs(cli, trainable):
    early = cli.without_torch()  # each is refused before torch loads
    for args, message in BAD_FLAGS:
        out = early("train", *args, check=2)
        assert message in out.stdout + out.stderr, args
    assert not (trainable / "checkpoints").exists()


def test_a_killed_run_resumes_from_its_last_checkpoint(cli, trainable):
    """SIGKILL while stage 1 trains (after its first checkpoint), then the same command again."""
    cfg = (cli.cwd / "pipelines.yaml").read_text().replace("stage1: {steps: 6,", "stage1: {steps: 40,")
    (cli.cwd / "pipelines.yaml").write_text(cfg)
    proc = cli.start("train", log="train.log")
    deadline = time.time() + 300
    while time.time() < deadline and not list((trainable / "checkpoints").glob("t-s1-*/step-*")):
        time.sleep(0.5)
    assert list((trainable / "checkpoints").glob("t-s1-*/step-*")), (cli.cwd / "train.log").read_text()[-3000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = sorted((trainable / "checkpoints").glob("t-s1-*/step-*"))
    cli("train")
    runs_dir = done[0].parent
    trainer = json.loads(sorted(runs_dir.glob("step-*"))[-1].joinpath("trainer.json").read_text())
    steps = [m["step"] for m in trainer["metrics"]]
    assert steps == list(range(1, 41))  # every step once: resumed, not restarted or repeated
    assert (trainable / "models" / "tiny" / "model_index.json").is_file()
    shutil.rmtree(trainable / "checkpoints")
