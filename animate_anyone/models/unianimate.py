"""UniAnimate (arXiv 2406.01188), the second model family: a video UNet with no ReferenceNet.

The trunk is diffusers' `UNet3DConditionModel` (the ModelScope-T2V / VideoComposer video UNet)
with 12 input channels. What UniAnimate adds is here, as diffusers-style modules:

- the driving poses go through a small encoder (conv, 2× average pool, two stride-2 convs) and a
  one-layer transformer across frames at every pixel, to 8 channels added beside the 4 latent
  channels of every noisy frame; the first-frame image (``local_image``, for continuing a video
  from a frame) takes an encoder of the same shape into the same 8 channels;
- the reference image's latent (3 stride-1 convs) and the reference's pose (the pose encoder's
  shape, 12 channels out) make a 12-channel **frame 0** put before the noisy frames on the time
  axis; the UNet sees F+1 frames and frame 0 is dropped from its output;
- the context is the empty prompt's 77 text tokens (stored, computed once) and 4 tokens from the
  reference's CLIP image embedding (Linear-SiLU-Linear).

Layout and sizes: `full` holds exactly the 1544 tensors (1,416,564,300 parameters) of the released
``unianimate_16f_32f_non_ema_223000.pth``; `convert_unianimate` maps that file's keys onto these
modules and back (docs/models.md).
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from diffusers import DDIMScheduler, UNet3DConditionModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

# The released trunk: ModelScope-T2V's UNet at SD-2.1 widths, 12 input channels (4 latent + 8
# condition), OpenCLIP ViT-H's 1024-d context; diffusers names the head count attention_head_dim.
FULL_UNET = dict(
    in_channels=12, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
    cross_attention_dim=1024, attention_head_dim=64, norm_num_groups=32, norm_eps=1e-5,
    down_block_types=("CrossAttnDownBlock3D",) * 3 + ("DownBlock3D",),
    up_block_types=("UpBlock3D",) + ("CrossAttnUpBlock3D",) * 3,
)
TINY_UNET = dict(
    FULL_UNET, layers_per_block=1, block_out_channels=(32, 64), cross_attention_dim=32, attention_head_dim=8,
    norm_num_groups=8, down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
    up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
)
# The CPU-trainable size beside Animate Anyone's puppet model: 3 levels of 32, 64, 64 channels,
# attention at the two coarser ones, a 32-d context.
PUPPET_UNET = dict(
    FULL_UNET, layers_per_block=1, block_out_channels=(32, 64, 64), cross_attention_dim=32, attention_head_dim=16,
    norm_num_groups=32, down_block_types=("DownBlock3D", "CrossAttnDownBlock3D", "CrossAttnDownBlock3D"),
    up_block_types=("CrossAttnUpBlock3D", "CrossAttnUpBlock3D", "UpBlock3D"),
)
FULL_CONDITIONER = dict(latent_channels=4, condition_channels=8, hidden_channels=32, image_embed_dim=1024,
                        cross_attention_dim=1024, num_image_tokens=4, mixer_heads=2, mixer_layers=1)
TINY_CONDITIONER = dict(FULL_CONDITIONER, hidden_channels=8, image_embed_dim=32, cross_attention_dim=32)
# the puppet VAE downsamples ×4 (not 8): the pose encoders skip the 2× pool to land on its latents
PUPPET_CONDITIONER = dict(FULL_CONDITIONER, hidden_channels=16, image_embed_dim=32, cross_attention_dim=32, pose_pool=1)
TEXT_TOKENS = 77  # the empty prompt through OpenCLIP ViT-H-14's text tower


class FrameMixerLayer(nn.Module):
    """Pre-norm self-attention across frames, then an un-normalised feed-forward, both residual
    (the released condition encoders' layer; every head as wide as the channels)."""

    def __init__(self, channels: int, heads: int = 2):
        super().__init__()
        self.heads = heads
        self.norm = nn.LayerNorm(channels)
        self.to_qkv = nn.Linear(channels, 3 * heads * channels, bias=False)
        self.to_out = nn.Linear(heads * channels, channels)
        self.ff = nn.Sequential(nn.Linear(channels, 4 * channels), nn.GELU(), nn.Linear(4 * channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, frames, C)
        n, f, _ = x.shape
        q, k, v = (t.reshape(n, f, self.heads, -1).transpose(1, 2) for t in self.to_qkv(self.norm(x)).chunk(3, dim=-1))
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, f, -1)
        x = self.to_out(a) + x
        return self.ff(x) + x


class ConditionEncoder(ModelMixin, ConfigMixin):
    """Images of a video, ``(B, C, F, H, W)``, to condition channels at the latent size
    ``(B, out, F, H/8, W/8)`` when ``downsample`` (pose images: conv, 2× average pool, two stride-2
    convs), else at the input size (a latent: three stride-1 convs); then a transformer across
    frames at every pixel. The released model pools to half its configured resolution; here
    ``1 / pool`` of the input's (the same for pool 2 when the input has that resolution), so that
    the output lands on a VAE's latents: ×8 with pool 2, ×4 with pool 1."""

    @register_to_config
    def __init__(self, in_channels: int = 3, hidden_channels: int = 32, out_channels: int = 8,
                 downsample: bool = True, mixer_heads: int = 2, mixer_layers: int = 1, pool: int = 2):
        super().__init__()
        stride = 2 if downsample else 1
        self.conv_in = nn.Conv2d(in_channels, hidden_channels, 3, padding=1)
        self.conv_mid = nn.Conv2d(hidden_channels, hidden_channels, 3, stride=stride, padding=1)
        self.conv_out = nn.Conv2d(hidden_channels, out_channels, 3, stride=stride, padding=1)
        self.mixer = nn.ModuleList([FrameMixerLayer(out_channels, mixer_heads) for _ in range(mixer_layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, f, h, w = x.shape
        y = F.silu(self.conv_in(x.transpose(1, 2).reshape(b * f, c, h, w)))
        if self.config.downsample and self.config.pool > 1:
            y = F.adaptive_avg_pool2d(y, (h // self.config.pool, w // self.config.pool))
        y = self.conv_out(F.silu(self.conv_mid(y)))
        _, co, ho, wo = y.shape
        y = y.reshape(b, f, co, ho, wo).permute(0, 3, 4, 1, 2).reshape(b * ho * wo, f, co)
        for layer in self.mixer:
            y = layer(y)
        return y.reshape(b, ho, wo, f, co).permute(0, 4, 3, 1, 2)


class UniAnimateConditioner(ModelMixin, ConfigMixin):
    """Everything UniAnimate adds to the video UNet: the pose, first-frame, reference-latent and
    reference-pose encoders, the image-token projection, and the stored text context
    (``text_context``, 1 × 77 × d: the empty prompt through OpenCLIP ViT-H-14's text tower for
    the released weights, computed once on import; a fixed random one for models trained here)."""

    @register_to_config
    def __init__(self, latent_channels: int = 4, condition_channels: int = 8, hidden_channels: int = 32,
                 image_embed_dim: int = 1024, cross_attention_dim: int = 1024, num_image_tokens: int = 4,
                 mixer_heads: int = 2, mixer_layers: int = 1, pose_pool: int = 2):
        super().__init__()
        frame0 = latent_channels + condition_channels
        mix = dict(mixer_heads=mixer_heads, mixer_layers=mixer_layers)
        pooled = dict(mix, pool=pose_pool)
        self.pose_encoder = ConditionEncoder(3, hidden_channels, condition_channels, **pooled)
        self.local_image_encoder = ConditionEncoder(3, hidden_channels, condition_channels, **pooled)
        self.reference_pose_encoder = ConditionEncoder(3, hidden_channels, frame0, **pooled)
        self.reference_encoder = ConditionEncoder(latent_channels, hidden_channels, frame0, downsample=False, **mix)
        self.image_proj = nn.Sequential(nn.Linear(image_embed_dim, cross_attention_dim), nn.SiLU(),
                                        nn.Linear(cross_attention_dim, cross_attention_dim * num_image_tokens))
        self.register_buffer("text_context", torch.randn(1, TEXT_TOKENS, cross_attention_dim))

    def image_tokens(self, image_embeds: torch.Tensor) -> torch.Tensor:
        """(B, image_embed_dim) → (B, num_image_tokens, cross_attention_dim)."""
        c = self.config
        return self.image_proj(image_embeds).view(-1, c.num_image_tokens, c.cross_attention_dim)

    @property
    def downscale(self) -> int:
        """Pixels per latent cell of the pose encoders (the VAE's must be the same)."""
        return 4 * self.config.pose_pool


class TemporalMamba(nn.Module):
    """A drop-in for diffusers' ``TransformerTemporalModel`` (same call, same residual form):
    at every pixel, the frames as a sequence through Mamba (Gu & Dao 2023; transformers'
    ``MambaMixer``: its CUDA kernels when ``mamba_ssm`` is installed, plain PyTorch otherwise),
    run forwards and backwards with separate weights and summed, since a frame depends on the
    frames after it as much as on those before (Vision Mamba's bidirectional form). Cost grows
    linearly with the frames, where attention over time grows quadratically (UniAnimate §3.4).
    ``proj_out`` starts at zero: a new block is the identity."""

    def __init__(self, channels: int, norm_num_groups: int = 32, layers: int = 1, state_size: int = 16,
                 expand: int = 2, conv_kernel: int = 4):
        super().__init__()
        from transformers import MambaConfig
        from transformers.models.mamba.modeling_mamba import MambaMixer

        config = MambaConfig(hidden_size=channels, state_size=state_size, expand=expand, conv_kernel=conv_kernel,
                             num_hidden_layers=layers)
        self.norm = nn.GroupNorm(norm_num_groups, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, channels)
        self.norms = nn.ModuleList([nn.LayerNorm(channels) for _ in range(layers)])
        self.forwards = nn.ModuleList([MambaMixer(config, layer_idx=i) for i in range(layers)])
        self.backwards = nn.ModuleList([MambaMixer(config, layer_idx=i) for i in range(layers)])
        self.proj_out = nn.Linear(channels, channels)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, hidden_states: torch.Tensor, encoder_hidden_states=None, timestep=None, class_labels=None,
                num_frames: int = 1, cross_attention_kwargs=None, return_dict: bool = True):
        from diffusers.models.transformers.transformer_temporal import TransformerTemporalModelOutput

        bf, c, h, w = hidden_states.shape
        b = bf // num_frames
        x = self.norm(hidden_states)
        x = x.reshape(b, num_frames, c, h, w).permute(0, 3, 4, 1, 2).reshape(b * h * w, num_frames, c)
        x = self.proj_in(x)
        for norm, ahead, back in zip(self.norms, self.forwards, self.backwards):
            y = norm(x)
            x = x + ahead(y) + back(y.flip(1)).flip(1)
        x = self.proj_out(x).reshape(b, h, w, num_frames, c).permute(0, 3, 4, 1, 2).reshape(bf, c, h, w)
        out = x + hidden_states
        return TransformerTemporalModelOutput(sample=out) if return_dict else (out,)


def _temporal_layers(unet) -> list[tuple[nn.Module, str, int | None]]:
    """Where the trunk's temporal transformers sit: (parent, attribute, index or None)."""
    places = [(unet, "transformer_in", None)]
    for block in [*unet.down_blocks, unet.mid_block, *unet.up_blocks]:
        for i in range(len(getattr(block, "temp_attentions", []))):
            places.append((block, "temp_attentions", i))
    return places


def _recompute(forward, *args, **kwargs):
    """``forward`` under activation checkpointing while gradients are on (RNG state kept, so
    dropout draws the same mask when it is recomputed)."""
    if torch.is_grad_enabled():
        return torch.utils.checkpoint.checkpoint(forward, *args, use_reentrant=False, **kwargs)
    return forward(*args, **kwargs)


class UniAnimateUNet(UNet3DConditionModel):
    """diffusers' ``UNet3DConditionModel`` (the released trunk's module tree) with two additions:
    ``temporal="mamba"`` puts a ``TemporalMamba`` where each temporal transformer was (the
    paper's proposal, never released), and gradient checkpointing, which the parent class lacks
    and training the full size needs (every ResBlock, temporal conv, spatial and temporal
    transformer is recomputed in the backward pass)."""

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(self, sample_size=None, in_channels: int = 12, out_channels: int = 4,
                 down_block_types=FULL_UNET["down_block_types"], up_block_types=FULL_UNET["up_block_types"],
                 block_out_channels=(320, 640, 1280, 1280), layers_per_block: int = 2, downsample_padding: int = 1,
                 mid_block_scale_factor: float = 1, act_fn: str = "silu", norm_num_groups: int | None = 32,
                 norm_eps: float = 1e-5, cross_attention_dim: int = 1024, attention_head_dim=64,
                 num_attention_heads=None, time_cond_proj_dim=None, temporal: str = "transformer"):
        super().__init__(sample_size=sample_size, in_channels=in_channels, out_channels=out_channels,
                         down_block_types=down_block_types, up_block_types=up_block_types,
                         block_out_channels=block_out_channels, layers_per_block=layers_per_block,
                         downsample_padding=downsample_padding, mid_block_scale_factor=mid_block_scale_factor,
                         act_fn=act_fn, norm_num_groups=norm_num_groups, norm_eps=norm_eps,
                         cross_attention_dim=cross_attention_dim, attention_head_dim=attention_head_dim,
                         num_attention_heads=num_attention_heads, time_cond_proj_dim=time_cond_proj_dim)
        if temporal not in ("transformer", "mamba"):
            raise ValueError(f"temporal must be 'transformer' or 'mamba'; got {temporal!r}")
        if temporal == "mamba":
            for parent, name, i in _temporal_layers(self):
                old = getattr(parent, name) if i is None else getattr(parent, name)[i]
                new = TemporalMamba(old.in_channels, old.norm.num_groups)
                if i is None:
                    setattr(parent, name, new)
                else:
                    getattr(parent, name)[i] = new

    def _checkpointed_modules(self):
        for block in [*self.down_blocks, self.mid_block, *self.up_blocks]:
            for name in ("resnets", "temp_convs", "attentions", "temp_attentions"):
                yield from getattr(block, name, [])

    def enable_gradient_checkpointing(self, gradient_checkpointing_func=None) -> None:
        for module in self._checkpointed_modules():
            if "forward" not in vars(module):
                module.forward = functools.partial(_recompute, module.forward)

    def disable_gradient_checkpointing(self) -> None:
        for module in self._checkpointed_modules():
            vars(module).pop("forward", None)

    @property
    def is_gradient_checkpointing(self) -> bool:
        return any("forward" in vars(m) for m in self._checkpointed_modules())


def build_unianimate(size: str = "tiny", seed: int = 0, temporal: str = "transformer") -> dict:
    """Randomly initialised trunk and conditioner of ``size`` (``tiny``, ``puppet`` or ``full``),
    with temporal transformers or, ``temporal="mamba"``, temporal Mamba blocks."""
    configs = {"tiny": (TINY_UNET, TINY_CONDITIONER), "puppet": (PUPPET_UNET, PUPPET_CONDITIONER),
               "full": (FULL_UNET, FULL_CONDITIONER)}
    if size not in configs:
        raise ValueError(f"size must be one of {', '.join(configs)}; got {size!r}")
    torch.manual_seed(seed)
    unet_config, cond_config = configs[size]
    return {"unet": UniAnimateUNet(**unet_config, temporal=temporal), "conditioner": UniAnimateConditioner(**cond_config)}


def predict(unet, conditioner: UniAnimateConditioner, sample: torch.Tensor, timestep,
            text_context: torch.Tensor | None = None, image_embeds: torch.Tensor | None = None,
            pose: torch.Tensor | None = None, reference_latent: torch.Tensor | None = None,
            reference_pose: torch.Tensor | None = None, local_image: torch.Tensor | None = None,
            drop: torch.Tensor | None = None) -> torch.Tensor:
    """One UniAnimate prediction for ``sample`` (B, 4, F, h, w) at ``timestep``.

    ``pose`` (B, 3, F, 8h, 8w) and ``local_image`` (B, 3, F, 8h, 8w) are added into the 8 condition
    channels of every frame; ``reference_latent`` (B, 4, h, w) and ``reference_pose`` (B, 3, 8h, 8w)
    make frame 0; ``text_context`` (1 or B, 77, d; default the conditioner's stored one) and
    ``image_embeds`` (B, e) make the context. A condition left out counts as zero, as in the
    released model; ``drop`` (B,) bool marks rows whose every condition is zero (the unconditional
    pass of guidance, and training's condition dropout). Returns (B, 4, F, h, w): frame 0 dropped."""
    b, _, f, h, w = sample.shape
    cond = conditioner.config
    keep = None if drop is None else (~drop.to(sample.device)).to(sample.dtype)

    def kept(x: torch.Tensor) -> torch.Tensor:
        return x if keep is None else x * keep.view(-1, *([1] * (x.ndim - 1)))

    extra = sample.new_zeros(b, cond.condition_channels, f, h, w)
    if local_image is not None:
        extra = extra + kept(conditioner.local_image_encoder(local_image))
    if pose is not None:
        extra = extra + kept(conditioner.pose_encoder(pose))
    frame0 = sample.new_zeros(b, cond.latent_channels + cond.condition_channels, 1, h, w)
    if reference_latent is not None:
        frame0 = frame0 + kept(conditioner.reference_encoder(reference_latent[:, :, None]))
        if reference_pose is not None:
            frame0 = frame0 + kept(conditioner.reference_pose_encoder(reference_pose[:, :, None]))
    x = torch.cat([frame0, torch.cat([sample, extra], dim=1)], dim=2)
    text = (conditioner.text_context if text_context is None else text_context).to(sample.dtype).expand(b, -1, -1)
    if image_embeds is not None:
        tokens = kept(conditioner.image_tokens(image_embeds.to(sample.dtype)))
    else:
        tokens = sample.new_zeros(b, cond.num_image_tokens, text.shape[-1])
    context = torch.cat([text, tokens], dim=1)
    t = torch.as_tensor(timestep, device=sample.device)
    if t.ndim == 0:
        t = t.expand(b)
    return unet(x, t, encoder_hidden_states=context).sample[:, :, 1:]


# The released sampler (ali-vilab/UniAnimate `DiffusionDDIM`, `linear_sd` schedule): scaled-linear
# betas rescaled to zero terminal SNR, v-prediction, DDIM with η = 0.
SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                 rescale_betas_zero_snr=True, prediction_type="v_prediction", timestep_spacing="leading",
                 steps_offset=1, clip_sample=False, set_alpha_to_one=False)


class UniAnimateScheduler(DDIMScheduler):
    """DDIM on the released model's grid: N steps visit ``1 + arange(0, 1000, 1000 // N)`` from the
    top (30 steps: the 31 timesteps 991, 958, …, 1), each stepping back ``1000 // N``; the last
    lands on ᾱ₀ (``set_alpha_to_one=False``), as the released loop clamps at 0."""

    def set_timesteps(self, num_inference_steps: int, device: str | torch.device | None = None):
        n = self.config.num_train_timesteps
        if not 1 <= num_inference_steps <= n:
            raise ValueError(f"num_inference_steps must be in [1, {n}]; got {num_inference_steps}")
        self.num_inference_steps = num_inference_steps
        grid = (1 + torch.arange(0, n, n // num_inference_steps)).clamp(0, n - 1).flip(0)
        self.timesteps = grid.to(device=device)
