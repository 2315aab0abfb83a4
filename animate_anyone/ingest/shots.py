"""Shot boundaries with PySceneDetect's detectors, fed from a fast PyAV decode.

PySceneDetect's ``SceneManager`` decodes full RGB frames and then shrinks them; here frames are
decoded with FFmpeg's threads and the detector gets a thumbnail taken straight from the YUV
planes, which is what makes detection several times faster than the library's defaults (see
``benchmarks/ingest.py``). The detectors and their thresholds are PySceneDetect's own.
"""
from __future__ import annotations

import inspect
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import scenedetect
from scenedetect import FrameTimecode

from animate_anyone.errors import MediaError
from animate_anyone.media.video import constant_rate, iter_frames_from, probe, yuv_thumbnail

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
                 downscale: int = 0, progress: Callable[[int], None] | None = None, workers: int = 1) -> Shots:
    """Detect shot boundaries in ``path``; every frame belongs to exactly one shot.

    With ``workers`` > 1 a long constant-rate video is cut into that many segments, each decoded
    (from the keyframe before it) and scanned by its own detector in its own thread. Each
    detector starts ``margin`` frames early and runs ``margin`` frames past its segment, so its
    history (previous frame, rolling window, minimum scene length) and its delayed reports are
    those of a single pass; a cut belongs to the segment it falls in.
    """
    params = dict(params or {})
    check_detector_params(detector, params)
    info = probe(path)
    step = downscale or auto_step(info.width)
    t0 = time.perf_counter()
    msl = params.get("min_scene_len", 15)
    msl_frames = msl if isinstance(msl, int) else int(2 * info.fps)  # seconds or timecodes: assume up to 2 s
    margin = 2 * msl_frames + 4 * int(params.get("window_width", 2)) + 30
    n_est = info.num_frames
    if workers > 1 and n_est >= workers * 4 * margin and constant_rate(path):
        bounds = [n_est * k // workers for k in range(workers + 1)]
        bounds[-1] = None  # the last segment runs to the true end
        with ThreadPoolExecutor(workers, thread_name_prefix="shots") as pool:
            parts = list(pool.map(lambda k: _scan(path, info, detector, params, step, bounds[k], bounds[k + 1], margin, progress),
                                  range(workers)))
        cuts = sorted({c for part_cuts, _ in parts for c in part_cuts})
        n = parts[-1][1]
    else:
        cuts, n = _scan(path, info, detector, params, step, 0, None, margin, progress)
    if n == 0:
        raise MediaError(f"{path}: no frame could be decoded", "no_frames")
    bounds_ = [0] + [c for c in cuts if 0 < c < n] + [n]
    ranges = tuple((a, b) for a, b in zip(bounds_[:-1], bounds_[1:]))
    return Shots(ranges, n, info.fps, detector, params, time.perf_counter() - t0)


def _scan(path: Path, info, detector: str, params: dict, step: int, start: int, end: int | None, margin: int,
          progress: Callable[[int], None] | None) -> tuple[list[int], int]:
    """Cuts in ``[start, end)`` (end None: to the last frame) and the index after the last frame seen."""
    det = DETECTORS[detector](**params)
    rate = info.fps_fraction
    cuts: list[int] = []
    stop = None if end is None else end + margin
    idx = -1
    for idx, frame in iter_frames_from(path, max(0, start - margin), rate, fast=True):
        if stop is not None and idx >= stop:
            break
        for tc in det.process_frame(FrameTimecode(idx, rate), yuv_thumbnail(frame, step)):
            cuts.append(tc.frame_num)
        if progress and idx % 30 == 0 and idx >= start:
            progress(30)
    if end is None and idx >= 0:
        cuts += [tc.frame_num for tc in det.post_process(FrameTimecode(idx, rate))]
    keep = [c for c in cuts if c >= start and (end is None or c < end)]
    return keep, idx + 1
