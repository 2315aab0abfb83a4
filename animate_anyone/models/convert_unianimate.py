"""The released UniAnimate checkpoint (``unianimate_16f_32f_non_ema_223000.pth``: one flat fp32
state dict, 1544 tensors) ↔ our modules (`animate_anyone.models.unianimate`).

The file's names follow the released UNet's module tree: ``input_blocks`` / ``middle_block`` /
``output_blocks`` lists whose entries are a ResBlock (its temporal convolutions inside it, as
``temopral_conv``, spelled so), a spatial transformer, a temporal transformer and a resampler;
``time_embed``, ``out``; the condition encoders ``dwpose_embedding``, ``local_image_embedding``,
``randomref_embedding2``, ``randomref_pose2_embedding`` with their ``*_after`` transformers; and
``pre_image_condition``. The map below is built from our trunk's config, so it covers any size.
One kind of tensor changes shape: the temporal transformers' Conv1d projections (out, in, 1)
become Linear (out, in) (and the spatial transformers' Linear projections a 1×1 Conv2d where a
diffusers version builds those). Everything else is renamed only.

The weights are released for research use only (ali-vilab/UniAnimate); say so to your users.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from animate_anyone.models.convert import CheckpointError, check_keys

RESNET = {"in_layers.0": "norm1", "in_layers.2": "conv1", "emb_layers.1": "time_emb_proj", "out_layers.0": "norm2",
          "out_layers.3": "conv2", "skip_connection": "conv_shortcut"}
TEMPORAL_CONV = {"conv1.0": "conv1.0", "conv1.2": "conv1.2", **{f"conv{i}.{j}": f"conv{i}.{j}" for i in (2, 3, 4)
                                                                 for j in (0, 3)}}
BLOCK = ["attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0", "attn2.to_q", "attn2.to_k", "attn2.to_v",
         "attn2.to_out.0", "ff.net.0.proj", "ff.net.2", "norm1", "norm2", "norm3"]
ENCODERS = {  # released prefix → (our module, conv indices in its Sequential)
    "dwpose_embedding": ("pose_encoder", (0, 3, 5)),
    "local_image_embedding": ("local_image_encoder", (0, 3, 5)),
    "randomref_pose2_embedding": ("reference_pose_encoder", (0, 3, 5)),
    "randomref_embedding2": ("reference_encoder", (0, 2, 4)),
}
AFTER = {"dwpose_embedding": "dwpose_embedding_after", "local_image_embedding": "local_image_embedding_after",
         "randomref_pose2_embedding": "randomref_pose2_embedding_after", "randomref_embedding2": "randomref_embedding_after2"}

Shape = Callable[[torch.Tensor], torch.Tensor]


def _same(t: torch.Tensor) -> torch.Tensor:
    return t


def _conv1d_to_linear(t: torch.Tensor) -> torch.Tensor:
    return t[..., 0] if t.ndim == 3 else t


def _linear_to_conv1d(t: torch.Tensor) -> torch.Tensor:
    return t[..., None] if t.ndim == 2 else t


def _linear_to_conv2d(t: torch.Tensor) -> torch.Tensor:
    return t[..., None, None] if t.ndim == 2 else t


def _conv2d_to_linear(t: torch.Tensor) -> torch.Tensor:
    return t[..., 0, 0] if t.ndim == 4 else t


class _Map:
    """released key → (our key, released→ours, ours→released)."""

    def __init__(self, ours: dict[str, torch.Tensor]):
        self.ours = ours
        self.items: dict[str, tuple[str, Shape, Shape]] = {}

    def add(self, old: str, new: str, fwd: Shape = _same, back: Shape = _same) -> None:
        for suffix in ("weight", "bias"):
            if f"{new}.{suffix}" in self.ours:
                self.items[f"{old}.{suffix}"] = (f"{new}.{suffix}", fwd, back)

    def resnet(self, old: str, new: str, temporal: str) -> None:
        for a, b in RESNET.items():
            self.add(f"{old}.{a}", f"{new}.{b}")
        for a, b in TEMPORAL_CONV.items():
            self.add(f"{old}.temopral_conv.{a}", f"{temporal}.{b}")

    def spatial(self, old: str, new: str) -> None:
        self.add(f"{old}.norm", f"{new}.norm")
        for p in ("proj_in", "proj_out"):  # Linear in the file; Linear or a 1x1 Conv2d here, by diffusers version
            conv = self.ours[f"{new}.{p}.weight"].ndim == 4
            self.add(f"{old}.{p}", f"{new}.{p}", *((_linear_to_conv2d, _conv2d_to_linear) if conv else (_same, _same)))
        for name in BLOCK:
            self.add(f"{old}.transformer_blocks.0.{name}", f"{new}.transformer_blocks.0.{name}")

    def temporal(self, old: str, new: str) -> None:
        self.add(f"{old}.norm", f"{new}.norm")
        for p in ("proj_in", "proj_out"):
            self.add(f"{old}.{p}", f"{new}.{p}", _conv1d_to_linear, _linear_to_conv1d)
        for name in BLOCK:
            self.add(f"{old}.transformer_blocks.0.{name}", f"{new}.transformer_blocks.0.{name}")


TEXT = "conditioner.text_context"  # not in the file: the empty prompt's tokens, computed on import


def _ours(unet, conditioner) -> dict[str, torch.Tensor]:
    ours = {f"unet.{k}": v for k, v in unet.state_dict().items()}
    ours.update({f"conditioner.{k}": v for k, v in conditioner.state_dict().items()})
    ours.pop(TEXT, None)
    return ours


def key_map(unet, conditioner) -> dict[str, tuple[str, Shape, Shape]]:
    """Every released key for our ``unet`` (a `UNet3DConditionModel`) and ``conditioner``, with
    its key here (``unet.…`` / ``conditioner.…``) and the shape changes both ways."""
    ours = _ours(unet, conditioner)
    m = _Map(ours)
    m.add("time_embed.0", "unet.time_embedding.linear_1")
    m.add("time_embed.2", "unet.time_embedding.linear_2")
    m.add("pre_image_condition.0", "conditioner.image_proj.0")
    m.add("pre_image_condition.2", "conditioner.image_proj.2")
    for old, (new, convs) in ENCODERS.items():
        for i, name in zip(convs, ("conv_in", "conv_mid", "conv_out")):
            m.add(f"{old}.{i}", f"conditioner.{new}.{name}")
        for layer in range(conditioner.config.mixer_layers):
            a, b = f"{AFTER[old]}.layers.{layer}", f"conditioner.{new}.mixer.{layer}"
            m.add(f"{a}.0.norm", f"{b}.norm")
            m.add(f"{a}.0.fn.to_qkv", f"{b}.to_qkv")
            m.add(f"{a}.0.fn.to_out.0", f"{b}.to_out")
            m.add(f"{a}.1.net.0.0", f"{b}.ff.0")
            m.add(f"{a}.1.net.2", f"{b}.ff.2")
    m.add("input_blocks.0.0", "unet.conv_in")
    m.temporal("input_blocks.0.1", "unet.transformer_in")
    k = 1
    for i, block in enumerate(unet.down_blocks):
        d = f"unet.down_blocks.{i}"
        for j in range(len(block.resnets)):
            m.resnet(f"input_blocks.{k}.0", f"{d}.resnets.{j}", f"{d}.temp_convs.{j}")
            if hasattr(block, "attentions"):
                m.spatial(f"input_blocks.{k}.1", f"{d}.attentions.{j}")
                m.temporal(f"input_blocks.{k}.2", f"{d}.temp_attentions.{j}")
            k += 1
        if block.downsamplers is not None:
            m.add(f"input_blocks.{k}.op", f"{d}.downsamplers.0.conv")
            k += 1
    mid = "unet.mid_block"
    m.resnet("middle_block.0", f"{mid}.resnets.0", f"{mid}.temp_convs.0")
    m.spatial("middle_block.1", f"{mid}.attentions.0")
    m.temporal("middle_block.2", f"{mid}.temp_attentions.0")
    m.resnet("middle_block.3", f"{mid}.resnets.1", f"{mid}.temp_convs.1")
    k = 0
    for i, block in enumerate(unet.up_blocks):
        u = f"unet.up_blocks.{i}"
        for j in range(len(block.resnets)):
            m.resnet(f"output_blocks.{k}.0", f"{u}.resnets.{j}", f"{u}.temp_convs.{j}")
            nxt = 1
            if hasattr(block, "attentions"):
                m.spatial(f"output_blocks.{k}.1", f"{u}.attentions.{j}")
                m.temporal(f"output_blocks.{k}.2", f"{u}.temp_attentions.{j}")
                nxt = 3
            if block.upsamplers is not None and j == len(block.resnets) - 1:
                m.add(f"output_blocks.{k}.{nxt}.conv", f"{u}.upsamplers.0.conv")
            k += 1
    m.add("out.0", "unet.conv_norm_out")
    m.add("out.2", "unet.conv_out")
    covered = {new for new, _, _ in m.items.values()}
    left = set(ours) - covered
    if left:  # a module this map does not know: a bug here, not in the file
        raise RuntimeError(f"the UniAnimate key map leaves {len(left)} of our keys out: {sorted(left)[:5]}")
    return m.items


def released_shapes(unet, conditioner) -> dict[str, torch.Size]:
    """The released file's keys and shapes for our modules' config (the manifest)."""
    ours = _ours(unet, conditioner)
    return {old: back(ours[new]).shape for old, (new, _, back) in key_map(unet, conditioner).items()}


def import_unianimate(state: dict[str, torch.Tensor], unet, conditioner, source: str,
                      text_context: torch.Tensor | None = None) -> None:
    """Check the released ``state`` against our modules (unknown, missing, wrong shape: refused
    with the list) and assign its tensors into ``unet`` and ``conditioner`` (which may hold meta
    tensors); ``text_context`` (1, 77, d), the empty prompt's tokens, when given."""
    mapping = key_map(unet, conditioner)
    ours = _ours(unet, conditioner)
    expected = {old: back(torch.empty(ours[new].shape, device="meta")).shape for old, (new, _, back) in mapping.items()}
    check_keys(source, state, expected)
    parts: dict[str, dict[str, torch.Tensor]] = {"unet": {}, "conditioner": {}}
    for old, (new, fwd, _) in mapping.items():
        part, key = new.split(".", 1)
        target = ours[new]
        parts[part][key] = fwd(state[old]).to(target.dtype).contiguous()
    current = conditioner.text_context
    if text_context is not None:
        want = tuple(current.shape)
        if tuple(text_context.shape) != want:
            raise CheckpointError(f"text context: {tuple(text_context.shape)}, the model needs {want}", "checkpoint_keys")
        current = text_context
    parts["conditioner"]["text_context"] = current.to(ours["conditioner.image_proj.0.weight"].dtype).contiguous()
    unet.load_state_dict(parts["unet"], strict=True, assign=True)
    conditioner.load_state_dict(parts["conditioner"], strict=True, assign=True)


def export_unianimate(unet, conditioner) -> dict[str, torch.Tensor]:
    """Our modules as the released file's state dict (fp32 where ours are; the text context is
    not part of it)."""
    ours = _ours(unet, conditioner)
    return {old: back(ours[new]).contiguous().clone() for old, (new, _, back) in key_map(unet, conditioner).items()}
