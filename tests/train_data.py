"""Training test data: a data root in seconds: puppet videos cut at their true shots into real H.264 clip
files, with the truth's keypoints as the pose tables and a selection snapshot over them (the
pose backend is tested elsewhere; here the poses must be exact)."""
from __future__ import annotations

import datetime as dt
import functools
from pathlib import Path

import numpy as np
import shared_once

from animate_anyone import synthetic
from animate_anyone.ids import sha256_file
from animate_anyone.media.video import VideoWriter, iter_frames
from animate_anyone.pose.backends import FramePoses
from animate_anyone.pose.extract import ClipPoses, pose_rows, summarise
from animate_anyone.tables import DataRoot, refresh_catalog
from animate_anyone.tables.io import Dataset
from animate_anyone.tables.selection import select_clips

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)

@functools.cache
def _puppet_video(v: int, seconds: float, size: tuple[int, int]) -> Path:
    """Puppet video ``v`` (the same plan every time), rendered once per test run and shared by the
    xdist workers: drawing its frames was two thirds of a root's build, and a dozen tests build
    one. Read only."""
    spec = synthetic.plan_video(f"p{v}", 70 + v, seconds, *size)
    folder = shared_once.built_once(f"train-video-{v}-{seconds:g}-{size[0]}x{size[1]}",
                                    lambda out: synthetic.write_video(spec, out))
    return folder / f"{spec.name}.mp4"


def build_train_root(dest: Path, videos: int = 3, seconds: float = 8.0, size=(144, 256), dataset: str = "demo") -> dict:
    root = DataRoot.from_uri(dest)
    ds = Dataset(root, dataset)
    clips = []
    for v in range(videos):
        video = _puppet_video(v, seconds, tuple(size))
        truth, arrays = synthetic.load_truth(video)
        frames = [f.to_ndarray(format="rgb24") for f in iter_frames(video)]
        bounds = [0, *truth["cuts"], truth["num_frames"]]
        rows = []
        for s, e in zip(bounds[:-1], bounds[1:]):
            if e - s < 40:
                continue
            clip_id = f"c{len(clips):02d}"
            path = root.clips_dir / f"{clip_id}.mp4"
            with VideoWriter(path, size[0], size[1], truth["fps"]) as w:
                for img in frames[s:e]:
                    w.write(img)
            kp, vis = arrays["keypoints"][s:e], arrays["visible"][s:e].astype(np.float32)
            people = []
            for i in range(e - s):
                seen = kp[i][vis[i] > 0]
                box = np.concatenate([seen.min(0), seen.max(0)])[None].astype(np.float32)
                people.append(FramePoses(box, np.ones(1, np.float32), kp[i][None], vis[i][None]))
            clip = {"clip_id": clip_id, "source_id": f"p{v}", "start_s": s / truth["fps"], "end_s": e / truth["fps"],
                    "start_frame": s, "end_frame": e, "fps": float(truth["fps"]), "width": size[0], "height": size[1],
                    "num_frames": e - s, "shot_idx": 0, "shot_detector": "truth", "shot_params": "{}",
                    "clip_uri": str(path), "sha256": sha256_file(path),
                    "split": "val" if len(clips) % 3 == 2 else "train"}
            poses = ClipPoses(people, size[0], size[1])
            ds.write("pose_frames", clip_id, pose_rows(clip_id, poses, clip["fps"], "truth"))
            ds.write("clip_pose_summary", clip_id, [summarise(clip, poses, "truth", NOW)])
            rows.append(clip)
            clips.append(clip)
        ds.write("clips", f"p{v}", rows)
    refresh_catalog(root)
    snap = select_clips(ds, "TRUE", ["train", "val"], "demo")
    return {"root": root, "dataset": ds, "clips": clips, "snapshot": snap}


CONFIG = """
default: t
pipelines:
  t:
    data_root: {root}
    dataset: demo
    pose: {{backend: mediapipe}}
    train:
      size: tiny
      output: tiny
      device: cpu
      stage0: {{steps: 4, lr: 1.0e-3, batch: 2, width: 32, height: 64, checkpoint_every: 2, val_clips: 1, val_frames: 3}}
      stage1: {{steps: 6, lr: 1.0e-3, batch: 2, width: 32, height: 64, checkpoint_every: 3, val_clips: 1, val_frames: 3, val_steps: 2{extra1}}}
      stage2: {{steps: 4, lr: 1.0e-3, batch: 1, width: 32, height: 64, frames: 4, stride: 2, continuation: 0.5, checkpoint_every: 2, val_clips: 1, val_frames: 5, val_steps: 2}}
"""
