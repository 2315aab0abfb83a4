"""The validation pass of a training run: a few validation clips animated from their own first
frame along their own poses, scored against the real frames (PSNR, SSIM; torchmetrics), with the
still reference (frame 0 held) as the baseline, and a side-by-side video real | pose | generated.
Stage 0 (the VAE) scores reconstructions of the same frames instead."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from animate_anyone.media.frames import frame_scores, to_uint8
from animate_anyone.media.video import VideoWriter
from animate_anyone.models import store


def _scores(generated: torch.Tensor, real: torch.Tensor) -> tuple[float, float]:
    """Mean PSNR and SSIM over frames."""
    scores = frame_scores(generated, real)
    return float(scores["psnr"].mean()), float(scores["ssim"].mean())


def validate(job, model, components: dict, frames_of, clips, stage, step: int) -> dict:
    H, W = stage.height, stage.width
    scores, still, panels = [], [], []
    device = next(components["unet"].parameters()).device
    pipe = None
    if job.stage > 0:
        pipe = store.pipeline_of(components)
        pipe.set_progress_bar_config(disable=True)
    try:
        for clip in clips:
            frames, poses = frames_of.get(clip)
            n = min(stage.val_frames, len(frames))
            real = (frames[:n] / 2 + 0.5).clamp(0, 1)  # (n, 3, H, W)
            if pipe is None:
                vae = components["vae"]
                with torch.no_grad():
                    lat = vae.encode(frames[:n].to(device, vae.dtype)).latent_dist.mean
                    generated = (vae.decode(lat).sample.float().cpu() / 2 + 0.5).clamp(0, 1)
            else:
                window = min(n, 16)
                # UniAnimate takes the reference's own pose too: the first frame's
                extra = {"reference_pose": to_uint8(poses[:1])[0]} if "conditioner" in components else {}
                generated = pipe(to_uint8(real[:1])[0], poses[:n], height=H, width=W, num_inference_steps=stage.val_steps,
                                 guidance_scale=stage.val_guidance, window=window, overlap=min(4, window - 1),
                                 generator=torch.Generator().manual_seed(0), output_type="pt", **extra).frames.cpu()
            # frame 0 is the reference itself: score the frames after it
            scores.append(_scores(generated[1:], real[1:]) if n > 1 else _scores(generated, real))
            still.append(_scores(real[:1].expand_as(real[1:]), real[1:]) if n > 1 else (float("nan"), float("nan")))
            panels.append(np.concatenate([to_uint8(real), to_uint8(poses[:n]), to_uint8(generated)], axis=2))
    finally:
        if hasattr(model, "install"):
            model.install()  # the pipeline took the processors over for sampling
    out = Path(job.run_dir) / "val" / f"step-{step:08d}.mp4"
    n = min(len(p) for p in panels)
    grid = np.concatenate([p[:n] for p in panels], axis=1)  # clips stacked vertically
    with VideoWriter(out, grid.shape[2], grid.shape[1], 8) as writer:
        for frame in grid:
            writer.write(frame)
    return {"val_psnr": float(np.mean([s[0] for s in scores])), "val_ssim": float(np.mean([s[1] for s in scores])),
            "val_psnr_still": float(np.mean([s[0] for s in still])),
            "val_ssim_still": float(np.mean([s[1] for s in still])), "val_video": str(out)}
