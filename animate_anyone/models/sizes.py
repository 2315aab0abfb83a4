"""Model sizes: `full` is SD-1.5 + AnimateDiff v2 (the released weights' shapes); `puppet` is the
small model the demo trains from scratch on a CPU (a ×4 VAE, (32, 64, 64) UNets); `tiny` is the
same code with the smallest widths, for tests. Every component is built here, so a size is one
name and nothing else differs between them."""

from __future__ import annotations

from typing import Literal

import torch

from animate_anyone.models.pose_guider import PoseGuider
from animate_anyone.models.store import SIZES  # the names live where torch is not needed
from animate_anyone.models.unets import ReferenceNet, VideoUNet

Size = Literal["tiny", "puppet", "full"]

# Stable Diffusion 1.5's UNet (runwayml/stable-diffusion-v1-5/unet/config.json).
SD15_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
    norm_num_groups=32, norm_eps=1e-5, act_fn="silu", downsample_padding=1,
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    flip_sin_to_cos=True, freq_shift=0, mid_block_scale_factor=1, use_linear_projection=False,
)
TINY_UNET = dict(
    SD15_UNET, sample_size=8, layers_per_block=1, block_out_channels=(32, 64),
    cross_attention_dim=32, attention_head_dim=2, norm_num_groups=8,
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
)
# The demo's trainable size (issue 11's measurements on 2 CPU cores): 3 UNet levels of 32, 64, 64
# channels (multiples of 32: the motion modules' GroupNorm has 32 groups), spatial and reference
# attention at the two coarser levels only (at the finest, 448 tokens attending to 896 cost half of
# a training step on a CPU), a ×4 VAE so that 64×112 frames give 16×28 latents.
PUPPET_UNET = dict(
    SD15_UNET, sample_size=28, layers_per_block=1, block_out_channels=(32, 64, 64),
    cross_attention_dim=32, attention_head_dim=4, norm_num_groups=32,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
)
# AnimateDiff mm_sd_v15_v2: 8 heads, sinusoidal positions up to 32 frames, a mid-block module.
MOTION = dict(motion_num_attention_heads=8, motion_max_seq_length=32, use_motion_mid_block=True)
TINY_MOTION = dict(MOTION, motion_num_attention_heads=2)
PUPPET_MOTION = dict(MOTION, motion_num_attention_heads=4)

# sd-vae-ft-mse
SD_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, sample_size=512,
    block_out_channels=(128, 256, 512, 512), norm_num_groups=32, act_fn="silu",
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    scaling_factor=0.18215,
)
TINY_VAE = dict(SD_VAE, layers_per_block=1, block_out_channels=(8, 16, 16, 16), norm_num_groups=8, sample_size=64)
PUPPET_VAE = dict(SD_VAE, layers_per_block=1, block_out_channels=(16, 32, 32), norm_num_groups=8, sample_size=112,
                  down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3)

# CLIP ViT-L/14 vision tower with its 768-d projection (lambdalabs/sd-image-variations-diffusers).
CLIP_L14 = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                image_size=224, patch_size=14, projection_dim=768, hidden_act="quick_gelu")
TINY_CLIP = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                 image_size=32, patch_size=4, projection_dim=32, hidden_act="quick_gelu")

POSE_GUIDER = dict(block_out_channels=(16, 32, 96, 256), out_channels=320)
TINY_POSE_GUIDER = dict(block_out_channels=(4, 8, 16, 16), out_channels=32)
PUPPET_POSE_GUIDER = dict(block_out_channels=(16, 32, 32), out_channels=32)  # ×4 down, like its VAE

# The training schedule (docs/design.md §4): DDIM, scaled_linear 0.00085→0.012, zero terminal SNR,
# v-prediction, trailing spacing.
SCHEDULER = dict(
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
    rescale_betas_zero_snr=True, prediction_type="v_prediction", timestep_spacing="trailing",
    clip_sample=False, set_alpha_to_one=True, steps_offset=1,
)


def _pick(size: Size, full, tiny, puppet=None):
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}; got {size!r}")
    return dict({"full": full, "tiny": tiny, "puppet": puppet if puppet is not None else tiny}[size])


def unet2d_config(size: Size) -> dict:
    return _pick(size, SD15_UNET, TINY_UNET, PUPPET_UNET)


def video_unet_config(unet2d: dict, motion: dict) -> dict:
    """The denoiser's config from a 2D UNet config (SD-1.5 style) and motion settings."""
    blocks = {"CrossAttnDownBlock2D": "CrossAttnDownBlockMotion", "DownBlock2D": "DownBlockMotion",
              "CrossAttnUpBlock2D": "CrossAttnUpBlockMotion", "UpBlock2D": "UpBlockMotion"}
    heads = unet2d.get("num_attention_heads") or unet2d["attention_head_dim"]  # SD-1.5 names heads so
    keep = ("sample_size", "in_channels", "out_channels", "layers_per_block", "block_out_channels",
            "cross_attention_dim", "norm_num_groups", "norm_eps", "act_fn", "downsample_padding",
            "mid_block_scale_factor", "use_linear_projection")
    config = {k: unet2d[k] for k in keep if k in unet2d}
    config.update(
        down_block_types=tuple(blocks[b] for b in unet2d["down_block_types"]),
        up_block_types=tuple(blocks[b] for b in unet2d["up_block_types"]),
        num_attention_heads=heads, **motion,
    )
    return config


def build_components(size: Size = "tiny", seed: int = 0, dtype: torch.dtype = torch.float32) -> dict:
    """Randomly initialised components of `size` (the pose guider's output starts at zero)."""
    from diffusers import AutoencoderKL, DDIMScheduler
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    unet2d = unet2d_config(size)
    clip = _pick(size, CLIP_L14, TINY_CLIP)
    components = dict(
        vae=AutoencoderKL(**_pick(size, SD_VAE, TINY_VAE, PUPPET_VAE)),
        image_encoder=CLIPVisionModelWithProjection(CLIPVisionConfig(**clip)),
        feature_extractor=feature_extractor(clip["image_size"]),
        reference_unet=ReferenceNet(**unet2d),
        unet=VideoUNet(**video_unet_config(unet2d, _pick(size, MOTION, TINY_MOTION, PUPPET_MOTION))),
        pose_guider=PoseGuider(**_pick(size, POSE_GUIDER, TINY_POSE_GUIDER, PUPPET_POSE_GUIDER)),
        scheduler=DDIMScheduler(**SCHEDULER),
    )
    for name in ("vae", "image_encoder", "reference_unet", "unet", "pose_guider"):
        if dtype != torch.float32:
            components[name].to(dtype=dtype)
        components[name].eval()
    return components


def zero_motion_outputs(unet) -> int:
    """Zero the motion modules' output projections (AnimateDiff initialises them so): a fresh
    temporal layer is then the identity, and stage 1 trains the spatial layers undisturbed."""
    n = 0
    for name, module in unet.named_modules():
        if "motion_modules" in name and name.endswith("proj_out") and isinstance(module, torch.nn.Linear):
            torch.nn.init.zeros_(module.weight)
            torch.nn.init.zeros_(module.bias)
            n += 1
    return n


def feature_extractor(image_size: int = 224):
    """CLIP's preprocessing: resize the short side, centre crop, CLIP mean and std."""
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(size={"shortest_edge": image_size},
                              crop_size={"height": image_size, "width": image_size})


def parameter_count(module) -> int:
    return sum(p.numel() for p in module.parameters())
