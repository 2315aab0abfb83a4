"""Keypoint layouts, the OpenPose-style drawing, and retargeting."""
from __future__ import annotations

import numpy as np
import pytest

from animate_anyone import synthetic
from animate_anyone.pose import layouts as L
from animate_anyone.pose import render as R
from animate_anyone.pose.retarget import BONES, NECK, RetargetError, retarget, retarget_normalised


def _person(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A puppet's true keypoints on a 512x768 canvas, normalised, all visible."""
    ch = synthetic.make_character(seed % 12, seed)
    kp = synthetic.skeleton(ch, synthetic.dance("wave", 0.3, 1.0, 0.0))
    px, _ = synthetic.to_pixels(kp, ch, synthetic.Camera(0.5, 0.0), 512, 768)
    return (px / np.array([512, 768])).astype(np.float32), np.ones(133, np.float32)


def test_openpose18_order_and_neck():
    kp, sc = _person()
    sc[L.INDEX["left_shoulder"]] = 0.9
    sc[L.INDEX["right_shoulder"]] = 0.6
    body, bs = L.to_openpose18(kp, sc)
    for j, name in enumerate(L.OPENPOSE18_NAMES):
        if name != "neck":
            np.testing.assert_array_equal(body[j], kp[L.INDEX[name]])
    np.testing.assert_allclose(body[1], (kp[L.INDEX["left_shoulder"]] + kp[L.INDEX["right_shoulder"]]) / 2)
    assert bs[1] == pytest.approx(0.6)
    sc[L.INDEX["right_shoulder"]] = 0.2  # one shoulder hidden: no neck
    assert L.to_openpose18(kp, sc)[1][1] == 0


def test_pose_dict_round_trip_keeps_visible_points():
    rng = np.random.default_rng(0)
    kp = rng.random((3, 133, 2), dtype=np.float32)
    sc = rng.random((3, 133), dtype=np.float32)
    d = L.to_pose_dict(kp, sc)
    assert len(d["bodies"]["candidate"]) == 54 and np.asarray(d["bodies"]["subset"]).shape == (3, 18)
    assert np.asarray(d["hands"]).shape == (6, 21, 2) and np.asarray(d["faces"]).shape == (3, 68, 2)
    hidden = np.asarray(d["bodies"]["subset"]) < 0
    assert (hidden == (np.asarray(d["bodies"]["score"]) <= 0.3)).all()
    # DWPose's convention: every person's left hand first, then every right hand
    np.testing.assert_array_equal(np.asarray(d["hands_score"])[1], sc[1, L.LEFT_HAND_SLICE])
    np.testing.assert_array_equal(np.asarray(d["hands_score"])[4], sc[1, L.RIGHT_HAND_SLICE])
    back, back_s = L.from_pose_dict(d)
    seen = sc > 0.3
    np.testing.assert_array_equal(back[seen], kp[seen])
    np.testing.assert_array_equal(back_s[seen], sc[seen])
    assert (back_s[~seen] == 0).all()
    # a dict without scores (as older tools write it): present points get score 1
    bare = {"bodies": {k: d["bodies"][k] for k in ("candidate", "subset")}, "hands": d["hands"], "faces": d["faces"]}
    _, bare_s = L.from_pose_dict(bare)
    assert set(np.unique(bare_s[:, L.BODY_SLICE])) <= {0.0, 1.0}
    assert (bare_s[:, L.FEET_SLICE] == 0).all()


def _at(img, xy_norm, size=(512, 768)):
    x, y = int(xy_norm[0] * size[0]), int(xy_norm[1] * size[1])
    return tuple(int(v) for v in img[y, x])


def test_drawing_matches_the_reference_colours_positions_and_widths():
    kp, sc = _person()
    img = R.draw_pose((512, 768), kp, sc, hands=False, face=False)  # hands and face are drawn over joints
    assert img.shape == (768, 512, 3)
    body, _ = L.to_openpose18(kp, sc)
    for j in range(18):  # joints: full colour, at their positions
        assert _at(img, body[j]) == R.COLOURS[j], L.OPENPOSE18_NAMES[j]
    # a limb away from joints: its colour dimmed to 60 %, and 2 * stick width + 1 pixels across
    a, b = body[9] * (512, 768), body[10] * (512, 768)  # right knee to right ankle: limb 8
    mid = (a + b) / 2
    assert tuple(img[int(mid[1]), int(mid[0])]) == tuple(int(c * 0.6) for c in R.COLOURS[8])
    normal = np.array([-(b - a)[1], (b - a)[0]]) / np.linalg.norm(b - a)
    across = [tuple(img[int(round(p[1])), int(round(p[0]))]) for p in (mid + t * normal for t in np.arange(-8, 8.5, 0.5))]
    width = sum(c == tuple(int(v * 0.6) for v in R.COLOURS[8]) for c in across) / 2
    assert 8 <= width <= 10  # the reference's ellipse has half width 4
    # hands: blue joints, face: white dots; feet not drawn
    img = R.draw_pose((512, 768), kp, sc)
    assert _at(img, kp[L.INDEX["left_hand_index4"]]) == R.HAND_JOINT
    assert _at(img, kp[L.INDEX["face_30"]]) == R.FACE_DOT
    no_face = R.draw_pose((512, 768), kp, sc, face=False)
    assert _at(no_face, kp[L.INDEX["face_30"]]) != R.FACE_DOT
    # hidden points are not drawn; weighted colours scale with confidence
    low = sc.copy()
    low[L.INDEX["right_knee"]] = 0.2
    assert _at(R.draw_pose((512, 768), kp, low, hands=False, face=False), body[9]) == (0, 0, 0)
    half = np.full(133, 0.5, np.float32)
    assert _at(R.draw_pose((512, 768), kp, half, weighted=True, hands=False, face=False), body[0]) == tuple(int(c * 0.5) for c in R.COLOURS[0])
    # any canvas size: the same pose drawn at half size puts the nose at half the pixels
    small = R.draw_pose((256, 384), kp, sc, face=False)
    assert _at(small, body[0], (256, 384)) == R.COLOURS[0]


def test_our_palette_is_the_one_in_a_real_dwpose_drawing(shared_fixtures):
    from PIL import Image

    ref = np.asarray(Image.open(shared_fixtures / "pose" / "easydwpose_pose_skeleton.png").convert("RGB")).reshape(-1, 3)
    cols, counts = np.unique(ref[ref.max(axis=1) >= 140], axis=0, return_counts=True)
    common = cols[counts >= 30].astype(int)  # its solid colours; edges are blended by resizing and compression
    palette = np.array(list(R.COLOURS) + [tuple(int(c * 0.6) for c in col) for col in R.COLOURS]
                       + list(R.HAND_COLOURS) + [R.HAND_JOINT, R.FACE_DOT])
    dist = np.abs(common[:, None, :] - palette[None]).max(axis=2)
    near = dist.min(axis=1) <= 16
    assert near.mean() >= 0.9, common[~near]
    used = set(np.unique(dist.argmin(axis=1)[near]).tolist())
    assert len(used & set(range(18, 36))) >= 10  # the limbs, in their colours dimmed to 60 %


def _seq(char: int, move: str, frames: int = 30):
    ch = synthetic.make_character(char, 0)
    out = []
    for t in range(frames):
        kp = synthetic.skeleton(ch, synthetic.dance(move, t / 30, 1.0, 0.0))
        out.append(synthetic.to_pixels(kp, ch, synthetic.Camera(0.5, 0.0), 512, 768)[0])
    return np.asarray(out, np.float32)


def _bone(kp, parent, child):
    p = (kp[..., 5, :] + kp[..., 6, :]) / 2 if parent == NECK else kp[..., parent, :]
    return kp[..., child, :] - p


def test_retargeting_keeps_the_motion_and_takes_the_reference_bones():
    driving = _seq(0, "jacks")
    reference = _seq(7, "sway", 1)[0] * 0.8 + np.array([40.0, 60.0], np.float32)  # another body, elsewhere
    ones = np.ones(driving.shape[:2], np.float32)
    out = retarget(driving, ones, reference, ones[0], frame=0)
    assert out.shape == driving.shape
    for parent, child in BONES:
        ref_len = np.linalg.norm(_bone(reference, parent, child))
        np.testing.assert_allclose(np.linalg.norm(_bone(out[0], parent, child)), ref_len, rtol=1e-4, atol=1e-3)
        d, o = _bone(driving, parent, child), _bone(out, parent, child)
        cos = (d * o).sum(-1) / (np.linalg.norm(d, axis=-1) * np.linalg.norm(o, axis=-1) + 1e-9)
        assert (cos[np.linalg.norm(d, axis=-1) > 1] > 0.9999).all()  # every frame keeps the driving direction
        ratio = np.linalg.norm(o, axis=-1) / np.maximum(np.linalg.norm(d, axis=-1), 1e-6)
        assert np.ptp(ratio[np.linalg.norm(d, axis=-1) > 1]) < 1e-3  # one scale per bone for the whole sequence
    neck = lambda k: (k[..., 5, :] + k[..., 6, :]) / 2  # noqa: E731
    np.testing.assert_allclose(neck(out[0]), neck(reference), atol=1e-3)  # placed where the reference stands
    # hands ride with their wrists
    np.testing.assert_allclose(out[:, L.LEFT_HAND_SLICE][:, 0], out[:, L.INDEX["left_wrist"]], atol=1e-3)
    # normalised coordinates between canvases of different sizes agree with the pixel version
    norm = retarget_normalised(driving / (512, 768), ones, (512, 768), reference / (600, 900), ones[0], (600, 900))
    np.testing.assert_allclose(norm * (600, 900), retarget(driving, ones, reference * 1.0, ones[0]), atol=1e-2)


def test_retargeting_says_what_it_misses():
    driving = _seq(0, "jacks", 2)
    ones = np.ones(driving.shape[:2], np.float32)
    ref_scores = ones[0].copy()
    ref_scores[L.INDEX["left_shoulder"]] = 0
    with pytest.raises(RetargetError, match="shoulders visible in the reference"):
        retarget(driving, ones, driving[0], ref_scores)
    with pytest.raises(RetargetError, match="outside the driving sequence"):
        retarget(driving, ones, driving[0], ones[0], frame=5)
