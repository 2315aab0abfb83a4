"""A selection snapshot's clips, checked and decoded: ``snapshot_clips`` (each clip's file still the
bytes the snapshot recorded) and ``ClipStore`` (frames and drawn poses at a size, the training
crop, a small cache). Training's samples and the evaluation bench both read clips through here.

Frames go through a centred crop of the wanted aspect ratio and the pipeline's own image
processor; pose images are drawn at the clip's own size with ``pose.render.draw_pose`` (what
``animate`` draws), cropped the same way and resized with the pose processor.
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
from animate_anyone.media.video import iter_frames
from animate_anyone.pose import layouts
from animate_anyone.pose.render import draw_pose, read_clip_poses


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

    ``get(clip)``: frames (N, 3, H, W) in [-1, 1] and pose images (N, 3, H, W) in [0, 1];
    ``poses(clip, indices, mirror=False)``: the pose images of those frames only (drawn on first
    use and kept with the clip: a training sample needs a handful of a clip's frames, and drawing
    every frame's pose at the clip's own size costs more than decoding the clip);
    ``body(clip)``: the main person's 17 body points per frame (N, 17, 2; x and y in [0, 1] of the
    crop) and their scores (N, 17); ``mirrored(clip)``: the pose images of the mirror image (left
    and right swapped, then flipped), drawn when the store is made with ``mirror=True``. A clip
    whose file no longer has the bytes the clips table recorded is an error naming it.
    """

    def __init__(self, ds, width: int, height: int, cache: int = 64, mirror: bool = False):
        from diffusers.image_processor import VaeImageProcessor

        self.ds, self.width, self.height, self.cache, self.mirror = ds, width, height, cache, mirror
        self.images = VaeImageProcessor(vae_scale_factor=1)  # the pipeline's processors, same resize
        self.pose_images = VaeImageProcessor(vae_scale_factor=1, do_normalize=False)
        self._cache: OrderedDict[str, _Decoded] = OrderedDict()

    def _draw_one(self, clip: TrainClip, d: "_Decoded", i: int, mirror: bool) -> torch.Tensor:
        """Frame ``i``'s pose image (3, H, W): the main person as animate draws them, cropped and
        resized as the frames are; ``mirror``: the mirror image's pose (its left drawn as right)."""
        kps, scores = d.people.get(i, (np.zeros((0, 133, 2), np.float32), np.zeros((0, 133), np.float32)))
        kps, scores = kps[:1], scores[:1]  # the main person, as animate draws
        if mirror and len(kps):  # the mirrored person, drawn back in place: its left is drawn as right
            kps, scores = kps[:, layouts.MIRROR] * np.array([-1.0, 1.0], np.float32) + np.array([1.0, 0.0], np.float32), scores[:, layouts.MIRROR]
        canvas = draw_pose((clip.width, clip.height), kps, scores)
        if mirror:
            canvas = np.ascontiguousarray(canvas[:, ::-1])
        pose = self.pose_images.preprocess(PIL.Image.fromarray(canvas).crop(d.box), height=self.height, width=self.width)[0]
        return pose.flip(-1) if mirror else pose

    def _body(self, clip: TrainClip, people: dict, box, n: int) -> tuple[np.ndarray, np.ndarray]:
        left, top, right, bottom = box
        pts, seen = np.zeros((n, 17, 2), np.float32), np.zeros((n, 17), np.float32)
        for i in range(n):
            kps, scores = people.get(i, (np.zeros((0, 133, 2)), np.zeros((0, 133))))
            if len(kps):
                px = kps[0, :17] * np.array([clip.width, clip.height])
                pts[i] = (px - np.array([left, top])) / np.array([right - left, bottom - top])
                seen[i] = scores[0, :17]
        return pts, seen

    def _load(self, clip: TrainClip) -> "_Decoded":
        path = verify_clip_file(clip)
        box = crop_box(clip.width, clip.height, self.width, self.height)
        images = [PIL.Image.fromarray(f.to_ndarray(format="rgb24")).crop(box) for f in iter_frames(path)]
        _, people = read_clip_poses(self.ds.root, clip.clip_id)
        frames = self.images.preprocess(images, height=self.height, width=self.width)
        return _Decoded(frames, people, box, self._body(clip, people, box, len(images)), {}, {})

    def _item(self, clip: TrainClip) -> "_Decoded":
        if clip.clip_id in self._cache:
            self._cache.move_to_end(clip.clip_id)
            return self._cache[clip.clip_id]
        item = self._load(clip)
        if self.cache:
            self._cache[clip.clip_id] = item
            while len(self._cache) > self.cache:
                self._cache.popitem(last=False)
        return item

    def poses(self, clip: TrainClip, indices, mirror: bool = False) -> torch.Tensor:
        """(len(indices), 3, H, W) pose images of the clip's frames ``indices`` (mirrored: the
        mirror image's, which needs ``mirror=True`` on the store)."""
        if mirror and not self.mirror:
            raise ValueError("this ClipStore draws no mirrored poses (make it with mirror=True)")
        d = self._item(clip)
        drawn = d.mirrored if mirror else d.poses
        out = []
        for i in map(int, indices):
            if not 0 <= i < len(d.frames):
                raise IndexError(f"clip {clip.clip_id} has {len(d.frames)} frames; frame {i} asked")
            if i not in drawn:
                drawn[i] = self._draw_one(clip, d, i, mirror)
            out.append(drawn[i])
        return torch.stack(out) if out else torch.zeros(0, 3, self.height, self.width)

    def get(self, clip: TrainClip) -> tuple[torch.Tensor, torch.Tensor]:
        d = self._item(clip)
        return d.frames, self.poses(clip, range(len(d.frames)))

    def frames(self, clip: TrainClip) -> torch.Tensor:
        """(N, 3, H, W) in [-1, 1]: the clip's frames, without drawing any pose."""
        return self._item(clip).frames

    def body(self, clip: TrainClip) -> tuple[np.ndarray, np.ndarray]:
        return self._item(clip).body

    def mirrored(self, clip: TrainClip) -> torch.Tensor:
        return self.poses(clip, range(len(self._item(clip).frames)), mirror=True)


@dataclass
class _Decoded:
    """One clip in the store: frames, stored people, the crop, body points and the pose images
    drawn so far (frame index → (3, H, W))."""
    frames: torch.Tensor
    people: dict
    box: tuple
    body: tuple
    poses: dict
    mirrored: dict
