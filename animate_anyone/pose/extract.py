"""Pose extraction for clips: decode (in a thread, overlapped with inference), run a backend, and
turn the people found into ``pose_frames`` rows and one ``clip_pose_summary`` row per clip."""
from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa

from animate_anyone.errors import MediaError, PermanentError
from animate_anyone.media.video import iter_frames
from animate_anyone.pose.backends import FramePoses
from animate_anyone.pose.layouts import BODY_SLICE, FACE_SLICE, FEET_SLICE, LEFT_HAND_SLICE, RIGHT_HAND_SLICE, VISIBLE
from animate_anyone.tables.schemas import POSE_FRAMES

POSE_VERSION = "1"  # bump when rows for the same model and clip would change
HAND_VISIBLE_FRACTION = 0.5  # a hand counts as visible when this share of its 21 points scores above 0.3


class NoPersonError(PermanentError):
    """No frame of a clip shows a person."""


def prefetch_frames(path: Path, size: tuple[int, int] | None = None, depth: int = 16) -> Iterator[np.ndarray]:
    """RGB frames of ``path`` decoded by a background thread, ``depth`` frames ahead of the consumer
    (PyAV releases the GIL while decoding, so decoding overlaps with inference)."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def work() -> None:
        try:
            for frame in iter_frames(path):
                if stop.is_set():
                    return
                if size:
                    frame = frame.reformat(width=size[0], height=size[1])
                q.put(frame.to_ndarray(format="rgb24"))
            q.put(end)
        except BaseException as exc:  # handed to the consumer, which raises it
            q.put(exc)

    thread = threading.Thread(target=work, name=f"decode-{Path(path).name}", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is end:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(0.05)


@dataclass
class ClipPoses:
    frames: list[FramePoses]
    width: int
    height: int


def extract_clip(backend, path: Path, batch: int = 8) -> ClipPoses:
    """Run ``backend`` over every frame of ``path``."""
    backend.start_clip()
    out: list[FramePoses] = []
    pending: list[np.ndarray] = []
    width = height = 0
    for rgb in prefetch_frames(Path(path)):  # decoding errors arrive as MediaError naming the file
        height, width = rgb.shape[:2]
        pending.append(rgb)
        if len(pending) >= batch:
            out.extend(backend.process(pending))
            pending = []
    if pending:
        out.extend(backend.process(pending))
    if not out:
        raise MediaError(f"{path}: no video frames could be decoded", "empty_video")
    return ClipPoses(out, width, height)


def _fixed(values: np.ndarray, width: int) -> pa.FixedSizeListArray:
    return pa.FixedSizeListArray.from_arrays(pa.array(values.astype(np.float32).reshape(-1)), width)


def _part_means(scores: np.ndarray) -> dict[str, np.ndarray]:
    return {"body_conf": scores[:, BODY_SLICE].mean(1), "feet_conf": scores[:, FEET_SLICE].mean(1),
            "face_conf": scores[:, FACE_SLICE].mean(1), "left_hand_conf": scores[:, LEFT_HAND_SLICE].mean(1),
            "right_hand_conf": scores[:, RIGHT_HAND_SLICE].mean(1)}


def pose_rows(clip_id: str, poses: ClipPoses, fps: float, model: str) -> pa.Table:
    """``pose_frames`` rows: one per frame and person; coordinates normalised by the clip's size."""
    size = np.array([poses.width, poses.height], np.float32)
    frame_idx, person_idx, counts, boxes, det, kps, scs = [], [], [], [], [], [], []
    for i, fp in enumerate(poses.frames):
        n = len(fp)
        frame_idx += [i] * n
        person_idx += list(range(n))
        counts += [n] * n
        boxes.append(fp.boxes / np.tile(size, 2))
        det.append(fp.det_scores)
        kps.append(fp.keypoints / size)
        scs.append(fp.scores)
    n = len(frame_idx)
    boxes_a = np.concatenate(boxes) if n else np.zeros((0, 4), np.float32)
    kps_a = np.concatenate(kps) if n else np.zeros((0, 133, 2), np.float32)
    scs_a = np.concatenate(scs) if n else np.zeros((0, 133), np.float32)
    cols = {
        "clip_id": pa.array([clip_id] * n, pa.string()), "frame_idx": pa.array(frame_idx, pa.int32()),
        "t_s": pa.array(np.asarray(frame_idx, np.float64) / fps, pa.float64()),
        "person_idx": pa.array(person_idx, pa.int16()), "num_persons": pa.array(counts, pa.int16()),
        "bbox": _fixed(boxes_a, 4), "det_score": pa.array(np.concatenate(det) if n else [], pa.float32()),
        "keypoints": _fixed(kps_a, 266), "scores": _fixed(scs_a, 133),
        **{k: pa.array(v.astype(np.float32), pa.float32()) for k, v in _part_means(scs_a).items()},
        "model": pa.array([model] * n, pa.string()), "pose_version": pa.array([POSE_VERSION] * n, pa.string()),
    }
    return pa.table(cols, schema=POSE_FRAMES)


def hand_visible(scores: np.ndarray, threshold: float = VISIBLE) -> np.ndarray:
    """Per row of ``[..., 21]`` hand scores: is the hand visible?"""
    return (scores > threshold).mean(axis=-1) >= HAND_VISIBLE_FRACTION


def motion_energy(main_kp: np.ndarray, main_sc: np.ndarray, heights: np.ndarray, fps: float,
                  threshold: float = VISIBLE) -> float:
    """Mean speed of the main subject's body points in box heights per second, over consecutive
    frames where the subject is present and each point is visible in both."""
    speeds = []
    for t in range(1, len(main_kp)):
        if main_kp[t] is None or main_kp[t - 1] is None:
            continue
        seen = (main_sc[t][BODY_SLICE] > threshold) & (main_sc[t - 1][BODY_SLICE] > threshold)
        h = (heights[t] + heights[t - 1]) / 2
        if not seen.any() or h <= 0:
            continue
        step = np.linalg.norm(main_kp[t][BODY_SLICE][seen] - main_kp[t - 1][BODY_SLICE][seen], axis=-1).mean()
        speeds.append(step / h * fps)
    return float(np.mean(speeds)) if speeds else 0.0


def summarise(clip: dict, poses: ClipPoses, model: str, at) -> dict:
    """The ``clip_pose_summary`` row of one clip (``clip`` is its ``clips`` row)."""
    frames = poses.frames
    counts = np.array([len(f) for f in frames])
    present = [f for f in frames if len(f)]
    main_sc = np.stack([f.scores[0] for f in present]) if present else np.zeros((0, 133), np.float32)
    means = {k: float(v.mean()) if len(v) else 0.0 for k, v in _part_means(main_sc).items()}
    left = hand_visible(main_sc[:, LEFT_HAND_SLICE]) if present else np.zeros(0, bool)
    right = hand_visible(main_sc[:, RIGHT_HAND_SLICE]) if present else np.zeros(0, bool)
    n = len(frames)
    kp_seq = [f.keypoints[0] if len(f) else None for f in frames]
    sc_seq = [f.scores[0] if len(f) else None for f in frames]
    heights = np.array([f.boxes[0, 3] - f.boxes[0, 1] if len(f) else 0.0 for f in frames])
    areas = [(f.boxes[0, 2] - f.boxes[0, 0]) * (f.boxes[0, 3] - f.boxes[0, 1]) for f in present]
    return {
        "clip_id": clip["clip_id"], "source_id": clip.get("source_id"), "split": clip.get("split"), "num_frames": n,
        "fps": float(clip["fps"]), "width": poses.width, "height": poses.height,
        "frames_with_person": int((counts > 0).sum()), "frames_one_person": int((counts == 1).sum()),
        "one_person_ratio": float((counts == 1).mean()), "max_persons": int(counts.max()),
        "mean_persons": float(counts.mean()),
        "body_conf": means["body_conf"], "face_conf": means["face_conf"],
        "left_hand_conf": means["left_hand_conf"], "right_hand_conf": means["right_hand_conf"],
        "left_hand_visible_ratio": float(left.sum() / n), "right_hand_visible_ratio": float(right.sum() / n),
        "hands_visible_ratio": float((left & right).sum() / n),
        "motion_energy": motion_energy(kp_seq, sc_seq, heights, float(clip["fps"])),
        "bbox_coverage": float(np.mean(areas) / (poses.width * poses.height)) if areas else 0.0,
        "model": model, "pose_version": POSE_VERSION, "extracted_at": at,
    }

