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


def test_the_flows_train_and_animate_a_unianimate_model(api, tmp_path):
    """The same train and animate flows serve the second family: its stages run as tasks, the
    folder says which family it holds, and the animate flow loads it by path."""
    from animate_anyone.models import store
    from animate_anyone.tables import DataRoot, query, refresh_catalog
    from flows.animate import animate_flow

    build_train_root(tmp_path / "data", videos=2)
    config = tmp_path / "pipelines.yaml"
    config.write_text(CONFIG.format(root=tmp_path / "data", extra1="")
                      .replace("      size: tiny\n", "      family: unianimate\n      size: tiny\n")
                      .replace("stage1: {{steps: 6,", "stage1: {{steps: 6, frames: 2,"))
    result, run_id = _run(pipeline="t", config=str(config), max_steps=2)
    assert [s["stage"] for s in result["stages"]] == [0, 1, 2]
    assert sorted(api.task_states(run_id).values()) == ["Completed"] * 3
    assert store.family(Path(result["model"])) == "unianimate"
    root = DataRoot.from_uri(tmp_path / "data")
    refresh_catalog(root)
    assert query(root, "SELECT count(*) AS n FROM train_runs WHERE status = 'finished'").to_pylist() == [{"n": 3}]

    first, second = (r["clip_id"] for r in query(root, "SELECT clip_id FROM clips ORDER BY clip_id LIMIT 2").to_pylist())
    state = animate_flow(return_state=True, pipeline="t", config=str(config), reference=f"clip:{first}",
                         pose=second, model=result["model"], frames=5, steps=2, height=64)
    out = state.result()
    assert out["status"] == "ok" and out["frames"] == 5 and Path(out["out"]).is_file()
