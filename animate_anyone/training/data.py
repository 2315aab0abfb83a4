"""Training samples from a selection snapshot's clips.

A sample is a target (one frame, or N frames at a stride for stage 2), a reference frame of the
same clip away from the target, and the target's pose images. All three go through the same crop
(the training aspect ratio, centred) and the same resize as inference: pose images are drawn at the
clip's own size with `pose.render.draw_pose` (what `animate` draws) and resized with the
pipeline's pose processor; frames with its image processor.

Which sample comes at (step, i) is a pure function of the run's seed, the step and the sample's
index in the global batch (and so is its augmentation, ``training.augment``), so a resumed run, or a run split over more processes, sees exactly
the same data (the data position of a checkpoint is its step).
"""

from __future__ import annotations

import numpy as np
import torch

from animate_anyone.clipstore import ClipStore, TrainClip, TrainDataError, crop_box, snapshot_clips
from animate_anyone.config import Augment
from animate_anyone.training import augment

__all__ = ["ClipStore", "crop_box", "StepBatches", "TrainClip", "TrainDataError", "TrainSamples", "sample_seed", "snapshot_clips"]


def sample_seed(seed: int, step: int, index: int) -> int:
    """The seed of global sample ``index`` at ``step``: its clip, frames, noise and dropout."""
    return int(np.random.SeedSequence([seed, step, index]).generate_state(1, np.uint32)[0])


class TrainSamples(torch.utils.data.Dataset):
    """Samples addressed by (step, index in the global batch); see the module's docstring."""

    def __init__(self, clips: list[TrainClip], store: ClipStore, seed: int, frames: int = 1, stride: int = 1,
                 min_gap: int | None = None, augment: Augment | None = None):
        span = (frames - 1) * stride + 1
        self.clips = [c for c in clips if c.num_frames >= span + 1]
        if not self.clips:
            raise TrainDataError(f"no clip has the {span + 1} frames that samples of {frames} frames at stride "
                                 f"{stride} need (plus a reference); longest: {max((c.num_frames for c in clips), default=0)}",
                                 "clips_too_short")
        self.store, self.seed, self.frames, self.stride, self.span = store, seed, frames, stride, span
        self.min_gap = min_gap
        self.augment = augment or Augment()
        if self.augment.flip and not store.mirror:
            raise ValueError("augment.flip needs a ClipStore made with mirror=True")

    def __len__(self) -> int:  # addressed by key, not by position
        return 2**31

    def pick(self, step: int, index: int) -> tuple[TrainClip, list[int], int, int]:
        """(clip, target frame indices, reference frame index, sample seed)."""
        s = sample_seed(self.seed, step, index)
        rng = np.random.default_rng(s)
        clip = self.clips[int(rng.integers(len(self.clips)))]
        n = clip.num_frames
        start = int(rng.integers(0, n - self.span + 1))
        target = list(range(start, start + self.span, self.stride))
        # the reference: any frame at least `gap` away from the target window when the clip allows
        gap = self.min_gap if self.min_gap is not None else max(1, n // 8)
        far = [f for f in range(n) if f < start - gap or f > start + self.span - 1 + gap]
        pool = far or [f for f in range(n) if f not in target] or list(range(n))
        if self.augment.reference_far > 1:  # of a few candidates, the farthest in body pose
            tried = [int(pool[int(k)]) for k in rng.integers(len(pool), size=self.augment.reference_far)]
            return clip, target, self._farthest(clip, target[0], tried), s
        return clip, target, int(pool[int(rng.integers(len(pool)))]), s

    def _farthest(self, clip: TrainClip, target: int, candidates: list[int]) -> int:
        """The candidate frame whose body points (seen in both) lie farthest from the target's."""
        points, scores = self.store.body(clip)

        def distance(f: int) -> float:
            both = (scores[f] > 0.3) & (scores[target] > 0.3)
            return float(np.linalg.norm(points[f][both] - points[target][both], axis=-1).mean()) if both.any() else 0.0

        return max(candidates, key=lambda f: (distance(f), -f))

    def __getitem__(self, key) -> dict:
        step, index = key
        clip, target, ref, s = self.pick(step, index)
        frames = self.store.frames(clip)
        both = target + [ref]  # the reference's own pose goes along (UniAnimate's frame 0 takes it)
        pixels, reference = frames[target], frames[ref]
        p = augment.draw(self.augment, s) if self.augment != Augment() else None
        flip = bool(p and p["flip"])
        pose = self.store.poses(clip, both, mirror=flip)  # only these frames' poses get drawn
        if p:
            pixels, reference, pose = augment.apply(self.augment, p, pixels, reference, pose, pose if flip else None)
        return {"pixels": pixels,  # (F, 3, H, W) in [-1, 1]
                "poses": pose[:-1],  # (F, 3, H, W) in [0, 1]
                "reference": reference,  # (3, H, W) in [-1, 1]
                "reference_pose": pose[-1],  # (3, H, W) in [0, 1]
                "seed": torch.tensor(s, dtype=torch.int64)}


class StepBatches(torch.utils.data.Sampler):
    """For steps start…end-1 and micro-steps 0…accum-1, this process's share of the global batch:
    keys (step·accum + micro, i) for i in [rank·batch, (rank+1)·batch)."""

    def __init__(self, start: int, end: int, batch: int, accum: int, rank: int = 0):
        self.start, self.end, self.batch, self.accum, self.rank = start, end, batch, accum, rank

    def __iter__(self):
        for step in range(self.start, self.end):
            for micro in range(self.accum):
                yield [(step * self.accum + micro, self.rank * self.batch + i) for i in range(self.batch)]

    def __len__(self) -> int:
        return (self.end - self.start) * self.accum

