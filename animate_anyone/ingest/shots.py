"""Shot boundaries with PySceneDetect's detectors, fed from a fast PyAV decode.

PySceneDetect's ``SceneManager`` decodes full RGB frames and then shrinks them; here frames are
decoded with FFmpeg's threads and the detector gets a thumbnail taken straight from the YUV
planes, which is what makes detection several times faster than the library's defaults (see
``benchmarks/ingest.py``). The detectors and their thresholds are PySceneDetect's own.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
from scenedetect import FrameTimecode

from animate_anyone.config import check_detector_params, detector_class
from animate_anyone.errors import MediaError
from animate_anyone.media.video import constant_rate, iter_frames_from, probe, yuv_thumbnail

SHOTS_VERSION = "2"  # 2: flashes are not cuts


@dataclass(frozen=True)
class Shots:
    """Shots as half-open frame ranges ``[start, end)`` covering the whole video."""

    ranges: tuple[tuple[int, int], ...]
    num_frames: int
    fps: float
    detector: str
    params: dict[str, Any]
    seconds: float  # time spent detecting
    flash_frames: int = 0

    @property
    def cuts(self) -> list[int]:
        return [start for start, _ in self.ranges[1:]]


def auto_step(width: int, target: int = 256) -> int:
    return max(1, width // target)


def detect_shots(path: Path, detector: str = "content", params: dict[str, Any] | None = None,
                 downscale: int = 0, progress: Callable[[int], None] | None = None, workers: int = 1,
                 flash_frames: int = 0) -> Shots:
    """Detect shot boundaries in ``path``; every frame belongs to exactly one shot.

    With ``flash_frames`` > 0, a cut after which the picture comes back to what it was before
    within that many frames is a flash (a camera flash, a strobe, a white frame), not a cut.

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
            parts = list(pool.map(lambda k: _scan(path, info, detector, params, step, bounds[k], bounds[k + 1], margin,
                                                  progress, flash_frames), range(workers)))
        cuts = sorted({c for part_cuts, _ in parts for c in part_cuts})
        n = parts[-1][1]
    else:
        cuts, n = _scan(path, info, detector, params, step, 0, None, margin, progress, flash_frames)
    if n == 0:
        raise MediaError(f"{path}: no frame could be decoded", "no_frames")
    bounds_ = [0] + [c for c in cuts if 0 < c < n] + [n]
    ranges = tuple((a, b) for a, b in zip(bounds_[:-1], bounds_[1:]))
    return Shots(ranges, n, info.fps, detector, params, time.perf_counter() - t0, flash_frames)


def _scan(path: Path, info, detector: str, params: dict, step: int, start: int, end: int | None, margin: int,
          progress: Callable[[int], None] | None, flash_frames: int = 0) -> tuple[list[int], int]:
    """Cuts in ``[start, end)`` (end None: to the last frame) and the index after the last frame seen."""
    det = detector_class(detector)(**params)
    rate = info.fps_fraction
    cuts: list[int] = []
    flashes = _FlashCheck(flash_frames, margin)
    stop = None if end is None else end + margin
    idx = -1
    for idx, frame in iter_frames_from(path, max(0, start - margin), rate, fast=True):
        if stop is not None and idx >= stop:
            break
        thumb = yuv_thumbnail(frame, step)
        flashes.add(idx, thumb)
        for tc in det.process_frame(FrameTimecode(idx, rate), thumb):
            flashes.pending.append(tc.frame_num)
        cuts += flashes.decided(idx)
        if progress and idx % 30 == 0 and idx >= start:
            progress(30)
    if end is None and idx >= 0:
        flashes.pending += [tc.frame_num for tc in det.post_process(FrameTimecode(idx, rate))]
    cuts += flashes.decided(None)
    keep = [c for c in cuts if c >= start and (end is None or c < end)]
    return keep, idx + 1


class _FlashCheck:
    """Tells flashes from cuts: after a flash the picture returns to the frame before the cut.

    Frames are kept as 32x32 grey images for a short while. A reported cut at frame c is decided
    once frame c + ``frames`` has been seen: it is a flash when some frame of c+1…c+frames is
    much closer to frame c-1 (mean absolute difference under 35 %) than frame c was.
    """

    def __init__(self, frames: int, keep: int):
        self.frames, self.keep = frames, max(keep, frames + 4)
        self.small: dict[int, np.ndarray] = {}
        self.pending: list[int] = []

    def add(self, idx: int, thumb: np.ndarray) -> None:
        if self.frames:
            grey = cv2.cvtColor(thumb, cv2.COLOR_BGR2GRAY)
            self.small[idx] = cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
            self.small.pop(idx - self.keep, None)

    def decided(self, idx: int | None) -> list[int]:
        """Cuts that are final by frame ``idx`` (None: the end of the video), flashes left out."""
        ready = [c for c in self.pending if idx is None or c + self.frames <= idx]
        self.pending = [c for c in self.pending if c not in ready]
        return [c for c in ready if not self._is_flash(c)]

    def _is_flash(self, c: int) -> bool:
        if not self.frames or c - 1 not in self.small or c not in self.small:
            return False
        before = self.small[c - 1]
        jump = float(np.abs(self.small[c] - before).mean())
        after = [float(np.abs(self.small[c + k] - before).mean()) for k in range(1, self.frames + 1) if c + k in self.small]
        return bool(after) and jump > 0 and min(after) < 0.35 * jump
