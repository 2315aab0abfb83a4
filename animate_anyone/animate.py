"""Animate: a reference image + a pose source → an mp4 (and a reference | pose | result grid).

The pose source is a pose video (rendered skeletons, e.g. from `animate-anyone render`) or a clip
id whose keypoints are read from `pose_frames` and drawn on the fly, optionally retargeted onto
the reference's body first. Everything is checked before the model loads; outputs appear under
their names only when complete.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from animate_anyone.errors import MediaError, PermanentError
from animate_anyone.media.video import VideoWriter, iter_frames, probe


class AnimateInputError(PermanentError):
    """The reference image, the pose source or an option cannot be used; the message says which."""


@dataclass
class PoseSequence:
    frames: list[np.ndarray]  # RGB uint8 pose images, all (H, W, 3)
    fps: Fraction
    source: str


def read_reference(path: Path) -> np.ndarray:
    """An RGB image as (H, W, 3) uint8; greyscale, RGBA and palette images are refused."""
    import PIL.Image

    path = Path(path)
    if not path.is_file():
        raise AnimateInputError(f"reference image not found: {path}", "missing_file")
    try:
        with PIL.Image.open(path) as im:
            mode = im.mode
            image = np.asarray(im.convert("RGB")) if mode == "RGB" else None
    except (OSError, ValueError) as exc:
        raise AnimateInputError(f"reference image {path} cannot be read: {exc}", "bad_image") from exc
    if image is None:
        raise AnimateInputError(
            f"reference image {path} is {mode!r}, not RGB: convert it first (for RGBA, choose the background "
            "it should stand on; for greyscale, the model expects colour)", "not_rgb")
    return image


def find_person(image: np.ndarray, backend, what: str) -> tuple[np.ndarray, np.ndarray]:
    """The main person's keypoints (133, 2) and scores (133,) in `image`, or a clear error."""
    backend.start_clip()
    found = backend.process([image])[0].ordered()
    if len(found) == 0:
        raise AnimateInputError(f"{what}: no person found by the {backend.name} pose backend; "
                                "the reference must show the character to animate", "no_person")
    return found.keypoints[0], found.scores[0]


def poses_from_video(path: Path, frames: int | None) -> PoseSequence:
    path = Path(path)
    try:
        info = probe(path)
        images = []
        for frame in iter_frames(path):
            images.append(frame.to_ndarray(format="rgb24"))
            if frames and len(images) >= frames:
                break
    except MediaError as exc:
        raise AnimateInputError(f"pose video {path}: {exc}", "bad_pose_video") from exc
    if not images:
        raise AnimateInputError(f"pose video {path} has no frames", "zero_frames")
    return PoseSequence(images, Fraction(info.fps).limit_denominator(1001), str(path))


def poses_from_clip(root, clip_id: str, frames: int | None, reference_pose=None,
                    reference_size: tuple[int, int] | None = None) -> PoseSequence:
    """Draw clip `clip_id`'s main person per frame; with `reference_pose`, retargeted onto it and
    drawn on the reference's canvas (`reference_size` = (width, height))."""
    from animate_anyone.pose.render import draw_pose, read_clip_poses
    from animate_anyone.pose.retarget import retarget_normalised

    clip, people = read_clip_poses(root, clip_id)
    n = min(clip["num_frames"], frames or clip["num_frames"])
    kps = np.zeros((n, 133, 2), np.float32)
    scores = np.zeros((n, 133), np.float32)
    for i in range(n):
        if i in people and len(people[i][0]):
            kps[i], scores[i] = people[i][0][0], people[i][1][0]
    size = (clip["width"], clip["height"])
    if reference_pose is not None:
        first = int(np.argmax(scores[:, :17].mean(axis=1)))  # the most complete body sets the bone ratios
        # stored keypoints are in [0, 1] of the clip; the reference's are pixels of its image
        ref_norm = np.asarray(reference_pose[0], np.float32) / np.asarray(reference_size, np.float32)
        kps = retarget_normalised(kps, scores, size, ref_norm, reference_pose[1], reference_size, frame=first)
        size = reference_size
    images = [draw_pose(size, kps[i][None], scores[i][None]) for i in range(n)]
    return PoseSequence(images, Fraction(clip["fps"]).limit_denominator(1001), f"clip {clip_id}")


def clip_content(root, clip_id: str) -> str:
    """A clip's identity for caches: its file's sha256 and how its poses were made."""
    from animate_anyone.pose.render import read_clip_poses

    clip, people = read_clip_poses(root, clip_id)
    return f"{clip['sha256']}:{len(people)}"


def resolve_sources(root, dataset: str, reference: str | None, pose: str | None) -> tuple[str | None, str | None]:
    """Expand `pose: auto` (the first clip of the latest selection snapshot, val split first) and
    `reference: clip:ID` / `clip:auto` (the first frame of that clip, or of another snapshot clip
    than the pose's, saved as a PNG under outputs/animate/references/)."""
    import PIL.Image
    import pyarrow as pa
    import pyarrow.compute as pc

    from animate_anyone.pose.stages import clip_path
    from animate_anyone.tables.io import read_table
    from animate_anyone.tables.selection import load_snapshot

    if pose != "auto" and not (reference or "").startswith("clip:"):
        return reference, pose
    snap = load_snapshot(root, dataset)
    clips = read_table(root, "clips")
    clips = clips.filter(pc.is_in(clips["clip_id"], value_set=pa.array(snap["clip_ids"])))
    rows = sorted(clips.to_pylist(), key=lambda r: (r["split"] != "val", r["clip_id"]))
    if not rows:
        raise AnimateInputError(f"snapshot {snap['snapshot_id']} holds no clips to animate", "empty_snapshot")
    if pose == "auto":
        pose = rows[0]["clip_id"]
    if reference and reference.startswith("clip:"):
        wanted = reference[5:]
        others = [r for r in rows if r["clip_id"] != pose] or rows
        row = next((r for r in rows if r["clip_id"] == wanted), None) if wanted != "auto" else others[0]
        if row is None:
            raise AnimateInputError(f"reference {reference}: no such clip in the snapshot", "unknown_clip")
        out = root.path / "outputs" / "animate" / "references" / f"{row['clip_id']}.png"
        if not out.is_file():
            frame = next(iter_frames(clip_path(row))).to_ndarray(format="rgb24")
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_name(out.stem + ".partial.png")
            PIL.Image.fromarray(frame).save(tmp)
            tmp.replace(out)
        reference = str(out)
    return reference, pose


def output_size(canvas: tuple[int, int], width: int | None, height: int | None, what: str) -> tuple[int, int]:
    """(width, height), multiples of 8, keeping the canvas's aspect ratio; a different ratio is refused."""
    cw, ch = canvas
    if width and height:
        if abs(width / height - cw / ch) > 0.02 * (cw / ch):
            raise AnimateInputError(f"{what} is {cw}×{ch} but --width/--height ask for {width}×{height}: the aspect "
                                    "ratio differs; give one of them, or a pose source of that shape", "size_mismatch")
    elif width:
        height = round(width * ch / cw)
    elif height:
        width = round(height * cw / ch)
    else:
        width, height = cw, ch
    return max(8, width - width % 8), max(8, height - height % 8)


def is_pose_video(pose: str) -> bool:
    return Path(pose).suffix.lower() in (".mp4", ".mov", ".mkv", ".webm", ".avi") or Path(pose).is_file()


def prepare_inputs(reference: Path, pose: str, *, root=None, pose_cfg=None, retarget: bool = False,
                   frames: int | None = None) -> tuple[np.ndarray, PoseSequence]:
    """The reference image (checked to be RGB and, with a pose backend, to show a person) and the
    pose frames: a pose video's, or a clip's drawn from the tables (retargeted onto the reference)."""
    ref = read_reference(Path(reference))
    ref_pose = None
    if pose_cfg is not None:
        from animate_anyone.pose.backends import load_backend

        ref_pose = find_person(ref, load_backend(pose_cfg), f"reference image {reference}")
    if is_pose_video(pose):
        if retarget:
            raise AnimateInputError("--retarget needs keypoints: give a CLIP_ID (poses from the tables), "
                                    f"not the pose video {pose}", "retarget_needs_keypoints")
        return ref, poses_from_video(Path(pose), frames)
    if root is None:
        raise AnimateInputError(f"pose {pose!r} is not a file, and no data root was given to look it up as a clip")
    if retarget and ref_pose is None:
        raise AnimateInputError("--retarget needs the reference's pose: configure a pose backend")
    return ref, poses_from_clip(root, pose, frames, ref_pose if retarget else None, (ref.shape[1], ref.shape[0]))


def resolve_device(spec: str) -> str:
    import torch

    if spec == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise AnimateInputError(f"device {spec!r} asked for, but PyTorch sees no CUDA GPU", "no_gpu")
    return spec


def animate(model: Path, reference: Path, pose: str, out: Path, *, root=None, pose_cfg=None, retarget: bool = False,
            frames: int | None = None, height: int | None = None, width: int | None = None, steps: int = 20,
            guidance: float = 3.5, window: int = 24, overlap: int = 4, seed: int = 0, device: str = "auto",
            dtype: str = "float16", fps: float | None = None, audio_from: Path | None = None,
            grid: bool = True, progress=None) -> dict:
    """Check everything, load the model, generate, and write `out` (+ `out`'s `.grid.mp4`)."""
    import PIL.Image
    import torch

    from animate_anyone.pipeline import InputError, load_pipeline

    started = time.perf_counter()
    # 1. Inputs, all checked before the model loads.
    ref, seq = prepare_inputs(Path(reference), pose, root=root, pose_cfg=pose_cfg, retarget=retarget, frames=frames)
    if fps and abs(float(seq.fps) - fps) > 1e-3:
        raise AnimateInputError(f"{seq.source} runs at {float(seq.fps):.3f} fps but {fps} fps was asked for; "
                                "resample the poses first (frames are not dropped or repeated here)", "fps_mismatch")
    canvas = (seq.frames[0].shape[1], seq.frames[0].shape[0])
    w, h = output_size(canvas, width, height, seq.source)
    if audio_from is not None and not Path(audio_from).is_file():
        raise AnimateInputError(f"--audio-from: no such file {audio_from}", "missing_file")

    # 2. Model.
    dev = resolve_device(device)
    torch_dtype = torch.float32 if dev == "cpu" else getattr(torch, dtype)
    try:
        pipe = load_pipeline(Path(model), dtype=torch_dtype, device=dev)
    except InputError as exc:
        raise AnimateInputError(str(exc), "bad_model") from exc
    pipe.set_progress_bar_config(disable=True)

    # 3. Generate.
    generator = torch.Generator(device=dev).manual_seed(seed)
    t0 = time.perf_counter()
    result = pipe(PIL.Image.fromarray(ref), seq.frames, height=h, width=w, num_inference_steps=steps,
                  guidance_scale=guidance, window=window, overlap=overlap, generator=generator,
                  callback=progress).frames
    generate_s = time.perf_counter() - t0

    # 4. Encode: the video, the grid, and the audio when asked.
    out = Path(out)
    write_video(out, result, seq.fps)
    grid_path = None
    if grid:
        grid_path = out.with_name(out.stem + ".grid.mp4")
        ref_small = np.asarray(PIL.Image.fromarray(ref).resize((w, h), PIL.Image.BICUBIC))
        poses_small = (np.asarray(PIL.Image.fromarray(p).resize((w, h), PIL.Image.BILINEAR)) for p in seq.frames)
        write_video(grid_path, (np.concatenate([ref_small, p, r], axis=1) for p, r in zip(poses_small, result)),
                    seq.fps)
    if audio_from is not None:
        from animate_anyone.media.video import mux_audio

        mux_audio(out, Path(audio_from))
    return {"out": str(out), "grid": str(grid_path) if grid_path else None, "frames": len(result), "width": w,
            "height": h, "fps": float(seq.fps), "pose_source": seq.source, "device": dev,
            "generate_s": round(generate_s, 3), "total_s": round(time.perf_counter() - started, 3)}


def write_video(path: Path, frames, fps) -> None:
    frames = iter(frames)
    first = next(frames)
    with VideoWriter(Path(path), first.shape[1], first.shape[0], fps) as writer:
        writer.write(first)
        for f in frames:
            writer.write(f)
