"""A rehearsal of several machines on one: the data root on an S3-compatible server (moto, on
loopback), the Prefect server on PostgreSQL, and two process workers that share nothing else:
each has its own home, scratch, mirror of the store and Prefect home, and neither can see the
other's files. The code and the pipelines file are the same on both (as the project's image
gives every machine); the operator's folder is read-only to them.

- a deployed refresh killed on machine A mid-run and run again on machine B gives the tables of one
  process on a local root, and what A finished is not done again;
- training on A and evaluation on B (which never saw the training) score the trained model;
- nothing in the store, the tables or the workers' logs holds the credentials;
- the server keeps every run in PostgreSQL, none in a SQLite file.

It is the PostgreSQL lane (`make test-postgres`); PostgreSQL comes from POSTGRES_URL (default
postgresql://postgres@127.0.0.1:5432/postgres, trust auth), and the test makes a database of its
own and drops it after. Without a reachable server it skips on a user's machine and fails in CI.
"""
from __future__ import annotations

import os
import re
import stat
import time
from pathlib import Path

import pytest
import yaml
from prefect.states import Crashed
from prefect_stack import BIN, Stack, sql, stop_tree, write_pipelines
from s3_server import use_in_this_process

from animate_anyone.tables import DataRoot, read_table

pytestmark = [pytest.mark.postgres, pytest.mark.deploy, pytest.mark.slow, pytest.mark.timeout(1500)]

VOLATILE = {"ingested_at", "extracted_at", "created_at", "downloaded_at", "fetched_at"}
# one training process (two, under torchrun, are tests/training's)
TINY_TRAIN = {"size": "tiny", "output": "tiny", "device": "cpu", "processes": 1,
              "stage1": {"steps": 4, "lr": 1.0e-3, "batch": 2, "width": 32, "height": 64, "checkpoint_every": 2,
                         "val_clips": 1, "val_frames": 3, "val_steps": 2},
              "stage2": {"steps": 2, "lr": 1.0e-3, "batch": 1, "width": 32, "height": 64, "frames": 4, "stride": 2,
                         "continuation": 0.5, "checkpoint_every": 2, "val_clips": 1, "val_frames": 5, "val_steps": 2}}
TINY_EVAL = {"split": "train", "where": None, "clips": 1, "frames": 4, "width": 32, "height": 64, "steps": 2,
             "guidance": 1.0, "window": 4, "overlap": 1, "device": "cpu", "dtype": "float32", "lpips": None,
             "untrained": False, "schedule": None}


def _tables(root: DataRoot) -> dict:
    out = {}
    for name in ("sources", "shots", "clips", "clip_pose_summary", "pose_frames", "failures"):
        t = read_table(root, name)
        rows = t.drop_columns([c for c in t.column_names if c in VOLATILE or c.endswith("_uri")]).to_pylist()
        out[name] = sorted(rows, key=repr)
    return out


def _machine(tmp_path: Path, name: str, s3) -> dict:
    """A worker machine's own folders (nothing shared) and its environment."""
    base = tmp_path / name
    for d in ("home", "cache", "prefect", "tmp", "cwd"):
        (base / d).mkdir(parents=True)
    return {**s3.env, "HOME": str(base / "home"), "ANIMATE_ANYONE_CACHE": str(base / "cache"),
            "PREFECT_HOME": str(base / "prefect"), "TMPDIR": str(base / "tmp"), "XDG_CACHE_HOME": str(base / "home")}


def _trigger(stack: Stack, deployment: str, cwd: Path, *params: str) -> str:
    args = [str(BIN / "prefect"), "deployment", "run", deployment]
    for p in params:
        args += ["--param", p]
    out = stack.run(args, cwd=cwd)
    assert out.returncode == 0, out.stdout + out.stderr
    return re.search(r"UUID: ([0-9a-f-]{36})", out.stdout).group(1)


def _modified(s3, bucket: str, prefix: str) -> dict:
    return {o["Key"]: o["LastModified"] for o in s3.client().list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])}


def _wait(stack: Stack, run_id: str, timeout_s: float = 600) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with stack.client() as c:
            state = c.read_flow_run(run_id).state
        if state is not None and state.is_final():
            return state.name
        time.sleep(1)
    raise AssertionError(f"flow run {run_id} did not finish in {timeout_s} s")


def test_two_workers_that_share_only_the_store_and_the_server(database, s3, tmp_path):
    bucket = s3.bucket()
    uri = f"s3://{bucket}/rehearsal"
    stack = Stack(tmp_path / "prefect", database_url=database.replace("postgresql://", "postgresql+asyncpg://", 1))
    stack.home.mkdir()
    operator = tmp_path / "operator"
    operator.mkdir()
    config = write_pipelines(operator / "pipelines.yaml", Path("unused"),
                             pools={"cpu": None}, refresh={"pool": "cpu"}, train={"pool": "cpu"},
                             evaluate={"pool": "cpu"}, animate={"pool": "cpu"})
    cfg = yaml.safe_load(config.read_text())
    pipe = cfg["pipelines"]["test"]
    pipe["data_root"] = uri
    pipe["sources"]["puppets"].update(count=2, seconds=6)  # enough work to stop a worker in the middle
    pipe["train"] = {**{k: v for k, v in pipe["train"].items() if k not in ("stage0", "stage1", "stage2")}, **TINY_TRAIN}
    pipe["evaluate"] = {**pipe["evaluate"], **TINY_EVAL}
    config.write_text(yaml.safe_dump(cfg))
    machine_a, machine_b = _machine(tmp_path, "machine-a", s3), _machine(tmp_path, "machine-b", s3)
    try:
        stack.start_server()
        deployed = stack.run([str(BIN / "animate-anyone"), "deploy", "--flow", "refresh", "--flow", "train",
                              "--flow", "evaluate"], cwd=operator, env=s3.env)
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        assert f"data root: {uri}" in deployed.stdout
        os.chmod(operator, stat.S_IRUSR | stat.S_IXUSR)  # the workers read the pipelines file, write nothing here

        # 1. machine A starts the refresh and is killed once a source is finished, before the poses
        worker_a = stack.start_worker("cpu", Path(machine_a["HOME"]).parent / "cwd", machine_a, "machine-a")
        first = _trigger(stack, "refresh/test", operator)
        sources = "rehearsal/tables/sources/dataset=demo/"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not s3.keys(bucket, sources):
            time.sleep(0.3)
        done_by_a = s3.keys(bucket, sources)
        stop_tree(worker_a)
        assert done_by_a, stack.log("worker-machine-a")[-3000:]
        assert not s3.keys(bucket, "rehearsal/tables/clip_pose_summary/"), "A finished before it was stopped"
        uploaded = {o["Key"]: o["ETag"] for o in s3.client().list_objects_v2(
            Bucket=bucket, Prefix="rehearsal/media/sources/").get("Contents", [])}
        puppets_by_a = _modified(s3, bucket, "rehearsal/media/puppets/")
        assert puppets_by_a, "A made the puppet videos before it fetched a source"
        with stack.client() as c:
            assert not c.read_flow_run(first).state.is_completed()
            # the operator marks the lost machine's run Crashed (the UI's "Change state"), which frees
            # its deployment's slot at once; left alone, the slot waits out the run's 300 s lease
            c.set_flow_run_state(first, Crashed(message="machine-a was lost"), force=True)

        # 2. machine B runs the refresh again: every source and every clip's poses, nothing lost
        worker_b = stack.start_worker("cpu", Path(machine_b["HOME"]).parent / "cwd", machine_b, "machine-b")
        second = _trigger(stack, "refresh/test", operator)
        assert _wait(stack, second) == "Completed", stack.log("worker-machine-b")[-4000:]
        after = {o["Key"]: o["ETag"] for o in s3.client().list_objects_v2(
            Bucket=bucket, Prefix="rehearsal/media/sources/").get("Contents", [])}
        assert {k: after[k] for k in uploaded} == uploaded  # what A had fetched was not fetched again
        assert _modified(s3, bucket, "rehearsal/media/puppets/") == puppets_by_a  # nor made again: B fetched them

        # the same refresh by one process on a local root (B's own disk), for the reference tables
        local = Path(machine_b["HOME"]).parent / "local-root"
        reference = _trigger(stack, "refresh/test", operator, f"data_root={local}")
        assert _wait(stack, reference) == "Completed", stack.log("worker-machine-b")[-4000:]
        stop_tree(worker_b)

        # 3. A (a new process) trains; B, which never saw the training, evaluates the trained model
        worker_a = stack.start_worker("cpu", Path(machine_a["HOME"]).parent / "cwd", machine_a, "machine-a")
        train = _trigger(stack, "train/test", operator)
        assert _wait(stack, train) == "Completed", stack.log("worker-machine-a")[-4000:]
        stop_tree(worker_a)
        worker_b = stack.start_worker("cpu", Path(machine_b["HOME"]).parent / "cwd", machine_b, "machine-b")
        evaluate = _trigger(stack, "evaluate/test", operator)
        assert _wait(stack, evaluate) == "Completed", stack.log("worker-machine-b")[-4000:]
    finally:
        os.chmod(operator, stat.S_IRWXU)
        stack.stop()
    # the server kept every run in PostgreSQL (as infra/compose.yaml runs it), none in a SQLite file
    rows = sql("SELECT f.name AS flow, r.state_name AS state FROM flow_run r JOIN flow f ON f.id = r.flow_id "
               "WHERE r.parent_task_run_id IS NULL", database)
    assert sorted((r["flow"], r["state"]) for r in rows) == [
        ("evaluate", "Completed"), ("refresh", "Completed"), ("refresh", "Completed"), ("refresh", "Crashed"),
        ("train", "Completed")]
    assert not list(tmp_path.rglob("prefect.db"))

    # this process is a third machine: it reads the tables from the store
    mp = pytest.MonkeyPatch()
    try:
        use_in_this_process(s3, tmp_path / "machine-c", mp)
        store_root = DataRoot.from_uri(uri)
        on_store, on_disk = _tables(store_root), _tables(DataRoot.from_uri(local))
        assert len(on_store["sources"]) == 2 and on_store["clips"] and on_store["pose_frames"]
        assert not on_store["failures"]
        for name in on_disk:
            assert on_store[name] == on_disk[name], name
        scored = read_table(store_root, "eval_runs").to_pylist()
        assert {r["model_name"] for r in scored} >= {"tiny"} and all(r["status"] == "finished" for r in scored)
        assert read_table(store_root, "eval_results").num_rows > 0
        # B fetched the model A trained (from the store), not from any shared folder
        assert list((tmp_path / "machine-b" / "cache").rglob("models/tiny-stage2/manifest.json"))
        assert not list((tmp_path / "operator").rglob("*.parquet"))
    finally:
        mp.undo()
    # the credentials never reached the store, the tables or the logs
    for key in s3.keys(bucket):
        assert s3.secret.encode() not in s3.read(bucket, key), key
    for name in stack.logs:
        assert s3.secret not in stack.log(name), name
