"""COCO-WholeBody-133 keypoint layout: the order every table and file stores.

0-16 body, 17-22 feet, 23-90 face (iBUG-68 order), 91-111 left hand, 112-132 right hand.
"Left" is the subject's left, which is the image's right for a person facing the camera.
"""
from __future__ import annotations

import numpy as np

BODY = [
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
]
FEET = ["left_big_toe", "left_small_toe", "left_heel", "right_big_toe", "right_small_toe", "right_heel"]
FACE = [f"face_{i}" for i in range(68)]
HAND_POINTS = [
    "wrist", "thumb1", "thumb2", "thumb3", "thumb4",
    "index1", "index2", "index3", "index4", "middle1", "middle2", "middle3", "middle4",
    "ring1", "ring2", "ring3", "ring4", "pinky1", "pinky2", "pinky3", "pinky4",
]
NAMES = BODY + FEET + FACE + [f"left_hand_{n}" for n in HAND_POINTS] + [f"right_hand_{n}" for n in HAND_POINTS]
NUM_KEYPOINTS = len(NAMES)  # 133

BODY_SLICE = slice(0, 17)
FEET_SLICE = slice(17, 23)
FACE_SLICE = slice(23, 91)
LEFT_HAND_SLICE = slice(91, 112)
RIGHT_HAND_SLICE = slice(112, 133)
INDEX = {name: i for i, name in enumerate(NAMES)}


def _mirror_names() -> list[int]:
    """For each point, the point it becomes in a mirror image (left and right swap)."""
    swap = {"left": "right", "right": "left"}
    # iBUG 68: the jaw, brows, nostrils, eyes and mouth reverse; the nose bridge and mouth centre stay
    face = list(range(17))[::-1] + list(range(17, 27))[::-1] + [27, 28, 29, 30] + list(range(31, 36))[::-1]
    face += [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
    face += [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55, 64, 63, 62, 61, 60, 67, 66, 65]
    out = []
    for name in NAMES:
        side, _, rest = name.partition("_")
        if name.startswith("face_"):
            out.append(INDEX[f"face_{face[int(name[5:])]}"])
        elif side in swap:
            out.append(INDEX[f"{swap[side]}_{rest}"])
        else:
            out.append(INDEX[name])
    return out


MIRROR = _mirror_names()  # keypoints[MIRROR] with x → width − x is the mirrored person

assert NUM_KEYPOINTS == 133

# --- OpenPose-18 (the drawing Animate Anyone's pose guider was trained on) -------------------------
# order: nose, neck, r_sh, r_elb, r_wri, l_sh, l_elb, l_wri, r_hip, r_knee, r_ank, l_hip, l_knee,
# l_ank, r_eye, l_eye, r_ear, l_ear. The neck (None here) is the mean of the shoulders.
OPENPOSE18_FROM_COCO: list[int | None] = [0, None, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3]
OPENPOSE18_NAMES = ["nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
                    "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
                    "right_eye", "left_eye", "right_ear", "left_ear"]
VISIBLE = 0.3  # the reference implementations hide points scored below this


def to_openpose18(keypoints: np.ndarray, scores: np.ndarray, threshold: float = VISIBLE) -> tuple[np.ndarray, np.ndarray]:
    """COCO-WholeBody ``[..., 133, 2]`` (and scores ``[..., 133]``) to OpenPose-18 body points and scores.

    The neck is the mean of the shoulders, scored as the weaker shoulder when both are above
    ``threshold`` and 0 otherwise.
    """
    keypoints, scores = np.asarray(keypoints, np.float32), np.asarray(scores, np.float32)
    idx = [0 if i is None else i for i in OPENPOSE18_FROM_COCO]
    body, body_scores = keypoints[..., idx, :].copy(), scores[..., idx].copy()
    l_sh, r_sh = INDEX["left_shoulder"], INDEX["right_shoulder"]
    body[..., 1, :] = (keypoints[..., l_sh, :] + keypoints[..., r_sh, :]) / 2
    both = (scores[..., l_sh] > threshold) & (scores[..., r_sh] > threshold)
    body_scores[..., 1] = np.where(both, np.minimum(scores[..., l_sh], scores[..., r_sh]), 0.0)
    return body, body_scores


def to_pose_dict(keypoints: np.ndarray, scores: np.ndarray, threshold: float = VISIBLE) -> dict:
    """People ``[P, 133, 2]`` (normalised to [0, 1]) to the ControlNet/DWPose "pose dict".

    ``bodies.candidate`` holds 18 points per person, ``bodies.subset`` the candidate index of each
    OpenPose-18 point or -1 when its score is below ``threshold``; ``hands`` holds every person's
    left hand, then every person's right hand; hand and face points below ``threshold`` are -1,
    as DWPose writes them. Raw scores travel in ``bodies.score``, ``hands_score``, ``faces_score``.
    """
    keypoints = np.asarray(keypoints, np.float32).reshape(-1, NUM_KEYPOINTS, 2)
    scores = np.asarray(scores, np.float32).reshape(-1, NUM_KEYPOINTS)
    n = len(keypoints)
    body, body_scores = to_openpose18(keypoints, scores, threshold)
    subset = np.where(body_scores > threshold, np.arange(n * 18, dtype=np.float32).reshape(n, 18), -1.0)

    def hidden(points: np.ndarray, s: np.ndarray) -> np.ndarray:
        return np.where((s > threshold)[..., None], points, -1.0)

    hands_kp = np.concatenate([keypoints[:, LEFT_HAND_SLICE], keypoints[:, RIGHT_HAND_SLICE]])
    hands_s = np.concatenate([scores[:, LEFT_HAND_SLICE], scores[:, RIGHT_HAND_SLICE]])
    return {
        "bodies": {"candidate": body.reshape(n * 18, 2).tolist(), "subset": subset.tolist(), "score": body_scores.tolist()},
        "hands": hidden(hands_kp, hands_s).tolist(), "hands_score": hands_s.tolist(),
        "faces": hidden(keypoints[:, FACE_SLICE], scores[:, FACE_SLICE]).tolist(),
        "faces_score": scores[:, FACE_SLICE].tolist(),
        "feet": hidden(keypoints[:, FEET_SLICE], scores[:, FEET_SLICE]).tolist(),
        "feet_score": scores[:, FEET_SLICE].tolist(),
    }


def from_pose_dict(pose: dict) -> tuple[np.ndarray, np.ndarray]:
    """A pose dict (ours, or DWPose's without scores) back to ``[P, 133, 2]`` keypoints and scores.

    Points a dict does not carry (feet in DWPose's, or anything marked -1) get score 0. Without
    score arrays, a present point gets score 1.
    """
    bodies = pose["bodies"]
    candidate = np.asarray(bodies["candidate"], np.float32).reshape(-1, 2)
    subset = np.asarray(bodies["subset"], np.float32).reshape(-1, 18)
    n = len(subset)
    keypoints = np.zeros((n, NUM_KEYPOINTS, 2), np.float32)
    scores = np.zeros((n, NUM_KEYPOINTS), np.float32)
    body_scores = np.asarray(bodies.get("score", (subset >= 0).astype(np.float32)), np.float32).reshape(n, 18)
    for j, coco in enumerate(OPENPOSE18_FROM_COCO):
        if coco is None:
            continue
        present = subset[:, j] >= 0
        keypoints[present, coco] = candidate[subset[present, j].astype(int)]
        scores[:, coco] = np.where(present, body_scores[:, j], 0.0)

    def put(key: str, sl: slice, points, people: slice = slice(None)) -> None:
        if points is None or len(points) == 0:
            return
        pts = np.asarray(points, np.float32)[people].reshape(n, -1, 2)
        s = pose.get(f"{key}_score")
        s = np.ones(pts.shape[:2], np.float32) if s is None else np.asarray(s, np.float32)[people].reshape(n, -1)
        present = (pts >= 0).all(axis=-1)
        keypoints[:, sl] = np.where(present[..., None], pts, 0.0)
        scores[:, sl] = np.where(present, s, 0.0)

    put("hands", LEFT_HAND_SLICE, pose.get("hands"), slice(0, n))  # every left hand, then every right hand
    put("hands", RIGHT_HAND_SLICE, pose.get("hands"), slice(n, 2 * n))
    put("faces", FACE_SLICE, pose.get("faces"))
    put("feet", FEET_SLICE, pose.get("feet"))
    return keypoints, scores
