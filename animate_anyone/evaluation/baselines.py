"""The pose-only baseline: what a model that ignores the reference would reach.

It draws the driving skeleton as a flat figure (the regions of ``evaluation.appearance`` at full
width) in the mean colours of the training clips' people and rooms: the best a model can do on
appearance when it follows the poses but takes nothing from the reference. The colours are
measured on the training snapshot's clips, so the baseline fits whatever data was trained on.
"""
from __future__ import annotations

import numpy as np
from skimage.color import lab2rgb

from animate_anyone.clipstore import ClipStore, TrainClip
from animate_anyone.errors import AnimateAnyoneError
from animate_anyone.evaluation.appearance import REGIONS, region_colours, region_masks, to_lab
from animate_anyone.evaluation.scoring import driving_pixels
from animate_anyone.media.frames import to_uint8
from animate_anyone.tables.io import Dataset

POSE_ONLY = "pose-only-drawing"
BACKGROUND = "background"


def mean_colours(ds: Dataset, clips: list[TrainClip], width: int, height: int, max_clips: int = 16,
                 every: int = 8) -> dict[str, np.ndarray]:
    """Mean Lab colour of each region, and of the background, over frames of up to ``max_clips``
    clips (every ``every``-th frame), at the evaluation size."""
    store = ClipStore(ds, width, height, cache=1)
    sums: dict[str, list] = {}
    for clip in clips[:max_clips]:
        try:
            frames, _ = store.get(clip)
            driving = driving_pixels(ds, clip, width, height, len(frames))
        except AnimateAnyoneError:  # a clip without poses or a changed file: the others give the colours
            continue
        pixels = to_uint8((frames / 2 + 0.5).clamp(0, 1))
        for i in range(0, len(pixels), every):
            if driving[i] is None:
                continue
            lab = to_lab(pixels[i])
            masks = region_masks(*driving[i], height, width)
            for name, colour in region_colours(lab, masks).items():
                sums.setdefault(name, []).append(colour)
            body = np.zeros((height, width), bool)
            for m in region_masks(*driving[i], height, width, core=False).values():
                body |= m
            if (~body).any():
                sums.setdefault(BACKGROUND, []).append(lab[~body].mean(axis=0))
    return {name: np.mean(values, axis=0) for name, values in sums.items()}


def _rgb(lab: np.ndarray) -> np.ndarray:
    return np.clip(lab2rgb(np.asarray(lab, np.float64)[None, None])[0, 0] * 255 + 0.5, 0, 255).astype(np.uint8)


def pose_drawing(driving: list, colours: dict[str, np.ndarray], width: int, height: int) -> np.ndarray:
    """(n, H, W, 3) uint8: each frame's driving pose drawn as a flat figure in ``colours``."""
    bg = _rgb(colours.get(BACKGROUND, np.array([50.0, 0.0, 0.0])))
    fill = {r: _rgb(colours[r]) for r in REGIONS if r in colours}
    out = np.empty((len(driving), height, width, 3), np.uint8)
    for i, pose in enumerate(driving):
        out[i] = bg
        if pose is None:
            continue
        masks = region_masks(*pose, height, width, core=False)
        for r in ("lower_limbs", "torso", "head", "upper_limbs"):  # arms in front of the body
            if r in masks and r in fill:
                out[i][masks[r]] = fill[r]
    return out
