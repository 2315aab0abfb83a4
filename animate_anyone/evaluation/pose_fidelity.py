"""Pose fidelity: does the generated person stand in the driving pose?

The project's own pose backend runs on every generated frame (enlarged until its short side is at
least ``min_side``: a 64-pixel-wide puppet is too small for a detector). For each frame and part
(body 0–16, hands 91–132, face 23–90 in COCO-WholeBody order), PCK@a is the share of the driving
pose's visible points (score ≥ 0.3) whose generated counterpart was found within a·S of it, S being
the driving person's box size (the larger side of the box around its visible body points). A point
the backend did not find, or a frame without a person, counts as a miss. ``person`` is 1 when the
backend found someone.

A frame "moved" when the driving body points lie, on average, more than ``moved``·S from the
reference frame's: a still reference scores near 1 on frames that barely move, so the moved-frames
values are the ones that tell a model that follows from one that copies its reference.
"""

from __future__ import annotations

import math

import numpy as np

from animate_anyone.pose.layouts import BODY_SLICE, FACE_SLICE, LEFT_HAND_SLICE, RIGHT_HAND_SLICE, VISIBLE

PARTS = {"body": np.r_[BODY_SLICE], "hands": np.r_[LEFT_HAND_SLICE, RIGHT_HAND_SLICE], "face": np.r_[FACE_SLICE]}
THRESHOLDS = {"05": 0.05, "10": 0.1}
MOVING = 0.2  # a point "moves" when it lies this share of the box size from the reference's


def box_size(keypoints: np.ndarray, scores: np.ndarray) -> float:
    """The larger side of the box around the visible body points (pixels); 0 when fewer than 2."""
    vis = scores[BODY_SLICE] >= VISIBLE
    if vis.sum() < 2:
        return 0.0
    pts = keypoints[BODY_SLICE][vis]
    return float(max(np.ptp(pts[:, 0]), np.ptp(pts[:, 1])))


def moved_frames(driving: list[tuple[np.ndarray, np.ndarray] | None], share: float) -> list[bool | None]:
    """Per frame: the driving body moved clearly away from frame 0's (None: no driving pose)."""
    if not driving or driving[0] is None:
        return [None] * len(driving)
    ref_kp, ref_sc = driving[0]
    out: list[bool | None] = []
    for item in driving:
        if item is None:
            out.append(None)
            continue
        kp, sc = item
        size = box_size(kp, sc)
        both = (sc[BODY_SLICE] >= VISIBLE) & (ref_sc[BODY_SLICE] >= VISIBLE)
        if size <= 0 or not both.any():
            out.append(None)
            continue
        dist = np.linalg.norm(kp[BODY_SLICE][both] - ref_kp[BODY_SLICE][both], axis=1).mean()
        out.append(bool(dist > share * size))
    return out


def frame_pck(driving: tuple[np.ndarray, np.ndarray] | None, found,
              reference: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, float]:
    """PCK per part and threshold for one frame (keys ``pck05_body`` …, NaN where the driving pose
    shows none of the part), and ``person``. ``found``: the backend's FramePoses (pixels). With the
    reference frame's driving pose, also ``pck10_body_moving`` / ``pck10_hands_moving``: the PCK@0.1 of
    the points that moved more than ``MOVING``·S from where the reference has them (a copy of the
    reference scores near 0 there)."""
    row: dict[str, float] = {"person": float(len(found) > 0)}
    if driving is None:
        return row
    kp, sc = driving
    size = box_size(kp, sc)

    def pck(points: np.ndarray, a: float) -> float:
        if size <= 0 or not len(points):
            return math.nan
        if not len(found):
            return 0.0
        got_kp, got_sc = found.keypoints[0][points], found.scores[0][points]
        return float(((got_sc >= VISIBLE) & (np.linalg.norm(got_kp - kp[points], axis=1) <= a * size)).mean())

    for part, idx in PARTS.items():
        visible = idx[sc[idx] >= VISIBLE]
        for name, a in THRESHOLDS.items():
            row[f"pck{name}_{part}"] = pck(visible, a)
        if reference is not None and part != "face":
            ref_kp, ref_sc = reference
            both = visible[ref_sc[visible] >= VISIBLE]
            # twice the PCK radius: a copy of the reference hits a moving point only when the
            # backend's own error on it exceeds the radius (at 1x, a point that moved just past the
            # radius is hit by a copy about half the time)
            moving = both[np.linalg.norm(kp[both] - ref_kp[both], axis=1) > MOVING * size] if size > 0 else both[:0]
            row[f"pck10_{part}_moving"] = pck(moving, 0.1)
    return row


def detect_enlarged(backend, frames: np.ndarray, min_side: int) -> tuple[list, float]:
    """The backend on (F, H, W, 3) uint8 frames enlarged by an integer factor until the short side is
    at least ``min_side``; keypoints come back in the frames' own pixels."""
    import cv2

    scale = max(1, math.ceil(min_side / min(frames.shape[1:3])))
    big = [cv2.resize(f, (f.shape[1] * scale, f.shape[0] * scale), interpolation=cv2.INTER_CUBIC) if scale > 1 else f
           for f in frames]
    backend.start_clip()  # a new clip: no tracking state from the last one
    found = backend.process(big)
    for f in found:
        f.keypoints = f.keypoints / scale
        f.boxes = f.boxes / scale
    return found, scale


def pose_fidelity(backend, frames: np.ndarray, driving: list, min_side: int, moved_share: float) -> list[dict]:
    """Per frame of ``frames`` (F, H, W, 3) uint8: ``person``, ``pck05_body`` … and ``moved``.
    ``driving``: per frame (keypoints [133, 2] in the frames' pixels, scores [133]) or None."""
    found, _ = detect_enlarged(backend, frames, min_side)
    moved = moved_frames(driving, moved_share)
    rows = []
    for i, f in enumerate(found):
        row = frame_pck(driving[i], f, driving[0])
        row["moved"] = moved[i]
        rows.append(row)
    return rows
