"""The model a training stage starts from, and which of its parameters train (the UniAnimate
family's answers are in ``training.unianimate``; these functions hand over to it).

Stage 0 trains the VAE (puppet world only: production starts from sd-vae-ft-mse). Stage 1 trains
the denoising UNet's spatial layers, the ReferenceNet and the pose guider; stage 2 only the motion
modules (docs/design.md §4). Everything else is frozen, and so are the ReferenceNet's tensors that can
never get a gradient (its last block after `norm1`: nothing reads them), which AdamW would
otherwise decay for nothing.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPVisionModelWithProjection

from animate_anyone import weights
from animate_anyone.errors import PermanentError
from animate_anyone.models import store
from animate_anyone.models.convert import check_keys, import_motion_modules, load_checkpoint
from animate_anyone.models.reference_attention import (
    ReferenceBank,
    ReferenceWriteProcessor,
    self_attention_names,
    set_processors,
)
from animate_anyone.models.sizes import build_components, zero_motion_outputs
from animate_anyone.training import unianimate as ua


class TrainModelError(PermanentError):
    """The starting weights or the training size do not fit the model."""


def resolve_weights(spec: str, field: str, base_dir: Path | None, want: str) -> Path:
    """``weights.resolve_weights`` with training's error."""
    return weights.resolve_weights(spec, field, base_dir, want, TrainModelError)


def initial_components(train, base_dir: Path | None, start: Path | None = None) -> dict:
    """The components a stage starts from: ``start`` (the previous stage's pipeline folder) if
    given, else ``train.init.pipeline``, else random at ``train.size`` with the ``init`` parts
    loaded; of ``train.family``."""
    if train.family == ua.FAMILY:
        return ua.initial_components(train, lambda spec, field, want: resolve_weights(spec, field, base_dir, want),
                                     start)
    init = train.init
    if start is None and init.pipeline:
        start = resolve_weights(init.pipeline, "train.init.pipeline", base_dir, "dir")
    if start is not None:
        return store.load_components(start)
    components = build_components(train.size, seed=train.seed)
    zero_motion_outputs(components["unet"])  # fresh temporal layers start as the identity
    if init.base:
        _load_base(components, resolve_weights(init.base, "train.init.base", base_dir, "dir"))
    if init.vae:
        components["vae"] = AutoencoderKL.from_pretrained(resolve_weights(init.vae, "train.init.vae", base_dir, "dir"))
    if init.image_encoder:
        path = resolve_weights(init.image_encoder, "train.init.image_encoder", base_dir, "dir")
        components["image_encoder"] = CLIPVisionModelWithProjection.from_pretrained(path)
    if not init.vae and not init.base:
        narrow_posterior(components["vae"])
    for name in ("vae", "image_encoder", "reference_unet", "unet", "pose_guider"):
        components[name].eval()
    return components


def narrow_posterior(vae, std: float = 0.05) -> None:
    """A fresh VAE's posterior starts narrow: the log-variance half of ``quant_conv`` gives
    ``std`` whatever the input. At random init it gives about 1, as wide as the latents
    themselves, and with SD's tiny KL weight the encoder needs thousands of steps to shrink it;
    until then the decoder learns to blur, and small figures vanish from the reconstructions."""
    with torch.no_grad():
        half = vae.config.latent_channels
        vae.quant_conv.weight[half:].zero_()
        vae.quant_conv.bias[half:].fill_(2 * math.log(std))


def load_motion(components: dict, spec: str, base_dir: Path | None) -> None:
    """AnimateDiff motion modules (e.g. mm_sd_v15_v2.ckpt) into the denoiser, keys checked."""
    path = resolve_weights(spec, "train.init.motion", base_dir, "file")
    import_motion_modules(components["unet"], load_checkpoint(path), str(path))


def _load_base(components: dict, base: Path) -> None:
    """SD-1.5's UNet into both UNets (the ReferenceNet without its output head), its VAE and, when
    the folder has one, its image encoder."""
    sd = UNet2DConditionModel.from_pretrained(base / "unet").state_dict()
    for name in ("reference_unet", "unet"):
        target = components[name]
        expected = {k: v.shape for k, v in target.state_dict().items()
                    if "motion_modules" not in k and not k.endswith(".pe")}
        state = {k: v for k, v in sd.items() if k in expected}
        check_keys(f"{base / 'unet'} → {name}", state, expected)
        target.load_state_dict(state, strict=False)
    if (base / "vae" / "config.json").is_file():
        components["vae"] = AutoencoderKL.from_pretrained(base / "vae")
    if (base / "image_encoder" / "config.json").is_file():
        components["image_encoder"] = CLIPVisionModelWithProjection.from_pretrained(base / "image_encoder")


def check_size(components: dict, width: int, height: int, where: str) -> None:
    """Refuse a training size the model cannot take, naming the multiple it needs."""
    if store.family_of(components) == ua.FAMILY:
        return ua.check_size(components, width, height, where)
    vae = components["vae"]
    vae_scale = 2 ** (len(vae.config.block_out_channels) - 1)
    unet_scale = 2 ** (len(components["unet"].config.block_out_channels) - 1)
    step = vae_scale * unet_scale
    if width % step or height % step:
        raise TrainModelError(f"{where}: {width}x{height} cannot be trained: width and height must be multiples of "
                              f"{step} (VAE ×{vae_scale} then UNet ×{unet_scale})", "bad_resolution")
    guider = components["pose_guider"].downscale
    if guider != vae_scale:
        raise TrainModelError(f"the pose guider downsamples ×{guider} but the VAE ×{vae_scale}", "bad_model")


def never_trained(reference_unet) -> set[str]:
    """ReferenceNet parameters that get no gradient: nothing downstream of them reaches a bank entry."""
    probe = ReferenceBank(dtype=None)
    names = self_attention_names(reference_unet)
    set_processors(reference_unet, ReferenceWriteProcessor, probe, names)  # record what the denoiser would read
    cfg = reference_unet.config
    scale = 2 ** (len(cfg.block_out_channels) - 1)
    x = torch.randn(1, cfg.in_channels, 4 * scale, 4 * scale)  # several tokens at every level
    ctx = torch.randn(1, 1, cfg.cross_attention_dim)
    was = {n: p.requires_grad for n, p in reference_unet.named_parameters()}
    for p in reference_unet.parameters():
        p.requires_grad_(True)
        p.grad = None
    reference_unet(x, torch.zeros(1, dtype=torch.long), encoder_hidden_states=ctx, return_dict=False)
    # a random projection of every entry (a plain sum would not do: a LayerNorm's outputs sum to a
    # constant, so its input would look gradient-free)
    g = torch.Generator().manual_seed(0)
    sum((probe.features[n] * torch.randn(probe.features[n].shape, generator=g)).sum() for n in names).backward()
    dead = {n for n, p in reference_unet.named_parameters() if p.grad is None}  # not in the graph at all
    for n, p in reference_unet.named_parameters():
        p.grad = None
        p.requires_grad_(was[n])
    return dead


def set_trainable(stage: int, components: dict) -> dict[str, list[str]]:
    """Freeze everything, then unfreeze what ``stage`` trains; returns the trained names per part."""
    if store.family_of(components) == ua.FAMILY:
        return ua.set_trainable(stage, components)
    for name in ("vae", "image_encoder", "reference_unet", "unet", "pose_guider"):
        components[name].requires_grad_(False)
    trained: dict[str, list[str]] = {}
    if stage == 0:
        parts = {"vae": lambda n: True}
    elif stage == 1:
        dead = never_trained(components["reference_unet"])
        parts = {"unet": lambda n: "motion_modules" not in n, "reference_unet": lambda n: n not in dead,
                 "pose_guider": lambda n: True}
    else:
        parts = {"unet": lambda n: "motion_modules" in n}
    for part, keep in parts.items():
        names = [n for n, p in components[part].named_parameters() if keep(n)]
        for n, p in components[part].named_parameters():
            p.requires_grad_(keep(n))
        trained[part] = names
    return trained


@torch.no_grad()
def set_latent_scale(vae, frames: list[torch.Tensor], per_clip: int = 16) -> float:
    """Set the VAE's ``scaling_factor`` to 1 / std of its latents on ``frames`` ((N, 3, H, W) in
    [-1, 1] each), so the diffusion stages see unit-variance latents (SD's 0.18215 was found so)."""
    picked = torch.cat([f[:: max(1, len(f) // per_clip)] for f in frames])
    latents = torch.cat([vae.encode(picked[i:i + 32].to(vae.device, vae.dtype)).latent_dist.mean
                         for i in range(0, len(picked), 32)])
    scale = float(1.0 / latents.float().std())
    vae.register_to_config(scaling_factor=scale)
    return scale
