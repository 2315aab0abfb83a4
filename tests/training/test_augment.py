"""Sample augmentation: one draw applied alike to the target frames, the reference and the pose."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from animate_anyone.config import Augment
from animate_anyone.pose import layouts
from animate_anyone.tables.io import Dataset
from animate_anyone.tables.selection import load_snapshot
from animate_anyone.training import augment, data

NONE = {"flip": False, "zoom": 1.0, "shift": (0.0, 0.0), "brightness": 1.0, "contrast": 1.0, "saturation": 1.0,
        "hue": 0.0}


def test_the_mirror_swaps_left_and_right_and_keeps_the_middle():
    m, i = layouts.MIRROR, layouts.INDEX
    assert all(m[m[k]] == k for k in range(layouts.NUM_KEYPOINTS))
    for a, b in (("left_wrist", "right_wrist"), ("left_big_toe", "right_big_toe"), ("left_ear", "right_ear"),
                 ("left_hand_thumb4", "right_hand_thumb4"), ("face_36", "face_45"), ("face_0", "face_16"),
                 ("face_48", "face_54")):
        assert m[i[a]] == i[b] and m[i[b]] == i[a]
    for k in ("nose", "face_30", "face_8", "face_51", "face_66"):
        assert m[i[k]] == i[k]


def test_a_shift_moves_frames_and_poses_by_the_same_pixels():
    img = torch.zeros(1, 3, 64, 32)
    img[:, :, 30:34, 14:18] = 1.0  # a dot at the centre
    moved = augment.move(img, 1.0, (0.25, 0.0), "zeros")  # a quarter of the width to the right
    ys, xs = torch.nonzero(moved[0, 0] > 0.5, as_tuple=True)
    assert float(xs.float().mean()) == pytest.approx(15.5 + 8, abs=0.6) and float(ys.float().mean()) == pytest.approx(31.5, abs=0.6)
    zoomed = augment.move(img, 2.0, (0.0, 0.0), "zeros")
    assert int((zoomed[0, 0] > 0.5).sum()) == pytest.approx(4 * 16, rel=0.3)  # twice as wide and tall
    assert torch.equal(augment.move(img, 1.0, (0.0, 0.0), "border"), img)


def test_the_colour_change_is_one_draw_for_target_and_reference_and_never_the_pose():
    torch.manual_seed(0)
    frame = torch.rand(3, 64, 32) * 2 - 1
    poses = torch.rand(2, 3, 64, 32)
    assert torch.allclose(augment.recolour(frame[None], NONE), frame[None], atol=1e-5)
    p = {**NONE, "brightness": 1.2, "saturation": 0.5, "hue": 0.1}
    aug = Augment(colour=0.3)
    pixels, reference, pose = augment.apply(aug, p, torch.stack([frame, frame]), frame, poses, None)
    assert torch.allclose(pixels[0], reference, atol=1e-6) and torch.equal(pose, poses)
    assert (pixels[0] - frame).abs().mean() > 0.05
    grey = torch.zeros(1, 3, 4, 4)  # mid-grey (0.5) brighter by 1.2: 0.6
    assert torch.allclose((augment.recolour(grey, {**NONE, "brightness": 1.2}) + 1) / 2, torch.full((1, 3, 4, 4), 0.6))


def test_draws_follow_the_sample_seed():
    aug = Augment(flip=0.5, scale=0.1, shift=0.05, colour=0.2)
    assert augment.draw(aug, 7) == augment.draw(aug, 7)
    draws = [augment.draw(aug, s) for s in range(200)]
    assert 60 < sum(d["flip"] for d in draws) < 140
    assert all(0.9 <= d["zoom"] <= 1.1 and abs(d["shift"][0]) <= 0.05 and abs(d["hue"]) <= 0.1 for d in draws)


def test_a_flipped_sample_is_the_mirror_image_with_the_mirrored_pose(train_root):
    ds = Dataset(train_root, "demo")
    clips = data.snapshot_clips(ds, load_snapshot(ds))
    store = data.ClipStore(ds, 32, 64, mirror=True)
    frames, poses = store.get(clips[0])
    mirrored = store.mirrored(clips[0])
    # the same figure flipped (where something is drawn), with left and right colours swapped
    drawn, drawn_m = poses.amax(1) > 0.2, mirrored.amax(1) > 0.2
    assert (drawn.flip(-1) ^ drawn_m).float().mean() < 0.02
    assert (poses.flip(-1) - mirrored).abs().amax(1)[drawn_m].mean() > 0.1
    samples = data.TrainSamples(clips, store, seed=0, augment=Augment(flip=1.0))
    item, plain = samples[(0, 0)], data.TrainSamples(clips, store, seed=0)[(0, 0)]
    assert torch.equal(item["pixels"], plain["pixels"].flip(-1)) and torch.equal(item["reference"], plain["reference"].flip(-1))
    clip, target, _, _ = samples.pick(0, 0)
    assert torch.equal(item["poses"], store.mirrored(clip)[target])
    with pytest.raises(ValueError, match="mirror=True"):
        data.TrainSamples(clips, data.ClipStore(ds, 32, 64), seed=0, augment=Augment(flip=0.5))


def test_a_sample_draws_only_its_own_frames_poses_and_draws_them_as_the_whole_clip_does(train_root):
    ds = Dataset(train_root, "demo")
    clips = data.snapshot_clips(ds, load_snapshot(ds))
    store = data.ClipStore(ds, 32, 64, mirror=True)
    samples = data.TrainSamples(clips, store, seed=0, frames=4, stride=2, augment=Augment(flip=1.0))
    item = samples[(0, 0)]
    clip, target, ref, _ = samples.pick(0, 0)
    d = store._cache[clip.clip_id]
    # drawing every frame's pose at the clip's size was most of a cold clip's cost: a sample of 4
    # frames and a reference draws those 5, mirrored, and nothing else
    assert sorted(d.mirrored) == sorted(set(target + [ref])) and d.poses == {}
    assert clip.num_frames > 10
    # the same images as a store that draws the whole clip at once, in any order
    whole = data.ClipStore(ds, 32, 64, mirror=True)
    assert torch.equal(item["poses"], whole.mirrored(clip)[target])
    assert torch.equal(item["reference_pose"], whole.mirrored(clip)[ref])
    assert torch.equal(store.poses(clip, [ref, target[0]]), whole.get(clip)[1][[ref, target[0]]])
    with pytest.raises(IndexError, match=f"clip {clip.clip_id} has {clip.num_frames} frames; frame {clip.num_frames} asked"):
        store.poses(clip, [clip.num_frames])


def test_the_far_reference_is_the_candidate_farthest_in_pose(train_root):
    ds = Dataset(train_root, "demo")
    clips = data.snapshot_clips(ds, load_snapshot(ds))
    store = data.ClipStore(ds, 32, 64)
    far = data.TrainSamples(clips, store, seed=0, augment=Augment(reference_far=8))
    near = data.TrainSamples(clips, store, seed=0)
    gaps = {"far": [], "any": []}
    for step in range(40):
        for name, samples in (("far", far), ("any", near)):
            clip, target, ref, _ = samples.pick(step, 0)
            points, scores = store.body(clip)
            both = (scores[ref] > 0.3) & (scores[target[0]] > 0.3)
            gaps[name].append(float(np.linalg.norm(points[ref][both] - points[target[0]][both], axis=-1).mean()))
    assert np.mean(gaps["far"]) > 1.3 * np.mean(gaps["any"]), gaps
