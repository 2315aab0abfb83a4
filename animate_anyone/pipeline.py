"""`AnimateAnyonePipeline`: a reference image and a pose sequence of any length → video frames.

Animate Anyone (arXiv 2311.17117) with the reference implementation's inference choices
(Moore-AnimateAnyone; docs/design.md §4), on diffusers parts:
ReferenceNet once per video → reference tokens; pose guider per frame → added after the
denoiser's `conv_in`; DDIM with the training schedule; classifier-free guidance whose
unconditional branch has a zero CLIP embedding and no reference tokens but keeps the pose;
overlapping windows averaged per frame, the last window anchored at the end.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from diffusers import DiffusionPipeline
from diffusers.image_processor import VaeImageProcessor
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from animate_anyone.errors import PermanentError
from animate_anyone.models import store
from animate_anyone.models.convert import moore_components
from animate_anyone.models.denoiser import AnimateModel
from animate_anyone.models.pose_guider import PoseGuider
from animate_anyone.models.reference_attention import ReferenceBank
from animate_anyone.models.sizes import build_components
from animate_anyone.models.unets import ReferenceNet, VideoUNet

FAMILY = "animate-anyone"  # what the model store records in the folders this pipeline saves
COMPONENTS = ("vae", "image_encoder", "feature_extractor", "reference_unet", "unet", "pose_guider", "scheduler")
# what `animate` uses when neither the command nor the pipeline's `animate` section says
# (Moore-AnimateAnyone's inference: 20 DDIM steps, guidance 3.5, 24-frame windows)
SAMPLING = {"steps": 20, "guidance": 3.5, "window": 24, "overlap": 4}


class InputError(PermanentError, ValueError):
    """An argument of the pipeline is unusable; the message names it."""


@dataclass
class AnimateAnyonePipelineOutput(BaseOutput):
    frames: np.ndarray | torch.Tensor  # np: (F, H, W, 3) uint8; pt: (F, 3, H, W) in [0, 1]; latent: (1, 4, F, h, w)


def sliding_windows(num_frames: int, window: int = 24, overlap: int = 4) -> list[list[int]]:
    """Frame indices of overlapping windows covering 0…num_frames-1; the last ends at the last frame.

    No window wraps around to the start (the reference code's does, which shows at the ends).
    """
    if num_frames < 1:
        raise InputError(f"num_frames must be ≥ 1, got {num_frames}")
    if not 0 <= overlap < window:
        raise InputError(f"overlap must be in [0, window), got overlap={overlap}, window={window}")
    if num_frames <= window:
        return [list(range(num_frames))]
    stride = window - overlap
    starts = list(range(0, num_frames - window + 1, stride))
    if starts[-1] + window < num_frames:
        starts.append(num_frames - window)
    return [list(range(s, s + window)) for s in starts]


def window_weights(num_frames: int, windows: list[list[int]]) -> torch.Tensor:
    """Per-frame averaging weight: 1 / (number of windows holding the frame)."""
    counts = torch.zeros(num_frames)
    for w in windows:
        counts[w] += 1
    return 1.0 / counts


def _is_rgb(image) -> tuple[bool, str]:
    if isinstance(image, PIL.Image.Image):
        return image.mode == "RGB", f"PIL mode {image.mode!r}"
    arr = np.asarray(image)
    ok = arr.ndim == 3 and arr.shape[-1] == 3
    return ok, f"array of shape {arr.shape}"


def check_common_inputs(reference_image, poses, height, width, num_inference_steps, guidance_scale,
                        vae_scale_factor: int) -> None:
    """The checks both model families make on their shared arguments (messages name the argument)."""
    ok, what = _is_rgb(reference_image)
    if not ok:
        raise InputError(f"reference_image must be an RGB image (3 channels); got {what}. Greyscale and RGBA "
                         "images need converting first, e.g. image.convert('RGB') after choosing a background")
    if poses is None or len(poses) == 0:
        raise InputError("poses: got 0 frames; give at least one pose image")
    if isinstance(poses, torch.Tensor):
        sizes = {tuple(poses.shape[-2:])}
    else:
        sizes = {p.size[::-1] if isinstance(p, PIL.Image.Image) else np.asarray(p).shape[:2] for p in poses}
    if len(sizes) != 1:
        raise InputError(f"poses: every frame must have the same size; got (height, width) {sorted(sizes)}")
    for name, value in (("height", height), ("width", width)):
        if value is not None and (value <= 0 or value % vae_scale_factor):
            raise InputError(f"{name} must be a positive multiple of {vae_scale_factor}; got {value}")
    if num_inference_steps < 1:
        raise InputError(f"num_inference_steps must be ≥ 1; got {num_inference_steps}")
    if guidance_scale < 0:
        raise InputError(f"guidance_scale must be ≥ 0; got {guidance_scale}")


def pose_tensor(processor, poses, height, width) -> torch.Tensor:
    """Pose images (list, uint8 array or (F, 3, H, W) tensor) → (F, 3, H, W) in [0, 1] at the size."""
    if isinstance(poses, torch.Tensor):
        t = poses.float()
        if t.shape[-2:] != (height, width):
            t = torch.nn.functional.interpolate(t, size=(height, width), mode="bilinear", align_corners=False)
        return t
    images = [p if isinstance(p, PIL.Image.Image) else PIL.Image.fromarray(np.asarray(p, np.uint8)) for p in poses]
    return processor.preprocess(images, height=height, width=width)


@torch.no_grad()
def decode_video(vae, latents: torch.Tensor, chunk: int = 8) -> torch.Tensor:
    """(1, 4, F, h, w) → (F, 3, H, W) in [0, 1], ``chunk`` frames at a time."""
    flat = latents[0].permute(1, 0, 2, 3) / vae.config.scaling_factor  # (F, 4, h, w)
    out = [vae.decode(flat[i:i + chunk]).sample.float() for i in range(0, flat.shape[0], chunk)]
    return (torch.cat(out) / 2 + 0.5).clamp(0, 1)


class AnimateAnyonePipeline(DiffusionPipeline):
    model_cpu_offload_seq = "image_encoder->reference_unet->pose_guider->unet->vae"

    def __init__(self, vae, image_encoder, feature_extractor, reference_unet, unet, pose_guider, scheduler):
        super().__init__()
        self.register_modules(vae=vae, image_encoder=image_encoder, feature_extractor=feature_extractor,
                              reference_unet=reference_unet, unet=unet, pose_guider=pose_guider, scheduler=scheduler)
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor)
        self.pose_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor, do_normalize=False)
        self.reference_bank = ReferenceBank()
        # the conditioning shared with training (`models.denoiser`): ReferenceNet → bank, pose
        # guider → after conv_in, rows choose each video's reference (-1: none)
        self.denoiser = AnimateModel(reference_unet, unet, pose_guider, self.reference_bank)

    # --- inputs -----------------------------------------------------------------------------------

    def check_inputs(self, reference_image, poses, height, width, num_inference_steps, guidance_scale,
                     window, overlap, first_frame) -> None:
        check_common_inputs(reference_image, poses, height, width, num_inference_steps, guidance_scale,
                            self.vae_scale_factor)
        max_len = self.unet.config.motion_max_seq_length
        if not 1 <= window <= max_len:
            raise InputError(f"window must be in [1, {max_len}] (the motion modules' position table); got {window}")
        if not 0 <= overlap < window:
            raise InputError(f"overlap must be in [0, window={window}); got {overlap}")
        if first_frame is not None and not _is_rgb(first_frame)[0]:
            raise InputError(f"first_frame must be an RGB image; got {_is_rgb(first_frame)[1]}")

    def _pose_tensor(self, poses, height, width) -> torch.Tensor:
        """(F, 3, H, W) in [0, 1]."""
        return pose_tensor(self.pose_processor, poses, height, width)

    @torch.no_grad()
    def encode_reference(self, image, height, width, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """CLIP image embedding (1, 1, D) and the VAE latent mean × scaling (1, 4, h, w)."""
        clip = self.feature_extractor(images=image, return_tensors="pt").pixel_values
        embeds = self.image_encoder(clip.to(device, dtype)).image_embeds.unsqueeze(1)
        pixels = self.image_processor.preprocess(image, height=height, width=width).to(device, dtype)
        latents = self.vae.encode(pixels).latent_dist.mean * self.vae.config.scaling_factor
        return embeds, latents

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor, chunk: int = 8) -> torch.Tensor:
        """(1, 4, F, h, w) → (F, 3, H, W) in [0, 1], `chunk` frames at a time."""
        return decode_video(self.vae, latents, chunk)

    # --- generation -------------------------------------------------------------------------------

    @torch.no_grad()
    def __call__(self, reference_image, poses, height: int | None = None, width: int | None = None,
                 num_inference_steps: int = 20, guidance_scale: float = 3.5, window: int = 24, overlap: int = 4,
                 window_batch_size: int = 1, first_frame=None, generator: torch.Generator | None = None,
                 latents: torch.Tensor | None = None, decode_chunk_size: int = 8, output_type: str = "np",
                 callback=None) -> AnimateAnyonePipelineOutput:
        """Animate `reference_image` (RGB PIL image or HxWx3 uint8) along `poses` (a list of pose
        images, an (F, H, W, 3) uint8 array, or an (F, 3, H, W) tensor in [0, 1]).

        height, width: output size (multiples of 8; default: the pose frames' size). With
        `first_frame` (UniAnimate-style continuation) the video starts from that image: frame 0 is
        its clean latent at every step (what stage 2 trains with `continuation`), so a long video
        can be extended from its last frame.
        `callback(step, num_steps)` is called after every denoising step.
        """
        # 1. Check inputs and resolve sizes.
        self.check_inputs(reference_image, poses, height, width, num_inference_steps, guidance_scale,
                          window, overlap, first_frame)
        if height is None or width is None:
            ph, pw = (poses.shape[-2:] if isinstance(poses, torch.Tensor) else np.asarray(poses[0]).shape[:2])
            height = height or int(ph) // self.vae_scale_factor * self.vae_scale_factor
            width = width or int(pw) // self.vae_scale_factor * self.vae_scale_factor
        device, dtype = self._execution_device, self.unet.dtype
        num_frames = len(poses)
        do_cfg = guidance_scale > 1.0
        reference_image = _pil(reference_image)

        # 2. Reference: CLIP embedding and latent; the ReferenceNet runs once, at timestep 0, with
        #    the conditional embedding, and its self-attention inputs fill the bank.
        embeds, ref_latents = self.encode_reference(reference_image, height, width, device, dtype)
        self.denoiser.write_reference(ref_latents, embeds)
        # 3. Conditioning per denoiser batch: [unconditional videos, conditional videos].
        #    Unconditional = zero CLIP embedding, no reference tokens (bank row -1), pose kept.
        cond_context = torch.cat([torch.zeros_like(embeds), embeds]) if do_cfg else embeds
        rows = torch.tensor([-1, 0] if do_cfg else [0], device=device)
        pose_pixels = self._pose_tensor(poses, height, width).to(device, dtype)  # (F, 3, H, W)

        # 4. Timesteps and initial noise: (1, 4, F, h, w).
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        shape = (1, self.unet.config.in_channels, num_frames, height // self.vae_scale_factor,
                 width // self.vae_scale_factor)
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        latents = latents.to(device, dtype) * self.scheduler.init_noise_sigma
        anchor = None
        if first_frame is not None:
            anchor = self.encode_reference(_pil(first_frame), height, width, device, dtype)[1][:, :, None]

        # 5. Denoise: every window's prediction, averaged per frame, then one DDIM step for all.
        windows = sliding_windows(num_frames, window, overlap)
        weights = window_weights(num_frames, windows).to(device, dtype)[None, None, :, None, None]
        for step, t in enumerate(self.progress_bar(self.scheduler.timesteps)):
            if anchor is not None:  # continuation (UniAnimate): frame 0 is the given frame, clean, as
                latents[:, :, :1] = anchor  # training's `continuation` samples teach it
            noise_pred = torch.zeros_like(latents)
            for i in range(0, len(windows), window_batch_size):
                group = windows[i:i + window_batch_size]
                pred = self._predict(latents, group, t, pose_pixels, cond_context, rows, guidance_scale, do_cfg)
                for w, p in zip(group, pred):
                    noise_pred[:, :, w] += p[None]
            latents = self.scheduler.step(noise_pred * weights, t, latents).prev_sample
            if callback is not None:
                callback(step + 1, len(self.scheduler.timesteps))
        if anchor is not None:
            latents[:, :, :1] = anchor
        self.reference_bank.clear()

        # 6. Decode.
        if output_type == "latent":
            return AnimateAnyonePipelineOutput(frames=latents)
        video = self.decode_latents(latents, decode_chunk_size)  # (F, 3, H, W)
        self.maybe_free_model_hooks()
        if output_type == "pt":
            return AnimateAnyonePipelineOutput(frames=video)
        frames = (video.permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)
        return AnimateAnyonePipelineOutput(frames=frames)

    def _predict(self, latents, group, t, pose_pixels, cond_context, rows, guidance_scale, do_cfg):
        """Guided noise predictions for windows `group` (equal lengths): (len(group), 4, W, h, w)."""
        n, copies = len(group), (2 if do_cfg else 1)
        # (n, 4, W, h, w): windows side by side in the batch
        x = torch.stack([latents[0, :, w] for w in group])
        pose = torch.cat([pose_pixels[w] for w in group])  # (n·W, 3, H, W), windows in order
        # rows [uncond × n, cond × n]: the unconditional copies read no reference, the pose is kept
        pred = self.denoiser(torch.cat([x] * copies), t, torch.cat([pose] * copies),
                             cond_context.repeat_interleave(n, dim=0), rows.repeat_interleave(n))
        if do_cfg:
            uncond, cond = pred.chunk(2)
            pred = uncond + guidance_scale * (cond - uncond)
        return pred


def _pil(image) -> PIL.Image.Image:
    return image if isinstance(image, PIL.Image.Image) else PIL.Image.fromarray(np.asarray(image, np.uint8))


PIPELINE = AnimateAnyonePipeline  # the model store builds this family's pipelines by these names
WEIGHTLESS = ("feature_extractor", "scheduler")


def save_animate_pipeline(pipe: AnimateAnyonePipeline, out: Path, source: dict | None = None) -> Path:
    """The pipeline as a model folder, through the store (atomic, with its manifest)."""
    return store.save(Path(out), lambda tmp: pipe.save_pretrained(tmp, safe_serialization=True), source, FAMILY)


def load_animate_pipeline(path: Path, dtype: torch.dtype | None = torch.float32,
                          device: str | None = None) -> AnimateAnyonePipeline:
    """Load a pipeline folder, naming any missing component before diffusers tries."""
    path, dtype = Path(path), dtype or torch.float32
    try:
        store.check_complete(path, COMPONENTS, weightless=WEIGHTLESS)
        if store.family(path) != FAMILY:
            raise store.ModelFolderError(f"model folder {path} holds a {store.family(path)!r} model, not {FAMILY!r}",
                                         "wrong_family")
    except store.ModelFolderError as exc:
        raise InputError(exc.message, exc.reason) from exc
    pipe = AnimateAnyonePipeline(**load_components(path, dtype))
    if device:
        pipe.to(device)
    return pipe


load_pipeline = load_animate_pipeline  # the store's name for a family's loader


def component_classes() -> dict:
    """Each component's class. Loaded one by one: a fresh process need not have imported our
    modules for diffusers' registry to know them (`from_pretrained` on the whole pipeline looks
    custom classes up by module name and fails in a new process)."""
    from diffusers import AutoencoderKL, DDIMScheduler
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    return {"vae": AutoencoderKL, "image_encoder": CLIPVisionModelWithProjection,
            "feature_extractor": CLIPImageProcessor, "reference_unet": ReferenceNet, "unet": VideoUNet,
            "pose_guider": PoseGuider, "scheduler": DDIMScheduler}


def load_components(path: Path, dtype: torch.dtype = torch.float32) -> dict:
    components = {}
    for name, cls in component_classes().items():
        folder = str(Path(path) / name)
        if name == "feature_extractor":
            components[name] = cls.from_pretrained(folder)
        elif name == "scheduler":
            components[name] = cls.from_pretrained(folder)
        else:
            components[name] = cls.from_pretrained(folder, dtype=dtype) if name == "image_encoder" \
                else cls.from_pretrained(folder, torch_dtype=dtype)
            components[name].eval()
    return components


def model_fingerprint(path: Path) -> str:
    """A model folder's identity without reading its weights (``models.store.fingerprint``)."""
    return store.fingerprint(path)


def create_model(out: Path, size: str = "tiny", seed: int = 0) -> Path:
    """A randomly initialised pipeline folder of `size` (tiny: a few MB; full: SD-1.5 shapes)."""

    pipe = AnimateAnyonePipeline(**build_components(size, seed=seed))
    return save_animate_pipeline(pipe, Path(out), source={"created": f"random {size}", "seed": seed})


def resolve_model(spec: str, data_root: Path, base_dir: Path | None = None, seed: int = 0) -> Path:
    """Where a model named on the command line or in the config is (``ModelStore.resolve``);
    "tiny-random" is built under DATA_ROOT/models once, seeded."""
    models = store.ModelStore(data_root)
    path = models.resolve(spec, base_dir)
    if spec == "tiny-random" and not store.is_model(path):
        create_model(path, "tiny", seed)
    return path


def convert_moore(moore_dir: Path | None, base: Path | None, out: Path, motion: Path | None = None,
                  vae: Path | None = None, image_encoder: Path | None = None,
                  dtype: torch.dtype = torch.float32) -> dict:
    """Moore-AnimateAnyone weights (+ optionally AnimateDiff motion modules) → a pipeline folder
    (every key checked: see ``models.convert``)."""

    components, info = moore_components(moore_dir, base, motion, vae, image_encoder, dtype)
    save_animate_pipeline(AnimateAnyonePipeline(**components), Path(out), source=info.pop("source"))
    return {"out": str(out), **info}
