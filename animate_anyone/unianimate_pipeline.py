"""`UniAnimatePipeline`: a reference image and a pose sequence of any length → video frames, with
UniAnimate (arXiv 2406.01188; modules in `animate_anyone.models.unianimate`).

The released model's inference choices, on diffusers parts: the reference's CLIP image embedding
(CLIP's mean and std on the image squeezed to the encoder's size, no crop) makes 4 context tokens
after the stored 77 text tokens; its VAE latent (a posterior *sample* × the scaling factor) and
its pose make frame 0; every frame's pose goes into the condition channels. The first latent is
a noise prior: Gaussian noise with 0.1 offset noise (one value per frame and channel), and the
reference's latent noised to t = 949 under it. DDIM on the released grid (30 steps: 31
timesteps, 991 … 1), v-prediction, guidance 2.5 whose unconditional pass drops every condition,
the pose included. Long videos: overlapping windows (32 frames, overlap 8; the last one ends on
the last frame), the conditional and the unconditional predictions averaged per frame apart,
then guided. ``first_frame`` continues a video from a frame through the ``local_image`` path.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import PIL.Image
import torch
from diffusers import AutoencoderKL, DiffusionPipeline
from diffusers.image_processor import VaeImageProcessor
from diffusers.utils.torch_utils import randn_tensor

from animate_anyone.models import store
from animate_anyone.models.sizes import PUPPET_VAE, SD_VAE, TINY_CLIP, TINY_VAE
from animate_anyone.models.unianimate import (
    SCHEDULER,
    UniAnimateConditioner,
    UniAnimateScheduler,
    UniAnimateUNet,
    build_unianimate,
    predict,
)
from animate_anyone.pipeline import (
    AnimateAnyonePipelineOutput,
    InputError,
    _is_rgb,
    _pil,
    check_common_inputs,
    decode_video,
    pose_tensor,
    sliding_windows,
    window_weights,
)

FAMILY = "unianimate"
COMPONENTS = ("vae", "image_encoder", "feature_extractor", "unet", "conditioner", "scheduler")
# what `animate` uses when neither the command nor the pipeline's `animate` section says (the
# released inference: 30 steps, guidance 2.5, 32-frame windows overlapping by 8)
SAMPLING = {"steps": 30, "guidance": 2.5, "window": 32, "overlap": 8}
WEIGHTLESS = ("feature_extractor", "scheduler")
# OpenCLIP ViT-H-14's image tower as transformers' CLIP (laion/CLIP-ViT-H-14-laion2B-s32B-b79K)
CLIP_H14 = dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16,
                image_size=224, patch_size=14, projection_dim=1024, hidden_act="gelu")
NOISE_PRIOR = 949  # the released config's t for the noise prior (939 in its long-video config)


def feature_extractor(image_size: int = 224):
    """The released preprocessing: the whole image squeezed to image_size², CLIP's mean and std."""
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(size={"height": image_size, "width": image_size}, do_center_crop=False,
                              resample=PIL.Image.BILINEAR)


class UniAnimatePipeline(DiffusionPipeline):
    model_cpu_offload_seq = "image_encoder->conditioner->unet->vae"

    def __init__(self, vae, image_encoder, feature_extractor, unet, conditioner, scheduler):
        super().__init__()
        self.register_modules(vae=vae, image_encoder=image_encoder, feature_extractor=feature_extractor, unet=unet,
                              conditioner=conditioner, scheduler=scheduler)
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor)
        self.pose_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor, do_normalize=False)

    # --- inputs -----------------------------------------------------------------------------------

    def check_inputs(self, reference_image, poses, height, width, num_inference_steps, guidance_scale, window,
                     overlap, first_frame, reference_pose, noise_prior) -> None:
        check_common_inputs(reference_image, poses, height, width, num_inference_steps, guidance_scale,
                            self.vae_scale_factor)
        if window < 1:  # no position table: any window length runs (the released model trained on 16 and 32)
            raise InputError(f"window must be ≥ 1; got {window}")
        if not 0 <= overlap < window:
            raise InputError(f"overlap must be in [0, window={window}); got {overlap}")
        for name, image in (("first_frame", first_frame), ("reference_pose", reference_pose)):
            if image is not None and not _is_rgb(image)[0]:
                raise InputError(f"{name} must be an RGB image; got {_is_rgb(image)[1]}")
        last = self.scheduler.config.num_train_timesteps - 1
        if noise_prior is not None and not 0 <= noise_prior <= last:
            raise InputError(f"noise_prior must be a timestep in [0, {last}] or None; got {noise_prior}")

    def _pose_tensor(self, poses, height, width) -> torch.Tensor:
        """(F, 3, H, W) in [0, 1]."""
        return pose_tensor(self.pose_processor, poses, height, width)

    @torch.no_grad()
    def encode_reference(self, image, height, width, device, dtype, generator=None) -> tuple[torch.Tensor, torch.Tensor]:
        """CLIP image embedding (1, D) and the VAE latent, a posterior sample × scaling (1, 4, h, w)."""
        clip = self.feature_extractor(images=image, return_tensors="pt").pixel_values
        embeds = self.image_encoder(clip.to(device, dtype)).image_embeds
        pixels = self.image_processor.preprocess(image, height=height, width=width).to(device, dtype)
        latents = self.vae.encode(pixels).latent_dist.sample(generator) * self.vae.config.scaling_factor
        return embeds, latents

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor, chunk: int = 8) -> torch.Tensor:
        """(1, 4, F, h, w) → (F, 3, H, W) in [0, 1], `chunk` frames at a time."""
        return decode_video(self.vae, latents, chunk)

    def prepare_latents(self, shape, ref_latent, noise_prior, offset_noise, generator=None) -> torch.Tensor:
        """The first latent: Gaussian noise plus ``offset_noise`` × one Gaussian value per frame and
        channel; with ``noise_prior`` (a timestep), the reference latent noised to it under that noise."""
        device, dtype = ref_latent.device, ref_latent.dtype
        latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        if offset_noise:
            latents = latents + offset_noise * randn_tensor(shape[:3] + (1, 1), generator=generator, device=device,
                                                            dtype=dtype)
        if noise_prior is not None:
            prior = torch.tensor([noise_prior], device=device)
            latents = self.scheduler.add_noise(ref_latent[:, :, None].expand(shape), latents, prior)
        return latents

    # --- generation -------------------------------------------------------------------------------

    @torch.no_grad()
    def __call__(self, reference_image, poses, height: int | None = None, width: int | None = None,
                 num_inference_steps: int = 30, guidance_scale: float = 2.5, window: int = 32, overlap: int = 8,
                 window_batch_size: int = 1, first_frame=None, reference_pose=None, noise_prior: int | None = NOISE_PRIOR,
                 offset_noise: float = 0.1, generator: torch.Generator | None = None, latents: torch.Tensor | None = None,
                 decode_chunk_size: int = 8, output_type: str = "np", callback=None) -> AnimateAnyonePipelineOutput:
        """Animate `reference_image` (RGB PIL image or HxWx3 uint8) along `poses` (pose images, an
        (F, H, W, 3) uint8 array, or an (F, 3, H, W) tensor in [0, 1]).

        reference_pose: the reference image's own pose drawn like `poses` (frame 0's pose; the
        released model was trained with it; without it frame 0 holds the reference alone).
        first_frame: continue a video from this image (the ``local_image`` condition on every
        frame). noise_prior: the timestep the reference's latent is noised to for the first latent
        (None: plain noise). `callback(step, num_steps)` after every denoising step.
        """
        # 1. Check inputs and resolve sizes.
        self.check_inputs(reference_image, poses, height, width, num_inference_steps, guidance_scale, window, overlap,
                          first_frame, reference_pose, noise_prior)
        if height is None or width is None:
            ph, pw = (poses.shape[-2:] if isinstance(poses, torch.Tensor) else np.asarray(poses[0]).shape[:2])
            height = height or int(ph) // self.vae_scale_factor * self.vae_scale_factor
            width = width or int(pw) // self.vae_scale_factor * self.vae_scale_factor
        device, dtype = self._execution_device, self.unet.dtype
        num_frames = len(poses)
        do_cfg = guidance_scale != 1.0

        # 2. The reference: CLIP embedding and VAE latent; its pose; the first frame to continue from.
        embeds, ref_latent = self.encode_reference(_pil(reference_image), height, width, device, dtype, generator)
        pose_pixels = self._pose_tensor(poses, height, width).to(device, dtype).transpose(0, 1)[None]  # (1, 3, F, H, W)
        ref_pose = None
        if reference_pose is not None:
            ref_pose = self._pose_tensor([_pil(reference_pose)], height, width).to(device, dtype)  # (1, 3, H, W)
        local = None
        if first_frame is not None:
            local = self.pose_processor.preprocess(_pil(first_frame), height=height, width=width).to(device, dtype)

        # 3. Timesteps and the first latent: noise (+ offset noise), the reference noised under it.
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        shape = (1, 4, num_frames, height // self.vae_scale_factor, width // self.vae_scale_factor)
        if latents is None:
            latents = self.prepare_latents(shape, ref_latent, noise_prior, offset_noise, generator)
        latents = latents.to(device, dtype)

        # 4. Denoise: every window's conditional and unconditional predictions, averaged per frame
        #    apart, then guided, then one DDIM step for all frames.
        windows = sliding_windows(num_frames, window, overlap)
        weights = window_weights(num_frames, windows).to(device, dtype)[None, None, :, None, None]
        for step, t in enumerate(self.progress_bar(self.scheduler.timesteps)):
            cond_sum, uncond_sum = torch.zeros_like(latents), torch.zeros_like(latents)
            for i in range(0, len(windows), window_batch_size):
                group = windows[i:i + window_batch_size]
                cond, uncond = self._predict(latents, group, t, pose_pixels, embeds, ref_latent, ref_pose, local, do_cfg)
                for j, w in enumerate(group):
                    cond_sum[:, :, w] += cond[j:j + 1]
                    if do_cfg:
                        uncond_sum[:, :, w] += uncond[j:j + 1]
            v = cond_sum * weights
            if do_cfg:
                u = uncond_sum * weights
                v = u + guidance_scale * (v - u)
            latents = self.scheduler.step(v, t, latents).prev_sample
            if callback is not None:
                callback(step + 1, len(self.scheduler.timesteps))

        # 5. Decode.
        if output_type == "latent":
            return AnimateAnyonePipelineOutput(frames=latents)
        video = self.decode_latents(latents, decode_chunk_size)
        self.maybe_free_model_hooks()
        if output_type == "pt":
            return AnimateAnyonePipelineOutput(frames=video)
        frames = (video.permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)
        return AnimateAnyonePipelineOutput(frames=frames)

    def _predict(self, latents, group, t, pose_pixels, embeds, ref_latent, ref_pose, local, do_cfg):
        """(conditional, unconditional or None) predictions for windows ``group`` (equal lengths),
        each (len(group), 4, W, h, w), in one batch: the unconditional rows drop every condition."""
        n = len(group)
        x = torch.cat([latents[:, :, w] for w in group])
        pose = torch.cat([pose_pixels[:, :, w] for w in group])
        frames = len(group[0])
        rows = 2 * n if do_cfg else n
        drop = torch.arange(rows, device=x.device) >= n
        conditions = dict(
            image_embeds=embeds.expand(rows, -1), pose=pose.repeat(rows // n, 1, 1, 1, 1),
            reference_latent=ref_latent.expand(rows, -1, -1, -1),
            reference_pose=None if ref_pose is None else ref_pose.expand(rows, -1, -1, -1),
            local_image=None if local is None else local[:, :, None].expand(rows, -1, frames, -1, -1))
        out = predict(self.unet, self.conditioner, x.repeat(rows // n, 1, 1, 1, 1), t,
                      self.conditioner.text_context, drop=drop, **conditions)
        return (out[:n], out[n:]) if do_cfg else (out, None)


PIPELINE = UniAnimatePipeline  # the model store builds this family's pipelines by these names


def component_classes() -> dict:
    """Each component's class, loaded one by one (a fresh process need not have imported ours)."""
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    return {"vae": AutoencoderKL, "image_encoder": CLIPVisionModelWithProjection, "feature_extractor": CLIPImageProcessor,
            "unet": UniAnimateUNet, "conditioner": UniAnimateConditioner, "scheduler": UniAnimateScheduler}


def load_components(path: Path, dtype: torch.dtype = torch.float32) -> dict:
    components = {}
    for name, cls in component_classes().items():
        folder = str(Path(path) / name)
        if name in WEIGHTLESS:
            components[name] = cls.from_pretrained(folder)
        else:
            kind = "dtype" if name == "image_encoder" else "torch_dtype"
            components[name] = cls.from_pretrained(folder, **{kind: dtype}).eval()
    return components


def save_unianimate_pipeline(pipe: UniAnimatePipeline, out: Path, source: dict | None = None) -> Path:
    """The pipeline as a model folder of this family, through the store (atomic, with its manifest)."""
    return store.save(Path(out), lambda tmp: pipe.save_pretrained(tmp, safe_serialization=True), source, FAMILY)


def load_pipeline(path: Path, dtype: torch.dtype | None = torch.float32, device: str | None = None) -> UniAnimatePipeline:
    """Load a UniAnimate folder, naming any missing component before diffusers tries."""
    path, dtype = Path(path), dtype or torch.float32
    try:
        store.check_complete(path, COMPONENTS, weightless=WEIGHTLESS)
        if store.family(path) != FAMILY:
            raise store.ModelFolderError(f"model folder {path} holds a {store.family(path)!r} model, not {FAMILY!r}",
                                         "wrong_family")
    except store.ModelFolderError as exc:
        raise InputError(exc.message, exc.reason) from exc
    pipe = UniAnimatePipeline(**load_components(path, dtype))
    if device:
        pipe.to(device)
    return pipe


def build_components(size: str = "tiny", seed: int = 0, temporal: str = "transformer") -> dict:
    """Randomly initialised components of ``size`` (tiny, puppet or full) with ``temporal``
    layers (transformer or mamba)."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    parts = build_unianimate(size, seed, temporal)
    clip = CLIP_H14 if size == "full" else TINY_CLIP
    vae = {"full": SD_VAE, "tiny": TINY_VAE, "puppet": PUPPET_VAE}[size]
    return dict(vae=AutoencoderKL(**vae), image_encoder=CLIPVisionModelWithProjection(CLIPVisionConfig(**clip)).eval(),
                feature_extractor=feature_extractor(clip["image_size"]), unet=parts["unet"].eval(),
                conditioner=parts["conditioner"].eval(), scheduler=UniAnimateScheduler(**SCHEDULER))


def create_model(out: Path, size: str = "tiny", seed: int = 0, temporal: str = "transformer") -> Path:
    """A randomly initialised UniAnimate folder of ``size`` with ``temporal`` layers."""
    pipe = UniAnimatePipeline(**build_components(size, seed, temporal))
    return save_unianimate_pipeline(pipe, Path(out), source={"created": f"random {size}", "seed": seed,
                                                              "temporal": temporal})


def _clip_models(path: Path):
    """(image tower with projection, text tower) from a transformers CLIP folder (``CLIPModel``,
    e.g. laion/CLIP-ViT-H-14-laion2B-s32B-b79K) or an OpenCLIP file (ViT-H-14's head widths)."""
    from transformers import CLIPModel, CLIPTextModel, CLIPVisionModelWithProjection

    from animate_anyone.models.convert import CheckpointError, load_checkpoint
    from animate_anyone.models.openclip import load_openclip

    path = Path(path)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise CheckpointError(f"--clip {path}: no config.json (a transformers CLIP folder) in it", "missing_file")
        both = CLIPModel.from_pretrained(path)
        vision_config = both.config.vision_config
        vision_config.projection_dim = both.config.projection_dim
        vision = CLIPVisionModelWithProjection(vision_config)
        vision.load_state_dict({k: v for k, v in both.state_dict().items()
                                if k.startswith(("vision_model.", "visual_projection."))}, strict=False)
        text = CLIPTextModel(both.config.text_config)
        text.load_state_dict({k[len("text_model."):]: v for k, v in both.state_dict().items()
                              if k.startswith("text_model.")}, strict=False)
        return vision.eval(), text.eval()
    return load_openclip(load_checkpoint(path), str(path))


def _size_of(state: dict, source: str) -> str:
    """Which of our sizes has the file's layout (keys and shapes); else what differs from the
    nearest one (the most keys of equal shape)."""
    from accelerate import init_empty_weights

    from animate_anyone.models.convert import CheckpointError, check_keys
    from animate_anyone.models.convert_unianimate import released_shapes

    nearest = None
    for size in ("full", "puppet", "tiny"):
        with init_empty_weights():
            parts = build_unianimate(size)
        shapes = released_shapes(parts["unet"], parts["conditioner"])
        equal = sum(k in state and tuple(state[k].shape) == tuple(v) for k, v in shapes.items())
        if equal == len(shapes) == len(state):
            return size
        if nearest is None or equal > nearest[0]:
            nearest = (equal, size, shapes)
    _, size, shapes = nearest
    check_keys(f"{source} (against the released layout, {size} size)", state, shapes)
    raise CheckpointError(f"{source}: the layout of none of the sizes full, puppet, tiny", "checkpoint_keys")


def convert_unianimate_files(unianimate: Path, vae: Path, clip: Path, out: Path,
                             dtype: torch.dtype = torch.float32) -> dict:
    """The released UniAnimate checkpoint + the SD-2.1 VAE (a diffusers folder) + OpenCLIP ViT-H-14
    → a UniAnimate model folder. Every key is checked (``models.convert_unianimate``). The released
    weights are for research use only (ali-vilab/UniAnimate)."""
    from accelerate import init_empty_weights

    from animate_anyone.models.convert import CheckpointError, load_checkpoint
    from animate_anyone.models.convert_unianimate import import_unianimate
    from animate_anyone.models.openclip import empty_prompt_context

    # 1. Every input found before any is read.
    missing = store.missing_unianimate_inputs(unianimate, vae, clip)
    if missing:
        raise CheckpointError(missing, "missing_file")
    # 2. The trunk and the conditioner, built without memory, filled from the file.
    state = load_checkpoint(Path(unianimate))
    size = _size_of(state, str(unianimate))
    with init_empty_weights():
        parts = build_unianimate(size)
    vision, text = _clip_models(Path(clip))
    context = empty_prompt_context(text)
    import_unianimate(state, parts["unet"], parts["conditioner"], str(unianimate), text_context=context)
    cond = parts["conditioner"].config
    if vision.config.projection_dim != cond.image_embed_dim:
        raise CheckpointError(f"--clip {clip}: image embeddings of {vision.config.projection_dim}, the model takes "
                              f"{cond.image_embed_dim}", "checkpoint_keys")
    # 3. The frozen parts and the sampler.
    components = dict(vae=AutoencoderKL.from_pretrained(vae), image_encoder=vision,
                      feature_extractor=feature_extractor(vision.config.image_size), unet=parts["unet"],
                      conditioner=parts["conditioner"], scheduler=UniAnimateScheduler(**SCHEDULER))
    for name in ("vae", "image_encoder", "unet", "conditioner"):
        components[name].to(dtype=dtype).eval()
    source = {"unianimate": str(unianimate), "vae": str(vae), "clip": str(clip),
              "licence": "UniAnimate weights: research use only (ali-vilab/UniAnimate)"}
    save_unianimate_pipeline(UniAnimatePipeline(**components), Path(out), source=source)
    return {"out": str(out), "size": size, "tensors": len(state), "clip": type(vision).__name__}
