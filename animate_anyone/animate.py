"""The animate use case: a reference image + a pose source → an mp4 and a reference | pose | result grid.

One path for the CLI and the Prefect flow, in three steps over small records:

1. :func:`plan` resolves a request against the pipeline's settings (``None`` = the pipeline's
   value, so ``0`` stays 0 and is checked): the reference (a file, or ``clip:ID``/``clip:auto``),
   the pose source (a pose video, a clip id, or ``auto``), the model folder, the output.
2. :func:`prepare_poses` checks the reference (readable, shows a person) and the poses, and saves
   them as keypoints (a clip's, retargeted onto the reference when asked) or as the pose video's
   path in a small ``.npz``: a lossless hand-off, drawn at the point of use.
3. :func:`generate` loads the model, draws the poses, generates and writes the files.

:func:`run_animate` does all three; the flow runs 2 and 3 as tasks. Outputs appear under their
names only when complete.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from animate_anyone import progress
from animate_anyone.config import Animate, PipelineConfig, Pose
from animate_anyone.devices import resolve_device
from animate_anyone.errors import MediaError
from animate_anyone.files import atomic_path
from animate_anyone.ids import sha256_file, sha256_json
from animate_anyone.media.video import VideoWriter, iter_frames, mux_audio, probe
from animate_anyone.pose.backends import load_backend
from animate_anyone.pose.render import draw_pose, read_clip_poses
from animate_anyone.pose.retarget import retarget_normalised
from animate_anyone.reference import AnimateInputError, find_person, fit_image, parse_colour, read_reference
from animate_anyone.tables import failures
from animate_anyone.tables.io import DataRoot, Dataset
from animate_anyone.tables.selection import load_snapshot

__all__ = ["AnimateInputError", "AnimateJob", "AnimateRequest", "check_options", "find_person", "fit_image", "generate", "parse_colour",
           "plan", "prepare_poses", "read_reference", "run_animate"]

FITS = ("pad", "crop", "stretch")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnimateRequest:
    """What a user asks for; ``None`` takes the pipeline's ``animate`` setting."""

    reference: str | None = None
    pose: str | None = None
    model: str | None = None
    out: str | None = None
    retarget: bool | None = None
    frames: int | None = None
    height: int | None = None
    width: int | None = None
    steps: int | None = None
    guidance: float | None = None
    window: int | None = None
    overlap: int | None = None
    seed: int | None = None
    device: str | None = None
    fit: str | None = None
    background: str | None = None
    fps: float | None = None
    audio_from: str | None = None
    base_dir: str | None = None  # where relative paths of this request are taken from (cwd for the CLI)


@dataclass(frozen=True)
class AnimateJob:
    """A resolved request: absolute paths and plain values, small enough for a task's parameters."""

    reference: str
    pose: str
    model: str
    out: str
    retarget: bool
    frames: int | None
    height: int | None
    width: int | None
    steps: int
    guidance: float
    window: int
    overlap: int
    seed: int
    device: str
    dtype: str
    fit: str
    background: str
    fps: float | None
    audio_from: str | None
    data_root: str
    dataset: str
    pose_cfg: dict
    size_given: bool = True  # width/height from the request (a ratio mismatch is an error), else the pipeline's

    def content(self) -> str:
        """What decides the poses: the inputs' bytes and the settings that shape them."""
        ref = sha256_file(Path(self.reference))
        pose = sha256_file(Path(self.pose)) if Path(self.pose).is_file() else _clip_content(self)
        return sha256_json([ref, pose, self.retarget, self.frames, self.background, self.pose_cfg])


@dataclass
class PoseSequence:
    frames: list[np.ndarray]  # RGB uint8 pose images, all (H, W, 3)
    fps: Fraction
    source: str
    notes: tuple[str, ...] = ()  # what preparing the poses warned about
    reference: np.ndarray | None = None  # the reference image's own pose, drawn on its canvas (UniAnimate's frame 0)


# --- 1. plan -------------------------------------------------------------------------------------

def plan(cfg: PipelineConfig, request: AnimateRequest) -> AnimateJob:
    """Resolve ``request`` against pipeline ``cfg`` (a ``PipelineConfig``); nothing heavy runs,
    and the options are checked before anything is read or loaded."""

    a, r = cfg.animate, request
    root = DataRoot.from_uri(cfg.data_root)
    base = Path(r.base_dir) if r.base_dir else Path.cwd()

    def pick(value, default):
        return default if value is None else value

    fit, background, width, height, frames, size_given = check_options(cfg, r)
    from animate_anyone.pipeline import resolve_model  # torch and diffusers: only once the options are sound

    reference, pose = resolve_sources(Dataset(root, cfg.dataset), pick(r.reference, a.reference), pick(r.pose, a.pose),
                                      base)
    if not reference or not pose:
        raise AnimateInputError("give --reference IMAGE and --pose VIDEO|CLIP_ID (or set animate.reference and "
                                "animate.pose in the pipeline)", "missing_input")
    if is_pose_video(pose):
        if r.retarget:
            raise AnimateInputError("--retarget needs keypoints: give a CLIP_ID (poses from the tables), "
                                    f"not the pose video {pose}", "retarget_needs_keypoints")
        retarget = False  # the pipeline's retarget setting applies to keypoints only
    else:
        retarget = pick(r.retarget, a.retarget)
    model = resolve_model(r.model, root.path, base, a.seed) if r.model is not None else \
        resolve_model(a.model, root.path, Path(cfg.base_dir or Path.cwd()), a.seed)
    sampling = family_sampling(model)
    window, overlap = pick(r.window, pick(a.window, sampling["window"])), pick(r.overlap, pick(a.overlap, sampling["overlap"]))
    if overlap >= window:
        raise AnimateInputError(f"--overlap must be smaller than --window ({window}); got {overlap}", "bad_option")
    name = f"{Path(reference).stem}.{Path(pose).stem}.mp4"
    out = Path(r.out) if r.out else root.path / "outputs" / "animate" / name
    out = out if out.is_absolute() else base / out
    audio = None
    if r.audio_from is not None:
        audio = Path(r.audio_from) if Path(r.audio_from).is_absolute() else base / r.audio_from
        if not audio.is_file():
            raise AnimateInputError(f"--audio-from: no such file {audio}", "missing_file")
    return AnimateJob(
        reference=str(reference), pose=str(pose), model=str(model), out=str(out.resolve()), retarget=bool(retarget),
        frames=frames, height=height, width=width, steps=pick(r.steps, pick(a.steps, sampling["steps"])),
        guidance=float(pick(r.guidance, pick(a.guidance, sampling["guidance"]))), window=window, overlap=overlap,
        seed=pick(r.seed, a.seed),
        device=pick(r.device, a.device), dtype=a.dtype, fit=fit, background=background, fps=r.fps,
        audio_from=str(audio) if audio else None, data_root=str(root.path), dataset=cfg.dataset,
        pose_cfg=cfg.pose.model_dump() | {"base_dir": cfg.base_dir}, size_given=size_given)


def check_options(cfg: PipelineConfig, r: AnimateRequest) -> tuple:
    """The request's options against their limits, before anything is read or loaded (the web
    page asks too, with the same messages): (fit, background, width, height, frames, size_given)."""
    a = cfg.animate
    fit = a.fit if r.fit is None else r.fit
    if fit not in FITS:
        raise AnimateInputError(f"--fit must be one of {', '.join(FITS)}; got {fit!r}", "bad_option")
    background = a.background if r.background is None else r.background
    parse_colour(background)
    size_given = r.width is not None or r.height is not None
    width, height = (r.width, r.height) if size_given else (a.width, a.height)
    frames = a.frames if r.frames is None else r.frames
    for name, value, low in (("--frames", frames, 1), ("--height", height, 8), ("--width", width, 8),
                             ("--steps", r.steps, 1), ("--guidance", r.guidance, 0), ("--fps", r.fps, 1e-6),
                             ("--window", r.window, 1), ("--overlap", r.overlap, 0)):
        if value is not None and value < low:
            raise AnimateInputError(f"{name} must be at least {low:g}; got {value:g}", "bad_option")
    return fit, background, width, height, frames, size_given


def family_sampling(model: Path) -> dict:
    """The sampling defaults (steps, guidance, window, overlap) of the family ``model`` holds
    (Animate Anyone's for a folder not there yet: loading it will say what is wrong)."""
    from animate_anyone.models import store

    return store.family_module(store.family(model) if store.is_model(model) else store.DEFAULT_FAMILY).SAMPLING


def resolve_sources(ds, reference: str | None, pose: str | None,
                    base: Path | None = None) -> tuple[str | None, str | None]:
    """Expand ``pose: auto`` (the first clip of the latest selection snapshot, val split first) and
    ``reference: clip:ID`` / ``clip:auto`` / ``clip:held-out`` (that clip's first frame, another
    snapshot clip's than the pose's, or the first test-split clip's: a dancer training never saw), saved as a PNG under outputs/animate/references/). Relative files are taken from
    ``base``."""
    import PIL.Image

    base = base or Path.cwd()

    def as_file(value: str | None) -> str | None:
        if value is None or value.startswith("clip:") or value == "auto":
            return value
        path = Path(value).expanduser()
        path = path if path.is_absolute() else base / path
        # a pose that is no file and looks like no path is a clip id
        return str(path.resolve()) if path.exists() or "/" in value or "." in Path(value).name else value

    reference, pose = as_file(reference), as_file(pose)
    if pose != "auto" and not (reference or "").startswith("clip:"):
        return reference, pose
    snap = load_snapshot(ds)
    rows = ds.read("clips", where={"clip_id": snap["clip_ids"]}).to_pylist()
    rows.sort(key=lambda r: (r["split"] != "val", r["clip_id"]))
    if not rows:
        raise AnimateInputError(f"snapshot {snap['snapshot_id']} holds no clips to animate", "empty_snapshot")
    if pose == "auto":
        pose = rows[0]["clip_id"]
    if reference and reference.startswith("clip:"):
        wanted = reference[5:]
        others = [r for r in rows if r["clip_id"] != pose] or rows
        if wanted == "held-out":  # a stranger: the first clip of the test split, which no snapshot trains on
            held = sorted((r for r in ds.read("clips").to_pylist() if r["split"] == "test"), key=lambda r: r["clip_id"])
            if not held:
                raise AnimateInputError(f"reference {reference}: dataset {ds.name!r} has no clip in the test split",
                                        "unknown_clip")
            row = held[0]
        else:
            row = next((r for r in rows if r["clip_id"] == wanted), None) if wanted != "auto" else others[0]
        if row is None:
            raise AnimateInputError(f"reference {reference}: no such clip in the snapshot", "unknown_clip")
        out = ds.root.path / "outputs" / "animate" / "references" / f"{row['clip_id']}.png"
        if not out.is_file():
            frame = next(iter_frames(ds.root.media_path(row["clip_uri"]))).to_ndarray(format="rgb24")
            with atomic_path(out) as tmp:
                PIL.Image.fromarray(frame).save(tmp, format="PNG")
        reference = str(out)
    return reference, pose


def is_pose_video(pose: str) -> bool:
    return Path(pose).suffix.lower() in (".mp4", ".mov", ".mkv", ".webm", ".avi") or Path(pose).is_file()


# --- 2. poses ------------------------------------------------------------------------------------

def prepare_poses(job: AnimateJob, dest: Path | None = None) -> Path:
    """Check the reference and the pose source, and save the poses as an ``.npz`` hand-off."""

    ref, _ = read_reference(Path(job.reference), job.background)  # RGB whatever the file's mode
    cfg = dict(job.pose_cfg)
    base_dir = cfg.pop("base_dir", None)
    backend = load_backend(Pose(**cfg), None, Path(base_dir) if base_dir else None)
    notes, ref_pose = [], None
    try:
        ref_pose = find_person(ref, backend, f"reference image {job.reference}")
    except AnimateInputError as exc:
        if job.retarget:  # retargeting needs the reference's keypoints: nothing to fit the poses to
            raise
        notes.append(f"{exc.message} (animating it anyway: the poses are not retargeted, so the reference's keypoints "
                     "are not needed)")
        log.warning(notes[-1])
    finally:
        backend.close()
    dest = Path(dest) if dest else Path(job.data_root) / "outputs" / "animate" / "poses" / f"{job.content()[:16]}.npz"
    ref_size = (ref.shape[1], ref.shape[0])
    if is_pose_video(job.pose):
        info = _check_pose_video(Path(job.pose))
        data = {"kind": "video", "video": job.pose, "fps": info.fps, "canvas": np.array([info.width, info.height])}
    else:
        root = DataRoot.from_uri(job.data_root)
        kps, scores, canvas, fps = clip_keypoints(root, job.pose, job.frames, ref_pose if job.retarget else None,
                                                  ref_size)
        data = {"kind": "keypoints", "keypoints": kps, "scores": scores, "canvas": np.array(canvas), "fps": fps,
                "source": f"clip {job.pose}"}
    data["notes"] = np.array(notes, dtype=str)
    if ref_pose is not None:  # the reference's own pose: UniAnimate draws it into frame 0
        data.update(reference_keypoints=ref_pose[0], reference_scores=ref_pose[1], reference_size=np.array(ref_size))
    with atomic_path(dest) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **data)
    return dest


def _check_pose_video(path: Path):
    try:
        info = probe(path)
        next(iter(iter_frames(path)))
    except MediaError as exc:
        raise AnimateInputError(f"pose video {path}: {exc}", "bad_pose_video") from exc
    except StopIteration:
        raise AnimateInputError(f"pose video {path} has no frames", "zero_frames") from None
    return info


def clip_keypoints(root, clip_id: str, frames: int | None, reference_pose=None,
                   reference_size: tuple[int, int] | None = None):
    """A clip's main person per frame, [0, 1] coordinates of the drawing canvas; with
    ``reference_pose``, retargeted onto it and on the reference's canvas (``reference_size``)."""

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
    return kps, scores, size, float(clip["fps"])


def load_poses(path: Path, frames: int | None = None) -> PoseSequence:
    """Draw the poses of a hand-off file (keypoints drawn here, at the point of use)."""

    data = np.load(path, allow_pickle=False)
    fps = Fraction(float(data["fps"])).limit_denominator(1001)
    notes = tuple(str(n) for n in data["notes"]) if "notes" in data.files else ()
    reference = None
    if "reference_keypoints" in data.files:
        size = tuple(int(v) for v in data["reference_size"])
        reference = draw_pose(size, data["reference_keypoints"][None], data["reference_scores"][None])
    if str(data["kind"]) == "video":
        video = Path(str(data["video"]))
        images = []
        for frame in iter_frames(video):
            images.append(frame.to_ndarray(format="rgb24"))
            if frames and len(images) >= frames:
                break
        return PoseSequence(images, fps, str(video), notes, reference)
    canvas = tuple(int(v) for v in data["canvas"])
    kps, scores = data["keypoints"], data["scores"]
    images = [draw_pose(canvas, kps[i][None], scores[i][None]) for i in range(len(kps))]
    return PoseSequence(images, fps, str(data["source"]), notes, reference)


# --- 3. generate ---------------------------------------------------------------------------------

def same_ratio(a: tuple[int, int], b: tuple[int, int]) -> bool:
    """Whether two (width, height) sizes have the same aspect ratio within 2 %."""
    return abs(b[0] / b[1] - a[0] / a[1]) <= 0.02 * (a[0] / a[1])


def output_size(canvas: tuple[int, int], width: int | None, height: int | None, what: str,
                strict: bool = True) -> tuple[int, int]:
    """(width, height), multiples of 8, keeping the canvas's aspect ratio. A pair of another ratio
    is refused, or with ``strict=False`` (the pipeline's pair, made for its own clips) the width
    follows the canvas instead."""
    cw, ch = canvas
    if width and height and not strict and not same_ratio(canvas, (width, height)):
        width = None
    if width and height:
        if not same_ratio(canvas, (width, height)):
            raise AnimateInputError(f"{what} is {cw}×{ch} but --width/--height ask for {width}×{height}: the aspect "
                                    "ratio differs; give one of them, or a pose source of that shape", "size_mismatch")
    elif width:
        height = round(width * ch / cw)
    elif height:
        width = round(height * cw / ch)
    else:
        width, height = cw, ch
    return max(8, width - width % 8), max(8, height - height % 8)


def generate(job: AnimateJob, poses: Path, grid: bool = True) -> dict:
    """Load the model, generate, and write ``job.out`` (+ its ``.grid.mp4``); the denoising steps
    are reported as ``progress`` events."""
    import PIL.Image
    import torch

    from animate_anyone.models import store
    from animate_anyone.pipeline import InputError

    started = time.perf_counter()
    # 1. Inputs, all checked before the model loads.
    seq = load_poses(Path(poses), job.frames)
    if job.fps and abs(float(seq.fps) - job.fps) > 1e-3:
        raise AnimateInputError(f"{seq.source} runs at {float(seq.fps):.3f} fps but {job.fps} fps was asked for; "
                                "resample the poses first (frames are not dropped or repeated here)", "fps_mismatch")
    canvas = (seq.frames[0].shape[1], seq.frames[0].shape[0])
    w, h = output_size(canvas, job.width, job.height, seq.source, strict=job.size_given)
    ref, notes = read_reference(Path(job.reference), job.background)
    notes = list(seq.notes) + notes
    ref, note = fit_image(ref, (w, h), job.fit)
    notes += [note] if note else []

    # 2. Model.
    dev = resolve_device(job.device)
    torch_dtype = torch.float32 if dev == "cpu" else getattr(torch, job.dtype)
    try:  # either family: the folder's manifest says which
        pipe = store.load_pipeline(Path(job.model), dtype=torch_dtype, device=dev)
    except (InputError, store.ModelFolderError) as exc:
        raise AnimateInputError(str(exc), "bad_model") from exc
    pipe.set_progress_bar_config(disable=True)
    extra = {}
    if store.family(Path(job.model)) == "unianimate" and seq.reference is not None:
        extra["reference_pose"] = PIL.Image.fromarray(fit_image(seq.reference, (w, h), job.fit)[0])

    # 3. Generate.
    generator = torch.Generator(device=dev).manual_seed(job.seed)
    t0 = time.perf_counter()
    result = pipe(PIL.Image.fromarray(ref), seq.frames, height=h, width=w, num_inference_steps=job.steps,
                  guidance_scale=job.guidance, window=job.window, overlap=job.overlap, generator=generator,
                  callback=lambda i, n: progress.report("denoising", i, n), **extra).frames
    generate_s = time.perf_counter() - t0

    # 4. Encode: the video, the grid, and the audio when asked.
    out = Path(job.out)
    write_video(out, result, seq.fps)
    grid_path = None
    if grid:
        grid_path = out.with_name(out.stem + ".grid.mp4")
        poses_small = (np.asarray(PIL.Image.fromarray(p).resize((w, h), PIL.Image.BILINEAR)) for p in seq.frames)
        write_video(grid_path, (np.concatenate([ref, p, r], axis=1) for p, r in zip(poses_small, result)), seq.fps)
    if job.audio_from is not None:

        mux_audio(out, Path(job.audio_from))
    return {"out": str(out), "grid": str(grid_path) if grid_path else None, "model": job.model, "frames": len(result),
            "width": w, "height": h, "fps": float(seq.fps), "pose_source": seq.source, "device": dev, "notes": notes,
            "generate_s": round(generate_s, 3), "total_s": round(time.perf_counter() - started, 3)}


def run_animate(cfg: PipelineConfig, request: AnimateRequest) -> dict:
    """The whole use case in this process: plan, prepare the poses, generate. Bad input is
    recorded in ``failures`` (``record_failure``) before it is raised."""
    try:
        job = plan(cfg, request)
        return generate(job, prepare_poses(job))
    except AnimateInputError as exc:
        record_failure(cfg, request, exc)
        raise


def record_failure(cfg: PipelineConfig, request: AnimateRequest, exc: AnimateInputError) -> None:
    """The ``failures`` row of a request that could not be animated (one per reference and pose;
    the command line and the flow record the same)."""
    reference, pose = request.reference or cfg.animate.reference, request.pose or cfg.animate.pose
    item = f"{Path(str(reference)).stem}:{Path(str(pose)).stem}"
    failures.record(Dataset(DataRoot.from_uri(cfg.data_root), cfg.dataset), "animate", item, f"{reference} + {pose}",
                    exc, part="animate-" + sha256_json([str(reference), str(pose)])[:16])


def animate(model: Path, reference: Path, pose: str, out: Path, *, pose_cfg=None, root=None, grid: bool = True,
            **options) -> dict:
    """Files in, files out, without a pipelines file: the same plan, poses and generation as
    :func:`run_animate`. ``options`` are :class:`AnimateRequest` fields, plus ``dtype`` (the
    pipeline's ``animate`` setting)."""
    import tempfile

    settings = {k: options.pop(k) for k in ("dtype",) if k in options}
    if options.get("audio_from") is not None:
        options["audio_from"] = str(options["audio_from"])
    data_root = str(root.path) if root is not None else str(Path(out).parent)
    cfg = PipelineConfig(data_root=data_root, pose=pose_cfg or Pose(), animate=Animate(retarget=False, **settings))
    job = plan(cfg, AnimateRequest(reference=str(reference), pose=str(pose), model=str(model), out=str(out), **options))
    with tempfile.TemporaryDirectory(prefix="animate-") as tmp:
        return generate(job, prepare_poses(job, Path(tmp) / "poses.npz"), grid=grid)


def _clip_content(job: AnimateJob) -> str:
    """A clip's identity for caches: its file's sha256 and its pose rows."""

    clip, people = read_clip_poses(DataRoot.from_uri(job.data_root), job.pose)
    return f"{clip['sha256']}:{len(people)}"


def write_video(path: Path, frames, fps) -> None:
    frames = iter(frames)
    first = next(frames)
    with VideoWriter(Path(path), first.shape[1], first.shape[0], fps) as writer:
        writer.write(first)
        for f in frames:
            writer.write(f)
