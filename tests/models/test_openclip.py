"""OpenCLIP's layout → transformers' CLIP: a tiny random OpenCLIP state dict, converted, gives the
image embedding and the empty prompt's penultimate-layer tokens that OpenCLIP's own computation
(written out below from its published structure) gives."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from animate_anyone.models.convert import CheckpointError
from animate_anyone.models.openclip import (
    EOT,
    SOT,
    empty_prompt_context,
    empty_prompt_ids,
    expected_keys,
    load_openclip,
)

HEADS = {"vision": 8, "text": 8}  # head widths of the tiny towers below: 4 heads each


def tiny_openclip(seed: int = 0, vision_layers: int = 2, text_layers: int = 3) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shapes = {"visual.conv1.weight": (32, 3, 4, 4), "visual.class_embedding": (32,),
              "visual.positional_embedding": (17, 32), "visual.proj": (32, 24), "token_embedding.weight": (49408, 32),
              "positional_embedding": (77, 32), "text_projection": (32, 24)}
    state = {}
    for key in sorted(expected_keys(vision_layers, text_layers)):
        if key in shapes:
            shape = shapes[key]
        elif "in_proj_weight" in key:
            shape = (96, 32)
        elif "in_proj_bias" in key:
            shape = (96,)
        elif "c_fc.weight" in key:
            shape = (64, 32)
        elif "c_fc.bias" in key:
            shape = (64,)
        elif "c_proj.weight" in key:
            shape = (32, 64)
        elif key.endswith("out_proj.weight"):
            shape = (32, 32)
        else:  # norms and biases of width 32
            shape = (32,)
        scale = 1.0 if key.endswith(("ln_1.weight", "ln_2.weight", "ln_pre.weight", "ln_post.weight", "ln_final.weight")) else 0.0
        state[key] = scale + 0.2 * torch.randn(shape, generator=g)
    state["logit_scale"] = torch.tensor(4.6)
    return state


def _block(state, p, x, heads, causal):
    def ln(h, name):
        return F.layer_norm(h, h.shape[-1:], state[f"{p}{name}.weight"], state[f"{p}{name}.bias"], eps=1e-5)

    h = ln(x, "ln_1")
    qkv = h @ state[f"{p}attn.in_proj_weight"].t() + state[f"{p}attn.in_proj_bias"]
    b, n, w = h.shape
    q, k, v = (t.reshape(b, n, heads, w // heads).transpose(1, 2) for t in qkv.chunk(3, dim=-1))
    scores = q @ k.transpose(-1, -2) / math.sqrt(w // heads)
    if causal:
        scores = scores.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
    a = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, n, w)
    x = x + a @ state[f"{p}attn.out_proj.weight"].t() + state[f"{p}attn.out_proj.bias"]
    m = F.gelu(ln(x, "ln_2") @ state[f"{p}mlp.c_fc.weight"].t() + state[f"{p}mlp.c_fc.bias"])
    return x + m @ state[f"{p}mlp.c_proj.weight"].t() + state[f"{p}mlp.c_proj.bias"]


def openclip_image(state, pixels, layers=2, heads=4):
    x = F.conv2d(pixels, state["visual.conv1.weight"], stride=4).flatten(2).transpose(1, 2)
    x = torch.cat([state["visual.class_embedding"].expand(x.shape[0], 1, -1), x], dim=1) + state["visual.positional_embedding"]
    x = F.layer_norm(x, x.shape[-1:], state["visual.ln_pre.weight"], state["visual.ln_pre.bias"])
    for i in range(layers):
        x = _block(state, f"visual.transformer.resblocks.{i}.", x, heads, causal=False)
    pooled = F.layer_norm(x[:, 0], x.shape[-1:], state["visual.ln_post.weight"], state["visual.ln_post.bias"])
    return pooled @ state["visual.proj"]


def openclip_penultimate(state, ids, layers=3, heads=4):
    x = state["token_embedding.weight"][ids] + state["positional_embedding"]
    for i in range(layers - 1):  # every block but the last
        x = _block(state, f"transformer.resblocks.{i}.", x, heads, causal=True)
    return F.layer_norm(x, x.shape[-1:], state["ln_final.weight"], state["ln_final.bias"])


def test_the_image_embedding_and_the_empty_prompt_tokens_are_openclips():
    state = tiny_openclip()
    vision, text = load_openclip(state, "open_clip_tiny.bin", head_width=HEADS)
    assert vision.config.image_size == 16 and vision.config.num_attention_heads == 4 and text.config.num_hidden_layers == 3
    pixels = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(vision(pixel_values=pixels).image_embeds, openclip_image(state, pixels),
                                   rtol=1e-4, atol=1e-5)
    ids = empty_prompt_ids()
    assert ids[0, :3].tolist() == [SOT, EOT, 0] and ids.shape == (1, 77)
    context = empty_prompt_context(text)
    assert context.shape == (1, 77, 32)
    torch.testing.assert_close(context, openclip_penultimate(state, ids), rtol=1e-4, atol=1e-5)


def test_a_file_that_is_not_openclip_is_refused_with_its_keys():
    state = tiny_openclip()
    del state["visual.proj"]
    state["visual.head.weight"] = torch.zeros(3)
    with pytest.raises(CheckpointError) as err:
        load_openclip(state, "wrong.bin", head_width=HEADS)
    assert "wrong.bin" in err.value.message and "visual.head.weight" in err.value.message
    assert "missing key(s): visual.proj" in err.value.message
