"""Training the UniAnimate family: its starting model, what each stage trains, and its loss.

The stages (docs/design.md §4b). Stage 0 is the VAE, as for Animate Anyone. The released
checkpoint (``unianimate_16f_32f_…``) was trained on 16-frame clips and then on 32-frame clips,
the whole video UNet and the condition encoders together (there is no ReferenceNet to train
apart, and the trunk's temporal layers come trained from its ModelScope-T2V start); so here stage
1 trains the trunk and the conditioner on ``stage1.frames`` and stage 2 continues the same on the
longer ``stage2.frames``. Only the stored text context and the frozen VAE and CLIP stay fixed.

The loss is the sampler's: v-prediction on the zero-terminal-SNR schedule with offset noise and
min-SNR weighting, as Animate Anyone's; what differs is the condition dropout, which drops
*every* condition of a sample (pose and reference too), exactly the unconditional pass of
UniAnimate's guidance, and the continuation samples, which get their first frame as the
``local_image`` condition on every frame, as inference's ``first_frame`` does.
"""
from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL
from torch import nn
from torch.nn import functional as F
from transformers import CLIPVisionModelWithProjection

from animate_anyone.errors import PermanentError
from animate_anyone.models import store
from animate_anyone.models.unianimate import predict
from animate_anyone.training.objective import clip_embeddings, min_snr_weight, sample_generators

FAMILY = "unianimate"


class UniAnimateTrainError(PermanentError):
    """The starting weights or settings do not fit a UniAnimate model."""


class UniAnimateModel(nn.Module):
    """The trunk and the conditioner as one module (what accelerate/DDP wraps)."""

    def __init__(self, unet, conditioner):
        super().__init__()
        self.unet, self.conditioner = unet, conditioner

    def forward(self, noisy, timestep, pose, image_embeds, reference_latent, reference_pose, drop,
                local_image=None) -> torch.Tensor:
        return predict(self.unet, self.conditioner, noisy, timestep, image_embeds=image_embeds, pose=pose,
                       reference_latent=reference_latent, reference_pose=reference_pose,
                       local_image=local_image, drop=drop)


def initial_components(train, resolve, start: Path | None) -> dict:
    """The components a UniAnimate stage starts from: ``start`` or ``train.init.pipeline`` (a
    UniAnimate folder), else random at ``train.size`` (with ``train.temporal``) with ``init``'s
    parts: ``base`` a ModelScope-T2V folder in diffusers' layout (unet/, vae/), ``vae``,
    ``image_encoder``. ``resolve(spec, field, want)`` finds a weights path."""
    from animate_anyone.unianimate_pipeline import build_components

    init = train.init
    if start is None and init.pipeline:
        start = resolve(init.pipeline, "train.init.pipeline", "dir")
    if start is not None:
        if store.family(start) != FAMILY:
            raise UniAnimateTrainError(f"{start} holds a {store.family(start)!r} model; train.family is {FAMILY!r}",
                                       "wrong_family")
        return store.load_components(start)
    components = build_components(train.size, seed=train.seed, temporal=train.temporal)
    if init.base:
        load_t2v_base(components, resolve(init.base, "train.init.base", "dir"))
    if init.vae:
        components["vae"] = AutoencoderKL.from_pretrained(resolve(init.vae, "train.init.vae", "dir"))
    if init.image_encoder:
        path = resolve(init.image_encoder, "train.init.image_encoder", "dir")
        components["image_encoder"] = CLIPVisionModelWithProjection.from_pretrained(path)
    for name in ("vae", "image_encoder", "unet", "conditioner"):
        components[name].eval()
    return components


def load_t2v_base(components: dict, base: Path) -> None:
    """A text-to-video UNet (ModelScope-T2V, diffusers' ``UNet3DConditionModel`` with 4 input
    channels) into the trunk: every tensor as it is, except ``conv_in`` whose 8 condition
    channels start at zero (so the start predicts what the text-to-video model did); its VAE too
    when the folder has one. Keys and shapes are checked."""
    from diffusers import UNet3DConditionModel

    from animate_anyone.models.convert import check_keys

    unet = components["unet"]
    if unet.config.temporal != "transformer":
        raise UniAnimateTrainError("train.init.base: a text-to-video UNet has temporal transformers; train.temporal "
                                   f"is {unet.config.temporal!r} (start mamba models from random temporal layers)",
                                   "bad_init")
    source = UNet3DConditionModel.from_pretrained(base / "unet").state_dict()
    expected = {k: v.shape for k, v in unet.state_dict().items()}
    conv = source.get("conv_in.weight")
    if conv is not None and conv.shape[1] < expected["conv_in.weight"][1]:
        wide = torch.zeros(expected["conv_in.weight"], dtype=conv.dtype)
        wide[:, : conv.shape[1]] = conv
        source["conv_in.weight"] = wide
    check_keys(f"{base / 'unet'} → unet", source, expected)
    unet.load_state_dict(source)
    if (base / "vae" / "config.json").is_file():
        components["vae"] = AutoencoderKL.from_pretrained(base / "vae")


def set_trainable(stage: int, components: dict) -> dict[str, list[str]]:
    """Stage 0: the VAE; stages 1 and 2: the trunk and the conditioner, whole."""
    for name in ("vae", "image_encoder", "unet", "conditioner"):
        components[name].requires_grad_(False)
    parts = ("vae",) if stage == 0 else ("unet", "conditioner")
    trained = {}
    for part in parts:
        components[part].requires_grad_(True)
        trained[part] = [n for n, _ in components[part].named_parameters()]
    return trained


def check_size(components: dict, width: int, height: int, where: str) -> None:
    """Refuse a training size the model cannot take, naming the multiple it needs."""
    vae_scale = 2 ** (len(components["vae"].config.block_out_channels) - 1)
    unet_scale = 2 ** (len(components["unet"].config.block_out_channels) - 1)
    encoders = components["conditioner"].downscale
    if encoders != vae_scale:
        raise UniAnimateTrainError(f"the pose encoders downsample ×{encoders} but the VAE ×{vae_scale}", "bad_model")
    step = vae_scale * unet_scale
    if width % step or height % step:
        raise UniAnimateTrainError(f"{where}: {width}x{height} cannot be trained: width and height must be multiples "
                                   f"of {step} (VAE ×{vae_scale} then UNet ×{unet_scale})", "bad_resolution")


@torch.no_grad()
def _latents(vae, pixels: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
    """Scaled latents of (N, 3, H, W) in [-1, 1]: the posterior mean, or a sample under ``noise``."""
    dist = vae.encode(pixels.to(vae.dtype)).latent_dist
    z = dist.mean if noise is None else dist.mean + dist.std * noise.to(dist.mean)
    return z * vae.config.scaling_factor


def diffusion_loss(model, frozen: dict, batch: dict, stage, device) -> tuple[torch.Tensor, dict]:
    """The loss of one micro-batch. batch: pixels/poses (B, F, 3, H, W), reference (B, 3, H, W),
    reference_pose (B, 3, H, W), seed (B,); ``model`` is the (possibly DDP-wrapped)
    ``UniAnimateModel``."""
    vae, scheduler = frozen["vae"], frozen["scheduler"]
    pixels, poses = batch["pixels"].to(device), batch["poses"].to(device)
    reference = batch["reference"].to(device)
    b, f = pixels.shape[:2]
    gens = sample_generators(batch["seed"])
    # 1. Target latents (posterior means); the reference's a posterior sample, as at inference.
    latents = _latents(vae, pixels.flatten(0, 1))
    latents = latents.reshape(b, f, *latents.shape[1:]).permute(0, 2, 1, 3, 4).float().contiguous()
    eps = torch.stack([torch.randn(latents.shape[1], *latents.shape[3:], generator=g) for g in gens])
    ref_latent = _latents(vae, reference, eps).float()
    embeds = clip_embeddings(frozen["image_encoder"], frozen["feature_extractor"], reference)[:, 0].float()
    # 2. Each sample's draws from its own generator: timestep, noise (+ offset), dropout, continuation.
    n_t = scheduler.config.num_train_timesteps
    t = torch.stack([torch.randint(0, n_t, (), generator=g) for g in gens])
    noise = torch.stack([torch.randn(latents.shape[1:], generator=g) for g in gens])
    if stage.offset_noise:  # one offset per frame and channel, as the released sampler's noise
        noise = noise + stage.offset_noise * torch.stack(
            [torch.randn(latents.shape[1], latents.shape[2], 1, 1, generator=g) for g in gens])
    u = torch.stack([torch.rand(2, generator=g) for g in gens])
    drop = (u[:, 0] < stage.cond_drop).to(device)
    continued = (u[:, 1] < stage.continuation).to(device)
    noise, t = noise.to(device), t.to(device)
    # 3. v-prediction on the training schedule; continuation samples see their first frame.
    noisy = scheduler.add_noise(latents, noise, t)
    target = scheduler.get_velocity(latents, noise, t)
    local = None
    if bool(continued.any()):
        first = (pixels[:, 0].float() / 2 + 0.5) * continued.float()[:, None, None, None]
        local = first[:, :, None].expand(-1, -1, f, -1, -1)
    pred = model(noisy, t, poses.transpose(1, 2).float(), embeds, ref_latent, batch["reference_pose"].to(device).float(),
                 drop, local_image=local)
    # 4. Per-sample loss over every frame, weighted by min-SNR.
    per_sample = F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=(1, 2, 3, 4))
    weight = min_snr_weight(scheduler.alphas_cumprod, t.cpu(), stage.min_snr_gamma).to(device)
    return (weight * per_sample).mean(), {"dropped": int(drop.sum()), "continued": int(continued.sum())}
