"""`animate-anyone evaluate` as a person types it: after `train` in another process, relative
paths, the leaderboard printed, the tables queried by `query`, a second run that scores nothing,
a killed evaluation finished by two copies of the same command at once, and bad flags refused
(before any model is loaded where no file says otherwise)."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from train_data import CONFIG, build_train_root

pytestmark = pytest.mark.slow

EVALUATE = """
    evaluate: {split: train, clips: 2, frames: 6, width: 32, height: 64, steps: 2, guidance: 1.0, window: 6,
               overlap: 2, device: cpu, dtype: float32, lpips: null, untrained: false}
"""


@pytest.fixture()
def trained(cli):
    build_train_root(cli.cwd / "data", videos=2)
    (cli.cwd / "pipelines.yaml").write_text(CONFIG.format(root="./data", extra1="") + EVALUATE)
    cli("train", "--stage", "0")
    cli("train", "--stage", "1")
    return cli.cwd / "data"


def _runs(cli) -> list[dict]:
    out = cli("query", "SELECT model_name, kind, checkpoint_step, status, clips_done FROM eval_runs ORDER BY 1",
              "--format", "json")
    return json.loads(out.stdout)


def test_evaluate_a_run_then_again_then_a_killed_one(cli, trained):
    run_id = next((trained / "checkpoints").glob("t-s1-*")).name
    first = cli("evaluate", "--model", run_id)
    assert "still-reference" in first.stdout and f"{run_id}@3" in first.stdout and "leaderboard:" in first.stdout
    rows = _runs(cli)
    assert {(r["model_name"], r["status"], r["clips_done"]) for r in rows} == {
        (f"{run_id}@3", "finished", 2), (f"{run_id}@6", "finished", 2), ("still-reference", "finished", 2),
        ("pose-only-drawing", "finished", 2)}
    # the same command again: every score is cached, so nothing is generated or written again
    def written() -> dict:
        return {p: p.stat().st_mtime_ns for p in (trained / "tables").glob("eval_*/**/*.parquet")}

    before = written()
    assert len(before) >= 8  # four candidates' runs and results
    cli("evaluate", "--model", run_id)
    assert written() == before
    assert _runs(cli) == rows
    # kill an evaluation after its first clip; then two copies of the same command at once finish
    # the rest (the model by a path relative to the working directory): each clip scored once
    cfg = (cli.cwd / "pipelines.yaml").read_text().replace("frames: 6, width: 32", "frames: 18, width: 32")
    (cli.cwd / "pipelines.yaml").write_text(cfg)
    proc = cli.start("evaluate", "--model", "data/models/tiny-stage1", log="eval.log")
    deadline = time.time() + 300
    parts = trained / "tables" / "eval_results" / "dataset=demo"
    before = set(parts.glob("*.parquet"))
    while time.time() < deadline and len(set(parts.glob("*.parquet")) - before) < 1:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(set(parts.glob("*.parquet")) - before) >= 1, (cli.cwd / "eval.log").read_text()[-3000:]
    procs = [cli.start("evaluate", "--model", "data/models/tiny-stage1", log=f"e{k}.log") for k in range(2)]
    codes = [p.wait(timeout=600) for p in procs]
    logs = [(cli.cwd / f"e{k}.log").read_text()[-2000:] for k in range(2)]
    assert codes == [0, 0], logs
    assert all("tiny-stage1" in log for log in logs), logs
    rows = {(r["model_name"], r["status"], r["clips_done"]) for r in _runs(cli)}
    assert ("tiny-stage1", "finished", 2) in rows
    counts = json.loads(cli("query", "SELECT eval_id, clip_id, count(*) AS n FROM eval_results WHERE metric = 'psnr' "
                                     "AND frame_idx IS NULL GROUP BY ALL HAVING n > 1", "--format", "json").stdout)
    assert counts == []  # no clip scored twice
    n = json.loads(cli("query", "SELECT count(*) AS n FROM eval_results r JOIN eval_runs e USING (eval_id) "
                                "WHERE r.metric = 'psnr' AND r.frame_idx IS NULL AND e.model_name = 'tiny-stage1'",
                       "--format", "json").stdout)[0]["n"]
    assert n == 2  # its two clips, once each
    # the bench's ceiling (benchmarks/ceiling.py): the real frames score as perfect copies of
    # themselves, and the VAE's round trip of stage 0's model costs something
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "ceiling.py"
    out = subprocess.run([sys.executable, str(script), "--data-root", "data", "--model", "tiny-stage0",
                          "--out", "ceiling.json"], cwd=cli.cwd, env=cli.env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    ceiling = json.loads((cli.cwd / "ceiling.json").read_text())
    real, vae = ceiling["results"]["real frames"], ceiling["results"]["VAE round trip"]
    assert len(ceiling["clips"]) == 2 and real["psnr"]["mean"] == 100 and real["ssim"]["mean"] == 1
    assert 5 < vae["psnr"]["mean"] < 60 and len(vae["psnr"]["per_clip"]) == 2


# (flags, what the message says, refused before torch loads)
BAD = [(["--clips", "0"], "--clips", True), (["--clips", "-2"], "--clips", True), (["--clips", "two"], "--clips", True),
       (["--split", "test"], "no 'test' clips", False), (["--model", "nowhere/model"], "no model folder", False),
       (["--snapshot", "snope"], "no snapshot 'snope'", True), (["--split", ""], "--split", True)]


def test_bad_flags_are_refused(cli):
    build_train_root(cli.cwd / "data", videos=1)
    (cli.cwd / "pipelines.yaml").write_text(CONFIG.format(root="./data", extra1="") + EVALUATE)
    early = cli.without_torch()
    for args, message, before_torch in BAD:
        out = (early if before_torch else cli)("evaluate", *args, check=2)
        assert message in out.stdout + out.stderr, args
