"""The shared-server set-up: a Prefect server on PostgreSQL (as infra/compose.yaml runs it), one
deployment deployed, triggered and run by a worker end to end. Its own lane (`make test-postgres`).

PostgreSQL: POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/postgres, the service every
machine of ours and CI runs, trust auth). The test makes a database of its own and drops it after.
Without a reachable server it skips on a user's machine and fails in CI."""
from __future__ import annotations

from pathlib import Path

import pytest
from prefect_stack import BIN, Stack, sql, write_pipelines

from animate_anyone.tables import DataRoot, read_table

pytestmark = [pytest.mark.postgres, pytest.mark.deploy, pytest.mark.slow, pytest.mark.timeout(900)]


def test_a_prefect_server_on_postgres_runs_a_deployed_refresh_through_a_worker(database, tmp_path):
    stack = Stack(tmp_path / "prefect", database_url=database.replace("postgresql://", "postgresql+asyncpg://", 1))
    stack.home.mkdir()
    work = tmp_path / "operator"
    work.mkdir()
    write_pipelines(work / "pipelines.yaml", Path("data"))
    try:
        stack.start_server()
        deployed = stack.run([str(BIN / "animate-anyone"), "deploy", "--flow", "refresh"], cwd=work)
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        stack.start_worker("cpu", work)
        run = stack.run([str(BIN / "prefect"), "deployment", "run", "refresh/test", "--watch", "--watch-interval", "2"],
                        cwd=work)
        assert run.returncode == 0, run.stdout[-3000:] + stack.log("worker-cpu")[-3000:]
    finally:
        stack.stop()
    root = DataRoot.from_uri(work / "data")
    clips = read_table(root, "clips").num_rows
    assert clips >= 1 and read_table(root, "clip_pose_summary").num_rows == clips
    # the runs live in PostgreSQL: the server kept them there, not in a SQLite file
    rows = sql("SELECT f.name AS flow, r.state_name AS state FROM flow_run r JOIN flow f ON f.id = r.flow_id "
                "WHERE r.parent_task_run_id IS NULL", database)
    assert [(r["flow"], r["state"]) for r in rows] == [("refresh", "Completed")]
    assert not list((tmp_path / "prefect").glob("*.db"))
