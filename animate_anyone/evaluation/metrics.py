"""The metrics, from well-kept libraries: per-frame L1, PSNR and SSIM (torchmetrics), LPIPS
(torchmetrics, which needs torchvision and its backbone's weights), Fréchet distances (torchmetrics'
computation over the features of a TorchScript network: FID with Inception, FVD with I3D) and
identity (cosine similarity of CLIP image embeddings, transformers).

A metric whose weights or package are missing raises ``MetricUnavailable``: the evaluation records
it in ``failures`` and scores the others.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from animate_anyone.config import FeatureNetSpec
from animate_anyone.errors import ConfigError, PermanentError
from animate_anyone.media.frames import frame_scores  # noqa: F401 - the bench's per-frame scores, here with the others
from animate_anyone.weights import resolve_weights


class MetricUnavailable(PermanentError):
    """A metric cannot be scored here (weights or a package missing); the message says what to get."""


class Lpips:
    """torchmetrics' LPIPS (its linear layers ship with it; the backbone's ImageNet weights come from
    torchvision's cache, ``$TORCH_HOME/hub/checkpoints``)."""

    def __init__(self, net: str, device: str = "cpu"):
        try:
            import torchvision  # noqa: F401
            from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity
        except (ImportError, RuntimeError, ModuleNotFoundError) as exc:
            raise MetricUnavailable(f"evaluate.lpips: LPIPS needs torchvision, which does not import here "
                                    f"({type(exc).__name__}: {exc}); install the torchvision that matches your "
                                    "torch, or set evaluate.lpips to null", "missing_package") from exc
        try:
            self.metric = LearnedPerceptualImagePatchSimilarity(net_type=net, normalize=True).to(device)
        except Exception as exc:  # the backbone's weights: a download torchvision could not make
            raise MetricUnavailable(f"evaluate.lpips: cannot load the {net} backbone's weights ({type(exc).__name__}: "
                                    f"{exc}); put them in torchvision's cache ($TORCH_HOME/hub/checkpoints) where "
                                    "there is no internet", "missing_weights") from exc
        self.device = device

    def __call__(self, generated: torch.Tensor, real: torch.Tensor) -> np.ndarray:
        out = []
        for g, r in zip(generated, real):
            self.metric.reset()
            out.append(float(self.metric(g[None].to(self.device), r[None].to(self.device))))
        return np.asarray(out)


def resolve_file(spec: str, field: str, base_dir: Path | None, want: str = "file") -> Path:
    """A local path (relative to ``base_dir``) or an ``hf://`` id from the hub's cache; missing weights
    are ``MetricUnavailable``."""
    try:
        return resolve_weights(spec, field, base_dir, want, MetricUnavailable)
    except ConfigError as exc:
        raise MetricUnavailable(exc.message, "missing_weights") from exc


class FeatureNet:
    """A TorchScript feature network (``evaluate.fid`` / ``evaluate.fvd``) loaded with torch.jit."""

    def __init__(self, cfg: FeatureNetSpec, field: str, base_dir: Path | None, device: str = "cpu"):
        path = resolve_file(cfg.weights, f"{field}.weights", base_dir)
        try:
            self.net = torch.jit.load(str(path), map_location=device).eval()
        except Exception as exc:
            raise MetricUnavailable(f"{field}.weights: {path} is not a TorchScript network torch.jit can load "
                                    f"({type(exc).__name__}: {str(exc)[:200]})", "bad_weights") from exc
        self.cfg, self.device, self.path = cfg, device, path

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` in [0, 1] → what the network takes."""
        if self.cfg.input == "uint8":
            return (x.clamp(0, 1) * 255).round().to(torch.uint8)
        return x.float() if self.cfg.input == "unit" else x.float() * 2 - 1

    @torch.no_grad()
    def images(self, frames: torch.Tensor, batch: int = 16) -> np.ndarray:
        """FID: (F, 3, H, W) in [0, 1] → (F, D) features."""
        feats = [self.net(self._prepare(frames[i:i + batch]).to(self.device), **self.cfg.kwargs).float().cpu()
                 for i in range(0, len(frames), batch)]
        return torch.cat(feats).reshape(len(frames), -1).numpy().astype(np.float64)

    @torch.no_grad()
    def video(self, frames: torch.Tensor) -> np.ndarray:
        """FVD: (F, 3, H, W) in [0, 1] → (S, D), one feature per segment of ``frames`` frames."""
        n = self.cfg.frames
        segments = [frames[i:i + n] for i in range(0, len(frames) - n + 1, n)]
        if not segments:
            return np.zeros((0, 0))
        clips = torch.stack([self._prepare(s).permute(1, 0, 2, 3) for s in segments])  # (S, 3, T, H, W)
        return self.net(clips.to(self.device), **self.cfg.kwargs).float().cpu().reshape(len(segments), -1).numpy() \
            .astype(np.float64)


class _Features(torch.nn.Module):
    """Features already computed, handed to torchmetrics' Fréchet distance as they are."""

    def __init__(self, dim: int):
        super().__init__()
        self.num_features = dim

    def forward(self, x):
        return x


def frechet_distance(real: np.ndarray, generated: np.ndarray) -> float:
    """The Fréchet distance between Gaussians fitted to two feature sets (N, D), torchmetrics' FID
    computation. Needs at least two rows on each side."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    if len(real) < 2 or len(generated) < 2:
        raise MetricUnavailable(f"a Fréchet distance needs at least 2 feature rows a side; got {len(real)} real and "
                                f"{len(generated)} generated (score more clips or frames)", "too_few_samples")
    fid = FrechetInceptionDistance(feature=_Features(real.shape[1]), reset_real_features=True)
    fid.set_dtype(torch.float64)
    fid.update(torch.from_numpy(real), real=True)
    fid.update(torch.from_numpy(generated), real=False)
    return float(fid.compute())


class Identity:
    """Cosine similarity of each generated frame's CLIP image embedding to the reference's."""

    def __init__(self, spec: str, base_dir: Path | None, device: str = "cpu"):
        from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

        path = resolve_file(spec, "evaluate.identity", base_dir, "dir")
        try:
            self.model = CLIPVisionModelWithProjection.from_pretrained(path).eval().to(device)
            self.processor = CLIPImageProcessor.from_pretrained(path)
        except Exception as exc:
            raise MetricUnavailable(f"evaluate.identity: {path} is not a CLIP vision model folder transformers can "
                                    f"load ({type(exc).__name__}: {str(exc)[:200]})", "bad_weights") from exc
        self.device = device

    @torch.no_grad()
    def embed(self, frames: torch.Tensor) -> torch.Tensor:
        pixels = self.processor(images=list(frames.clamp(0, 1)), return_tensors="pt", do_rescale=False)["pixel_values"]
        emb = self.model(pixel_values=pixels.to(self.device)).image_embeds.float().cpu()
        return torch.nn.functional.normalize(emb, dim=-1)

    def __call__(self, generated: torch.Tensor, reference: torch.Tensor) -> np.ndarray:
        ref = self.embed(reference[None])
        return (self.embed(generated) @ ref.T)[:, 0].numpy()
