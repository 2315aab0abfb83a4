"""The conditioned denoiser: ReferenceNet + pose guider + video UNet as one module.

Inference (`AnimateAnyonePipeline`) and training (`training.objective`) both call this, so the
conditioning that the loss teaches is the one sampling uses (one copy, not two):

1. `write_reference` runs the ReferenceNet at timestep 0 on the reference latents with their CLIP
   embeddings; its self-attention inputs fill the bank (Animate Anyone §3.2).
2. `forward` draws the pose features (pose guider, added after `conv_in`), sets which reference
   each video reads (`rows`: its bank row, or -1 for none) and runs the video UNet.

The unconditional branch of classifier-free guidance is a zero CLIP context and row -1 with the
pose kept; training drops samples to exactly that.

With ``motion=False`` the motion modules are skipped, as if absent: stage 1 trains the image model
alone, as the reference training does with a 2D UNet (a fresh motion module is the identity
anyway, its output projection being zero; skipping it saves a fifth of a CPU step).
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from animate_anyone.models.reference_attention import ReferenceBank, install_reference_attention


class AnimateModel(nn.Module):
    """The trainable parts, wired; one `nn.Module` so that DDP/accelerate wraps one thing."""

    def __init__(self, reference_unet, unet, pose_guider, bank: ReferenceBank | None = None, motion: bool = True):
        super().__init__()
        self.reference_unet = reference_unet
        self.unet = unet
        self.pose_guider = pose_guider
        self.bank = bank if bank is not None else ReferenceBank(dtype=None)  # training keeps float32
        self.motion = motion
        self.install()

    def install(self) -> None:
        """(Re)install the reference processors on both UNets, reading and writing this bank."""
        install_reference_attention(self.reference_unet, self.unet, self.bank)

    def write_reference(self, ref_latents: torch.Tensor, context: torch.Tensor) -> None:
        """ref_latents: (R, 4, h, w) scaled VAE latents; context: (R, 1, D) CLIP embeddings."""
        self.bank.clear()
        t0 = torch.zeros(ref_latents.shape[0], device=ref_latents.device, dtype=torch.long)
        self.reference_unet(ref_latents, t0, encoder_hidden_states=context, return_dict=False)

    def forward(self, noisy: torch.Tensor, timestep: torch.Tensor, pose_pixels: torch.Tensor,
                context: torch.Tensor, rows: torch.Tensor, ref_latents: torch.Tensor | None = None,
                ref_context: torch.Tensor | None = None) -> torch.Tensor:
        """The UNet's prediction (B, 4, F, h, w) for `noisy` (B, 4, F, h, w) at `timestep` (scalar
        or (B,)), poses `pose_pixels` (B·F, 3, H, W) in [0, 1] (videos in order, frames
        consecutive), CLIP `context` (B, 1, D) and reference `rows` (B,). With `ref_latents` /
        `ref_context` the ReferenceNet runs first (training); without, the bank holds what an
        earlier `write_reference` wrote (sampling)."""
        if ref_latents is not None:
            self.write_reference(ref_latents, ref_context)
        b, _, f, h, w = noisy.shape
        pose = self.pose_guider(pose_pixels.to(noisy.dtype))  # (B·F, C0, h, w)
        pose = pose.reshape(b, f, *pose.shape[1:]).permute(0, 2, 1, 3, 4)  # (B, C0, F, h, w)
        self.bank.rows = rows
        try:
            with contextlib.nullcontext() if self.motion else motion_skipped(self.unet):
                return self.unet(noisy, timestep, context, pose_features=pose, return_dict=False)[0]
        finally:
            self.bank.rows = None


def _identity(hidden_states, *args, **kwargs):
    return hidden_states


@contextlib.contextmanager
def motion_skipped(unet):
    """Within, ``unet``'s motion modules pass their input through unchanged."""
    from diffusers.models.unets.unet_motion_model import AnimateDiffTransformer3D

    modules = [m for m in unet.modules() if isinstance(m, AnimateDiffTransformer3D)]
    for m in modules:
        m.forward = _identity
    try:
        yield
    finally:
        for m in modules:
            del m.forward
