"""Retargeting: a driving pose sequence moved onto a reference image's body.

Animate Anyone's pose guider copies the driving skeleton's proportions into the result, so a tall
dancer driving a short character stretches it. Here every bone of the driving sequence keeps its
direction in every frame, and takes its length from the reference: each limb is scaled by
``reference length / driving length`` measured on one chosen driving frame, walking the skeleton
from the neck outwards. Hands move with their wrists and the face with the nose, scaled like
their parent bone. The whole figure is then placed where the reference stands: the driving neck
on the chosen frame lands on the reference's neck, and the root's motion is scaled by the ratio
of body heights.

Coordinates here are pixels of each image (driving and reference may differ in size); use
:func:`retarget_normalised` for the [0, 1] coordinates the tables store.
"""
from __future__ import annotations

import numpy as np

from animate_anyone.errors import PermanentError
from animate_anyone.pose.layouts import FACE_SLICE, INDEX, LEFT_HAND_SLICE, NUM_KEYPOINTS, RIGHT_HAND_SLICE, VISIBLE

NECK = -1  # a virtual joint: the mean of the shoulders

# (parent, child) from the neck outwards; every body and foot point appears once as a child
BONES: list[tuple[int, int]] = [
    (NECK, INDEX["nose"]), (INDEX["nose"], INDEX["left_eye"]), (INDEX["nose"], INDEX["right_eye"]),
    (INDEX["left_eye"], INDEX["left_ear"]), (INDEX["right_eye"], INDEX["right_ear"]),
    (NECK, INDEX["left_shoulder"]), (NECK, INDEX["right_shoulder"]),
    (INDEX["left_shoulder"], INDEX["left_elbow"]), (INDEX["right_shoulder"], INDEX["right_elbow"]),
    (INDEX["left_elbow"], INDEX["left_wrist"]), (INDEX["right_elbow"], INDEX["right_wrist"]),
    (NECK, INDEX["left_hip"]), (NECK, INDEX["right_hip"]),
    (INDEX["left_hip"], INDEX["left_knee"]), (INDEX["right_hip"], INDEX["right_knee"]),
    (INDEX["left_knee"], INDEX["left_ankle"]), (INDEX["right_knee"], INDEX["right_ankle"]),
    (INDEX["left_ankle"], INDEX["left_big_toe"]), (INDEX["left_ankle"], INDEX["left_small_toe"]),
    (INDEX["left_ankle"], INDEX["left_heel"]),
    (INDEX["right_ankle"], INDEX["right_big_toe"]), (INDEX["right_ankle"], INDEX["right_small_toe"]),
    (INDEX["right_ankle"], INDEX["right_heel"]),
]
# groups carried rigidly with a joint, scaled like the bone that ends there
CARRIED = [(LEFT_HAND_SLICE, INDEX["left_wrist"], (INDEX["left_elbow"], INDEX["left_wrist"])),
           (RIGHT_HAND_SLICE, INDEX["right_wrist"], (INDEX["right_elbow"], INDEX["right_wrist"])),
           (FACE_SLICE, INDEX["nose"], (NECK, INDEX["nose"]))]


class RetargetError(PermanentError):
    """The reference or the driving frame lacks the joints retargeting needs."""


def _with_neck(kp: np.ndarray) -> np.ndarray:
    """Append the neck as point 133 (mean of the shoulders)."""
    neck = (kp[..., INDEX["left_shoulder"], :] + kp[..., INDEX["right_shoulder"], :]) / 2
    return np.concatenate([kp, neck[..., None, :]], axis=-2)


def _height(kp: np.ndarray, s: np.ndarray, threshold: float) -> float:
    """Neck to the mid-ankle (or mid-hip when the ankles are hidden): the body's scale."""
    neck = kp[NUM_KEYPOINTS]
    for a, b in (("left_ankle", "right_ankle"), ("left_hip", "right_hip")):
        ia, ib = INDEX[a], INDEX[b]
        if s[ia] > threshold and s[ib] > threshold:
            return float(np.linalg.norm((kp[ia] + kp[ib]) / 2 - neck))
    raise RetargetError("retargeting needs both hips (or both ankles) visible in the reference and the chosen driving frame")


def retarget(driving: np.ndarray, driving_scores: np.ndarray, reference: np.ndarray, reference_scores: np.ndarray,
             frame: int = 0, threshold: float = VISIBLE) -> np.ndarray:
    """Driving keypoints ``[T, 133, 2]`` (pixels) retargeted onto ``reference`` ``[133, 2]`` (pixels).

    Returns ``[T, 133, 2]`` in the reference image's pixels; scores are the driving scores (unchanged).
    ``frame`` is the driving frame whose bone lengths are matched to the reference's.
    """
    drv = _with_neck(np.asarray(driving, np.float64).reshape(-1, NUM_KEYPOINTS, 2))
    ref = _with_neck(np.asarray(reference, np.float64).reshape(NUM_KEYPOINTS, 2))
    ds = np.asarray(driving_scores, np.float64).reshape(-1, NUM_KEYPOINTS)
    rs = np.asarray(reference_scores, np.float64).reshape(NUM_KEYPOINTS)
    if not 0 <= frame < len(drv):
        raise RetargetError(f"frame {frame} is outside the driving sequence (0..{len(drv) - 1})")
    shoulders = [INDEX["left_shoulder"], INDEX["right_shoulder"]]
    for name, s in (("reference", rs), (f"driving frame {frame}", ds[frame])):
        if not (s[shoulders] > threshold).all():
            raise RetargetError(f"retargeting needs both shoulders visible in the {name}")
    # 1. body scale: the root's motion is scaled by it, and bones hidden on either side use it
    scale = _height(ref, rs, threshold) / max(_height(drv[frame], ds[frame], threshold), 1e-6)
    neck_ref_s, neck_drv_s = 1.0, 1.0  # the virtual neck counts as visible (both shoulders checked)

    def score(s: np.ndarray, j: int, neck_s: float) -> float:
        return neck_s if j == NECK else s[j]

    # 2. per-bone length ratios from the chosen frame
    ratio = {}
    for parent, child in BONES:
        seen = min(score(rs, parent, neck_ref_s), rs[child], score(ds[frame], parent, neck_drv_s), ds[frame][child])
        d_len = np.linalg.norm(drv[frame, child] - drv[frame, parent])
        r_len = np.linalg.norm(ref[child] - ref[parent])
        ratio[(parent, child)] = r_len / d_len if seen > threshold and d_len > 1e-6 else scale
    # 3. place the root, then walk the bones outwards: each child keeps the driving direction
    out = np.zeros_like(drv)
    out[:, NECK] = ref[NECK] + scale * (drv[:, NECK] - drv[frame, NECK])
    for parent, child in BONES:
        out[:, child] = out[:, parent] + ratio[(parent, child)] * (drv[:, child] - drv[:, parent])
    # 4. hands with their wrists, the face with the nose
    for sl, anchor, bone in CARRIED:
        out[:, sl] = out[:, anchor, None] + ratio[bone] * (drv[:, sl] - drv[:, anchor, None])
    return out[:, :NUM_KEYPOINTS].astype(np.float32)


def retarget_normalised(driving: np.ndarray, driving_scores: np.ndarray, driving_size: tuple[int, int],
                        reference: np.ndarray, reference_scores: np.ndarray, reference_size: tuple[int, int],
                        frame: int = 0, threshold: float = VISIBLE) -> np.ndarray:
    """:func:`retarget` on [0, 1] coordinates; sizes are ``(width, height)``. Returns [0, 1] coordinates
    of the reference image."""
    dsize, rsize = np.array(driving_size, np.float64), np.array(reference_size, np.float64)
    out = retarget(np.asarray(driving) * dsize, driving_scores, np.asarray(reference) * rsize, reference_scores,
                   frame, threshold)
    return (out / rsize).astype(np.float32)
