"""The training losses: the diffusion loss of stages 1 and 2, and the VAE's of stage 0.

The diffusion loss follows the reference training (docs/design.md §4): v-prediction on the DDIM
schedule with zero terminal SNR, offset noise, optional min-SNR-γ weighting, and guidance dropout
that is inference's unconditional branch exactly (zero CLIP context, no reference tokens, pose
kept). Every random draw of a sample (timestep, noise, dropout, continuation) comes from a
generator seeded by that sample's own seed, so the loss of a sample does not depend on which
process computed it or on what ran before.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def sample_generators(seeds: torch.Tensor) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(int(s)) for s in seeds.tolist()]


@torch.no_grad()
def encode_latents(vae, pixels: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) in [-1, 1] → scaled latent means (N, 4, h, w), as `encode_reference` does."""
    return vae.encode(pixels.to(vae.dtype)).latent_dist.mean * vae.config.scaling_factor


@torch.no_grad()
def clip_embeddings(image_encoder, feature_extractor, reference: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [-1, 1] → (B, 1, D), through CLIP's own preprocessing as at inference."""
    images = ((reference.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    clip = feature_extractor(images=list(images), return_tensors="pt").pixel_values
    return image_encoder(clip.to(reference.device, image_encoder.dtype)).image_embeds.unsqueeze(1)


def min_snr_weight(alphas_cumprod: torch.Tensor, t: torch.Tensor, gamma: float | None) -> torch.Tensor:
    """Min-SNR-γ (Hang et al. 2023) for v-prediction: min(SNR, γ) / (SNR + 1); 1 when γ is None."""
    if gamma is None:
        return torch.ones(t.shape, dtype=torch.float32)
    a = alphas_cumprod[t].float()
    snr = a / (1 - a).clamp_min(1e-12)
    return snr.clamp(max=gamma) / (snr + 1)


def diffusion_loss(model, frozen: dict, batch: dict, stage, device) -> tuple[torch.Tensor, dict]:
    """The loss of one micro-batch. batch: pixels/poses (B, F, 3, H, W), reference (B, 3, H, W),
    seed (B,); `model` is the (possibly DDP-wrapped) `AnimateModel`."""
    vae, scheduler = frozen["vae"], frozen["scheduler"]
    pixels, poses = batch["pixels"].to(device), batch["poses"].to(device)
    b, f = pixels.shape[:2]
    # 1. Latents of the target frames and the reference, and the reference's CLIP embedding.
    latents = encode_latents(vae, pixels.flatten(0, 1))  # (B·F, 4, h, w)
    # (B, 4, F, h, w), contiguous: torch 2.13's CPU backward through the motion modules crashes
    # (SIGSEGV) on the permuted view
    latents = latents.reshape(b, f, *latents.shape[1:]).permute(0, 2, 1, 3, 4).float().contiguous()
    ref_latents = encode_latents(vae, batch["reference"].to(device)).float()  # (B, 4, h, w)
    embeds = clip_embeddings(frozen["image_encoder"], frozen["feature_extractor"], batch["reference"].to(device))
    # 2. Each sample's draws from its own generator: timestep, noise (+ offset noise), dropout.
    gens = sample_generators(batch["seed"])
    n_t = scheduler.config.num_train_timesteps
    t = torch.stack([torch.randint(0, n_t, (), generator=g) for g in gens])
    noise = torch.stack([torch.randn(latents.shape[1:], generator=g) for g in gens])
    if stage.offset_noise:  # one offset per video and channel (Guttenberg's offset noise)
        noise = noise + stage.offset_noise * torch.stack([torch.randn(latents.shape[1], 1, 1, 1, generator=g) for g in gens])
    u = torch.stack([torch.rand(2, generator=g) for g in gens])  # (B, 2): dropout, continuation
    keep = u[:, 0] >= stage.cond_drop
    given = (u[:, 1] < stage.continuation) & torch.tensor(f > 1)
    noise, t = noise.to(device), t.to(device)
    # 3. v-prediction target on the training schedule.
    noisy = scheduler.add_noise(latents, noise, t)
    target = scheduler.get_velocity(latents, noise, t)
    if bool(given.any()):  # UniAnimate's first-frame condition: frame 0 clean, no loss on it
        noisy[given.to(device), :, 0] = latents[given.to(device), :, 0]
    # 4. The shared conditioning: dropped samples get inference's unconditional branch.
    context = embeds.float() * keep.to(device, torch.float32)[:, None, None]
    rows = torch.where(keep, torch.arange(b), torch.full((b,), -1)).to(device)
    pred = model(noisy, t, poses.flatten(0, 1), context, rows, ref_latents=ref_latents, ref_context=embeds.float())
    # 5. Per-sample loss over the frames that count, weighted by min-SNR.
    err = F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=(1, 3, 4))  # (B, F)
    mask = torch.ones(b, f, device=device)
    mask[given.to(device), 0] = 0
    per_sample = (err * mask).sum(1) / mask.sum(1)
    weight = min_snr_weight(scheduler.alphas_cumprod, t.cpu(), stage.min_snr_gamma).to(device)
    loss = (weight * per_sample).mean()
    return loss, {"dropped": int((~keep).sum()), "continued": int(given.sum())}


class VaeAutoencoder(nn.Module):
    """The VAE as one module (encode → sample → decode) so that DDP wraps one forward."""

    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, x: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        posterior = self.vae.encode(x).latent_dist
        z = posterior.mean + posterior.std * eps
        return self.vae.decode(z).sample, posterior.kl()


def person_mask(poses: torch.Tensor, reach: int = 3) -> torch.Tensor:
    """(N, 3, H, W) drawn poses in [0, 1] → (N, 1, H, W): 1 within ``reach`` pixels of a drawn
    limb or point, else 0."""
    drawn = (poses.amax(dim=1, keepdim=True) > 0.05).float()
    return F.max_pool2d(drawn, 2 * reach + 1, stride=1, padding=reach)


def vae_loss(model, frozen: dict, batch: dict, stage, device) -> tuple[torch.Tensor, dict]:
    """Stage 0: L1 reconstruction (pixels near the person weighted ``person_weight``) +
    kl_weight · KL, on the target frames."""
    x = batch["pixels"].to(device).flatten(0, 1)  # (B·F, 3, H, W)
    f = batch["pixels"].shape[1]
    gens = sample_generators(batch["seed"])
    vae = frozen["vae"]
    scale = 2 ** (len(vae.config.block_out_channels) - 1)
    shape = (vae.config.latent_channels, x.shape[-2] // scale, x.shape[-1] // scale)
    eps = torch.stack([torch.randn((f, *shape), generator=g) for g in gens]).flatten(0, 1).to(device)
    recon, kl = model(x, eps)
    err = (recon.float() - x.float()).abs()
    if stage.person_weight != 1.0:
        weight = 1 + (stage.person_weight - 1) * person_mask(batch["poses"].to(device).flatten(0, 1).float())
        l1 = (err * weight).sum() / (weight.sum() * err.shape[1])
    else:
        l1 = err.mean()
    loss = l1 + stage.kl_weight * kl.float().mean()
    return loss, {"l1": float(l1.detach())}
