"""Shot boundaries with PySceneDetect's detectors, fed from a fast PyAV decode.

PySceneDetect's ``SceneManager`` decodes full RGB frames and then shrinks them; here frames are
decoded with FFmpeg's threads and the detector gets a thumbnail taken straight from the YUV
planes, which is what makes detection several times faster than the library's defaults (see
``benchmarks/ingest.py``). The detectors and their thresholds are PySceneDetect's own.
"""
from __future__ import annotations

import inspect
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import scenedetect
from scenedetect import FrameTimecode

from animate_anyone.errors import MediaError
from animate_anyone.media.video import iter_frames, probe, yuv_thumbnail

SHOTS_VERSION = "1"
DETECTORS: dict[str, type] = {
    "content": scenedetect.ContentDetector,
    "adaptive": scenedetect.AdaptiveDetector,
    "hash": scenedetect.HashDetector,
    "histogram": scenedetect.HistogramDetector,
    "threshold": scenedetect.ThresholdDetector,
}


def check_detector_params(detector: str, params: dict[str, Any]) -> None:
    """Raise ValueError naming any parameter the PySceneDetect detector does not take."""
    cls = DETECTORS.get(detector)
    if cls is None:
        raise ValueError(f"unknown shot detector {detector!r}; known: {', '.join(DETECTORS)}")
    allowed = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(f"{detector} detector does not take {unknown}; it takes {allowed}")


@dataclass(frozen=True)
class Shots:
    """Shots as half-open frame ranges ``[start, end)`` covering the whole video."""

    ranges: tuple[tuple[int, int], ...]
    num_frames: int
    fps: float
    detector: str
    params: dict[str, Any]
    seconds: float  # time spent detecting

    @property
    def cuts(self) -> list[int]:
        return [start for start, _ in self.ranges[1:]]


def auto_step(width: int, target: int = 256) -> int:
    return max(1, width // target)


def detect_shots(path: Path, detector: str = "content", params: dict[str, Any] | None = None,
                 downscale: int = 0, progress: Callable[[int], None] | None = None) -> Shots:
    """Detect shot boundaries in ``path``; every frame belongs to exactly one shot."""
    params = dict(params or {})
    check_detector_params(detector, params)
    info = probe(path)
    det = DETECTORS[detector](**params)
    step = downscale or auto_step(info.width)
    t0 = time.perf_counter()
    cuts: list[int] = []
    n = 0
    for n, frame in enumerate(iter_frames(path), start=1):
        thumb = yuv_thumbnail(frame, step)
        for tc in det.process_frame(FrameTimecode(n - 1, info.fps_fraction), thumb):
            cuts.append(tc.frame_num)
        if progress and n % 30 == 0:
            progress(30)
    if n == 0:
        raise MediaError(f"{path}: no frame could be decoded", "no_frames")
    for tc in det.post_process(FrameTimecode(n - 1, info.fps_fraction)):
        cuts.append(tc.frame_num)
    bounds = [0] + sorted({c for c in cuts if 0 < c < n}) + [n]
    ranges = tuple((a, b) for a, b in zip(bounds[:-1], bounds[1:]))
    return Shots(ranges, n, info.fps, detector, params, time.perf_counter() - t0)
