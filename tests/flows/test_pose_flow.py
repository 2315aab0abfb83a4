"""The extract_poses flow on a real (temporary) Prefect server: after ingest, rerun from cache,
bad clips into failures, the strict `gpu` concurrency limit, and the DWPose backend by config."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import yaml
from onnx_models import marker_pose_model

from animate_anyone.config import load_config
from animate_anyone.media.video import VideoWriter
from animate_anyone.pose.backends import ModelError
from animate_anyone.tables import DataRoot, query, read_table, write_part

pytestmark = [pytest.mark.usefixtures("prefect_server"), pytest.mark.flow]


def _run_pose(**kwargs):
    from flows.pose import extract_poses

    state = extract_poses(return_state=True, **kwargs)
    return state.result(), state.state_details.flow_run_id


def _pose_rows(root):
    t = read_table(root, "clip_pose_summary").drop_columns(["extracted_at"])
    return sorted(t.to_pylist(), key=lambda r: r["clip_id"]), read_table(root, "pose_frames").num_rows


def _add_clip(root: DataRoot, clip_id: str, path, fps=30.0, width=256, height=448, n=60) -> None:
    """A clips row of its own source for a file made by the test (no person, corrupt, several…)."""
    row = {"clip_id": clip_id, "source_id": f"u{clip_id}", "start_s": 0.0, "end_s": n / fps, "start_frame": 0,
           "end_frame": n, "fps": fps, "width": width, "height": height, "num_frames": n, "shot_idx": 0,
           "shot_detector": "test", "shot_params": "{}", "clip_uri": path.as_uri(), "sha256": f"sha-{clip_id}",
           "split": "train"}
    write_part(root, "clips", "demo", f"u{clip_id}", [row])


def test_poses_for_every_clip_then_cached_then_bad_clips_fail_alone(api, test_config, tmp_path):
    api.run_ingest(config=str(test_config))
    pipe = load_config("test", test_config)
    root = DataRoot.from_uri(pipe.data_root)
    clips = read_table(root, "clips").to_pylist()
    summary, run_id = _run_pose(config=str(test_config))
    assert summary["clips"] == len(clips) == summary["ok"] and summary["failed"] == 0
    rows, n_frames = _pose_rows(root)
    assert [r["clip_id"] for r in rows] == sorted(c["clip_id"] for c in clips)
    total = sum(c["num_frames"] for c in clips)
    assert 0.98 * total <= n_frames <= total  # one dancer, found in (nearly) every frame, never two
    assert n_frames == sum(r["frames_with_person"] for r in rows)
    assert all(r["one_person_ratio"] >= 0.95 and r["max_persons"] == 1 and r["body_conf"] > 0.8 for r in rows)
    assert query(root, "SELECT count(*) AS n FROM clip_pose_summary").to_pylist() == [{"n": len(clips)}]
    # rerun: the tables say every clip is done, so nothing is extracted or rewritten
    parts = {p: p.stat().st_mtime_ns for p in root.tables_dir.rglob("*.parquet") if "pose" in str(p)}
    summary2, run2 = _run_pose(config=str(test_config))
    assert (summary2["extracted"], summary2["skipped"]) == (0, len(clips))
    assert _pose_rows(root) == (rows, n_frames)
    assert {p: p.stat().st_mtime_ns for p in root.tables_dir.rglob("*.parquet") if "pose" in str(p)} == parts

    # bad clips next to good ones: no person (black), corrupt, missing file
    black = tmp_path / "black.mp4"
    with VideoWriter(black, 256, 448, 30) as w:
        for _ in range(60):
            w.write(np.zeros((448, 256, 3), np.uint8))
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(black.read_bytes()[:1500])
    _add_clip(root, "cblack", black)
    _add_clip(root, "ccorrupt", corrupt)
    _add_clip(root, "cmissing", tmp_path / "gone.mp4")
    summary3, run3 = _run_pose(config=str(test_config))
    assert summary3["ok"] == len(clips) and summary3["failed"] == 3
    failures = {r["item_id"]: r for r in read_table(root, "failures").to_pylist() if r["stage"] == "pose"}
    assert failures["cblack"]["reason"] == "no_person" and "no person found in any of its 60 frames" in failures["cblack"]["message"]
    assert failures["ccorrupt"]["error_class"] == "MediaError" and "corrupt.mp4" in failures["ccorrupt"]["message"]
    assert failures["cmissing"]["reason"] == "missing_file" and "gone.mp4" in failures["cmissing"]["message"]
    log = api.flow_log(run3)
    assert sum(m.startswith("FAILED clip") for m in log) == 3
    assert _pose_rows(root) == (rows, n_frames)  # the good clips' rows untouched; failed clips have none
    # a rerun retries only the failed clips, one by one, and appends attempt 2
    summary4, run4 = _run_pose(config=str(test_config))
    assert (summary4["extracted"], summary4["skipped"], summary4["failed"]) == (0, len(clips), 3)
    assert _pose_rows(root) == (rows, n_frames)
    again = [r for r in read_table(root, "failures").to_pylist() if r["item_id"] == "cblack"]
    assert sorted(r["attempt"] for r in again) == [1, 2]


def test_dwpose_by_config_with_a_strict_gpu_slot_and_several_people(api, test_config, tmp_path, shared_fixtures):
    from prefect.client.orchestration import get_client

    model = marker_pose_model(tmp_path / "pose.onnx")
    cfg = yaml.safe_load(test_config.read_text())
    cfg["pipelines"]["test"]["pose"] = {
        "backend": "dwpose", "use_gpu_slot": True,
        "dwpose": {"detector": str(shared_fixtures / "onnx" / "yolox_nano_coco.onnx"), "pose_model": str(model),
                   "device": "cpu"}}
    cfg["pipelines"]["test"]["sources"]["puppets"]["count"] = 1
    cfg["pipelines"]["test"]["gpu_slots"] = 2
    test_config.write_text(yaml.safe_dump(cfg))
    pipe = load_config("test", test_config)
    root = DataRoot.from_uri(pipe.data_root)
    # the street scene (5 frames at 5 fps) as a clip: several people
    street = tmp_path / "street.mp4"
    shutil.copy(shared_fixtures / "video" / "mmpose_demo_street_multiperson.mp4", street)
    _add_clip(root, "cstreet", street, fps=5.0, width=960, height=540, n=5)
    summary, run_id = _run_pose(config=str(test_config))
    assert summary["backend"] == "dwpose" and summary["ok"] == summary["clips"] == 1
    with get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name("gpu")
    assert limit.limit == 2 and limit.active_slots == 0  # created by the flow, every slot given back
    street_rows = query(root, "SELECT max_persons, frames_one_person FROM clip_pose_summary WHERE clip_id = 'cstreet'").to_pylist()
    assert street_rows[0]["max_persons"] >= 3 and street_rows[0]["frames_one_person"] == 0
    assert any("cstreet" in m and "several people in 5 of 5 frames" in m for m in api.flow_log(run_id))
    people = query(root, "SELECT frame_idx, count(*) AS n, min(num_persons) AS k FROM pose_frames "
                         "WHERE clip_id = 'cstreet' GROUP BY frame_idx ORDER BY frame_idx").to_pylist()
    assert [p["n"] for p in people] == [p["k"] for p in people]  # every person kept, the count recorded
    # a missing model stops the run before any task, naming the field and the file
    cfg["pipelines"]["test"]["pose"]["dwpose"]["pose_model"] = str(tmp_path / "nope.onnx")
    test_config.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ModelError, match="pose.dwpose.pose_model: model file .*nope.onnx does not exist"):
        _run_pose(config=str(test_config))
