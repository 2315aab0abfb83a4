"""MediaPipe 0.10.21's bundled Holistic model (CPU, no download), mapped into COCO-WholeBody-133;
points it cannot give get score 0. One person per frame."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from animate_anyone.config import MediaPipePose
from animate_anyone.errors import ConfigError
from animate_anyone.pose.backends.base import BACKEND_VERSIONS, FramePoses
from animate_anyone.pose.layouts import BODY_SLICE, FACE_SLICE, INDEX, LEFT_HAND_SLICE, NUM_KEYPOINTS, RIGHT_HAND_SLICE

# COCO body point → MediaPipe pose landmark
MP_BODY = {"nose": 0, "left_eye": 2, "right_eye": 5, "left_ear": 7, "right_ear": 8, "left_shoulder": 11,
           "right_shoulder": 12, "left_elbow": 13, "right_elbow": 14, "left_wrist": 15, "right_wrist": 16,
           "left_hip": 23, "right_hip": 24, "left_knee": 25, "right_knee": 26, "left_ankle": 27, "right_ankle": 28,
           "left_big_toe": 31, "left_heel": 29, "right_big_toe": 32, "right_heel": 30}  # no small toes
# iBUG-68 face point → MediaPipe face mesh landmark (jaw 17, brows 10, nose 9, eyes 12, mouth 20)
MP_FACE68 = [162, 234, 93, 58, 172, 136, 149, 148, 152, 377, 378, 365, 397, 288, 323, 454, 389,
             71, 63, 105, 66, 107, 336, 296, 334, 293, 301,
             168, 197, 5, 4, 75, 97, 2, 326, 305,
             33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,
             61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181, 78, 82, 13, 312, 308, 317, 14, 87]
assert len(MP_FACE68) == 68


class MediaPipeBackend:
    """Holistic tracks one person through a clip; call :meth:`start_clip` before each clip.

    Scores: body and feet points take MediaPipe's visibility; a detected hand's points take the
    visibility of its wrist, and a detected face's points that of the nose (Holistic gives hands
    and faces no per-point confidence); anything not detected, and the small toes, score 0.
    """

    name = "mediapipe"

    def __init__(self, cfg: MediaPipePose, base_dir: Path | None = None):
        try:
            import mediapipe  # noqa: F401
        except ImportError as exc:
            raise ConfigError("pose.backend 'mediapipe' needs the optional extra: pip install 'animate-anyone[mediapipe]'") from exc
        self.cfg = cfg
        self._holistic = None
        self.on_gpu = False
        self.provider = "CPU"

    def fingerprint(self) -> dict:
        import mediapipe

        return {"backend": self.name, "version": BACKEND_VERSIONS[self.name], "mediapipe": mediapipe.__version__,
                **self.cfg.model_dump()}

    @property
    def model_name(self) -> str:
        import mediapipe

        return f"mediapipe-holistic:{mediapipe.__version__}"

    def start_clip(self) -> None:
        import mediapipe as mp

        self.close()
        self._holistic = mp.solutions.holistic.Holistic(
            static_image_mode=False, model_complexity=self.cfg.model_complexity,
            refine_face_landmarks=False, min_detection_confidence=self.cfg.min_detection_confidence,
            min_tracking_confidence=self.cfg.min_tracking_confidence)

    def process(self, frames: list[np.ndarray]) -> list[FramePoses]:
        if self._holistic is None:
            self.start_clip()
        return [self._one(np.ascontiguousarray(rgb)) for rgb in frames]

    def _one(self, rgb: np.ndarray) -> FramePoses:
        res = self._holistic.process(rgb)
        if res.pose_landmarks is None:
            return FramePoses()
        h, w = rgb.shape[:2]
        size = np.array([w, h], np.float32)
        kp = np.zeros((NUM_KEYPOINTS, 2), np.float32)
        sc = np.zeros(NUM_KEYPOINTS, np.float32)
        lms = res.pose_landmarks.landmark
        for name, j in MP_BODY.items():
            kp[INDEX[name]] = (lms[j].x * w, lms[j].y * h)
            sc[INDEX[name]] = lms[j].visibility
        for group, sl, anchor in ((res.left_hand_landmarks, LEFT_HAND_SLICE, "left_wrist"),
                                  (res.right_hand_landmarks, RIGHT_HAND_SLICE, "right_wrist"),
                                  (res.face_landmarks, FACE_SLICE, "nose")):
            if group is None:
                continue
            pts = np.array([(p.x, p.y) for p in group.landmark], np.float32)
            if sl == FACE_SLICE:
                pts = pts[MP_FACE68]
            kp[sl] = pts * size
            sc[sl] = sc[INDEX[anchor]]
        seen = kp[sc > 0.5] if (sc > 0.5).any() else kp[BODY_SLICE]  # the box: points it is sure of
        box = np.concatenate([seen.min(axis=0), seen.max(axis=0)]).clip(0, [w, h, w, h]).astype(np.float32)
        det = float(sc[BODY_SLICE].mean())
        return FramePoses(box[None], np.array([det], np.float32), kp[None], sc[None])

    def close(self) -> None:
        if self._holistic is not None:
            self._holistic.close()
            self._holistic = None
