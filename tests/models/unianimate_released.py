"""The released UniAnimate UNet's computation, written out for the import tests: its module tree
(so its state dict has the released file's key names) and its forward pass, from the published
description and configs of ali-vilab/UniAnimate (`UNetSD_UniAnimate`, inference config): frame 0
from the reference latent and pose, pose and first-frame conditions in 8 channels, ResBlocks with
4 temporal convolutions inside, spatial transformers with Linear projections, temporal
transformers with Conv1d projections whose two attentions are both over time. Plain einsum
attention and no library blocks, so that it shares nothing with the diffusers trunk it checks.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.pow(10000, -torch.arange(half, dtype=torch.float64) / half)
    angles = torch.outer(t.double(), freqs)
    return torch.cat([angles.cos(), angles.sin()], dim=1).float()


def attend(q, k, v, heads):
    b, n, inner = q.shape
    d = inner // heads
    q, k, v = (t.reshape(t.shape[0], t.shape[1], heads, d).permute(0, 2, 1, 3) for t in (q, k, v))
    w = torch.einsum("bhid,bhjd->bhij", q, k) / math.sqrt(d)
    out = torch.einsum("bhij,bhjd->bhid", w.softmax(-1), v)
    return out.permute(0, 2, 1, 3).reshape(b, n, inner)


class CrossAttention(nn.Module):
    def __init__(self, dim, context_dim, heads, head_dim):
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim or dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim or dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(0.0))

    def forward(self, x, context=None):
        c = x if context is None else context
        return self.to_out(attend(self.to_q(x), self.to_k(c), self.to_v(c), self.heads))


class GEGLU(nn.Module):
    def __init__(self, dim, inner):
        super().__init__()
        self.proj = nn.Linear(dim, 2 * inner)

    def forward(self, x):
        a, gate = self.proj(x).chunk(2, dim=-1)
        return a * F.gelu(gate)


class GatedFeedForward(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.net = nn.Sequential(GEGLU(dim, 4 * dim), nn.Dropout(0.0), nn.Linear(4 * dim, dim))

    def forward(self, x):
        return self.net(x)


class TransformerBlock(nn.Module):
    def __init__(self, dim, heads, head_dim, context_dim):
        super().__init__()
        self.attn1 = CrossAttention(dim, None, heads, head_dim)
        self.ff = GatedFeedForward(dim)
        self.attn2 = CrossAttention(dim, context_dim, heads, head_dim)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)

    def forward(self, x, context=None):
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context) + x
        return self.ff(self.norm3(x)) + x


class SpatialTransformer(nn.Module):
    def __init__(self, channels, heads, head_dim, context_dim, groups):
        super().__init__()
        inner = heads * head_dim
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, inner)
        self.transformer_blocks = nn.ModuleList([TransformerBlock(inner, heads, head_dim, context_dim)])
        self.proj_out = nn.Linear(inner, channels)

    def forward(self, x, context):  # (B*F, C, H, W)
        b, c, h, w = x.shape
        y = self.proj_in(self.norm(x).flatten(2).transpose(1, 2))
        y = self.transformer_blocks[0](y, context)
        return self.proj_out(y).transpose(1, 2).reshape(b, c, h, w) + x


class TemporalTransformer(nn.Module):
    """Both attentions over time (no context), Conv1d projections, no positional encoding."""

    def __init__(self, channels, heads, head_dim, groups):
        super().__init__()
        inner = heads * head_dim
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.proj_in = nn.Conv1d(channels, inner, 1)
        self.transformer_blocks = nn.ModuleList([TransformerBlock(inner, heads, head_dim, None)])
        self.proj_out = nn.Conv1d(inner, channels, 1)

    def forward(self, x):  # (B, C, F, H, W)
        b, c, f, h, w = x.shape
        y = self.norm(x).permute(0, 3, 4, 1, 2).reshape(b * h * w, c, f)
        y = self.proj_in(y).transpose(1, 2)
        y = self.transformer_blocks[0](y).transpose(1, 2)
        y = self.proj_out(y).reshape(b, h, w, c, f).permute(0, 3, 4, 1, 2)
        return y + x


class TemporalConv(nn.Module):
    def __init__(self, channels, groups):
        super().__init__()
        self.conv1 = nn.Sequential(nn.GroupNorm(groups, channels), nn.SiLU(), nn.Conv3d(channels, channels, (3, 1, 1), padding=(1, 0, 0)))
        for i in (2, 3, 4):
            setattr(self, f"conv{i}", nn.Sequential(nn.GroupNorm(groups, channels), nn.SiLU(), nn.Dropout(0.0),
                                                    nn.Conv3d(channels, channels, (3, 1, 1), padding=(1, 0, 0))))

    def forward(self, x):
        return x + self.conv4(self.conv3(self.conv2(self.conv1(x))))


class ResBlock(nn.Module):
    def __init__(self, channels, emb, out, groups):
        super().__init__()
        self.in_layers = nn.Sequential(nn.GroupNorm(groups, channels), nn.SiLU(), nn.Conv2d(channels, out, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb, out))
        self.out_layers = nn.Sequential(nn.GroupNorm(groups, out), nn.SiLU(), nn.Dropout(0.0), nn.Conv2d(out, out, 3, padding=1))
        self.skip_connection = nn.Identity() if out == channels else nn.Conv2d(channels, out, 1)
        self.temopral_conv = TemporalConv(out, groups)

    def forward(self, x, e, b):
        h = self.in_layers(x) + self.emb_layers(e)[..., None, None]
        h = self.skip_connection(x) + self.out_layers(h)
        bf, c, hh, ww = h.shape
        h = self.temopral_conv(h.reshape(b, bf // b, c, hh, ww).transpose(1, 2))
        return h.transpose(1, 2).reshape(bf, c, hh, ww)


class Downsample(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x):
        return self.op(x)


class Upsample(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class PreNorm(nn.Module):
    def __init__(self, dim, fn):
        super().__init__()
        self.norm, self.fn = nn.LayerNorm(dim), fn

    def forward(self, x):
        return self.fn(self.norm(x)) + x


class FrameAttention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.to_qkv = nn.Linear(dim, 3 * heads * dim, bias=False)
        self.to_out = nn.Sequential(nn.Linear(heads * dim, dim), nn.Dropout(0.0))

    def forward(self, x):
        q, k, v = self.to_qkv(x).chunk(3, dim=-1)
        return self.to_out(attend(q, k, v, self.heads))


class PlainFeedForward(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.net = nn.Sequential(nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU()), nn.Dropout(0.0), nn.Linear(4 * dim, dim))

    def forward(self, x):
        return self.net(x)


class FrameTransformer(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.layers = nn.ModuleList([nn.ModuleList([PreNorm(dim, FrameAttention(dim, 2)), PlainFeedForward(dim)])])

    def forward(self, x):
        for attn, ff in self.layers:
            x = attn(x)
            x = ff(x) + x
        return x


def pose_embedding(cin, hidden, out, pool_to):
    return nn.Sequential(nn.Conv2d(cin, hidden, 3, padding=1), nn.SiLU(), nn.AdaptiveAvgPool2d(pool_to),
                         nn.Conv2d(hidden, hidden, 3, stride=2, padding=1), nn.SiLU(),
                         nn.Conv2d(hidden, out, 3, stride=2, padding=1))


class ReleasedUniAnimate(nn.Module):
    """``resolution`` (width, height) fixes the pose encoders' pooling, as in the released model."""

    def __init__(self, dim=320, dim_mult=(1, 2, 4, 4), res_blocks=2, attn_levels=3, head_dim=64, num_heads=8,
                 context_dim=1024, image_dim=1024, concat_dim=8, hidden=32, groups=32, resolution=(512, 768)):
        super().__init__()
        emb = 4 * dim
        pool_to = (resolution[1] // 2, resolution[0] // 2)
        self.time_embed = nn.Sequential(nn.Linear(dim, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.pre_image_condition = nn.Sequential(nn.Linear(image_dim, context_dim), nn.SiLU(), nn.Linear(context_dim, 4 * context_dim))
        self.local_image_embedding = pose_embedding(3, hidden, concat_dim, pool_to)
        self.local_image_embedding_after = FrameTransformer(concat_dim)
        self.dwpose_embedding = pose_embedding(3, hidden, concat_dim, pool_to)
        self.dwpose_embedding_after = FrameTransformer(concat_dim)
        self.randomref_pose2_embedding = pose_embedding(3, hidden, concat_dim + 4, pool_to)
        self.randomref_pose2_embedding_after = FrameTransformer(concat_dim + 4)
        self.randomref_embedding2 = nn.Sequential(nn.Conv2d(4, hidden, 3, padding=1), nn.SiLU(), nn.Conv2d(hidden, hidden, 3, padding=1),
                                                  nn.SiLU(), nn.Conv2d(hidden, concat_dim + 4, 3, padding=1))
        self.randomref_embedding_after2 = FrameTransformer(concat_dim + 4)
        self.dim, self.concat_dim = dim, concat_dim
        enc = [dim * m for m in (1, *dim_mult)]
        self.input_blocks = nn.ModuleList([nn.ModuleList([nn.Conv2d(4 + concat_dim, dim, 3, padding=1),
                                                          TemporalTransformer(dim, num_heads, head_dim, groups)])])
        skips = [dim]
        for level, (cin, cout) in enumerate(zip(enc[:-1], enc[1:])):
            for j in range(res_blocks):
                block = nn.ModuleList([ResBlock(cin, emb, cout, groups)])
                if level < attn_levels:
                    block.append(SpatialTransformer(cout, cout // head_dim, head_dim, context_dim, groups))
                    block.append(TemporalTransformer(cout, cout // head_dim, head_dim, groups))
                cin = cout
                self.input_blocks.append(block)
                skips.append(cout)
                if level != len(dim_mult) - 1 and j == res_blocks - 1:
                    self.input_blocks.append(Downsample(cout))
                    skips.append(cout)
        c = enc[-1]
        self.middle_block = nn.ModuleList([ResBlock(c, emb, c, groups), SpatialTransformer(c, c // head_dim, head_dim, context_dim, groups),
                                           TemporalTransformer(c, c // head_dim, head_dim, groups), ResBlock(c, emb, c, groups)])
        dec = [dim * m for m in (dim_mult[-1], *dim_mult[::-1])]
        self.output_blocks = nn.ModuleList()
        for i, (cin, cout) in enumerate(zip(dec[:-1], dec[1:])):
            level = len(dim_mult) - 1 - i
            for j in range(res_blocks + 1):
                block = nn.ModuleList([ResBlock(cin + skips.pop(), emb, cout, groups)])
                if level < attn_levels:
                    block.append(SpatialTransformer(cout, cout // head_dim, head_dim, context_dim, groups))
                    block.append(TemporalTransformer(cout, cout // head_dim, head_dim, groups))
                cin = cout
                if i != len(dim_mult) - 1 and j == res_blocks:
                    block.append(Upsample(cout))
                self.output_blocks.append(block)
        self.out = nn.Sequential(nn.GroupNorm(groups, dim), nn.SiLU(), nn.Conv2d(dim, 4, 3, padding=1))

    @staticmethod
    def _encode(seq, after, x):  # (B, C, F, H, W) → (B, C', F, h, w)
        b, c, f, h, w = x.shape
        y = seq(x.transpose(1, 2).reshape(b * f, c, h, w))
        _, co, ho, wo = y.shape
        y = after(y.reshape(b, f, co, ho, wo).permute(0, 3, 4, 1, 2).reshape(b * ho * wo, f, co))
        return y.reshape(b, ho, wo, f, co).permute(0, 4, 3, 1, 2)

    def _run(self, module, x, e, context, b):
        if isinstance(module, ResBlock):
            return module(x, e, b)
        if isinstance(module, SpatialTransformer):
            return module(x, context)
        if isinstance(module, TemporalTransformer):
            bf, c, h, w = x.shape
            return module(x.reshape(b, bf // b, c, h, w).transpose(1, 2)).transpose(1, 2).reshape(bf, c, h, w)
        if isinstance(module, nn.ModuleList):
            for m in module:
                x = self._run(m, x, e, context, b)
            return x
        return module(x)

    def forward(self, x, t, zero_y, image=None, local_image=None, dwpose=None, randomref=None):
        """``dwpose`` holds F+1 frames, the reference's pose first (the released convention)."""
        b, _, f, h, w = x.shape
        concat = x.new_zeros(b, self.concat_dim, f, h, w)
        if local_image is not None:
            concat = concat + self._encode(self.local_image_embedding, self.local_image_embedding_after, local_image)
        ref_pose = None
        if dwpose is not None:
            ref_pose, dwpose = dwpose[:, :, :1], dwpose[:, :, 1:]
            concat = concat + self._encode(self.dwpose_embedding, self.dwpose_embedding_after, dwpose)
        frame0 = x.new_zeros(b, self.concat_dim + 4, 1, h, w)
        if randomref is not None:
            r = self._encode(self.randomref_embedding2, self.randomref_embedding_after2, randomref[:, :, :1])
            if ref_pose is not None:
                r = r + self._encode(self.randomref_pose2_embedding, self.randomref_pose2_embedding_after, ref_pose)
            frame0 = frame0 + r
        x = torch.cat([frame0, torch.cat([x, concat], dim=1)], dim=2)
        e = self.time_embed(timestep_embedding(t, self.dim))
        y = zero_y.repeat(b, 1, 1)
        tokens = self.pre_image_condition(image).view(b, 4, -1) if image is not None else torch.zeros_like(y)[:, :4]
        context = torch.cat([y, tokens], dim=1)
        e = e.repeat_interleave(f + 1, dim=0)
        context = context.repeat_interleave(f + 1, dim=0)
        x = x.transpose(1, 2).reshape(b * (f + 1), -1, h, w)
        skips = []
        for block in self.input_blocks:
            x = self._run(block, x, e, context, b)
            skips.append(x)
        x = self._run(self.middle_block, x, e, context, b)
        for block in self.output_blocks:
            x = self._run(block, torch.cat([x, skips.pop()], dim=1), e, context, b)
        x = self.out(x)
        return x.reshape(b, f + 1, -1, h, w).transpose(1, 2)[:, :, 1:]
