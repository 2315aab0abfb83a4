"""Reference attention (Animate Anyone §3.2) as diffusers attention processors.

The ReferenceNet runs once per video on the reference latent. In every spatial transformer block
its self-attention processor records its input (the output of `norm1`) in a shared
`ReferenceBank`, under the block's module name. The denoising UNet's processor for the block of
the same name attends from its own tokens to its own tokens followed by the recorded reference
tokens. Which denoiser videos see which reference (or none, for the unconditional branch of
classifier-free guidance and for dropped references in training) is the bank's `rows`.

Processors are installed with `set_attn_processor`; no module's `forward` is replaced.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def attend(attn, query_states: torch.Tensor, kv_states: torch.Tensor) -> torch.Tensor:
    """Multi-head attention of `attn` (a diffusers `Attention`) with PyTorch SDPA.

    query_states: (N, Lq, C); kv_states: (N, Lk, C) → (N, Lq, C).
    """
    n, lq, _ = query_states.shape
    q = attn.to_q(query_states)
    k = attn.to_k(kv_states)
    v = attn.to_v(kv_states)
    head_dim = q.shape[-1] // attn.heads
    # (N, L, heads·d) → (N, heads, L, d)
    q, k, v = (t.view(n, -1, attn.heads, head_dim).transpose(1, 2) for t in (q, k, v))
    if attn.norm_q is not None:
        q, k = attn.norm_q(q), attn.norm_k(k)
    out = F.scaled_dot_product_attention(q, k, v, scale=attn.scale)
    out = out.transpose(1, 2).reshape(n, lq, -1).to(q.dtype)
    out = attn.to_out[1](attn.to_out[0](out))
    return out


class ReferenceBank:
    """Reference tokens by block name, and which denoiser videos read them.

    `features[name]`: (R, L, C), one row per reference image. `rows`: (B,) long, for each of the B
    videos in the denoiser's batch the reference row it reads, or -1 for none. `dtype`: the tokens
    are stored in this type; the reference implementation stores float16 even in float32 runs, so
    that is the default for numerical parity with its weights.
    """

    def __init__(self, dtype: torch.dtype | None = torch.float16):
        self.dtype = dtype
        self.features: dict[str, torch.Tensor] = {}
        self.rows: torch.Tensor | None = None

    def clear(self) -> None:
        self.features.clear()
        self.rows = None

    def store(self, name: str, tokens: torch.Tensor) -> None:
        self.features[name] = tokens if self.dtype is None else tokens.to(self.dtype)


class _Processor:
    def __init__(self, bank: ReferenceBank, name: str):
        self.bank = bank
        self.name = name

    def _plain(self, attn, hidden_states, encoder_hidden_states, attention_mask):
        if attention_mask is not None:
            raise ValueError(f"{self.name}: reference attention does not take an attention mask")
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        return attend(attn, hidden_states, context)


class ReferenceWriteProcessor(_Processor):
    """On the ReferenceNet: record the self-attention input, then attend as usual."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, **_):
        self.bank.store(self.name, hidden_states)
        return self._plain(attn, hidden_states, encoder_hidden_states, attention_mask)


class ReferenceReadProcessor(_Processor):
    """On the denoiser: keys and values are the block's own tokens followed by the reference's."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, **_):
        if encoder_hidden_states is not None:
            return self._plain(attn, hidden_states, encoder_hidden_states, attention_mask)
        rows = self.bank.rows
        if rows is None:  # silently attending without the reference would train a model that ignores it
            raise RuntimeError(f"{self.name}: the reference bank's rows are not set; call the denoiser through "
                               "AnimateModel (rows -1 = no reference)")
        reference = self.bank.features.get(self.name)
        if reference is None:
            if bool((rows >= 0).any()):
                raise RuntimeError(f"{self.name}: rows {rows.tolist()} ask for reference tokens, but the "
                                   "ReferenceNet wrote none for this block (run write_reference first)")
            return self._plain(attn, hidden_states, encoder_hidden_states, attention_mask)
        # hidden_states: (B·F, L, C), videos in order, frames within a video consecutive
        frames = hidden_states.shape[0] // rows.shape[0]
        per_token_row = rows.to(hidden_states.device).repeat_interleave(frames)  # (B·F,)
        with_ref = per_token_row >= 0
        if bool(with_ref.all()):
            ref = reference[per_token_row].to(hidden_states.dtype)  # (B·F, L_ref, C)
            return attend(attn, hidden_states, torch.cat([hidden_states, ref], dim=1))
        out = torch.empty_like(hidden_states)
        plain = ~with_ref
        out[plain] = attend(attn, hidden_states[plain], hidden_states[plain])
        if bool(with_ref.any()):
            own = hidden_states[with_ref]
            ref = reference[per_token_row[with_ref]].to(hidden_states.dtype)
            out[with_ref] = attend(attn, own, torch.cat([own, ref], dim=1))
        return out


def self_attention_names(unet) -> list[str]:
    """Module names of the spatial self-attentions (`…transformer_blocks.N.attn1`), not temporal ones."""
    return sorted(
        name
        for name, module in unet.named_modules()
        if name.endswith(".attn1") and ".attentions." in name and "motion_modules" not in name
    )


def install_reference_attention(reference_unet, denoiser, bank: ReferenceBank) -> list[str]:
    """Write processors on the ReferenceNet, read processors on the denoiser, paired by name."""
    ref_names = self_attention_names(reference_unet)
    den_names = self_attention_names(denoiser)
    if ref_names != den_names:
        missing = sorted(set(den_names) ^ set(ref_names))
        raise ValueError(
            "ReferenceNet and denoising UNet must have the same spatial transformer blocks; "
            f"unpaired: {missing[:8]}{' …' if len(missing) > 8 else ''}"
        )
    for unet, cls in ((reference_unet, ReferenceWriteProcessor), (denoiser, ReferenceReadProcessor)):
        set_processors(unet, cls, bank, ref_names)
    return ref_names


def set_processors(unet, cls, bank: ReferenceBank, names: list[str]) -> None:
    """``cls(bank, name)`` as the processor of each self-attention in ``names``; others kept."""
    processors = dict(unet.attn_processors)
    for name in names:
        processors[f"{name}.processor"] = cls(bank, name)
    unet.set_attn_processor(processors)
