"""Pose tables built from the puppets' ground truth: Parquet settings, the catalog's views, every
recipe of docs/queries.md against what the truth says, and training-clip selection snapshots."""
from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from animate_anyone import synthetic
from animate_anyone.pose.backends import FramePoses
from animate_anyone.pose.extract import ClipPoses, hand_visible, pose_rows, summarise
from animate_anyone.pose.layouts import LEFT_HAND_SLICE, RIGHT_HAND_SLICE
from animate_anyone.tables import DataRoot, QueryError, query, refresh_catalog, write_part
from animate_anyone.tables.io import Dataset
from animate_anyone.tables.selection import load_snapshot, select_clips

REPO = Path(__file__).resolve().parents[2]
NOW = dt.datetime(2026, 11, 21, tzinfo=dt.timezone.utc)


def recipes() -> dict[str, str]:
    text = (REPO / "docs" / "queries.md").read_text()
    return dict(re.findall(r"^## (\w+)\n.*?```sql\n(.*?)```", text, flags=re.S | re.M))


def _frame(kp: np.ndarray, sc: np.ndarray) -> FramePoses:
    seen = kp[sc > 0]
    box = np.concatenate([seen.min(0), seen.max(0)])[None].astype(np.float32)
    return FramePoses(box, np.ones(1, np.float32), kp[None].astype(np.float32), sc[None].astype(np.float32))


@pytest.fixture(scope="module")
def truth_tables(puppet_dir, tmp_path_factory):
    """Clips = the truth shots of two puppet videos (60+ frames); poses = the truth, with changes
    the truth then also records: a second person in half of one clip, nobody in some frames of
    another, and a left hand hidden in the last 40% of a third."""
    root = DataRoot.from_uri(tmp_path_factory.mktemp("posetables"))
    expected: dict[str, dict] = {}
    clips, k = [], 0
    for name in ("planned_0", "random_0"):
        truth, arrays = synthetic.load_truth(puppet_dir / f"{name}.mp4")
        bounds = [0, *truth["cuts"], truth["num_frames"]]
        rows = []
        for s, e in zip(bounds[:-1], bounds[1:]):
            if e - s < 60:
                continue
            clip_id = f"c{k:02d}"
            kp = arrays["keypoints"][s:e].astype(np.float32)
            sc = arrays["visible"][s:e].astype(np.float32)
            people = [[_frame(kp[i], sc[i])] for i in range(e - s)]
            n = e - s
            if k == 1:  # a second, smaller person in the first half
                for i in range(n // 2):
                    other = kp[i] * 0.5 + 10
                    people[i].append(_frame(other, sc[i]))
            if k == 2:  # nobody in the first 10 frames
                for i in range(10):
                    people[i] = []
            if k == 3:  # left hand hidden in the last 40%
                for i in range(int(n * 0.6), n):
                    people[i][0].scores[0, LEFT_HAND_SLICE] = 0
            frames = [FramePoses(np.concatenate([p.boxes for p in ps]), np.concatenate([p.det_scores for p in ps]),
                                 np.concatenate([p.keypoints for p in ps]), np.concatenate([p.scores for p in ps]))
                      if ps else FramePoses() for ps in people]
            clip = {"clip_id": clip_id, "source_id": name, "start_s": s / 30, "end_s": e / 30, "start_frame": s,
                    "end_frame": e, "fps": 30.0, "width": truth["width"], "height": truth["height"], "num_frames": n,
                    "shot_idx": 0, "shot_detector": "truth", "shot_params": "{}", "clip_uri": "", "sha256": f"sha{k}",
                    "split": "train" if k % 4 else "val"}
            poses = ClipPoses(frames, truth["width"], truth["height"])
            write_part(root, "pose_frames", "truth", clip_id, pose_rows(clip_id, poses, 30.0, "truth"))
            write_part(root, "clip_pose_summary", "truth", clip_id, [summarise(clip, poses, "truth", NOW)])
            counts = np.array([len(f) for f in frames])
            main = [f.scores[0] if len(f) else np.zeros(133) for f in frames]
            expected[clip_id] = {
                "one_person": bool((counts == 1).all()), "max_persons": int(counts.max()),
                "several": int((counts > 1).sum()),
                "left": float(np.mean([len(f) > 0 and hand_visible(m[LEFT_HAND_SLICE]) for f, m in zip(frames, main)])),
                "right": float(np.mean([len(f) > 0 and hand_visible(m[RIGHT_HAND_SLICE]) for f, m in zip(frames, main)])),
                "kp": kp, "frames": frames, "width": truth["width"], "height": truth["height"], "source": name,
            }
            rows.append(clip)
            k += 1
        clips += rows
        write_part(root, "clips", "truth", name, rows)
    refresh_catalog(root)
    return root, expected


def test_pose_parts_use_the_measured_parquet_settings(truth_tables):
    root, _ = truth_tables
    meta = pq.ParquetFile(root.part_path("pose_frames", "truth", "c00")).metadata
    enc = {meta.row_group(0).column(i).path_in_schema: meta.row_group(0).column(i).encodings for i in range(meta.num_columns)}
    for col in ("keypoints.list.element", "scores.list.element", "bbox.list.element"):
        assert "BYTE_STREAM_SPLIT" in enc[col] and "RLE_DICTIONARY" not in enc[col] and "PLAIN_DICTIONARY" not in enc[col]


def test_every_recipe_in_the_docs_runs_and_is_tested():
    assert set(recipes()) == {"one_person_hands_moving", "one_person", "several_people", "hands_visible", "motion_energy",
                              "wrist_speed", "pose_confidence", "clips_per_source", "pose_of_one_frame", "failed_clips",
                              # run by tests/training/test_evaluation.py on evaluation tables
                              "best_checkpoint", "metric_over_steps", "worst_clips", "failed_evaluations"}


def test_recipes_return_what_the_truth_says(truth_tables):
    root, exp = truth_tables
    r = recipes()
    run = lambda name, **p: query(root, r[name].format(**p)).to_pylist()  # noqa: E731
    one = {c for c, e in exp.items() if e["one_person"]}
    assert {row["clip_id"] for row in run("one_person")} == one
    assert len(one) < len(exp)  # the changed clips are not among them
    hands = {c for c in one if min(exp[c]["left"], exp[c]["right"]) >= 0.8 and min(exp[c]["left"], exp[c]["right"]) > 0}
    moving = run("one_person_hands_moving")
    assert {row["clip_id"] for row in moving} == {c for c in one if exp[c]["left"] >= 0.8 and exp[c]["right"] >= 0.8} == hands
    assert [row["motion"] for row in moving] == sorted((row["motion"] for row in moving), reverse=True)
    assert run("several_people") == [{"clip_id": c, "max_persons": e["max_persons"], "frames_with_several": e["several"]}
                                     for c, e in sorted(exp.items()) if e["max_persons"] > 1]
    for row in run("hands_visible"):
        assert row["left_hand"] == pytest.approx(exp[row["clip_id"]]["left"])
        assert row["right_hand"] == pytest.approx(exp[row["clip_id"]]["right"])
    assert exp["c03"]["left"] == pytest.approx(0.6, abs=0.02)
    top = run("motion_energy", limit=2)
    assert len(top) == 2 and top[0]["motion"] >= top[1]["motion"]
    clip, e = "c00", exp["c00"]
    steps = run("wrist_speed", clip_id=clip)
    wrist = e["kp"][:, 10] / (e["width"], e["height"])
    assert steps[0]["step"] is None
    # coordinates are stored to 1/8192 of the frame (schemas.STORED_PRECISION): a step between two stored
    # points is off by at most 2 * sqrt(2) / 16384
    np.testing.assert_allclose([s["step"] for s in steps[1:]], np.linalg.norm(np.diff(wrist, axis=0), axis=1),
                               atol=2 * 2 ** 0.5 / 16384)
    conf = run("pose_confidence")
    assert len(conf) == len(exp) and all(0 <= row["body"] <= 1 for row in conf)
    per_source = run("clips_per_source")
    assert per_source == [{"source_id": s, "clips": n, "with_poses": n} for s, n in
                          sorted({(e["source"], sum(x["source"] == e["source"] for x in exp.values())) for e in exp.values()})]
    frame = run("pose_of_one_frame", clip_id="c01", frame_idx=3)
    assert [row["person_idx"] for row in frame] == [0, 1]  # the dancer, then the smaller second person
    # pixels from coordinates stored to 1/8192 of the frame: off by at most half a step of the width
    assert frame[0]["right_wrist_x"] == pytest.approx(exp["c01"]["kp"][3, 10, 0], abs=exp["c01"]["width"] / 16384 + 1e-3)
    assert frame[0]["right_wrist_y"] == pytest.approx(exp["c01"]["kp"][3, 10, 1], abs=exp["c01"]["height"] / 16384 + 1e-3)
    assert run("failed_clips") == []


def test_typed_array_view_has_fixed_size_arrays(truth_tables):
    root, _ = truth_tables
    row = query(root, "SELECT typeof(keypoints) AS k, typeof(scores) AS s, array_length(keypoints) AS n "
                      "FROM pose_frames_arrays LIMIT 1").to_pylist()
    assert row == [{"k": "FLOAT[266]", "s": "FLOAT[133]", "n": 266}]


def test_selection_snapshot_names_its_clips_and_their_hash(truth_tables):
    root, exp = truth_tables
    snap = select_clips(Dataset(root, "truth"), "s.frames_one_person = s.num_frames", ["train", "val"], "test")
    assert snap["clip_ids"] == sorted(c for c, e in exp.items() if e["one_person"])
    again = select_clips(Dataset(root, "truth"), "s.frames_one_person = s.num_frames", ["train", "val"], "test")
    assert again["snapshot_id"] == snap["snapshot_id"] and again["created_at"] == snap["created_at"]
    train_only = select_clips(Dataset(root, "truth"), "s.frames_one_person = s.num_frames", ["train"], "test")
    assert train_only["snapshot_id"] != snap["snapshot_id"] and "c00" not in train_only["clip_ids"]
    assert load_snapshot(Dataset(root, "truth"))["snapshot_id"] == train_only["snapshot_id"]
    assert load_snapshot(Dataset(root, "truth"), snap["snapshot_id"])["clips_sha256"] == snap["clips_sha256"]
    with pytest.raises(QueryError, match="select.where 'no_such_column > 1' cannot select clips"):
        select_clips(Dataset(root, "truth"), "no_such_column > 1", ["train"])
    with pytest.raises(QueryError, match="not one SQL expression"):
        select_clips(Dataset(root, "truth"), "TRUE); DROP TABLE clips; --", ["train"])
    with pytest.raises(QueryError, match="no snapshot 'snope'"):
        load_snapshot(Dataset(root, "truth"), "snope")
