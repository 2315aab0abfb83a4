"""Ingest and pose extraction on two Dask worker processes (prefect-dask) give the same tables as
the default thread pool: the same clips cut at the same frames, the same poses."""
from __future__ import annotations

import os

import pytest
import yaml

from animate_anyone.config import load_config
from animate_anyone.tables import DataRoot, read_table

pytestmark = [pytest.mark.usefixtures("prefect_server"), pytest.mark.flow, pytest.mark.slow]

VOLATILE = {"ingested_at", "extracted_at", "created_at", "downloaded_at", "fetched_at"}


def _tables(root: DataRoot) -> dict:
    out = {}
    for name in ("sources", "clips", "clip_pose_summary", "pose_frames"):
        t = read_table(root, name)
        rows = t.drop_columns([c for c in t.column_names if c in VOLATILE or c.endswith("_uri") or c == "path"]).to_pylist()
        out[name] = sorted(rows, key=repr)
    return out


def _refresh(config, pipeline: str):
    from flows.refresh import refresh_flow

    state = refresh_flow(pipeline=pipeline, config=str(config), return_state=True)
    return state.result(), state.state_details.flow_run_id


def test_without_an_address_the_runner_is_a_local_cluster_of_the_workers_asked_for(test_config):
    from prefect_dask import DaskTaskRunner

    from flows.common import task_runner

    cfg = load_config("test", test_config)
    assert task_runner(cfg, 3).__class__.__name__ == "ThreadPoolTaskRunner"
    dask = cfg.model_copy(update={"runner": cfg.runner.model_copy(update={"type": "dask", "workers": 2})})
    runner = task_runner(dask, 3)
    assert isinstance(runner, DaskTaskRunner) and runner.cluster_kwargs["n_workers"] == 2 and runner.address is None


def test_dask_workers_that_share_only_the_store_give_the_tables_of_threads(test_config, tmp_path, api, s3, monkeypatch):
    """One refresh on the thread pool (a local root) is the reference for a refresh on two `dask
    worker` processes whose only shared folder is an S3 data root: every ingest and pose task runs
    on them, and the tables are the same."""
    cfg = yaml.safe_load(test_config.read_text())
    cfg["pipelines"]["test"]["sources"]["puppets"].update(count=1, seconds=8)  # 2 clips: the point is where tasks run
    test_config.write_text(yaml.safe_dump(cfg))
    threads_summary, _ = _refresh(test_config, "test")
    _on_workers_that_share_only_the_store(cfg, test_config, tmp_path, api, s3, monkeypatch, threads_summary)


def _on_workers_that_share_only_the_store(cfg: dict, test_config, tmp_path, api, s3, monkeypatch,
                                          threads_summary: dict) -> None:
    """A scheduler and two `dask worker` processes, each with its own home, scratch and mirror of
    an S3 data root (moto on loopback), run the refresh; the tables equal a thread pool's on a
    local root. (The flow's process is a third machine with a mirror of its own.)"""
    import socket
    import subprocess
    import sys
    import time
    from pathlib import Path

    from distributed import Client, get_task_stream
    from s3_server import use_in_this_process

    use_in_this_process(s3, tmp_path / "flow-machine", monkeypatch)
    uri = f"s3://{s3.bucket()}/dask"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dask = Path(sys.executable).parent / "dask"
    address = f"tcp://127.0.0.1:{port}"
    procs = [subprocess.Popen([str(dask), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        for name in ("worker-a", "worker-b"):
            home = tmp_path / name
            (home / "tmp").mkdir(parents=True)
            env = {**os.environ, **s3.env, "HOME": str(home), "ANIMATE_ANYONE_CACHE": str(home / "cache"),
                   "TMPDIR": str(home / "tmp")}
            procs.append(subprocess.Popen([str(dask), "worker", address, "--nworkers", "1", "--nthreads", "1",
                                           "--no-dashboard", "--local-directory", str(home / "tmp"), "--name", name],
                                          env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 120
        while True:
            try:
                with Client(address, timeout=5) as client:
                    client.wait_for_workers(2, timeout=120)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        cfg["pipelines"]["dask"] = dict(cfg["pipelines"]["test"], data_root=uri,
                                        runner={"type": "dask", "address": address})
        test_config.write_text(yaml.safe_dump(cfg))
        with Client(address, timeout=30) as client:
            with get_task_stream(client) as stream:  # its data comes when the block ends
                dask_summary, run_id = _refresh(test_config, "dask")
            ran_on, workers = {t["worker"] for t in stream.data}, set(client.scheduler_info()["workers"])
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)
    # every ingest and pose task ran on the two worker processes, not in the flow's process
    tasks = dask_summary["ingest"]["sources"] * 4 + dask_summary["pose"]["shards"]
    assert len(stream.data) >= tasks and ran_on and ran_on <= workers and len(workers) == 2
    assert dask_summary["ingest"]["clips"] == threads_summary["ingest"]["clips"] > 0
    assert dask_summary["pose"]["ok"] == threads_summary["pose"]["ok"] == dask_summary["pose"]["clips"]
    states = api.task_states(run_id)  # their task runs are on the server like any other
    assert states and set(states.values()) == {"Completed"}
    local = _tables(DataRoot.from_uri(load_config("test", test_config).data_root))
    on_store = _tables(DataRoot.from_uri(uri))
    for name in local:
        assert on_store[name] == local[name], name
    # each worker did its share in its own mirror (none in the other's, none in a shared folder)
    worked = [name for name in ("worker-a", "worker-b") if list((tmp_path / name / "cache").rglob("*.mp4"))]
    assert worked, "no worker touched a clip"
