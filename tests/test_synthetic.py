"""The puppet world: deterministic, varied and exactly annotated (that MediaPipe sees its dancers
where the truth puts them: tests/pose/test_pose_backends.py)."""
from __future__ import annotations

import numpy as np

from animate_anyone import synthetic
from animate_anyone.media.video import iter_frames, probe
from animate_anyone.pose import layouts


def test_same_seed_same_frames_and_truth(tmp_path):
    spec = synthetic.plan_video("a", 7, 4.0, 192, 320)
    assert synthetic.plan_video("a", 7, 4.0, 192, 320) == spec
    assert synthetic.plan_video("a", 8, 4.0, 192, 320) != spec
    first = list(synthetic.render_frames(spec))
    again = list(synthetic.render_frames(synthetic.plan_video("a", 7, 4.0, 192, 320)))
    assert len(first) == spec.num_frames == 120
    for (img1, kp1, vis1, s1), (img2, kp2, vis2, s2) in zip(first, again):
        assert np.array_equal(img1, img2) and np.array_equal(kp1, kp2) and s1 == s2
    synthetic.write_video(spec, tmp_path / "one")
    synthetic.write_video(spec, tmp_path / "two")
    t1, k1 = synthetic.load_truth(tmp_path / "one/a.mp4")
    t2, k2 = synthetic.load_truth(tmp_path / "two/a.mp4")
    assert t1 == t2 and np.array_equal(k1["keypoints"], k2["keypoints"])
    assert np.array_equal(k1["keypoints"], np.stack([f[1] for f in first]))


def test_at_least_eight_distinct_characters():
    looks = {(c.skin, c.hair, c.hair_style, c.shirt, c.long_sleeves, c.legs, c.leg_wear)
             for c in (synthetic.make_character(i) for i in range(12))}
    assert len(looks) == 12
    shapes = {round(synthetic.make_character(i).shoulder_half, 4) for i in range(12)}
    assert len(shapes) >= 8, "body proportions should vary between characters"
    assert len({synthetic.make_character(i).hair_style for i in range(12)}) == len(synthetic.HAIR_STYLES)
    assert len({synthetic.make_character(i).leg_wear for i in range(12)}) == len(synthetic.LEG_WEAR)


def test_truth_files_describe_the_video(puppet_dir):
    video = puppet_dir / "planned_0.mp4"
    truth, arrays = synthetic.load_truth(video)
    info = probe(video, count_frames=True)
    assert (info.width, info.height, info.fps, info.num_frames) == (256, 448, 30.0, truth["num_frames"])
    assert arrays["keypoints"].shape == (truth["num_frames"], layouts.NUM_KEYPOINTS, 2)
    assert truth["cuts"] == [95, 225, 265, 605, 685, 785]
    shot = arrays["shot"]
    assert [int(i) for i in np.flatnonzero(np.diff(shot)) + 1] == truth["cuts"]
    assert truth["keypoint_layout"] == "coco_wholebody_133"


def test_keypoints_are_anatomically_ordered(puppet_dir):
    _, arrays = synthetic.load_truth(puppet_dir / "planned_0.mp4")
    kp = arrays["keypoints"][0]
    i = layouts.INDEX
    # facing the camera: the subject's left is the image's right
    assert kp[i["left_shoulder"], 0] > kp[i["right_shoulder"], 0]
    assert kp[i["left_hip"], 0] > kp[i["right_hip"], 0]
    assert kp[i["nose"], 1] < kp[i["left_shoulder"], 1] < kp[i["left_hip"], 1] < kp[i["left_knee"], 1] < kp[i["left_ankle"], 1]
    face = kp[layouts.FACE_SLICE]
    assert face[36:42, 0].mean() < face[42:48, 0].mean()  # iBUG: 36-41 is the subject's right eye
    assert face[8, 1] == face[:17, 1].max()  # chin is the lowest jaw point
    hand = kp[layouts.LEFT_HAND_SLICE]
    assert np.linalg.norm(hand[0] - kp[i["left_wrist"]]) < 1e-3


def test_stamp_reads_back_every_frame(puppet_dir):
    video = puppet_dir / "random_0.mp4"
    truth, _ = synthetic.load_truth(video)
    read = [synthetic.read_frame_index(f.to_ndarray(format="rgb24"), truth["stamp"]) for f in iter_frames(video)]
    assert read == list(range(truth["num_frames"]))
