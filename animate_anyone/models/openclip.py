"""An OpenCLIP checkpoint (``open_clip_pytorch_model.bin``, e.g. ViT-H-14 laion2b_s32b_b79k, what
UniAnimate's released code loads) as transformers' CLIP: the image tower with its projection,
and the empty prompt's 77 text tokens the way the released model computes them (token ids
through every text block but the last, then the final layer norm: OpenCLIP's "penultimate").

OpenCLIP names: ``visual.conv1`` / ``class_embedding`` / ``positional_embedding`` / ``ln_pre`` /
``transformer.resblocks.N.{ln_1, attn.in_proj_*, attn.out_proj, ln_2, mlp.c_fc, mlp.c_proj}`` /
``ln_post`` / ``proj`` for the image; ``token_embedding``, ``positional_embedding``,
``transformer.resblocks.N…``, ``ln_final``, ``text_projection`` for the text. Projections are
stored (in, out) there and (out, in) here; the joint q/k/v projection splits in three. Every key
of the file is used or refused; nothing else is read (the weights alone, ``weights_only``).
"""
from __future__ import annotations

import torch

from animate_anyone.models.convert import CheckpointError, check_keys

SOT, EOT = 49406, 49407  # OpenCLIP's tokenizer: start and end of text; padding is 0
IGNORED = ("logit_scale", "attn_mask")  # the contrastive temperature and a buffer some versions save
# ViT-H-14's head widths (its config): 80 for the image tower, 64 for the text tower
HEAD_WIDTH = {"vision": 80, "text": 64}


def empty_prompt_ids(length: int = 77) -> torch.Tensor:
    """OpenCLIP's tokens for "": start, end, then padding (1, length)."""
    ids = torch.zeros(1, length, dtype=torch.long)
    ids[0, 0], ids[0, 1] = SOT, EOT
    return ids


def _blocks(state: dict[str, torch.Tensor], prefix: str) -> int:
    found = {int(k[len(prefix):].split(".")[0]) for k in state if k.startswith(prefix)}
    return max(found) + 1 if found else 0


def _tower(state, src: str, dst: str, layers: int, out: dict) -> None:
    for i in range(layers):
        a, b = f"{src}{i}.", f"{dst}{i}."
        q, k, v = state[a + "attn.in_proj_weight"].chunk(3)
        qb, kb, vb = state[a + "attn.in_proj_bias"].chunk(3)
        out.update({b + "self_attn.q_proj.weight": q, b + "self_attn.k_proj.weight": k, b + "self_attn.v_proj.weight": v,
                    b + "self_attn.q_proj.bias": qb, b + "self_attn.k_proj.bias": kb, b + "self_attn.v_proj.bias": vb})
        for old, new in (("attn.out_proj", "self_attn.out_proj"), ("ln_1", "layer_norm1"), ("ln_2", "layer_norm2"),
                         ("mlp.c_fc", "mlp.fc1"), ("mlp.c_proj", "mlp.fc2")):
            out[b + new + ".weight"] = state[a + old + ".weight"]
            out[b + new + ".bias"] = state[a + old + ".bias"]


def expected_keys(vision_layers: int, text_layers: int) -> set[str]:
    block = ["attn.in_proj_weight", "attn.in_proj_bias", "attn.out_proj.weight", "attn.out_proj.bias", "ln_1.weight",
             "ln_1.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight",
             "mlp.c_proj.bias"]
    keys = {"visual.conv1.weight", "visual.class_embedding", "visual.positional_embedding", "visual.ln_pre.weight",
            "visual.ln_pre.bias", "visual.ln_post.weight", "visual.ln_post.bias", "visual.proj", "token_embedding.weight",
            "positional_embedding", "ln_final.weight", "ln_final.bias", "text_projection"}
    keys |= {f"visual.transformer.resblocks.{i}.{b}" for i in range(vision_layers) for b in block}
    keys |= {f"transformer.resblocks.{i}.{b}" for i in range(text_layers) for b in block}
    return keys


def openclip_to_transformers(state: dict[str, torch.Tensor], source: str,
                             head_width: dict[str, int] = HEAD_WIDTH) -> tuple[dict, dict, dict, dict]:
    """(vision config, vision state, text config, text state) for transformers'
    ``CLIPVisionModelWithProjection`` and ``CLIPTextModel`` from an OpenCLIP state dict."""
    state = {k: v for k, v in state.items() if k not in IGNORED}
    vl = _blocks(state, "visual.transformer.resblocks.")
    tl = _blocks(state, "transformer.resblocks.")
    keys = expected_keys(vl, tl)
    unknown, missing = set(state) - keys, keys - set(state)
    if unknown or missing or not vl or not tl:
        check_keys(source, state, {k: state[k].shape if k in state else torch.Size([0]) for k in keys})
        raise CheckpointError(f"{source}: not an OpenCLIP checkpoint with an image and a text tower", "checkpoint_keys")
    width, _, patch, _ = state["visual.conv1.weight"].shape
    text_width = state["token_embedding.weight"].shape[1]
    vision_config = dict(hidden_size=width, intermediate_size=state["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
                         num_hidden_layers=vl, num_attention_heads=width // head_width["vision"], patch_size=patch,
                         image_size=patch * int(round((state["visual.positional_embedding"].shape[0] - 1) ** 0.5)),
                         projection_dim=state["visual.proj"].shape[1], hidden_act="gelu", layer_norm_eps=1e-5)
    text_config = dict(hidden_size=text_width, intermediate_size=state["transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
                       num_hidden_layers=tl, num_attention_heads=text_width // head_width["text"],
                       vocab_size=state["token_embedding.weight"].shape[0],
                       max_position_embeddings=state["positional_embedding"].shape[0],
                       projection_dim=state["text_projection"].shape[1], hidden_act="gelu", layer_norm_eps=1e-5,
                       bos_token_id=SOT, eos_token_id=EOT, pad_token_id=0)
    vision = {"vision_model.embeddings.patch_embedding.weight": state["visual.conv1.weight"],
              "vision_model.embeddings.class_embedding": state["visual.class_embedding"],
              "vision_model.embeddings.position_embedding.weight": state["visual.positional_embedding"],
              "vision_model.pre_layrnorm.weight": state["visual.ln_pre.weight"],
              "vision_model.pre_layrnorm.bias": state["visual.ln_pre.bias"],
              "vision_model.post_layernorm.weight": state["visual.ln_post.weight"],
              "vision_model.post_layernorm.bias": state["visual.ln_post.bias"],
              "visual_projection.weight": state["visual.proj"].t().contiguous()}
    _tower(state, "visual.transformer.resblocks.", "vision_model.encoder.layers.", vl, vision)
    text = {"embeddings.token_embedding.weight": state["token_embedding.weight"],  # CLIPTextModel's own names
            "embeddings.position_embedding.weight": state["positional_embedding"],
            "final_layer_norm.weight": state["ln_final.weight"], "final_layer_norm.bias": state["ln_final.bias"]}
    _tower(state, "transformer.resblocks.", "encoder.layers.", tl, text)
    return vision_config, vision, text_config, text


def load_openclip(state: dict[str, torch.Tensor], source: str, head_width: dict[str, int] = HEAD_WIDTH):
    """(``CLIPVisionModelWithProjection``, ``CLIPTextModel``) holding the file's weights."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPVisionConfig, CLIPVisionModelWithProjection

    vc, vs, tc, ts = openclip_to_transformers(state, source, head_width)
    vision = CLIPVisionModelWithProjection(CLIPVisionConfig(**vc))
    text = CLIPTextModel(CLIPTextConfig(**tc))
    for model, weights in ((vision, vs), (text, ts)):
        expected = {k: v.shape for k, v in model.state_dict().items() if not k.endswith("position_ids")}
        check_keys(source, weights, expected)
        model.load_state_dict(weights, strict=False)
    return vision.eval(), text.eval()


@torch.no_grad()
def empty_prompt_context(text_model) -> torch.Tensor:
    """The released model's text context: "" through all text blocks but the last, then the final
    layer norm (OpenCLIP's causal mask, no padding mask): (1, 77, width)."""
    ids = empty_prompt_ids(text_model.config.max_position_embeddings)
    hidden = text_model(input_ids=ids, output_hidden_states=True).hidden_states[-2]
    return getattr(text_model, "text_model", text_model).final_layer_norm(hidden)
