"""The appearance metric on cases with a known answer, and the pose-only drawing baseline."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from skimage.color import deltaE_ciede2000, rgb2lab

from animate_anyone import synthetic
from animate_anyone.evaluation.appearance import (
    REGIONS,
    appearance_values,
    colour_distances,
    region_colours,
    region_masks,
    to_lab,
)
from animate_anyone.evaluation.baselines import BACKGROUND, pose_drawing
from animate_anyone.pose import layouts

W, H = 180, 320


def _puppet(**look):
    """One puppet frame (no lighting, no stamp), its keypoints in pixels and all-seen scores."""
    ch = dataclasses.replace(synthetic.make_character(3, 11), **look)
    cam = synthetic.Camera(zoom=0.7)
    kp_fig = synthetic.skeleton(ch, synthetic.dance("jacks", 0.3, 0.8, 0.0))  # arms out, away from the torso
    kp, scale = synthetic.to_pixels(kp_fig, ch, cam, W, H)
    img = synthetic.draw_background(W, H, 2, cam, 0)
    synthetic.draw_character(img, ch, kp, scale)
    return img, kp, np.ones(layouts.NUM_KEYPOINTS, np.float32), ch


def test_the_library_gives_sharmas_ciede2000():
    # Sharma, Wu & Dalal (2005), test pair 1
    assert deltaE_ciede2000(np.array([50.0, 2.6772, -79.7751]), np.array([50.0, 0.0, -82.7485])) == pytest.approx(2.0425, abs=1e-4)


def test_every_region_is_placed_on_the_puppet_and_a_frame_against_itself_is_zero():
    img, kp, scores, ch = _puppet(shirt_pattern="plain", legs_pattern="plain", leg_wear="trousers", sleeves="none")
    masks = region_masks(kp, scores, H, W)
    assert set(masks) == set(REGIONS)
    colours = region_colours(to_lab(img), masks)
    assert colour_distances(colours, colours) == {r: 0.0 for r in REGIONS}
    # the core of the torso is the shirt, of the lower limbs the trousers
    assert deltaE_ciede2000(colours["torso"], rgb2lab(np.array(ch.shirt, float) / 255)) < 2.0
    assert deltaE_ciede2000(colours["lower_limbs"], rgb2lab(np.array(ch.legs, float) / 255)) < 3.0
    video = np.stack([img, img, img])
    values = appearance_values(video, video, img, [(kp, scores)] * 3, (kp, scores))
    assert all(np.allclose(v, 0.0) for v in values.values())


def test_a_recoloured_copy_is_at_the_recolourings_distance():
    a, b = (40, 120, 200), (200, 90, 40)
    real = np.full((3, H, W, 3), a, np.uint8)
    generated = np.full((3, H, W, 3), b, np.uint8)
    _, kp, scores, _ = _puppet()
    expected = deltaE_ciede2000(rgb2lab(np.array(a, float) / 255), rgb2lab(np.array(b, float) / 255))
    values = appearance_values(generated, real, real[0], [(kp, scores)] * 3, (kp, scores))
    assert expected > 30
    for key in ["appearance_real", "appearance_reference", *(f"appearance_real_{r}" for r in REGIONS)]:
        assert values[key] == pytest.approx([expected] * 2, abs=1e-6), key


def test_a_new_shirt_shows_on_the_torso_only():
    img, kp, scores, ch = _puppet(shirt_pattern="plain", sleeves="none", legs=(20, 20, 30), skin=(200, 150, 110))
    recoloured = img.copy()
    recoloured[(img == np.array(ch.shirt, np.uint8)).all(axis=2)] = (250, 250, 0)
    d = colour_distances(*(region_colours(to_lab(x), region_masks(kp, scores, H, W)) for x in (img, recoloured)))
    assert d["torso"] > 20
    assert d["lower_limbs"] < 1 and d["head"] < 1


def test_unseen_keypoints_leave_their_regions_out():
    _, kp, scores, _ = _puppet()
    i = layouts.INDEX
    scores = scores.copy()
    for side in ("left", "right"):
        for part in ("knee", "ankle"):
            scores[i[f"{side}_{part}"]] = 0.0
    masks = region_masks(kp, scores, H, W)
    assert "lower_limbs" not in masks and {"torso", "upper_limbs", "head"} <= set(masks)
    assert region_masks(kp, np.zeros_like(scores), H, W) == {}


def test_the_pose_only_drawing_wears_the_mean_colours_where_the_pose_puts_the_body():
    _, kp, scores, _ = _puppet()
    colours = {BACKGROUND: to_lab(np.array([[[90, 90, 90]]], np.uint8))[0, 0],
               **{r: to_lab(np.array([[c]], np.uint8))[0, 0]
                  for r, c in zip(REGIONS, [(230, 180, 150), (30, 60, 200), (230, 180, 150), (40, 40, 40)])}}
    drawn = pose_drawing([(kp, scores), None], colours, W, H)
    assert drawn.shape == (2, H, W, 3)
    assert (drawn[1] == 90).all()  # no pose: the room's mean colour only
    measured = region_colours(to_lab(drawn[0]), region_masks(kp, scores, H, W))
    assert max(colour_distances(measured, colours).values()) < 1.0
