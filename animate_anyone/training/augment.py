"""Sample augmentation: one draw per sample, applied alike to its target frames, reference and pose.

A mirror image swaps the pose's left and right (the store draws the mirrored pose images, so a
left arm keeps the left arm's colour); zoom and shift move the frames and the pose images by
the same affine map; the colour change (brightness, contrast, saturation, hue) touches the
target frames and the reference together and never the pose. The draw comes from the sample's
seed, so a resumed or re-split run sees the same samples (``training.data``).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from animate_anyone.config import Augment

# RGB ↔ YIQ: hue is a rotation of the (I, Q) plane
_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_RGB = torch.linalg.inv(_YIQ)


def draw(aug: Augment, seed: int) -> dict:
    """The sample's augmentation parameters."""
    rng = np.random.default_rng([seed, 17])
    c = aug.colour
    return {"flip": bool(rng.random() < aug.flip),
            "zoom": float(rng.uniform(1 - aug.scale, 1 + aug.scale)),
            "shift": (float(rng.uniform(-aug.shift, aug.shift)), float(rng.uniform(-aug.shift, aug.shift))),
            "brightness": float(rng.uniform(1 - c, 1 + c)), "contrast": float(rng.uniform(1 - c, 1 + c)),
            "saturation": float(rng.uniform(1 - c, 1 + c)), "hue": float(rng.uniform(-c / 2, c / 2))}


def move(images: torch.Tensor, zoom: float, shift: tuple[float, float], fill: str) -> torch.Tensor:
    """(N, 3, H, W) zoomed about the centre by ``zoom`` and moved by ``shift`` (fractions of the
    width and height); ``fill``: ``border`` repeats the edge (frames), ``zeros`` is black (poses)."""
    if zoom == 1.0 and shift == (0.0, 0.0):
        return images
    theta = torch.tensor([[1 / zoom, 0.0, -2 * shift[0] / zoom], [0.0, 1 / zoom, -2 * shift[1] / zoom]],
                         dtype=images.dtype).expand(len(images), 2, 3)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode=fill, align_corners=False)


def recolour(images: torch.Tensor, p: dict) -> torch.Tensor:
    """(N, 3, H, W) in [-1, 1]: brightness, contrast, saturation and hue changed by ``p``."""
    x = (images + 1) / 2
    x = x * p["brightness"]
    grey = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    x = (x - grey.mean(dim=(2, 3), keepdim=True)) * p["contrast"] + grey.mean(dim=(2, 3), keepdim=True)
    grey = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    x = grey + (x - grey) * p["saturation"]
    if p["hue"]:
        a = 2 * math.pi * p["hue"]
        rot = torch.tensor([[1.0, 0.0, 0.0], [0.0, math.cos(a), -math.sin(a)], [0.0, math.sin(a), math.cos(a)]])
        x = torch.einsum("ij,njhw->nihw", _RGB @ rot @ _YIQ, x)
    return x.clamp(0, 1) * 2 - 1


def apply(aug: Augment, p: dict, pixels: torch.Tensor, reference: torch.Tensor, poses: torch.Tensor,
          mirrored_poses: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``pixels`` (F, 3, H, W) and ``reference`` (3, H, W) in [-1, 1], ``poses`` (F, 3, H, W) in
    [0, 1]; ``mirrored_poses``: the same frames' mirrored pose images (used when ``p`` flips)."""
    images = torch.cat([pixels, reference[None]])
    if p["flip"] and mirrored_poses is not None:
        images, poses = images.flip(-1), mirrored_poses
    if aug.geometric:
        images = move(images, p["zoom"], p["shift"], "border")
        poses = move(poses, p["zoom"], p["shift"], "zeros")
    if aug.colour:
        images = recolour(images, p)
    return images[:-1], images[-1], poses
