"""Import community checkpoints: Moore-AnimateAnyone's four `.pth` files and AnimateDiff motion
modules (`mm_sd_v15_v2.ckpt`), into our components. Layouts: MODEL_KEYS.md.

Every key of a file must be consumed and every key of the target filled, with equal shapes;
anything else is refused with the keys listed. Files are read with safetensors or
`torch.load(weights_only=True)`, never by unpickling arbitrary objects.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from animate_anyone.errors import PermanentError
from animate_anyone.models.pose_guider import PoseGuider
from animate_anyone.models.sizes import MOTION, POSE_GUIDER, SCHEDULER, feature_extractor, video_unet_config
from animate_anyone.models.unets import ReferenceNet, VideoUNet

MOORE_FILES = ("reference_unet.pth", "denoising_unet.pth", "pose_guider.pth", "motion_module.pth")


class CheckpointError(PermanentError):
    """A checkpoint file is missing, unreadable or not the layout it claims to be."""


def load_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """A bare state dict from `.safetensors`, `.pth`, `.ckpt` or `.bin` (a `state_dict` wrapper is unwrapped)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}", "missing_file")
    try:
        if is_safetensors(path):  # by content: re-uploads often rename .pth files and vice versa
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise CheckpointError(f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}", "bad_checkpoint") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} is not a state dict of tensors", "bad_checkpoint")
    return state


def is_safetensors(path: Path) -> bool:
    """A safetensors file starts with the 8-byte length of a JSON header that opens with '{'."""
    import struct

    with open(path, "rb") as fh:
        head = fh.read(9)
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return head[8:9] == b"{" and 0 < n <= Path(path).stat().st_size - 8


def find_moore_file(folder: Path, name: str) -> Path:
    """``name`` (e.g. ``pose_guider.pth``) in ``folder``, or the same stem as ``.safetensors``,
    ``.bin`` or ``.ckpt``; the format is read from the content either way."""
    folder = Path(folder)
    stem = Path(name).stem
    for candidate in [folder / name] + [folder / f"{stem}{ext}" for ext in (".safetensors", ".bin", ".ckpt")]:
        if candidate.is_file():
            return candidate
    return folder / name


def _listing(keys, limit: int = 12) -> str:
    keys = sorted(keys)
    more = f", … ({len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def check_keys(source: str, state: dict[str, torch.Tensor], expected: dict[str, torch.Size]) -> None:
    """Refuse unknown keys, missing keys and shape mismatches, listing them."""
    unknown = set(state) - set(expected)
    missing = set(expected) - set(state)
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k])}"
              for k in sorted(set(state) & set(expected)) if tuple(state[k].shape) != tuple(expected[k])]
    problems = []
    if unknown:
        problems.append(f"{len(unknown)} unknown key(s): {_listing(unknown)}")
    if missing:
        problems.append(f"{len(missing)} missing key(s): {_listing(missing)}")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatch(es): {'; '.join(shapes[:6])}")
    if problems:
        raise CheckpointError(f"{source}: " + " | ".join(problems), "checkpoint_keys")


def motion_key(key: str) -> str:
    """AnimateDiff / Moore motion-module key → diffusers `UNetMotionModel` key."""
    key = key.replace(".temporal_transformer.", ".")
    if ".pos_encoder.pe" in key:
        return key.split(".attention_blocks.")[0] + ".pos_embed.pe"
    for old, new in ((".attention_blocks.0.", ".attn1."), (".attention_blocks.1.", ".attn2."),
                     (".norms.0.", ".norm1."), (".norms.1.", ".norm2."), (".ff_norm.", ".norm3.")):
        key = key.replace(old, new)
    return key


def _load_into(module, state: dict[str, torch.Tensor], source: str, skip: set[str] = frozenset()) -> None:
    """Check then assign `state` into `module` (which may hold meta tensors); `skip` = target keys
    the file need not provide (buffers we compute)."""
    expected = {k: v.shape for k, v in module.state_dict().items() if k not in skip}
    check_keys(source, state, expected)
    dtype = next(iter(module.state_dict().values())).dtype
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    module.load_state_dict(state, strict=False, assign=True)


def import_motion_modules(unet, state: dict[str, torch.Tensor], source: str) -> None:
    """AnimateDiff-layout motion modules into a `VideoUNet` (its spatial weights untouched)."""
    renamed: dict[str, torch.Tensor] = {}
    pe: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if "motion_modules" not in key:
            raise CheckpointError(f"{source}: unknown key(s) outside the motion modules: {key}", "checkpoint_keys")
        new = motion_key(key)
        (pe if new.endswith(".pos_embed.pe") else renamed)[new] = value
    ours = unet.state_dict()
    motion_expected = {k: v.shape for k, v in ours.items() if "motion_modules" in k and not k.endswith(".pe")}
    check_keys(source, renamed, motion_expected)
    for key, table in pe.items():  # sinusoidal tables: ours are computed; the file's must agree
        mine = ours[key]
        if table.shape[-1] != mine.shape[-1] or table.shape[1] > mine.shape[1] or not torch.allclose(
                table[0].float(), mine[0, : table.shape[1]].float().cpu(), atol=1e-4):
            raise CheckpointError(f"{source}: position table {key} differs from the sinusoidal table", "checkpoint_keys")
    dtype = next(p for n, p in unet.named_parameters() if "motion_modules" in n).dtype
    unet.load_state_dict({k: v.to(dtype) for k, v in renamed.items()}, strict=False, assign=True)


def _base_part(base: Path | None, override: Path | None, sub: str, what: str) -> Path:
    path = override or (base / sub if base else None)
    if path is None or not (path / "config.json").is_file():
        raise CheckpointError(f"{what}: no config.json in {path} (give --base with a {sub}/ folder, "
                              f"or --{sub.replace('_', '-')} DIR)", "missing_file")
    return path


def moore_components(moore_dir: Path | None, base: Path | None, motion: Path | None = None,
                     vae: Path | None = None, image_encoder: Path | None = None,
                     dtype: torch.dtype = torch.float32) -> tuple[dict, dict]:
    """Moore-AnimateAnyone weights (+ optionally AnimateDiff motion modules) → our components and a
    summary of what was read (``pipeline.convert_moore`` assembles and saves them)."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, DDIMScheduler
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    # 1. Find every input before reading any, so a missing one fails fast.
    moore_dir = Path(moore_dir) if moore_dir else None
    files = {name: find_moore_file(moore_dir, name) for name in MOORE_FILES[:3]} if moore_dir else {}
    motion = Path(motion) if motion else (find_moore_file(moore_dir, "motion_module.pth") if moore_dir else None)
    needed = list(files.values()) + ([motion] if motion else [])
    absent = [str(p) for p in needed if not p.is_file()]
    if not moore_dir or absent:
        raise CheckpointError("missing checkpoint file(s): " + (", ".join(absent) or
                              f"give --moore DIR holding {', '.join(MOORE_FILES)}"), "missing_file")
    unet_dir = _base_part(base, None, "unet", "UNet config")
    vae_dir = _base_part(base, vae, "vae", "VAE")
    clip_dir = _base_part(base, image_encoder, "image_encoder", "image encoder")
    unet_config = json.loads((unet_dir / "config.json").read_text())
    unet_config = {k: v for k, v in unet_config.items() if not k.startswith("_")}

    # 2. Build the models without memory, then assign the files' tensors into them.
    motion_state = load_checkpoint(motion)
    seq_len = max((v.shape[1] for k, v in motion_state.items() if k.endswith(".pe")), default=MOTION["motion_max_seq_length"])
    with init_empty_weights():
        reference_unet = ReferenceNet(**unet_config)
        unet = VideoUNet(**video_unet_config(unet_config, dict(MOTION, motion_max_seq_length=seq_len)))
    pg_state = load_checkpoint(files["pose_guider.pth"])
    with init_empty_weights():
        pose_guider = PoseGuider(**_pose_guider_config(pg_state, POSE_GUIDER))
    _load_into(reference_unet, load_checkpoint(files["reference_unet.pth"]), str(files["reference_unet.pth"]))
    spatial = load_checkpoint(files["denoising_unet.pth"])
    motion_keys = {k for k in unet.state_dict() if "motion_modules" in k}
    _load_into(unet, spatial, str(files["denoising_unet.pth"]), skip=motion_keys)
    import_motion_modules(unet, motion_state, str(motion))
    _load_into(pose_guider, pg_state, str(files["pose_guider.pth"]))

    # 3. Frozen parts from the base folder, and our training schedule.
    image_encoder = CLIPVisionModelWithProjection.from_pretrained(clip_dir)
    extractor_dir = base / "feature_extractor" if base else None
    # without a preprocessing config, CLIP's own at the encoder's input size (224 for ViT-L/14)
    extractor = CLIPImageProcessor.from_pretrained(extractor_dir) if extractor_dir and extractor_dir.is_dir() \
        else feature_extractor(image_encoder.config.image_size)
    components = dict(
        vae=AutoencoderKL.from_pretrained(vae_dir), image_encoder=image_encoder, feature_extractor=extractor, reference_unet=reference_unet, unet=unet, pose_guider=pose_guider,
        scheduler=DDIMScheduler(**SCHEDULER))
    for name in ("vae", "image_encoder", "reference_unet", "unet", "pose_guider"):
        components[name].to(dtype=dtype)
    info = {"reference_unet": len(reference_unet.state_dict()), "denoising_unet": len(spatial),
            "motion_modules": len(motion_state), "pose_guider": len(pg_state),
            "source": {"moore": str(moore_dir), "motion": str(motion), "base": str(base)}}
    return components, info


def _pose_guider_config(state: dict[str, torch.Tensor], default: dict) -> dict:
    """Channel widths read off a pose guider state dict (conv_in, blocks.1/3/5, conv_out)."""
    try:
        widths = [state["conv_in.weight"].shape[0]] + [state[f"blocks.{i}.weight"].shape[0]
                                                       for i in range(1, 2 * len(default["block_out_channels"]) - 1, 2)]
        return dict(block_out_channels=tuple(widths), out_channels=state["conv_out.weight"].shape[0],
                    conditioning_channels=state["conv_in.weight"].shape[1])
    except KeyError:
        return dict(default)  # the key check then lists what is missing
