"""Training samples from a selection snapshot's clips.

A sample is a target (one frame, or N frames at a stride for stage 2), a reference frame of the
same clip away from the target, and the target's pose images. All three go through the same crop
(the training aspect ratio, centred) and the same resize as inference: pose images are drawn at the
clip's own size with `pose.render.draw_pose` (what `animate` draws) and resized with the
pipeline's pose processor; frames with its image processor.

Which sample comes at (step, i) is a pure function of the run's seed, the step and the sample's
index in the global batch, so a resumed run, or a run split over more processes, sees exactly
the same data (the data position of a checkpoint is its step).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image
import torch

from animate_anyone.errors import PermanentError
from animate_anyone.ids import sha256_file, sha256_json


class TrainDataError(PermanentError):
    """The snapshot cannot give training samples; the message names the clip or setting."""


@dataclass(frozen=True)
class TrainClip:
    clip_id: str
    path: str
    width: int
    height: int
    num_frames: int
    fps: float
    sha256: str
    split: str
    stamp: tuple[int, int] | None = None  # (size, mtime_ns) of the file when the snapshot was taken


_verified: dict[str, tuple[int, int]] = {}  # path → (size, mtime_ns) whose bytes this process hashed


def verify_clip_file(clip: TrainClip) -> Path:
    """The clip's file, if it still holds the bytes the snapshot recorded. Its size and
    modification time are compared first (with the snapshot's, or with those this process
    hashed); only when they differ is the file hashed, and a different hash is an error naming
    the clip."""
    path = Path(clip.path)
    if not path.is_file():
        raise TrainDataError(f"clip {clip.clip_id}: file {path} is missing; run `animate-anyone ingest --refresh`",
                             "missing_clip")
    st = path.stat()
    stamp = (st.st_size, st.st_mtime_ns)
    if stamp in (clip.stamp, _verified.get(str(path))):
        return path
    if sha256_file(path) != clip.sha256:
        raise TrainDataError(f"clip {clip.clip_id}: {path} changed since it was ingested (its sha256 is not the snapshot's); "
                             "run `animate-anyone ingest --refresh` and `select` again", "clip_changed")
    _verified[str(path)] = stamp
    return path


def snapshot_clips(ds, snapshot: dict, splits: tuple[str, ...] | None = None) -> list[TrainClip]:
    """The snapshot's clips (of ``splits``), checked against the clips table it was made from."""
    ids = list(snapshot.get("clip_ids", []))
    if not ids:
        raise TrainDataError(f"snapshot {snapshot.get('snapshot_id')} of dataset {ds.name!r} has no clips; "
                             "loosen select.where or ingest more videos", "empty_snapshot")
    table = ds.read("clips", where={"clip_id": ids}).to_pylist()  # only the snapshot's rows
    rows = {r["clip_id"]: r for r in table}
    missing = [c for c in ids if c not in rows]
    if missing:
        raise TrainDataError(f"snapshot {snapshot['snapshot_id']}: {len(missing)} clip(s) are no longer in the clips "
                             f"table: {', '.join(missing[:5])}", "missing_clip")
    recorded = snapshot.get("clip_sha256") or {}
    pairs = [[c, rows[c]["sha256"]] for c in ids]
    changed = [c for c in ids if c in recorded and recorded[c] != rows[c]["sha256"]]
    if changed or (not recorded and sha256_json(pairs) != snapshot.get("clips_sha256")):
        which = ", ".join(changed[:5]) or "one or more of its clips"
        raise TrainDataError(f"snapshot {snapshot['snapshot_id']}: {which} changed since the snapshot was taken "
                             "(re-ingested); run `animate-anyone select` for a new snapshot", "clip_changed")
    stamps = snapshot.get("clip_stamp") or {}
    out = [TrainClip(c, str(ds.root.media_path(rows[c]["clip_uri"])), int(rows[c]["width"]), int(rows[c]["height"]),
                     int(rows[c]["num_frames"]), float(rows[c]["fps"]), rows[c]["sha256"], rows[c]["split"],
                     tuple(stamps[c]) if stamps.get(c) else None)
           for c in ids]
    out = [c for c in out if splits is None or c.split in splits]
    for clip in out:  # a changed or missing file stops the run here, before anything trains
        verify_clip_file(clip)
    return out


def crop_box(width: int, height: int, out_w: int, out_h: int) -> tuple[int, int, int, int]:
    """The centred (left, top, right, bottom) box of the largest ``out_w:out_h`` area of a frame."""
    target = out_w / out_h
    if width / height > target:  # too wide: cut the sides
        w = round(height * target)
        left = (width - w) // 2
        return left, 0, left + w, height
    h = round(width / target)
    top = (height - h) // 2
    return 0, top, width, top + h


class ClipStore:
    """Decoded frames and drawn poses of clips at the training size, with a small LRU cache.

    ``frames(clip)``: (N, 3, H, W) in [-1, 1]; ``poses(clip)``: (N, 3, H, W) in [0, 1]. A clip whose
    file no longer has the bytes the clips table recorded is an error naming it.
    """

    def __init__(self, ds, width: int, height: int, cache: int = 64):
        from diffusers.image_processor import VaeImageProcessor

        self.ds, self.width, self.height, self.cache = ds, width, height, cache
        self.images = VaeImageProcessor(vae_scale_factor=1)  # the pipeline's processors, same resize
        self.pose_images = VaeImageProcessor(vae_scale_factor=1, do_normalize=False)
        self._cache: OrderedDict[str, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()

    def _load(self, clip: TrainClip) -> tuple[torch.Tensor, torch.Tensor]:
        from animate_anyone.media.video import iter_frames
        from animate_anyone.pose.render import draw_pose, read_clip_poses

        path = verify_clip_file(clip)
        box = crop_box(clip.width, clip.height, self.width, self.height)
        images = [PIL.Image.fromarray(f.to_ndarray(format="rgb24")).crop(box) for f in iter_frames(path)]
        _, people = read_clip_poses(self.ds.root, clip.clip_id)
        empty = (np.zeros((0, 133, 2), np.float32), np.zeros((0, 133), np.float32))
        drawn = []
        for i in range(len(images)):
            kps, scores = people.get(i, empty)
            canvas = draw_pose((clip.width, clip.height), kps[:1], scores[:1])  # the main person, as animate draws
            drawn.append(PIL.Image.fromarray(canvas).crop(box))
        frames = self.images.preprocess(images, height=self.height, width=self.width)
        poses = self.pose_images.preprocess(drawn, height=self.height, width=self.width)
        return frames, poses

    def get(self, clip: TrainClip) -> tuple[torch.Tensor, torch.Tensor]:
        if clip.clip_id in self._cache:
            self._cache.move_to_end(clip.clip_id)
            return self._cache[clip.clip_id]
        item = self._load(clip)
        if self.cache:
            self._cache[clip.clip_id] = item
            while len(self._cache) > self.cache:
                self._cache.popitem(last=False)
        return item


def sample_seed(seed: int, step: int, index: int) -> int:
    """The seed of global sample ``index`` at ``step``: its clip, frames, noise and dropout."""
    return int(np.random.SeedSequence([seed, step, index]).generate_state(1, np.uint32)[0])


class TrainSamples(torch.utils.data.Dataset):
    """Samples addressed by (step, index in the global batch); see the module's docstring."""

    def __init__(self, clips: list[TrainClip], store: ClipStore, seed: int, frames: int = 1, stride: int = 1,
                 min_gap: int | None = None):
        span = (frames - 1) * stride + 1
        self.clips = [c for c in clips if c.num_frames >= span + 1]
        if not self.clips:
            raise TrainDataError(f"no clip has the {span + 1} frames that samples of {frames} frames at stride "
                                 f"{stride} need (plus a reference); longest: {max((c.num_frames for c in clips), default=0)}",
                                 "clips_too_short")
        self.store, self.seed, self.frames, self.stride, self.span = store, seed, frames, stride, span
        self.min_gap = min_gap

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
        return clip, target, int(pool[int(rng.integers(len(pool)))]), s

    def __getitem__(self, key) -> dict:
        step, index = key
        clip, target, ref, s = self.pick(step, index)
        frames, poses = self.store.get(clip)
        return {"pixels": frames[target],  # (F, 3, H, W) in [-1, 1]
                "poses": poses[target],  # (F, 3, H, W) in [0, 1]
                "reference": frames[ref],  # (3, H, W) in [-1, 1]
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

