"""Pose backends: one interface, chosen by ``pose.backend`` in ``pipelines.yaml``.

A backend turns RGB frames into :class:`FramePoses` (pixels of the frame, COCO-WholeBody-133).

- ``dwpose``: ONNX Runtime. A YOLOX person detector, then the DWPose/RTMPose whole-body model on
  each person crop (SimCC outputs), with DWPose's preprocessing and decoding.
- ``mediapipe``: MediaPipe 0.10.21's bundled Holistic model (CPU, no download), mapped into
  COCO-WholeBody-133; points it cannot give get score 0. One person per frame.

People are ordered main subject first: the largest and most confident (box area × mean body score).
"""
from __future__ import annotations

from pathlib import Path

from animate_anyone.config import Pose
from animate_anyone.errors import ConfigError
from animate_anyone.pose.backends.base import BACKEND_VERSIONS, FramePoses, ModelError
from animate_anyone.pose.backends.dwpose import DWPoseBackend, SimCCPoseModel, YoloxDetector, decode_simcc
from animate_anyone.pose.backends.mediapipe import MediaPipeBackend
from animate_anyone.pose.backends.onnx import model_file, open_session

__all__ = ["BACKENDS", "BACKEND_VERSIONS", "DWPoseBackend", "FramePoses", "MediaPipeBackend", "ModelError",
           "SimCCPoseModel", "YoloxDetector", "backend_uses_gpu", "decode_simcc", "load_backend", "open_session",
           "model_file"]

BACKENDS = {"dwpose": DWPoseBackend, "mediapipe": MediaPipeBackend}


def load_backend(cfg: Pose, name: str | None = None, base_dir: Path | None = None):
    """The backend ``name`` (default: ``cfg.backend``) configured from the pipeline's ``pose`` section."""
    name = name or cfg.backend
    if name not in BACKENDS:
        raise ConfigError(f"pose backend {name!r} is unknown; choose one of {', '.join(BACKENDS)}")
    return BACKENDS[name](getattr(cfg, name), base_dir)


def backend_uses_gpu(backend) -> bool:
    return bool(getattr(backend, "on_gpu", False))
