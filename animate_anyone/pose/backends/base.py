"""What every pose backend returns (:class:`FramePoses`) and its one error."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from animate_anyone.errors import PermanentError
from animate_anyone.pose.layouts import BODY_SLICE, NUM_KEYPOINTS

BACKEND_VERSIONS = {"dwpose": "1", "mediapipe": "1"}


class ModelError(PermanentError):
    """A pose model is missing, unreadable or has the wrong inputs/outputs; the message says which."""


@dataclass
class FramePoses:
    """The people found in one frame, main subject first; coordinates in the frame's pixels."""

    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))  # [P, 4] x1, y1, x2, y2
    det_scores: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.float32))  # [P]
    keypoints: np.ndarray = field(default_factory=lambda: np.zeros((0, NUM_KEYPOINTS, 2), np.float32))  # [P, 133, 2]
    scores: np.ndarray = field(default_factory=lambda: np.zeros((0, NUM_KEYPOINTS), np.float32))  # [P, 133]

    def __len__(self) -> int:
        return len(self.boxes)

    def ordered(self) -> "FramePoses":
        """Main subject first: the largest and most confident person."""
        if len(self) < 2:
            return self
        area = (self.boxes[:, 2] - self.boxes[:, 0]).clip(0) * (self.boxes[:, 3] - self.boxes[:, 1]).clip(0)
        rank = np.argsort(-(area * self.scores[:, BODY_SLICE].mean(axis=1)), kind="stable")
        return FramePoses(self.boxes[rank], self.det_scores[rank], self.keypoints[rank], self.scores[rank])
