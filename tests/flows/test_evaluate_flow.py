"""The `evaluate` flow unattended: no arguments at all (the default pipeline from
ANIMATE_ANYONE_CONFIG, `evaluate.what: all-new`), the leaderboard as artifacts, and a second
scheduled run that finds nothing new."""
from __future__ import annotations

import pytest
from train_data import CONFIG, build_train_root

pytestmark = [pytest.mark.usefixtures("prefect_server"), pytest.mark.flow, pytest.mark.slow]

EVALUATE = """
    evaluate: {split: train, clips: 1, frames: 5, width: 32, height: 64, steps: 2, guidance: 1.0, window: 5,
               overlap: 2, device: cpu, dtype: float32, lpips: null, untrained: false, schedule: "0 3 * * *"}
"""


def test_the_flow_runs_with_no_arguments_and_scores_only_what_is_new(api, tmp_path, monkeypatch):
    from animate_anyone.config import load_config
    from animate_anyone.training.run import train
    from flows.evaluate import evaluate_flow

    build_train_root(tmp_path / "data", videos=1)
    config = tmp_path / "pipelines.yaml"
    config.write_text(CONFIG.format(root=tmp_path / "data", extra1="") + EVALUATE)
    monkeypatch.setenv("ANIMATE_ANYONE_CONFIG", str(config))
    train(load_config("t", config), "all", max_steps=2)
    state = evaluate_flow(return_state=True)
    first = state.result()
    names = sorted(r["model_name"] for r in first["runs"])
    assert "tiny" in names and "still-reference" in names and any("@2" in n for n in names), names
    assert all(r["status"] == "finished" for r in first["runs"])
    arts = api.artifacts(state.state_details.flow_run_id)
    assert any(k.startswith(f"eval-{first['bench']}") for k in arts), arts
    again = evaluate_flow(return_state=True).result()
    assert all(r.get("cached") for r in again["runs"])
