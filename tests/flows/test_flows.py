"""The ingest flow on a real (temporary) Prefect server: demo end to end, caching, bad input, resume."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.compute as pc
import pytest

from animate_anyone import synthetic
from animate_anyone.config import load_config
from animate_anyone.ingest.clips import plan_clips
from animate_anyone.ingest.download import canonical_url
from animate_anyone.ingest.shots import Shots
from animate_anyone.tables import DataRoot, query, read_table

pytestmark = [pytest.mark.usefixtures("prefect_server"), pytest.mark.flow]


def _rows(root: DataRoot, table: str, drop=("fetched_at",)) -> list[dict]:
    t = read_table(root, table)
    t = t.drop_columns([c for c in drop if c in t.column_names])
    return sorted(t.to_pylist(), key=lambda r: sorted((k, str(v)) for k, v in r.items()))


def test_demo_ingest_end_to_end_then_fully_cached(api, test_config):
    summary, run_id = api.run_ingest(config=str(test_config))
    pipe = load_config("test", test_config)
    root = DataRoot.from_uri(pipe.data_root)
    assert summary["ok"] == 2 and summary["failed"] == 0
    puppets = root.path / "media" / "puppets"
    sources = read_table(root, "sources").to_pylist()
    clips = read_table(root, "clips")
    assert {s["url"] for s in sources} == {f"http://loopback/{p.name}" for p in puppets.glob("*.mp4")}
    for src in sources:
        truth, arrays = synthetic.load_truth(puppets / src["url"].rsplit("/", 1)[1])
        bounds = [0, *truth["cuts"], truth["num_frames"]]
        true_shots = Shots(tuple(zip(bounds[:-1], bounds[1:])), truth["num_frames"], 30.0, "truth", {}, 0.0)
        expected, _ = plan_clips(true_shots, pipe.ingest.clips, src["source_id"], src["sha256"])
        mine = clips.filter(pc.equal(clips["source_id"], src["source_id"])).to_pylist()
        assert sorted((c["start_frame"], c["end_frame"]) for c in mine) == [(c.start_frame, c.end_frame) for c in expected]
        for c in mine:
            assert 2.0 <= c["end_s"] - c["start_s"] <= 10.0
            assert len(set(arrays["shot"][c["start_frame"] : c["end_frame"]])) == 1
            assert not Path(c["clip_uri"]).is_absolute() and root.media_path(c["clip_uri"]).exists()
    artifacts = api.artifacts(run_id)
    assert artifacts["ingest-progress"].data == 100.0
    assert {r["status"] for r in json.loads(artifacts["ingest-summary"].data)} == {"ok"}
    before = {t: _rows(root, t, drop=()) for t in ("sources", "shots", "clips")}
    assert query(root, "SELECT count(*) AS n FROM clips").to_pylist() == [{"n": clips.num_rows}]

    summary2, run_id2 = api.run_ingest(config=str(test_config))
    states = api.task_states(run_id2)
    assert len(states) == 1 + 4 * 2  # puppets, then download/detect/cut/write per source
    # every step cached but write, which is not cached: it finds the same rows on disk and leaves them
    assert _by_step(states) == {"download": {"Completed"}, "detect": {"Cached"}, "cut": {"Cached"},
                                "write": {"Completed"}}, states
    assert summary2["clips"] == summary["clips"]
    assert {t: _rows(root, t, drop=()) for t in ("sources", "shots", "clips")} == before  # nothing rewritten

    # a puppet video deleted by hand: its cached list is not trusted, the videos are made again
    video = sorted(puppets.glob("*.mp4"))[0]
    made = video.read_bytes()
    video.unlink()
    summary3, run_id3 = api.run_ingest(config=str(test_config))
    made_again = sorted(s for n, s in api.task_states(run_id3).items() if n.startswith("generate-puppets"))
    assert made_again == ["Cached", "Completed"] and video.read_bytes() == made
    assert summary3["ok"] == 2 and {t: _rows(root, t, drop=()) for t in ("sources", "shots", "clips")} == before


def _by_step(states: dict) -> dict:
    return {step: {s for n, s in states.items() if n.startswith(step + "-")} for step in ("download", "detect", "cut", "write")}


def test_bad_inputs_fail_alone_and_rerun_retries_only_them(api, test_config, fault_server, closed_port_url, bad_media, tmp_path):
    bad = {
        fault_server.url("404/clip.mp4"): ("download", "http_404", False),
        fault_server.url("500/clip.mp4"): ("download", "http_500", True),
        fault_server.url("page.html"): ("download", "unsupported_url", False),
        fault_server.url("truncated.mp4"): ("download", "not_a_video", False),
        fault_server.url("empty.mp4"): ("download", "empty_file", False),
        fault_server.url("text.mp4"): ("download", "not_a_video", False),
        fault_server.url("short.mp4"): ("download", "too_short", False),
        fault_server.url("single.mp4"): ("download", "too_few_frames", False),
        closed_port_url: ("download", "network", True),
    }
    local = synthetic.write_video(synthetic.VideoSpec("two_frames", 256, 448, (synthetic.ShotSpec(2, 1, 1, "sway"),)), tmp_path)
    bad[str(local)] = ("download", "too_short", False)  # a local path goes the same way, never linked in
    good = [fault_server.url("good.mp4"), fault_server.url("429once/retry.mp4"), str(bad_media / "mirror" / "good.mp4")]
    duplicate = fault_server.url("mirror/good.mp4")  # good.mp4's bytes: a third name for them
    summary, first_run = api.run_ingest(config=str(test_config), sources=good + list(bad) + [duplicate])
    messages = api.flow_log(first_run)
    root = DataRoot.from_uri(load_config("test", test_config).data_root)
    assert summary["ok"] == 2 and summary["failed"] == len(bad) and summary["duplicate"] == 2, "; ".join(f"{o['url']}={o['status']}" for o in summary["outcomes"] if o["status"] != "failed")
    assert fault_server.hits["/429once/retry.mp4"] >= 2  # a 429, then the file
    assert fault_server.hits["/500/clip.mp4"] == 3  # retried to the configured 3 attempts
    assert fault_server.hits["/404/clip.mp4"] == 1  # never retried
    failures = {r["source"]: r for r in read_table(root, "failures").to_pylist()}
    for url, (stage, reason, retryable) in bad.items():
        canon = canonical_url(url) if "://" in url else Path(url).resolve().as_uri()
        row = failures[canon]
        assert (row["stage"], row["reason"], row["retryable"]) == (stage, reason, retryable), row
        assert row["attempt"] == 1 and row["message"]
        lines = [m for m in messages if m.startswith(f"FAILED {canon} at {stage}: ")]
        assert len(lines) == 1, f"expected one log line for {canon}; the flow logged {messages}"
    # what can give no clip never entered the data root: the good files and their sidecars alone
    kept = sorted(p.name for p in root.sources_dir.iterdir() if p.suffix == ".mp4")
    assert len(kept) == 2, kept
    clip_sources = set(read_table(root, "clips")["source_id"].to_pylist())
    ok_sources = {r["source_id"] for r in read_table(root, "sources").to_pylist() if r["status"] == "ok"}
    assert clip_sources == ok_sources and len(ok_sources) == 2  # three names for one video: one source
    sources = {r["url"]: r["status"] for r in read_table(root, "sources").to_pylist()}
    assert sum(v == "duplicate" for v in sources.values()) == 2
    assert sum(v == "failed" for v in sources.values()) == len(bad) and sum(v == "ok" for v in sources.values()) == 2

    hits_good = fault_server.hits["/good.mp4"]
    summary2, run_id = api.run_ingest(config=str(test_config), sources=good + list(bad) + [duplicate])
    assert summary2["ok"] == 2 and summary2["failed"] == len(bad) and summary2["duplicate"] == 2
    assert fault_server.hits["/good.mp4"] == hits_good, "finished sources are not fetched again"
    assert fault_server.hits["/404/clip.mp4"] == 2 and fault_server.hits["/500/clip.mp4"] == 6
    attempts = {r["source"]: r["attempt"] for r in read_table(root, "failures").to_pylist()}
    assert len(attempts) == len(bad) and max(attempts.values()) == 2
    states = api.task_states(run_id)
    cached = [n for n, s in states.items() if s == "Cached"]
    assert len(cached) >= 2 * 2  # the good sources: detect and cut (downloads skip by the sidecar on disk)


def test_killed_run_resumes_to_the_same_tables(api, test_config, tmp_path):
    """SIGKILL the CLI mid-run, run again, and compare with an uninterrupted run."""
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-sub"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    killed_root, clean_root = tmp_path / "killed", tmp_path / "clean"
    puppets = load_config("test", test_config).sources.puppets
    synthetic.generate_world(tmp_path / "puppets", puppets.count, puppets.seed, (puppets.width, puppets.height), puppets.seconds)
    for root in (killed_root, clean_root):  # byte-identical sources for both runs
        shutil.copytree(tmp_path / "puppets", root / "media" / "puppets")
    cmd = [sys.executable, "-m", "animate_anyone.cli", "ingest", "--config", str(test_config), "--data-root", str(killed_root)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None:
            if list((killed_root / "media" / "clips").glob("*/*.mp4")):
                break
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (killed_root / "catalog.duckdb").exists(), "the run finished before it could be killed"
    api.run_ingest(config=str(test_config), data_root=str(killed_root))
    api.run_ingest(config=str(test_config), data_root=str(clean_root))
    a, b = DataRoot.from_uri(killed_root), DataRoot.from_uri(clean_root)
    for table in ("sources", "shots", "clips", "failures"):
        # paths differ by root; a clip's bytes depend on the encoder's threads, its frames do not
        drop = ("fetched_at", "clip_uri", "file_uri") + (("sha256",) if table == "clips" else ())
        assert _rows(a, table, drop) == _rows(b, table, drop), table
    assert read_table(a, "clips").num_rows > 0
    assert not [p for p in killed_root.rglob("*") if ".partial." in p.name or p.name.endswith(".tmp")]


def test_cache_keys_follow_the_parameters_that_matter(api, test_config, tmp_path):
    """Changing retries reuses every step; changing the clip length redoes cut and write only."""
    import yaml

    api.run_ingest(config=str(test_config))
    cfg = yaml.safe_load(test_config.read_text())
    cfg["pipelines"]["test"]["ingest"]["download"]["retries"]["attempts"] = 5
    retried = tmp_path / "retries.yaml"
    retried.write_text(yaml.safe_dump(cfg))
    _, run_id = api.run_ingest(config=str(retried))
    assert _by_step(api.task_states(run_id)) == {"download": {"Completed"}, "detect": {"Cached"},
                                                 "cut": {"Cached"}, "write": {"Completed"}}
    cfg["pipelines"]["test"]["ingest"]["clips"]["max_seconds"] = 4  # the 4.6 s shot is cut in two
    shorter = tmp_path / "shorter.yaml"
    shorter.write_text(yaml.safe_dump(cfg))
    summary, run_id = api.run_ingest(config=str(shorter))
    states = api.task_states(run_id)
    assert _by_step(states) == {"download": {"Completed"}, "detect": {"Cached"}, "cut": {"Completed"}, "write": {"Completed"}}
    root = DataRoot.from_uri(load_config("test", shorter).data_root)
    assert query(root, "SELECT max(end_s - start_s) AS m FROM clips").to_pylist()[0]["m"] <= 4.0
    short_clips = read_table(root, "clips").num_rows
    _, run_id = api.run_ingest(config=str(retried))  # back to 10 s: every cached step cached...
    assert _by_step(api.task_states(run_id))["cut"] == {"Cached"}
    clips = read_table(root, "clips")  # ...and the tables hold the 10 s clips again, not the 4 s ones
    assert clips.num_rows < short_clips and max(e - s for s, e in zip(clips["start_s"].to_pylist(), clips["end_s"].to_pylist())) > 4.0
    assert all(root.media_path(u).exists() for u in clips["clip_uri"].to_pylist())
