"""The `train` flow on a real (temporary) Prefect server: every stage a task, cached on the run id,
the loss curve and a summary as artifacts, and a rerun that trains nothing."""
from __future__ import annotations

from pathlib import Path

import pytest
from train_data import CONFIG, build_train_root

pytestmark = [pytest.mark.usefixtures("prefect_server"), pytest.mark.flow]


def _run(**kwargs):
    from flows.train import train_flow

    state = train_flow(return_state=True, **kwargs)
    return state.result(), state.state_details.flow_run_id


def test_train_flow_runs_each_stage_once_then_from_cache(api, tmp_path):
    build_train_root(tmp_path / "data", videos=2)
    config = tmp_path / "pipelines.yaml"
    config.write_text(CONFIG.format(root=tmp_path / "data", extra1=""))
    first, run1 = _run(pipeline="t", config=str(config), max_steps=2)
    assert [s["stage"] for s in first["stages"]] == [0, 1, 2] and all(s["step"] == 2 for s in first["stages"])
    assert sorted(api.task_states(run1).values()) == ["Completed"] * 3
    arts = api.artifacts(run1)
    assert any(k.startswith("train-t-s1-") for k in arts) and any(k.startswith("loss-t-s1-") for k in arts)
    assert Path(first["model"]).name == "tiny" and (Path(first["model"]) / "model_index.json").is_file()
    again, run2 = _run(pipeline="t", config=str(config), max_steps=2)
    assert sorted(api.task_states(run2).values()) == ["Cached"] * 3
    assert [s["run_id"] for s in again["stages"]] == [s["run_id"] for s in first["stages"]]
