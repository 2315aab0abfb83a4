"""COCO-WholeBody-133 keypoint layout: the order every table and file stores.

0-16 body, 17-22 feet, 23-90 face (iBUG-68 order), 91-111 left hand, 112-132 right hand.
"Left" is the subject's left, which is the image's right for a person facing the camera.
"""
from __future__ import annotations

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

assert NUM_KEYPOINTS == 133
