"""Scoring: a model's video of one clip, and its per-frame and per-clip values beside the real
frames (L1, PSNR, SSIM, LPIPS, identity, pose fidelity, appearance) plus the features the Fréchet distances
are computed from over the whole clip set.

Protocol (Animate Anyone, UniAnimate): the clip is animated from its first frame along its own
poses, with a fixed seed, steps and guidance, at the evaluation size (the centred crop of
training). Frame 0 is the reference itself and is not scored.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from animate_anyone.clipstore import TrainClip, crop_box
from animate_anyone.config import PipelineConfig
from animate_anyone.errors import AnimateAnyoneError
from animate_anyone.evaluation import metrics
from animate_anyone.evaluation.appearance import appearance_values
from animate_anyone.evaluation.pose_fidelity import pose_fidelity
from animate_anyone.media.frames import frame_scores, to_uint8
from animate_anyone.pose.backends import load_backend
from animate_anyone.pose.render import read_clip_poses
from animate_anyone.tables.io import Dataset


@dataclass
class Scorers:
    """The metrics that could be set up (the others are in ``unavailable`` with their reason)."""

    backend: object | None
    lpips: object | None
    fid: object | None
    fvd: object | None
    identity: object | None
    unavailable: dict

    def close(self) -> None:
        if self.backend is not None:
            self.backend.close()


def make_scorers(cfg: PipelineConfig, device: str) -> Scorers:
    e, base = cfg.evaluate, Path(cfg.base_dir) if cfg.base_dir else None
    made, unavailable = {}, {}
    wanted = {"pose": lambda: load_backend(cfg.pose, e.pose_backend, base),
              "lpips": (lambda: metrics.Lpips(e.lpips, device)) if e.lpips else None,
              "fid": (lambda: metrics.FeatureNet(e.fid, "evaluate.fid", base, device)) if e.fid and e.fid.weights else None,
              "fvd": (lambda: metrics.FeatureNet(e.fvd, "evaluate.fvd", base, device)) if e.fvd and e.fvd.weights else None,
              "identity": (lambda: metrics.Identity(e.identity, base, device)) if e.identity else None}
    for name, make in wanted.items():
        if make is None:
            continue
        try:
            made[name] = make()
        except AnimateAnyoneError as exc:
            unavailable[name] = exc
    return Scorers(made.get("pose"), made.get("lpips"), made.get("fid"), made.get("fvd"), made.get("identity"),
                   unavailable)


def generate_clip(pipe, real: torch.Tensor, poses: torch.Tensor, e, device: str) -> torch.Tensor:
    """The model's video for one clip: reference = its first frame, poses = its own, fixed seed
    (UniAnimate also takes the reference's own pose: the first frame's)."""
    from animate_anyone.unianimate_pipeline import UniAnimatePipeline

    n = len(real)
    window = min(e.window, n)
    ref = to_uint8(real[:1])[0]
    extra = {"reference_pose": to_uint8(poses[:1])[0]} if isinstance(pipe, UniAnimatePipeline) else {}
    return pipe(ref, poses, height=e.height, width=e.width, num_inference_steps=e.steps, guidance_scale=e.guidance,
                window=window, overlap=min(e.overlap, window - 1), generator=torch.Generator().manual_seed(e.seed),
                output_type="pt", **extra).frames.float().cpu().clamp(0, 1)


def driving_pixels(ds: Dataset, clip: TrainClip, width: int, height: int, n: int) -> list:
    """The clip's own main-person poses in the evaluation frame's pixels (crop, then resize)."""
    _, people = read_clip_poses(ds.root, clip.clip_id)
    left, top, right, bottom = crop_box(clip.width, clip.height, width, height)
    scale = np.array([width / (right - left), height / (bottom - top)])
    out = []
    for i in range(n):
        kps, scores = people.get(i, (np.zeros((0, 133, 2)), np.zeros((0, 133))))
        if not len(kps):
            out.append(None)
            continue
        px = kps[0] * np.array([clip.width, clip.height]) - np.array([left, top])
        out.append(((px * scale).astype(np.float32), scores[0].astype(np.float32)))
    return out


class _Clock:
    """Seconds spent per metric group, added into ``timings``."""

    def __init__(self, timings: dict):
        self.timings = timings

    def __call__(self, group: str, fn):
        t0 = time.perf_counter()
        try:
            return fn()
        finally:
            self.timings[group] = self.timings.get(group, 0.0) + time.perf_counter() - t0


def _per_frame(ds, clip, real, generated, scorers: Scorers, cfg: PipelineConfig, timed: _Clock) -> tuple[dict, list]:
    """Each metric's per-frame values (frames 1…n-1) and whether each frame's driving body moved."""
    e = cfg.evaluate
    g, r = generated[1:], real[1:]
    per_frame: dict[str, np.ndarray] = dict(timed("l1_psnr_ssim", lambda: frame_scores(g, r)))
    if scorers.lpips is not None:
        per_frame["lpips"] = timed("lpips", lambda: scorers.lpips(g, r))
    if scorers.identity is not None:
        per_frame["identity"] = timed("identity", lambda: scorers.identity(g, real[0]))
    moved = [None] * (len(real) - 1)
    driving = driving_pixels(ds, clip, e.width, e.height, len(real))
    gen8, real8 = to_uint8(generated), to_uint8(real)
    per_frame.update(timed("appearance", lambda: appearance_values(gen8, real8, real8[0], driving, driving[0])))
    if scorers.backend is not None:
        rows = timed("pose", lambda: pose_fidelity(scorers.backend, gen8, driving, e.pose_min_side, e.moved))[1:]
        moved = [row.pop("moved") for row in rows]
        for key in rows[0] if rows else []:
            per_frame[key] = np.asarray([row.get(key, np.nan) for row in rows], np.float64)
    return per_frame, moved


def _features(real, generated, scorers: Scorers, timed: _Clock) -> dict:
    """The clip's Fréchet features (FID per frame after the reference, FVD per segment)."""
    features = {}
    if scorers.fid is not None:
        features["fid_real"] = timed("fid", lambda: scorers.fid.images(real[1:]))
        features["fid_generated"] = timed("fid", lambda: scorers.fid.images(generated[1:]))
    if scorers.fvd is not None:
        features["fvd_real"] = timed("fvd", lambda: scorers.fvd.video(real))
        features["fvd_generated"] = timed("fvd", lambda: scorers.fvd.video(generated))
    return features


def _rows(clip_id: str, per_frame: dict, moved: list) -> list[dict]:
    """``eval_results`` rows: per frame, the clip's mean, the mean over moved frames, the counts."""
    out = []
    moved_mask = np.asarray([m is True for m in moved])
    for metric, values in per_frame.items():
        values = np.asarray(values, np.float64)
        for i, v in enumerate(values):
            if np.isfinite(v):
                out.append({"clip_id": clip_id, "metric": metric, "frame_idx": i + 1, "value": float(v),
                            "moved": moved[i]})
        ok = np.isfinite(values)
        if ok.any():
            out.append({"clip_id": clip_id, "metric": metric, "frame_idx": None,
                        "value": float(values[ok].mean()), "moved": None})
        sel = ok & moved_mask
        if sel.any():
            out.append({"clip_id": clip_id, "metric": f"{metric}_moved", "frame_idx": None,
                        "value": float(values[sel].mean()), "moved": True})
    out.append({"clip_id": clip_id, "metric": "frames", "frame_idx": None, "value": float(len(moved)), "moved": None})
    out.append({"clip_id": clip_id, "metric": "frames_moved", "frame_idx": None,
                "value": float(moved_mask.sum()), "moved": None})
    return out


def score_clip(ds: Dataset, clip: TrainClip, real: torch.Tensor, generated: torch.Tensor, scorers: Scorers,
               cfg: PipelineConfig, timings: dict) -> tuple[list[dict], dict]:
    """Rows of ``eval_results`` (without eval_id) for one clip, and its Fréchet features.
    ``real``, ``generated``: (n, 3, H, W) in [0, 1]; frame 0 (the reference) is not scored."""
    timed = _Clock(timings)
    per_frame, moved = _per_frame(ds, clip, real, generated, scorers, cfg, timed)
    return _rows(clip.clip_id, per_frame, moved), _features(real, generated, scorers, timed)


def frechet(metric: str, features: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """The Fréchet distance of ``metric`` over every scored clip's (real, generated) features."""
    real = [r for r, _ in features]
    gen = [g for _, g in features]
    return metrics.frechet_distance(np.concatenate(real) if real else np.zeros((0, 1)),
                                    np.concatenate(gen) if gen else np.zeros((0, 1)))
