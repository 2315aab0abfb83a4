"""Shots and videos: cameras, shot plans, rendering whole videos with their ground truth."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from animate_anyone import progress
from animate_anyone.media.video import VideoWriter
from animate_anyone.synthetic.characters import MOVES, Character, identity_id, make_character
from animate_anyone.synthetic.drawing import (
    Camera,
    apply_lighting,
    draw_background,
    draw_character,
    lighting,
    stamp_frame_index,
    stamp_layout,
)
from animate_anyone.synthetic.motion import dance, skeleton

FPS = 30


@dataclass(frozen=True)
class ShotSpec:
    frames: int
    character: int
    background: int
    move: str
    camera: Camera = field(default_factory=Camera)
    tempo_hz: float = 0.8
    phase: float = 0.0


@dataclass(frozen=True)
class VideoSpec:
    name: str
    width: int
    height: int
    shots: tuple[ShotSpec, ...]
    seed: int = 0
    fps: int = FPS

    @property
    def num_frames(self) -> int:
        return sum(s.frames for s in self.shots)

    @property
    def cuts(self) -> list[int]:
        """Frame indices at which a new shot starts (frame 0 excluded)."""
        starts = np.cumsum([s.frames for s in self.shots])[:-1]
        return [int(x) for x in starts]


def plan_video(name: str, seed: int, seconds: float, width: int, height: int, fps: int = FPS) -> VideoSpec:
    """A multi-shot video of ``seconds`` with hard cuts, similar-looking neighbours and short shots.

    Shots last 1-9 s; about one in four is under 2 s (so a clip filter must drop it), and about
    one in three cuts goes to the same character and background seen from another camera.
    """
    rng = np.random.default_rng([seed, 11])
    total = int(round(seconds * fps))
    # keep the arm span (about one figure height) inside the frame: MediaPipe needs whole people
    zmax = min(0.78, 0.92 * width / height)
    zmin = 0.6 * zmax

    def offset(zoom: float) -> float:
        room = max(0.0, 0.5 - 0.5 * zoom * height / width)
        return float(rng.uniform(-room, room) * 0.8)

    shots: list[ShotSpec] = []
    used = 0
    char = int(rng.integers(0, 12))
    bg = int(rng.integers(0, 12))
    while used < total:
        kind = rng.random()
        if kind < 0.25:
            frames = int(rng.integers(int(0.8 * fps), int(1.8 * fps)))
        else:
            frames = int(rng.integers(int(2.5 * fps), int(9 * fps)))
        frames = min(frames, total - used)
        if shots and rng.random() < 0.35:  # similar-looking: same person and room, new camera
            prev = shots[-1]
            zoom = float(zmin if prev.camera.zoom > (zmin + zmax) / 2 else zmax)
            cam = Camera(zoom=zoom, offset_x=offset(zoom), feet_y=prev.camera.feet_y)
            shot = ShotSpec(frames, prev.character, prev.background, prev.move, cam, prev.tempo_hz, float(rng.uniform(0, 6.28)))
        else:
            char = (char + int(rng.integers(1, 5))) % 12
            bg = (bg + int(rng.integers(1, 5))) % 12
            zoom = float(rng.uniform(zmin, zmax))
            cam = Camera(zoom=zoom, offset_x=offset(zoom), feet_y=float(rng.uniform(0.9, 0.95)))
            shot = ShotSpec(frames, char, bg, MOVES[int(rng.integers(0, len(MOVES)))], cam,
                            float(rng.uniform(0.5, 1.1)), float(rng.uniform(0, 6.28)))
        if frames < fps // 2 and shots:  # a sliver at the end joins the previous shot
            prev = shots.pop()
            shot = ShotSpec(prev.frames + frames, prev.character, prev.background, prev.move, prev.camera, prev.tempo_hz, prev.phase)
        shots.append(shot)
        used += frames
    return VideoSpec(name=name, width=width, height=height, shots=tuple(shots), seed=seed, fps=fps)


def to_pixels(kp_fig: np.ndarray, ch: Character, cam: Camera, width: int, height: int) -> tuple[np.ndarray, float]:
    """Figure units to pixels for ``cam``; returns keypoints and pixels per figure unit."""
    scale = cam.zoom * height
    stand = ch.thigh + ch.shin  # pelvis height above the ankles when standing
    origin = np.array([width * (0.5 + cam.offset_x), cam.feet_y * height - stand * scale])
    return kp_fig * scale + origin, scale


def render_frames(spec: VideoSpec, stamp: bool = True):
    """Yield ``(rgb_frame, keypoints_px, visible, shot_index)`` for every frame of ``spec``."""
    frame = 0
    for si, shot in enumerate(spec.shots):
        ch = make_character(shot.character, spec.seed)
        bg = draw_background(spec.width, spec.height, shot.background, shot.camera, spec.seed)
        light = lighting(spec.seed, shot.background)
        for k in range(shot.frames):
            t = k / spec.fps
            kp_fig = skeleton(ch, dance(shot.move, t, shot.tempo_hz, shot.phase))
            kp, scale = to_pixels(kp_fig, ch, shot.camera, spec.width, spec.height)
            img = bg.copy()
            draw_character(img, ch, kp, scale)
            img = apply_lighting(img, light)
            if stamp:
                stamp_frame_index(img, frame)
            inside = (kp[:, 0] >= 0) & (kp[:, 0] < spec.width) & (kp[:, 1] >= 0) & (kp[:, 1] < spec.height)
            yield img, kp.astype(np.float32), inside, si
            frame += 1


def write_video(spec: VideoSpec, out_dir: Path, stamp: bool = True, crf: int = 18) -> Path:
    """Render ``spec`` to ``out_dir/NAME.mp4`` (H.264) with its truth files; returns the video path.
    Each frame is reported (``progress``: "frames", with the video's name)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    T = spec.num_frames
    keypoints = np.zeros((T, 133, 2), np.float32)
    visible = np.zeros((T, 133), np.uint8)
    shot_of = np.zeros(T, np.int16)
    video_path = out_dir / f"{spec.name}.mp4"
    with VideoWriter(video_path, spec.width, spec.height, spec.fps, crf=crf, preset="veryfast") as writer:
        for i, (img, kp, inside, si) in enumerate(render_frames(spec, stamp)):
            writer.write(img)
            keypoints[i], visible[i], shot_of[i] = kp, inside, si
            progress.report("frames", i + 1, T, video=spec.name)
    np.savez_compressed(out_dir / f"{spec.name}.keypoints.npz", keypoints=keypoints, visible=visible, shot=shot_of)
    truth = {
        "name": spec.name,
        "seed": spec.seed,
        "width": spec.width,
        "height": spec.height,
        "fps": spec.fps,
        "num_frames": T,
        "cuts": spec.cuts,
        "shots": [{"start": int(s), "end": int(s + sh.frames), **asdict(sh), "identity": identity_id(spec.seed, sh.character)}
                  for s, sh in zip([0, *spec.cuts], spec.shots)],
        "stamp": stamp_layout(spec.width, spec.height) if stamp else None,
        "keypoint_layout": "coco_wholebody_133",
    }
    (out_dir / f"{spec.name}.truth.json").write_text(json.dumps(truth, indent=1))
    return video_path


def load_truth(video_path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """The truth files written beside ``video_path`` by :func:`write_video`."""
    video_path = Path(video_path)
    stem = video_path.with_suffix("")
    truth = json.loads(Path(f"{stem}.truth.json").read_text())
    with np.load(f"{stem}.keypoints.npz") as z:
        arrays = {k: z[k] for k in z.files}
    return truth, arrays


def generate_world(out_dir: Path, count: int = 4, seed: int = 0, size: tuple[int, int] = (360, 640),
                   seconds: float = 14.0, stamp: bool = True) -> list[Path]:
    """``count`` multi-shot puppet videos named ``puppet_SEED_K.mp4``; existing complete ones are kept."""
    paths = []
    for k in range(count):
        spec = plan_video(f"puppet_{seed:03d}_{k:03d}", seed * 1000 + k, seconds, size[0], size[1])
        video = Path(out_dir) / f"{spec.name}.mp4"
        truth = Path(out_dir) / f"{spec.name}.truth.json"
        if video.exists() and truth.exists():  # truth is written last: both present means complete
            progress.report("frames", spec.num_frames, spec.num_frames, video=spec.name)
        else:
            write_video(spec, Path(out_dir), stamp=stamp)
        paths.append(video)
    return paths
