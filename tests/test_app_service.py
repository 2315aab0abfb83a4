"""The web page's work without the page: where each of the command line's messages is shown, the
settings typed into boxes, the model store's list with each folder's family, and a plain video's
poses extracted on the fly (checked against the puppet world's truth)."""
from __future__ import annotations

import numpy as np
import pytest

from animate_anyone import synthetic
from animate_anyone.app.service import MOTION_POSE_VIDEO, MOTION_VIDEO, AppService, RequestError, field_of, number
from animate_anyone.config import PipelineConfig, Pose
from animate_anyone.media.video import iter_frames, probe


@pytest.mark.parametrize("message, reason, field", [
    ("reference image /x/holiday.png cannot be read: cannot identify image file", "bad_image", "reference"),
    ("reference image /x/a.png: no person found by the mediapipe pose backend", "no_person", "reference"),
    ("--frames must be at least 1; got 0", "bad_option", "frames"),
    ("--guidance must be at least 0; got -1", "bad_option", "guidance"),
    ("--height must be at least 8; got 4", "bad_option", "size"),
    ("--fit must be one of pad, crop, stretch; got 'squash'", "bad_option", "fit"),
    ("--background 'sky' is not a colour (a name like white, or #rrggbb)", "bad_option", "reference"),
    ("pose video /x/p.mp4 has no frames", "zero_frames", "motion"),
    ("/x/p.mp4 is 256×448 but --width/--height ask for 64×64: the aspect ratio differs", "size_mismatch", "size"),
    ("model folder /m: no model_index.json (make one with ...)", "missing_model", "model"),
    ("--overlap must be smaller than --window (6); got 6", "bad_option", "request"),
    # a deployment's failed run carries the message only: the words place it
    ("--steps must be at least 1; got 0", None, "steps"),
    ("reference image not found: /x/no.png", None, "reference"),
    ("something else went wrong", None, "request"),
])
def test_each_message_goes_next_to_the_field_it_names(message, reason, field):
    assert field_of(message, reason) == field


def test_settings_typed_into_boxes():
    assert number("", "--frames") is None and number("  ", "--frames") is None and number(None, "--steps") is None
    assert number("4", "--frames") == 4 and number("4.0", "--frames") == 4 and number("-2", "--frames") == -2
    assert number("2.5", "--guidance", whole=False) == 2.5
    for text, flag, expected, field in (("many", "--frames", "--frames must be a whole number; got 'many'", "frames"),
                                        ("4.5", "--steps", "--steps must be a whole number; got '4.5'", "steps"),
                                        ("1e", "--guidance", "--guidance must be a number; got '1e'", "guidance")):
        with pytest.raises(RequestError) as caught:
            number(text, flag, whole=flag != "--guidance")
        assert caught.value.message == expected and caught.value.field == field


def test_the_model_list_names_each_folder_and_its_family(tmp_path):
    from animate_anyone.models import store

    root = tmp_path / "data"
    for name, family in (("mine", "animate-anyone"), ("ua", "unianimate")):
        store.family_module(family).create_model(root / "models" / name, "tiny", 0)
    store.family_module("animate-anyone").create_model(root / "models" / "baselines" / "start", "tiny", 0)
    (root / "models" / "half-written").mkdir()  # no model_index.json: not a model
    service = AppService(PipelineConfig(data_root=str(root)), None)
    assert service.models() == [("mine (animate-anyone)", "mine"), ("ua (unianimate)", "ua"),
                                ("baselines/start (animate-anyone)", "baselines/start"),
                                ("tiny-random (animate-anyone, untrained: built on first use)", "tiny-random")]
    assert service.model_path("ua") == str((root / "models" / "ua").resolve())
    assert service.model_path("baselines/start") == str(root / "models" / "baselines" / "start")
    with pytest.raises(RequestError) as caught:
        service.model_path("half-written")
    assert caught.value.field == "model" and "no model_index.json" in caught.value.message


@pytest.mark.slow  # MediaPipe over a puppet video (and the shared puppet videos, built on first use)
def test_a_plain_videos_poses_are_extracted_and_drawn(tmp_path, puppet_dir):
    """A puppet video uploaded as the motion: MediaPipe's skeleton of each frame, drawn where the
    truth says the puppet is; the pose video keeps its size, only the frames asked for, made once."""
    video = puppet_dir / "random_0.mp4"
    service = AppService(PipelineConfig(data_root=str(tmp_path / "data"), pose=Pose(backend="mediapipe")), None)
    motion = service.motion(MOTION_VIDEO, str(video), None, frames=8)
    info = probe(motion.pose, count_frames=True)
    assert (info.width, info.height, info.num_frames) == (256, 448, 8) and motion.canvas == (256, 448)
    assert "/uploads/" in motion.pose and motion.notes[0].startswith("poses of random_0.mp4 extracted by mediapipe")
    _, arrays = synthetic.load_truth(video)
    hits = 0
    for i, frame in enumerate(iter_frames(motion.pose)):
        drawn = frame.to_ndarray(format="rgb24").max(axis=2) > 60
        if not drawn.any():
            continue
        ys, xs = np.nonzero(drawn)
        seen = arrays["keypoints"][i][arrays["visible"][i] > 0]  # the truth's visible points, pixels
        lo, hi = seen.min(0) - 20, seen.max(0) + 20
        hits += bool(lo[0] <= np.median(xs) <= hi[0] and lo[1] <= np.median(ys) <= hi[1])
    assert hits >= 6, hits  # MediaPipe misses the puppet in a frame now and then
    again = service.motion(MOTION_VIDEO, str(video), None, frames=8)
    assert again.pose == motion.pose and "reused" in again.notes[0]
    # a pose video is taken as it is; a file that is no video says so, for the motion field
    assert service.motion(MOTION_POSE_VIDEO, motion.pose, None).pose.endswith(".mp4")
    bad = tmp_path / "dance.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(RequestError) as caught:
        service.motion(MOTION_POSE_VIDEO, str(bad), None)
    assert caught.value.field == "motion" and caught.value.message.startswith("pose video dance.mp4:")
