"""The `animate` flow on a real (temporary) Prefect server: generate, rerun from cache, and a bad
reference recorded in `failures` without stopping anything."""
from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import yaml

from animate_anyone.media.video import VideoWriter, iter_frames, probe
from animate_anyone.tables import DataRoot, read_table

pytestmark = [pytest.mark.usefixtures("prefect_server"), pytest.mark.flow]


def _run(**kwargs):
    from flows.animate import animate_flow

    state = animate_flow(return_state=True, **kwargs)
    return state.result(raise_on_failure=False), state


def test_animate_flow_generates_then_reuses_its_cache(api, test_config, puppet_dir, tmp_path):
    cfg = yaml.safe_load(test_config.read_text())
    cfg["pipelines"]["test"]["animate"].update(steps=2, frames=12, height=64, window=8, overlap=2)
    test_config.write_text(yaml.safe_dump(cfg))
    video = sorted(puppet_dir.glob("*.mp4"))[0]
    reference = tmp_path / "ref.png"
    PIL.Image.fromarray(next(iter(iter_frames(video))).to_ndarray(format="rgb24")).save(reference)
    poses = tmp_path / "poses.mp4"
    with VideoWriter(poses, 256, 448, 30) as w:
        for i in range(16):
            w.write(np.full((448, 256, 3), i * 10, np.uint8))

    first, state1 = _run(config=str(test_config), reference=str(reference), pose=str(poses))
    assert first["status"] == "ok" and first["frames"] == 12
    info = probe(first["out"], count_frames=True)
    assert (info.width, info.height, info.num_frames) == (32, 64, 12)
    assert set(api.task_states(state1.state_details.flow_run_id).values()) == {"Completed"}
    again, state2 = _run(config=str(test_config), reference=str(reference), pose=str(poses))
    assert again["out"] == first["out"] and set(api.task_states(state2.state_details.flow_run_id).values()) == {"Cached"}

    # a reference that is no image (a person the backend misses is only a note: nothing is
    # retargeted along a pose video)
    broken = tmp_path / "broken.png"
    broken.write_text("not an image")
    failed, state = _run(config=str(test_config), reference=str(broken), pose=str(poses))
    assert failed["status"] == "failed" and "cannot be read" in failed["error"]
    # the run itself failed (a watching `prefect deployment run` exits non-zero), naming the input
    assert state.is_failed() and "broken.png" in state.message and "cannot be read" in state.message
    assert first["status"] == "ok" and state1.is_completed()
    rows = read_table(DataRoot.from_uri(cfg["pipelines"]["test"]["data_root"]), "failures").to_pylist()
    assert [(r["stage"], r["reason"]) for r in rows] == [("animate", "bad_image")]
