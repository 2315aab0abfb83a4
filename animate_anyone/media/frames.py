"""Frames as tensors and as pictures: the one conversion between the pipelines' (F, 3, H, W)
tensors in [0, 1] and (F, H, W, 3) uint8 arrays, and the one frame-by-frame comparison (L1,
PSNR, SSIM; torchmetrics) that training's validation and the evaluation bench both report."""
from __future__ import annotations

import numpy as np
import torch

PSNR_CAP = 100.0  # dB: identical frames would be infinite and drop out of every mean


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(F, 3, H, W) in [0, 1] → (F, H, W, 3) uint8."""
    return (x.clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)


def frame_scores(generated: torch.Tensor, real: torch.Tensor) -> dict[str, np.ndarray]:
    """(F, 3, H, W) in [0, 1] each → per-frame L1, PSNR (dB, at most ``PSNR_CAP``) and SSIM."""
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    generated, real = generated.float().clamp(0, 1), real.float().clamp(0, 1)
    l1 = (generated - real).abs().mean(dim=(1, 2, 3))
    psnr = peak_signal_noise_ratio(generated, real, data_range=1.0, reduction="none", dim=(1, 2, 3))
    ssim = structural_similarity_index_measure(generated, real, data_range=1.0, reduction="none")
    return {"l1": l1.numpy(), "psnr": psnr.clamp(max=PSNR_CAP).numpy(), "ssim": ssim.numpy()}
