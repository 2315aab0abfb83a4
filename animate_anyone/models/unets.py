"""The two UNets: the ReferenceNet (a 2D SD UNet) and the denoising video UNet (SD + AnimateDiff).

Both are diffusers models with two changes each, made in their constructors so that
`from_pretrained` rebuilds the same function:

- `ReferenceNet` has no `conv_norm_out` / `conv_out`: only its transformer blocks' self-attention
  inputs are used, and the released `reference_unet.pth` has no such weights (MODEL_KEYS.md).
- `VideoUNet` (diffusers' `UNetMotionModel`) normalises each frame separately in its motion
  modules' GroupNorm, with 32 groups, as AnimateDiff and Moore-AnimateAnyone do; diffusers'
  `AnimateDiffTransformer3D` pools the statistics over all frames, which is another function for
  the same weights. It also takes `pose_features`, added to the output of `conv_in`.
"""

from __future__ import annotations

import functools

import torch
from diffusers import ModelMixin, UNet2DConditionModel, UNetMotionModel  # noqa: F401  (ModelMixin: diffusers' loader looks it up here)
from torch import nn
from torch.nn import functional as F

MOTION_NORM_GROUPS = 32


class ReferenceNet(UNet2DConditionModel):
    """SD-1.5 UNet2DConditionModel without its output head."""

    @functools.wraps(UNet2DConditionModel.__init__)
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.conv_norm_out = None
        self.conv_act = None
        self.conv_out = nn.Identity()


class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm over (C, H, W) of each frame of a (B, C, F, H, W) tensor (AnimateDiff's choice)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5:
            return super().forward(x)
        b, c, f, h, w = x.shape
        # (B, C, F, H, W) → (B·F, C, H, W) → norm → back
        y = x.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)
        y = F.group_norm(y, self.num_groups, self.weight, self.bias, self.eps)
        return y.reshape(b, f, c, h, w).permute(0, 2, 1, 3, 4)


class VideoUNet(UNetMotionModel):
    """SD-1.5 UNet with AnimateDiff motion modules, per-frame motion norms and pose features."""

    @functools.wraps(UNetMotionModel.__init__)
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name, module in list(self.named_modules()):
            if "motion_modules" in name and name.endswith(".norm") and isinstance(module, nn.GroupNorm):
                parent = self.get_submodule(name.rsplit(".", 1)[0])
                parent.norm = FrameGroupNorm(
                    MOTION_NORM_GROUPS, module.num_channels, eps=module.eps, affine=True
                )

    def motion_parameters(self):
        """The temporal layers: what stage 2 trains and what a motion checkpoint holds."""
        return [p for n, p in self.named_parameters() if "motion_modules" in n]

    def forward(self, sample, timestep, encoder_hidden_states, pose_features=None, **kwargs):
        """sample: (B, C, F, h, w). pose_features: (B, C0, F, h, w) or (B·F, C0, h, w), added after
        `conv_in` (C0 = block_out_channels[0]). encoder_hidden_states: (B, L, D) per video or
        (B·F, L, D) per frame."""
        batch, frames = sample.shape[0], sample.shape[2]
        if encoder_hidden_states.shape[0] == batch and frames > 1:
            encoder_hidden_states = encoder_hidden_states.repeat_interleave(frames, dim=0)
        if pose_features is None:
            return super().forward(sample, timestep, encoder_hidden_states, **kwargs)
        if pose_features.dim() == 5:
            b, c, f, h, w = pose_features.shape
            pose_features = pose_features.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)

        def add_pose(_module, _inputs, output):
            return output + pose_features.to(output.dtype)

        handle = self.conv_in.register_forward_hook(add_pose)
        try:
            return super().forward(sample, timestep, encoder_hidden_states, **kwargs)
        finally:
            handle.remove()
