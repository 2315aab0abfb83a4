"""The command line as a user types it, including the README's main job."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from typer.testing import CliRunner

from animate_anyone import synthetic
from animate_anyone.cli import app
from animate_anyone.media.video import probe
from animate_anyone.tables import DataRoot, query, refresh_catalog, write_part
from animate_anyone.tables.io import Dataset
from animate_anyone.tables.selection import load_snapshot

REPO = Path(__file__).resolve().parent.parent
runner = CliRunner()


@pytest.mark.parametrize("cmd", [[], ["run"], ["ingest"], ["pose"], ["select"], ["render"], ["query"], ["puppets"],
                                 ["animate"], ["train"], ["convert"], ["new-model"]])
def test_every_subcommand_has_help(cmd):
    result = runner.invoke(app, [*cmd, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output
    if cmd:
        assert len(result.output.splitlines()) > 4


def test_puppets_writes_videos_with_truth(tmp_path):
    result = runner.invoke(app, ["puppets", str(tmp_path), "--count", "2", "--seed", "5", "--size", "128x224", "--seconds", "2"])
    assert result.exit_code == 0, result.output
    for k in range(2):
        truth, arrays = synthetic.load_truth(tmp_path / f"puppet_005_{k:03d}.mp4")
        assert (truth["width"], truth["height"], truth["num_frames"]) == (128, 224, 60)
    bad = runner.invoke(app, ["puppets", str(tmp_path), "--size", "big"])
    assert bad.exit_code == 2 and "WIDTHxHEIGHT" in bad.output


def test_query_formats(tmp_path):
    root = DataRoot.from_uri(tmp_path)
    import datetime as dt

    write_part(root, "failures", "ds", "a", [{"stage": "download", "item_id": "a", "source": "http://x/a", "error_class": "E",
                                               "reason": "http_404", "message": "gone", "retryable": False, "attempt": 1,
                                               "at": dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)}])
    refresh_catalog(root)
    sql = "SELECT item_id, reason FROM failures"
    as_json = runner.invoke(app, ["query", sql, "--data-root", str(tmp_path), "--format", "json"])
    assert as_json.exit_code == 0 and json.loads(as_json.stdout) == [{"item_id": "a", "reason": "http_404"}]
    as_table = runner.invoke(app, ["query", sql, "--data-root", str(tmp_path)])
    assert "http_404" in as_table.stdout and "1 rows" in as_table.stdout
    refused = runner.invoke(app, ["query", "DELETE FROM failures", "--data-root", str(tmp_path)])
    assert refused.exit_code == 2 and "read-only" in refused.output


def test_query_csv_in_a_real_process(tmp_path):
    root = DataRoot.from_uri(tmp_path)
    refresh_catalog(root)
    out = subprocess.run([sys.executable, "-m", "animate_anyone.cli", "query", "SELECT 1 AS a, 'x' AS b",
                          "--data-root", str(tmp_path), "--format", "csv"], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ['"a","b"', '1,"x"']


def test_invalid_config_exits_2_with_the_field(tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text("default: demo\npipelines:\n  demo:\n    ingest: {clips: {max_seconds: nope}}\n")
    result = runner.invoke(app, ["query", "SELECT 1", "--config", str(bad)])
    assert result.exit_code == 2
    assert "pipelines.demo.ingest.clips.max_seconds" in result.output and str(bad) in result.output


def test_library_does_not_import_prefect():
    code = ("import sys, animate_anyone.cli, animate_anyone.ingest.stages, animate_anyone.synthetic, "
            "animate_anyone.tables; print('prefect' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_deploying_does_not_load_the_model_libraries():
    """`animate-anyone deploy` loads every flow's module; torch and diffusers come in only when a run
    needs them (they were 6 of the 9 CPU-s a deploy took)."""
    code = ("import sys, flows.deploy, flows.refresh, flows.train, flows.evaluate, flows.animate; "
            "print(sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


def _readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    block = re.search(r"```(?:bash|sh)\n(.*?)```", text, re.S).group(1)
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_readme_starts_with_the_two_commands():
    demo, tests = _readme_commands()[:2]
    assert demo == "make demo" and tests == "make test"
    make = (REPO / "Makefile").read_text()
    assert "animate-anyone run demo" in make and "pytest" in make
    assert "make test" in (REPO / ".ci" / "run").read_text()


# The demo, smaller in four ways only: its first 7 of 44 puppet videos (the 44 take 10.5 minutes
# to ingest, pose and evaluate on 2 cores even with 2 training steps), 4 denoising steps instead of
# 20 where it animates and evaluates and 2 instead of 10 where training validates (the same
# windows, frames and code, a fifth of the arithmetic: validation was 60 of the run's 285 CPU-s),
# and training in this process instead of two torchrun processes (with 2 steps a stage, the two
# processes' start was 2 of the 3 minutes of training here; two processes are tests/training's).
# Videos 0 and 6 fall in the held-out split (the URL's hash: ingest.clips.split), so the run still
# has strangers to animate and score. Nothing else differs from the bundled demo (checked below);
# `make demo` runs it as bundled.
DEMO_VIDEOS, DEMO_STEPS, DEMO_VAL_STEPS, DEMO_PROCESSES = 7, 4, 2, 1


def _demo_of(dest: Path, videos: int = DEMO_VIDEOS, steps: int = DEMO_STEPS, val_steps: int = DEMO_VAL_STEPS,
             processes: int = DEMO_PROCESSES) -> Path:
    import yaml

    cfg = yaml.safe_load((REPO / "pipelines.yaml").read_text())
    demo = cfg["pipelines"]["demo"]
    demo["sources"]["puppets"]["count"] = videos
    demo["animate"]["steps"] = demo["evaluate"]["steps"] = steps
    demo["train"]["processes"] = processes
    for stage in ("stage1", "stage2"):
        demo["train"][stage]["val_steps"] = val_steps
    dest.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return dest


def test_the_demo_test_runs_the_bundled_demo_but_for_its_size(tmp_path):
    import yaml

    bundled = yaml.safe_load((REPO / "pipelines.yaml").read_text())
    mine = yaml.safe_load(_demo_of(tmp_path / "p.yaml").read_text())
    demo = bundled["pipelines"]["demo"]
    assert (demo["sources"]["puppets"]["count"], demo["animate"]["steps"], demo["evaluate"]["steps"],
            demo["train"]["stage1"]["val_steps"], demo["train"]["stage2"]["val_steps"],
            demo["train"]["processes"]) == (44, 20, 20, 10, 10, 2)
    assert mine != bundled
    same = _demo_of(tmp_path / "q.yaml", videos=44, steps=20, val_steps=10, processes=2)
    assert yaml.safe_load(same.read_text()) == bundled


@pytest.mark.slow
@pytest.mark.timeout(1800)  # the subprocess's own limit is 1500 s
def test_main_job_runs_the_demo_end_to_end(tmp_path):
    """What `make demo` runs after installing: the demo pipeline, through the real CLI, from an
    empty Prefect home, on the demo's first DEMO_VIDEOS videos."""
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "COLUMNS": "250"}  # rich wraps tables at 80 columns without a terminal
    env.pop("PREFECT_API_URL", None)
    # training is most of the demo's time on 2 cores (benchmarks/results/README.md); here
    # every stage stops after 2 steps, which runs each of them, saves and validates
    config = _demo_of(tmp_path / "pipelines.yaml")
    out = subprocess.run([sys.executable, "-m", "animate_anyone.cli", "run", "demo", "--config", config.name,
                          "--data-root", "data", "--max-train-steps", "2"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=1500)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert f"{DEMO_VIDEOS} ok, 0 duplicate, 0 failed" in out.stdout
    # the native libraries' log lines are hidden (MediaPipe's TFLite wrote about a hundred)
    assert "Feedback manager" not in out.stderr and "W0000" not in out.stderr
    root = DataRoot.from_uri(tmp_path / "data")
    n = query(root, "SELECT count(*) AS n, min(end_s - start_s) AS lo, max(end_s - start_s) AS hi FROM clips").to_pylist()[0]
    assert n["n"] >= DEMO_VIDEOS and 2.0 <= n["lo"] and n["hi"] <= 10.0
    # poses for every clip, and the training clips selected into a snapshot
    assert query(root, "SELECT count(*) AS n FROM clip_pose_summary").to_pylist() == [{"n": n["n"]}]
    assert f"of {n['n']} clips have poses" in out.stdout and "0 failed" in out.stdout
    snap = load_snapshot(Dataset(root, "demo"))
    assert snap["num_clips"] >= 1 and f"snapshot {snap['snapshot_id']}" in out.stdout.replace("\n", " ")
    # render a selected clip's poses, alone and over its frames
    clip = query(root, f"SELECT * FROM clips WHERE clip_id = '{snap['clip_ids'][0]}'").to_pylist()[0]
    for extra in ([], ["--overlay"]):
        dest = tmp_path / f"render{len(extra)}.mp4"
        res = runner.invoke(app, ["render", clip["clip_id"], "--data-root", str(root.path), "--out", str(dest), *extra])
        assert res.exit_code == 0, res.output
        with av.open(str(dest)) as c:
            frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        assert len(frames) == clip["num_frames"] and frames[0].shape == (clip["height"], clip["width"], 3)
    row = query(root, f"SELECT keypoints, scores FROM pose_frames WHERE clip_id = '{clip['clip_id']}' "
                      "AND frame_idx = 5 AND person_idx = 0").to_pylist()[0]
    pose_video = tmp_path / "render0.mp4"
    with av.open(str(pose_video)) as c:
        frame5 = [f.to_ndarray(format="rgb24") for i, f in zip(range(6), c.decode(video=0))][5]
    ankle = 15  # left ankle, OpenPose joint 13: (85, 0, 255) drawn at its stored position
    assert row["scores"][ankle] > 0.3
    x, y = int(row["keypoints"][2 * ankle] * clip["width"]), int(row["keypoints"][2 * ankle + 1] * clip["height"])
    assert np.abs(frame5[y, x].astype(int) - (85, 0, 255)).max() < 40  # H.264 moves colours a little
    # the three training stages ran on the snapshot, and animate used their model
    runs = query(root, "SELECT stage, status, final_step FROM train_runs ORDER BY stage").to_pylist()
    assert runs == [{"stage": k, "status": "finished", "final_step": 2} for k in (0, 1, 2)]
    assert f"training on snapshot {snap['snapshot_id']}" in out.stdout
    assert (root.path / "models" / "demo").resolve() == (root.path / "models" / "demo-stage2").resolve()
    # one animation by the demo's model: the video and its reference | pose | result grid
    assert "animated " in out.stdout
    made = sorted((root.path / "outputs" / "animate").glob("*.mp4"))
    result, grid = [p for p in made if not p.name.endswith(".grid.mp4")], [p for p in made if p.name.endswith(".grid.mp4")]
    assert len(result) == 1 and len(grid) == 1
    val = probe(result[0], count_frames=True)
    assert (val.width, val.height) == (64, 112) and val.num_frames >= 60
    g = probe(grid[0], count_frames=True)
    assert (g.width, g.height, g.num_frames) == (3 * 64, 112, val.num_frames)
    # the main job ends with an evaluation of what it trained, on the held-out test video's clips,
    # beside the still reference and the untrained model, printed as a table
    assert "evaluation: snapshot" in out.stdout and "still-reference" in out.stdout
    evals = query(root, "SELECT model_name, kind, split, status FROM eval_runs ORDER BY kind, model_name").to_pylist()
    assert {(e["model_name"], e["kind"], e["split"], e["status"]) for e in evals} >= {
        ("demo", "model", "test", "finished"), ("still-reference", "baseline", "test", "finished"),
        ("untrained-puppet", "baseline", "test", "finished"), ("pose-only-drawing", "baseline", "test", "finished")}
    test_clips = {r["clip_id"] for r in query(root, "SELECT clip_id FROM clips WHERE split = 'test'").to_pylist()}
    scored = {r["clip_id"] for r in query(root, "SELECT DISTINCT clip_id FROM eval_results WHERE clip_id IS NOT NULL")
              .to_pylist()}
    assert scored and scored <= test_clips  # held-out clips only
    # held-out dancers are strangers (issue 22): no identity of a test video is in a training video,
    # read from the clips table and the puppet truth
    seen: dict[str, set[int]] = {"train": set(), "test": set()}
    for r in query(root, "SELECT c.split, c.start_frame, c.end_frame, s.url FROM clips c JOIN sources s "
                         "USING (source_id)").to_pylist():
        truth, _ = synthetic.load_truth(root.puppets_dir / r["url"].rsplit("/", 1)[-1])
        shot = [s for s in truth["shots"] if s["start"] <= r["start_frame"] and r["end_frame"] <= s["end"]]
        assert len(shot) == 1, (r, truth["cuts"])  # a clip lies inside one shot
        seen[r["split"]].add(shot[0]["identity"])
    assert seen["train"] and seen["test"] and not seen["train"] & seen["test"], seen
    assert len(seen["train"] | seen["test"]) >= DEMO_VIDEOS
    assert (root.path / "evaluations" / "leaderboard-demo.md").is_file()
    missing = runner.invoke(app, ["render", "cnothere", "--data-root", str(root.path)])
    assert missing.exit_code == 2 and "no clip 'cnothere'" in missing.output


def test_native_log_lines_are_recognised_and_nothing_else():
    from animate_anyone.cli import NATIVE_LINE

    native = [b"W0000 00:00:1796100436.701176   19076 inference_feedback_manager.cc:114] Feedback manager requires "
              b"a model with a single signature inference. Disabling support for feedback tensors.\n",
              b"I1201 04:00:01.123456    77 gl_context.cc:357] GL version: 3.2\n",
              b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"]
    ours = [b"INFO prefect.flow_runs: Finished in state Completed()\n", b"error: --frames must be at least 1\n",
            b"W0000 is the name of my clip\n"]
    assert all(NATIVE_LINE.match(line) for line in native) and not any(NATIVE_LINE.match(line) for line in ours)


def test_a_slow_prefect_server_is_asked_again_and_a_silent_one_is_named(capfd):
    """`deploy` checks the server first. One that is there but busy (its first answer late) is
    waited for; one that never answers is reported with the URL and how long it was asked."""
    import socket
    import threading

    import typer

    from animate_anyone.cli.ops import _check_server

    def serve(sock, answer_from):
        seen = []
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            seen.append(conn)  # keep it open: an unanswered request stays unanswered
            if len(seen) >= answer_from:
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\ntrue")
                conn.close()

    for answer_from, ok in ((2, True), (10**6, False)):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/api"
        threading.Thread(target=serve, args=(sock, answer_from), daemon=True).start()
        try:
            if ok:
                _check_server(url, patience_s=5, ask_s=0.5)  # the second request is answered
            else:
                with pytest.raises(typer.Exit) as exit_:
                    _check_server(url, patience_s=1.5, ask_s=0.5)
                assert exit_.value.exit_code == 2
                said = " ".join(capfd.readouterr().err.split())
                assert f"no Prefect server answers at {url} (timed out, asked for 2 s)" in said, said
        finally:
            sock.close()
