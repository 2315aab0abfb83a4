"""Reproducible data (issue 22): the same pipeline on the same inputs gives the same clip bytes,
clip ids and snapshot ids, whatever the worker counts, the CPUs a process may use and the load."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import yaml

from tests.e2e.conftest import BIN


def _config(base, tmp_path, name: str, workers: int):
    cfg = yaml.safe_load(base.read_text())
    pipe = cfg["pipelines"]["test"]
    pipe["ingest"]["workers"] = workers
    pipe["ingest"]["clips"]["workers"] = workers
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _ingest(cli, config, root: str, cpus: set[int] | None) -> None:
    # a process limited to fewer CPUs (a container's quota, `taskset`) is what used to change x264's bytes
    pre = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
    out = subprocess.run([str(BIN), "ingest", "--config", str(config), "--data-root", root], cwd=cli.cwd, env=cli.env,
                         capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL, preexec_fn=pre)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]


def _clips(cli, root: str) -> list[dict]:
    out = cli("query", "SELECT clip_id, sha256, start_frame, end_frame FROM clips ORDER BY clip_id",
              "--data-root", root, "--format", "json")
    return json.loads(out.stdout)


def test_clips_are_byte_equal_under_other_worker_counts_cpus_and_load(cli, test_config, tmp_path, prefect_url):
    cli = cli.served(prefect_url)
    two = _config(test_config, tmp_path, "two", workers=2)
    one = _config(test_config, tmp_path, "one", workers=1)
    _ingest(cli, two, "a", cpus=None)
    # the load shares the one CPU the second ingest may use (on another CPU it would not slow it); it
    # computes for 5 ms and sleeps for 20 ms, so the ingest is preempted 40 times a second (what moved
    # x264's bytes is when its threads run, not how much CPU is left) for a fifth of a core
    cpu = {min(os.sched_getaffinity(0))}
    load = ("import time\nwhile True:\n    end = time.monotonic() + 0.005\n    while time.monotonic() < end:\n"
            "        sum(i * i for i in range(1000))\n    time.sleep(0.02)\n")
    busy = subprocess.Popen([sys.executable, "-c", load],
                            preexec_fn=lambda: os.sched_setaffinity(0, cpu))
    try:
        _ingest(cli, one, "b", cpus=cpu)
    finally:
        busy.kill()
        busy.wait()
    a, b = _clips(cli, "a"), _clips(cli, "b")
    assert len(a) >= 3
    assert a == b
    sources = "SELECT source_id, sha256 FROM sources ORDER BY source_id"
    assert cli("query", sources, "--data-root", "a").stdout == cli("query", sources, "--data-root", "b").stdout
    for root in ("a", "b"):
        cli("pose", "--config", str(two), "--data-root", root, timeout=900)
        cli("select", "--config", str(two), "--data-root", root, "--where", "true")
    snaps = [json.loads(next((cli.cwd / r / "snapshots").glob("*/latest.json")).read_text()) for r in "ab"]
    assert snaps[0] == snaps[1]


def test_the_same_puppet_video_encodes_to_the_same_bytes_in_every_process(cli):
    """The demo's videos (288x512, x264 veryfast): with x264's macroblock tree on, one of two files
    came out from run to run, whatever the thread count."""
    hashes = set()
    for run in range(4):
        cli("puppets", f"p{run}", "--count", "1", "--seed", "0", "--size", "288x512", "--seconds", "6")
        hashes.add(hashlib.sha256((cli.cwd / f"p{run}" / "puppet_000_000.mp4").read_bytes()).hexdigest())
    assert len(hashes) == 1
