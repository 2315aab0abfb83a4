"""The pose guider: a small conv net from rendered pose images to the denoiser's first feature map.

Layout (Animate Anyone §3.2; Moore-AnimateAnyone's `pose_guider.pth`, MODEL_KEYS.md): a 3×3 conv
3→c0, then for each channel step a pair of 3×3 convs, the second with stride 2 (×8 down for four
widths), SiLU after every conv, and a zero-initialised 3×3 conv to the denoiser's `conv_in` width.
Its output is added to the output of the denoiser's `conv_in`, so at initialisation it adds
exactly nothing and the pretrained UNet is untouched.
"""

from __future__ import annotations

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn
from torch.nn import functional as F


class PoseGuider(ModelMixin, ConfigMixin):
    @register_to_config
    def __init__(
        self,
        conditioning_channels: int = 3,
        block_out_channels: tuple[int, ...] = (16, 32, 96, 256),
        out_channels: int = 320,
    ):
        super().__init__()
        self.conv_in = nn.Conv2d(conditioning_channels, block_out_channels[0], 3, padding=1)
        blocks = []
        for c_in, c_out in zip(block_out_channels[:-1], block_out_channels[1:]):
            blocks.append(nn.Conv2d(c_in, c_in, 3, padding=1))
            blocks.append(nn.Conv2d(c_in, c_out, 3, padding=1, stride=2))
        self.blocks = nn.ModuleList(blocks)
        self.conv_out = nn.Conv2d(block_out_channels[-1], out_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    @property
    def downscale(self) -> int:
        return 2 ** (len(self.config.block_out_channels) - 1)

    def forward(self, pose: torch.Tensor) -> torch.Tensor:
        """pose: (N, 3, H, W) in [0, 1] → features (N, out_channels, H/8, W/8)."""
        x = F.silu(self.conv_in(pose))
        for block in self.blocks:
            x = F.silu(block(x))
        return self.conv_out(x)
