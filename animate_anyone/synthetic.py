"""The puppet world: procedural characters dancing in multi-shot videos with exact ground truth.

Every video is deterministic from its seed. Beside ``NAME.mp4`` the generator writes
``NAME.truth.json`` (size, fps, the frames where shots start, what each shot shows) and
``NAME.keypoints.npz`` (``keypoints`` [T, 133, 2] in pixels, COCO-WholeBody order,
``visible`` [T, 133], ``shot`` [T]). A small binary stamp of the frame index sits in the
bottom-left corner (``stamp`` in the truth file) so frame-accurate cutting can be checked
from decoded pixels alone.

Geometry is built in "figure units" (a standing figure is about 1.0 tall, y down, origin at
the pelvis) and mapped to pixels by a per-shot camera (scale and offset).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from animate_anyone.media.video import VideoWriter
from animate_anyone.pose import layouts

FPS = 30
STAMP_BITS = 16

SKIN_TONES = [(255, 224, 196), (241, 194, 125), (224, 172, 105), (198, 134, 66), (141, 85, 36), (92, 56, 32)]
HAIR_COLOURS = [(20, 16, 14), (60, 40, 25), (110, 70, 35), (200, 160, 90), (150, 40, 20), (90, 90, 95)]
CLOTH_COLOURS = [
    (200, 30, 40), (30, 90, 200), (40, 150, 70), (240, 200, 40), (120, 40, 160), (240, 120, 30),
    (20, 20, 30), (230, 230, 235), (0, 150, 160), (200, 90, 150), (110, 80, 50), (70, 80, 90),
]
HAIR_STYLES = ["short", "long", "bun", "cap"]
LEG_WEAR = ["trousers", "shorts", "skirt"]
MOVES = ["wave", "jacks", "sway", "squat", "roll", "step"]


# --------------------------------------------------------------------------------------------
# Characters, backgrounds and shots
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Character:
    """A puppet's look and proportions (figure units)."""

    index: int
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    hair_style: str
    shirt: tuple[int, int, int]
    long_sleeves: bool
    legs: tuple[int, int, int]
    leg_wear: str
    shoes: tuple[int, int, int]
    head_r: float
    shoulder_half: float
    hip_half: float
    torso: float
    neck: float
    upper_arm: float
    forearm: float
    hand: float
    thigh: float
    shin: float
    limb_width: float


def make_character(index: int, seed: int = 0) -> Character:
    """Character ``index`` of the world with ``seed``; consecutive indices always differ in look."""
    rng = np.random.default_rng([seed, index, 7])
    build = rng.uniform(0.88, 1.12)  # narrow to broad
    tall = rng.uniform(0.92, 1.08)  # short-legged to long-legged
    return Character(
        index=index,
        skin=SKIN_TONES[(index * 5 + seed) % len(SKIN_TONES)],
        hair=HAIR_COLOURS[(index * 7 + seed) % len(HAIR_COLOURS)],
        hair_style=HAIR_STYLES[index % len(HAIR_STYLES)],
        shirt=CLOTH_COLOURS[(index * 5 + seed) % len(CLOTH_COLOURS)],
        long_sleeves=bool((index // 2) % 2),
        legs=CLOTH_COLOURS[(index * 5 + 3 + seed) % len(CLOTH_COLOURS)],
        leg_wear=LEG_WEAR[(index // 4 + index) % len(LEG_WEAR)],
        shoes=CLOTH_COLOURS[(index * 3 + 6 + seed) % len(CLOTH_COLOURS)],
        head_r=float(rng.uniform(0.062, 0.072)),
        shoulder_half=float(0.105 * build),
        hip_half=float(0.06 * build),
        torso=float(rng.uniform(0.28, 0.31)),
        neck=float(rng.uniform(0.04, 0.055)),
        upper_arm=float(0.165 * tall),
        forearm=float(0.145 * tall),
        hand=float(0.085 * tall),
        thigh=float(0.225 * tall),
        shin=float(0.215 * tall),
        limb_width=float(0.042 * build),
    )


@dataclass(frozen=True)
class Camera:
    """Figure units to pixels: figure height as a fraction of the frame height, and placement."""

    zoom: float = 0.68
    offset_x: float = 0.0  # pelvis x, as a fraction of the frame width from the centre
    feet_y: float = 0.93  # where the ankles sit, as a fraction of the frame height


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


# --------------------------------------------------------------------------------------------
# Motion: joint angles over time
# --------------------------------------------------------------------------------------------
@dataclass
class PoseParams:
    dx: float = 0.0  # pelvis shift (figure units)
    dy: float = 0.0
    lean: float = 0.0  # torso rotation (radians, positive = clockwise in the image)
    head: float = 0.0
    arm: tuple[float, float] = (0.25, 0.25)  # (subject left, subject right): angle from down, outward +
    elbow: tuple[float, float] = (0.3, 0.3)  # flex
    wrist: tuple[float, float] = (0.0, 0.0)
    hip: tuple[float, float] = (0.08, 0.08)
    knee: tuple[float, float] = (0.0, 0.0)
    curl: tuple[float, float] = (0.1, 0.1)  # finger curl 0 (open) .. 1 (fist)


def dance(move: str, t: float, tempo: float, phase: float) -> PoseParams:
    """Joint angles of ``move`` at time ``t`` seconds: smooth, so no frame looks like a cut."""
    w = 2 * math.pi * tempo
    s, c = math.sin(w * t + phase), math.cos(w * t + phase)
    s2 = math.sin(2 * w * t + phase)
    p = PoseParams(head=0.08 * math.sin(0.5 * w * t + phase))
    up = 0.5 + 0.5 * s
    if move == "wave":
        p.arm = (1.3 + 0.9 * s, 1.3 - 0.9 * s)
        p.elbow = (0.7 + 0.5 * c, 0.7 - 0.5 * c)
        p.dx = 0.03 * s
        p.curl = (0.1 + 0.3 * up, 0.4 - 0.3 * up)
    elif move == "jacks":
        p.arm = (0.3 + 2.3 * up, 0.3 + 2.3 * up)
        p.elbow = (0.15, 0.15)
        p.hip = (0.06 + 0.22 * up, 0.06 + 0.22 * up)
        p.dy = -0.03 * up
        p.curl = (0.0, 0.0)
    elif move == "sway":
        p.dx, p.lean = 0.07 * s, 0.12 * s
        p.arm = (0.6 + 0.3 * s, 0.6 - 0.3 * s)
        p.elbow = (1.3, 1.3)
        p.hip = (0.1 - 0.05 * s, 0.1 + 0.05 * s)
        p.curl = (0.6, 0.6)
    elif move == "squat":
        p.dy = 0.07 * up
        p.hip = (0.15 + 0.3 * up, 0.15 + 0.3 * up)
        p.knee = (0.55 * up, 0.55 * up)
        p.arm = (1.2 + 0.2 * c, 1.2 + 0.2 * c)
        p.elbow = (0.2 + 0.6 * up, 0.2 + 0.6 * up)
        p.curl = (0.3, 0.3)
    elif move == "roll":
        p.arm = (0.9 + 0.5 * s, 0.9 + 0.5 * c)
        p.elbow = (1.4 + 0.6 * s2, 1.4 - 0.6 * s2)
        p.wrist = (0.3 * c, -0.3 * c)
        p.lean = 0.05 * s2
        p.curl = (0.5 + 0.4 * s, 0.5 + 0.4 * c)
    elif move == "step":
        lift_l, lift_r = max(0.0, s), max(0.0, -s)
        p.hip = (0.08 + 0.35 * lift_l, 0.08 + 0.35 * lift_r)
        p.knee = (0.6 * lift_l, 0.6 * lift_r)
        p.dx = 0.05 * s
        p.dy = -0.02 * abs(s)
        p.arm = (0.4 + 0.8 * lift_r, 0.4 + 0.8 * lift_l)
        p.elbow = (0.9, 0.9)
    else:
        raise ValueError(f"unknown puppet move {move!r}; known: {', '.join(MOVES)}")
    return p


# --------------------------------------------------------------------------------------------
# Skeleton: joint angles to the 133 keypoints (figure units)
# --------------------------------------------------------------------------------------------
def _rot(v: np.ndarray, a: float) -> np.ndarray:
    ca, sa = math.cos(a), math.sin(a)
    return np.array([ca * v[0] - sa * v[1], sa * v[0] + ca * v[1]])


def _limb_dir(angle: float, side: int, lean: float) -> np.ndarray:
    """Unit vector of a limb ``angle`` radians from straight down, outward (``side``: +1 left)."""
    return _rot(np.array([side * math.sin(angle), math.cos(angle)]), lean)


def _face_template() -> np.ndarray:
    """68 iBUG face points in head units (x: image right, y: down; head radius 1)."""
    pts: list[tuple[float, float]] = []
    for phi in np.linspace(-1.75, 1.75, 17):  # jaw, image left to right around the chin
        pts.append((0.9 * math.sin(phi), 0.95 * math.cos(phi) * (1 if abs(phi) < 1.57 else 0.2)))
    for x0, x1 in ((-0.62, -0.14), (0.14, 0.62)):  # brows
        for x in np.linspace(x0, x1, 5):
            pts.append((x, -0.38 - 0.06 * (1 - ((x - (x0 + x1) / 2) / 0.24) ** 2)))
    for y in np.linspace(-0.15, 0.2, 4):  # nose bridge 27-30, 30 = tip
        pts.append((0.0, y))
    for x in np.linspace(-0.16, 0.16, 5):  # nostrils 31-35
        pts.append((x, 0.3 - 0.03 * (1 - abs(x) / 0.16)))
    for cx, order in ((-0.36, (-1, -0.4, 0.4, 1, 0.4, -0.4)), (0.36, (-1, -0.4, 0.4, 1, 0.4, -0.4))):  # eyes
        for k, u in enumerate(order):
            pts.append((cx + 0.16 * u, -0.1 + (-0.07 if k in (1, 2) else 0.07 if k in (4, 5) else 0.0)))
    outer = [(-1, 0), (-0.6, -0.35), (-0.25, -0.5), (0, -0.42), (0.25, -0.5), (0.6, -0.35),
             (1, 0), (0.6, 0.5), (0.25, 0.65), (0, 0.68), (-0.25, 0.65), (-0.6, 0.5)]
    inner = [(-0.8, 0), (-0.3, -0.15), (0, -0.15), (0.3, -0.15), (0.8, 0), (0.3, 0.2), (0, 0.22), (-0.3, 0.2)]
    for u, v in outer + inner:  # mouth 48-67
        pts.append((0.32 * u, 0.56 + 0.14 * v))
    return np.array(pts, dtype=np.float64)


FACE_TEMPLATE = _face_template()


def _hand(wrist: np.ndarray, direction: np.ndarray, side: int, length: float, curl: float) -> np.ndarray:
    """21 hand points: palm towards the camera, thumb on the outer side."""
    out = side * np.array([direction[1], -direction[0]])  # perpendicular, away from the body
    pts = [wrist]
    thumb_base = wrist + 0.18 * length * direction + 0.22 * length * out
    tdir = 0.55 * direction + 0.85 * out
    tdir /= np.linalg.norm(tdir)
    seg = 0.17 * length * (1 - 0.4 * curl)
    pts += [thumb_base + k * seg * tdir for k in range(4)]
    for f, spread in enumerate((0.2, 0.05, -0.1, -0.25)):  # index, middle, ring, pinky
        base = wrist + 0.5 * length * direction + (0.24 - 0.16 * f) * length * out
        fdir = direction + spread * out
        fdir /= np.linalg.norm(fdir)
        flen = (0.16, 0.17, 0.16, 0.13)[f] * length * (1 - 0.6 * curl)
        pts += [base + k * flen * fdir for k in range(4)]
    return np.array(pts)


def skeleton(ch: Character, p: PoseParams) -> np.ndarray:
    """The 133 keypoints (figure units, pelvis at the origin before ``p.dx``/``p.dy``)."""
    kp = np.zeros((133, 2))
    pelvis = np.array([p.dx, p.dy])
    up = _rot(np.array([0.0, -1.0]), p.lean)
    across = _rot(np.array([1.0, 0.0]), p.lean)
    sh_c = pelvis + ch.torso * up
    neck_top = sh_c + ch.neck * up
    head_c = neck_top + ch.head_r * _rot(np.array([0.0, -1.0]), p.lean + p.head)
    idx = layouts.INDEX
    for side, name, k in ((1, "left", 0), (-1, "right", 1)):
        sh = sh_c + side * ch.shoulder_half * across
        elbow = sh + ch.upper_arm * _limb_dir(p.arm[k], side, p.lean)
        fdir = _limb_dir(p.arm[k] + p.elbow[k], side, p.lean)
        wrist = elbow + ch.forearm * fdir
        hip = pelvis + side * ch.hip_half * across
        knee = hip + ch.thigh * _limb_dir(p.hip[k], side, 0.0)
        ankle = knee + ch.shin * _limb_dir(p.hip[k] - p.knee[k], side, 0.0)
        kp[idx[f"{name}_shoulder"]], kp[idx[f"{name}_elbow"]], kp[idx[f"{name}_wrist"]] = sh, elbow, wrist
        kp[idx[f"{name}_hip"]], kp[idx[f"{name}_knee"]], kp[idx[f"{name}_ankle"]] = hip, knee, ankle
        kp[idx[f"{name}_big_toe"]] = ankle + np.array([side * 0.012, 0.05])
        kp[idx[f"{name}_small_toe"]] = ankle + np.array([side * 0.045, 0.045])
        kp[idx[f"{name}_heel"]] = ankle + np.array([side * 0.004, 0.022])
        hdir = _limb_dir(p.arm[k] + p.elbow[k] + p.wrist[k], side, p.lean)
        hand_slice = layouts.LEFT_HAND_SLICE if side == 1 else layouts.RIGHT_HAND_SLICE
        kp[hand_slice] = _hand(wrist, hdir, side, ch.hand, p.curl[k])
    head_rot = p.lean + p.head
    face = np.array([_rot(v * np.array([ch.head_r * 0.82, ch.head_r]), head_rot) for v in FACE_TEMPLATE]) + head_c
    kp[layouts.FACE_SLICE] = face
    kp[idx["nose"]] = face[30]
    kp[idx["right_eye"]] = face[36:42].mean(axis=0)
    kp[idx["left_eye"]] = face[42:48].mean(axis=0)
    kp[idx["right_ear"]] = head_c + _rot(np.array([-0.86 * ch.head_r, 0.0]), head_rot)
    kp[idx["left_ear"]] = head_c + _rot(np.array([0.86 * ch.head_r, 0.0]), head_rot)
    return kp


# --------------------------------------------------------------------------------------------
# Drawing
# --------------------------------------------------------------------------------------------
def _pt(v: np.ndarray) -> tuple[int, int]:
    return int(round(v[0] * 16)), int(round(v[1] * 16))  # 4 bits of sub-pixel precision


def _line(img, a, b, colour, width_px: float) -> None:
    cv2.line(img, _pt(a), _pt(b), colour, max(1, int(round(width_px))), cv2.LINE_AA, shift=4)


def _poly(img, pts, colour) -> None:
    cv2.fillPoly(img, [np.array([_pt(p) for p in pts], dtype=np.int32)], colour, cv2.LINE_AA, shift=4)


def _ellipse(img, centre, axes, angle_deg, colour, start=0, end=360) -> None:
    cv2.ellipse(img, _pt(centre), (int(axes[0] * 16), int(axes[1] * 16)), angle_deg, start, end, colour, -1, cv2.LINE_AA, shift=4)


def _shade(colour, f: float) -> tuple[int, int, int]:
    return tuple(int(np.clip(c * f, 0, 255)) for c in colour)


def draw_character(img: np.ndarray, ch: Character, kp: np.ndarray, scale: float) -> None:
    """Draw the puppet whose keypoints (pixels) are ``kp`` onto the RGB image ``img``."""
    idx = layouts.INDEX
    g = lambda n: kp[idx[n]]  # noqa: E731
    lw = ch.limb_width * scale
    head_c = (g("left_ear") + g("right_ear")) / 2
    head_r = ch.head_r * scale
    tilt = math.degrees(math.atan2(*(g("left_ear") - g("right_ear"))[::-1]))
    if ch.hair_style == "long":  # hair behind the shoulders
        _ellipse(img, head_c + np.array([0, 0.9 * head_r]), (1.15 * head_r, 1.9 * head_r), tilt, ch.hair)
    # legs
    for side in ("left", "right"):
        hip, knee, ankle = g(f"{side}_hip"), g(f"{side}_knee"), g(f"{side}_ankle")
        thigh_col = ch.legs if ch.leg_wear != "skirt" else ch.skin
        shin_col = ch.legs if ch.leg_wear == "trousers" else ch.skin
        _line(img, hip, knee, thigh_col, 1.25 * lw)
        _line(img, knee, ankle, shin_col, 1.05 * lw)
        _poly(img, [ankle + np.array([0, -0.3 * lw]), g(f"{side}_small_toe"), g(f"{side}_big_toe")], ch.shoes)
        _line(img, ankle, (g(f"{side}_big_toe") + g(f"{side}_small_toe")) / 2, ch.shoes, 0.8 * lw)
    # torso
    ls, rs, lh, rh = g("left_shoulder"), g("right_shoulder"), g("left_hip"), g("right_hip")
    out = (ls - rs) / max(np.linalg.norm(ls - rs), 1e-6)
    _poly(img, [rs - 0.35 * lw * out, ls + 0.35 * lw * out, lh + 0.45 * lw * out, rh - 0.45 * lw * out], ch.shirt)
    if ch.leg_wear == "skirt":
        down = np.array([-out[1], out[0]])
        _poly(img, [rh - 0.5 * lw * out, lh + 0.5 * lw * out, lh + 1.6 * lw * out + 3.2 * lw * down,
                    rh - 1.6 * lw * out + 3.2 * lw * down], ch.legs)
    else:
        _poly(img, [rh - 0.5 * lw * out, lh + 0.5 * lw * out, g("left_hip") + 0.5 * lw * out + 0.8 * lw * np.array([0, 1]),
                    rh - 0.5 * lw * out + 0.8 * lw * np.array([0, 1])], ch.legs)
    # neck and head
    neck_base = (ls + rs) / 2
    _line(img, neck_base, head_c + np.array([0, 0.6 * head_r]), _shade(ch.skin, 0.9), 0.9 * lw)
    for side in ("left", "right"):
        _ellipse(img, g(f"{side}_ear"), (0.22 * head_r, 0.3 * head_r), tilt, _shade(ch.skin, 0.92))
    _ellipse(img, head_c, (0.84 * head_r, head_r), tilt, ch.skin)
    face = kp[layouts.FACE_SLICE]
    for eye in (face[36:42], face[42:48]):
        centre = eye.mean(axis=0)
        _ellipse(img, centre, (0.17 * head_r, 0.09 * head_r), tilt, (250, 250, 250))
        _ellipse(img, centre, (0.075 * head_r, 0.075 * head_r), 0, (40, 30, 20))
    for brow in (face[17:22], face[22:27]):
        for a, b in zip(brow[:-1], brow[1:]):
            _line(img, a, b, _shade(ch.hair, 0.8), 0.07 * head_r)
    _line(img, face[27], face[30], _shade(ch.skin, 0.75), 0.06 * head_r)
    _line(img, face[31], face[35], _shade(ch.skin, 0.7), 0.06 * head_r)
    _poly(img, face[48:60], (170, 50, 60))
    # hair on top of the head, above the brows
    crown = head_c + _rot(np.array([0.0, -0.42 * head_r]), math.radians(tilt))
    if ch.hair_style == "cap":
        _ellipse(img, crown, (0.9 * head_r, 0.66 * head_r), tilt, ch.hair, 180, 360)
        _ellipse(img, crown, (1.15 * head_r, 0.14 * head_r), tilt, _shade(ch.hair, 0.7))
    else:
        _ellipse(img, crown, (0.88 * head_r, 0.68 * head_r), tilt, ch.hair, 180, 360)
        if ch.hair_style == "bun":
            top = head_c + _rot(np.array([0.0, -1.1 * head_r]), math.radians(tilt))
            _ellipse(img, top, (0.35 * head_r, 0.3 * head_r), tilt, ch.hair)
    # arms and hands in front of the body
    for side in ("left", "right"):
        sh, el, wr = g(f"{side}_shoulder"), g(f"{side}_elbow"), g(f"{side}_wrist")
        _line(img, sh, el, ch.skin, 0.95 * lw)
        _line(img, el, wr, ch.skin, 0.8 * lw)
        sleeve_end = wr if ch.long_sleeves else sh + 0.55 * (el - sh)
        _line(img, sh, sleeve_end if not ch.long_sleeves else el, ch.shirt, 1.1 * lw)
        if ch.long_sleeves:
            _line(img, el, el + 0.85 * (wr - el), ch.shirt, 0.95 * lw)
        hand = kp[layouts.LEFT_HAND_SLICE if side == "left" else layouts.RIGHT_HAND_SLICE]
        _poly(img, [hand[0], hand[2], hand[5], hand[9], hand[13], hand[17]], ch.skin)
        for f in range(5):
            chain = hand[0:5] if f == 0 else hand[4 * f + 1 : 4 * f + 5]  # thumb from the wrist
            for a, b in zip(chain[:-1], chain[1:]):
                _line(img, a, b, _shade(ch.skin, 0.95), 0.28 * lw)


def draw_background(width: int, height: int, index: int, camera: Camera, seed: int = 0) -> np.ndarray:
    """A room: wall gradient, a tiled floor, framed pictures and a window; moves with the camera."""
    rng = np.random.default_rng([seed, index, 3])
    wall = np.array(CLOTH_COLOURS[(index * 7 + 2) % len(CLOTH_COLOURS)], dtype=np.float32) * 0.45 + 120
    floor = np.array(CLOTH_COLOURS[(index * 5 + 9) % len(CLOTH_COLOURS)], dtype=np.float32) * 0.4 + 60
    img = np.empty((height, width, 3), np.float32)
    horizon = int(height * (0.58 + 0.12 * (camera.zoom - 0.7)))
    ramp = np.linspace(1.1, 0.85, horizon)[:, None, None]
    img[:horizon] = wall * ramp
    img[horizon:] = floor
    img = np.clip(img, 0, 255).astype(np.uint8)
    s = camera.zoom * height  # pixels per room unit: the room scales with the figure
    cx = width * (0.5 - camera.offset_x)
    for k in range(-6, 7):  # floor tiles in perspective
        x_far = cx + k * 0.18 * s
        x_near = cx + k * 0.45 * s
        cv2.line(img, (int(x_far), horizon), (int(x_near), height), _shade(floor, 0.7), max(1, int(s / 250)), cv2.LINE_AA)
    for y in np.geomspace(8, height - horizon, 6):
        cv2.line(img, (0, int(horizon + y)), (width, int(horizon + y)), _shade(floor, 0.75), 1, cv2.LINE_AA)
    for _ in range(int(rng.integers(3, 6))):  # pictures and a window, fixed in the room
        u, v = rng.uniform(-1.2, 1.2), rng.uniform(0.08, 0.5)
        w, h = rng.uniform(0.12, 0.3), rng.uniform(0.1, 0.25)
        x0, y0 = int(cx + u * s), int(horizon - v * s - h * s)
        x1, y1 = int(x0 + w * s), int(y0 + h * s)
        col = CLOTH_COLOURS[int(rng.integers(0, len(CLOTH_COLOURS)))]
        cv2.rectangle(img, (x0, y0), (x1, y1), _shade(col, 0.9), -1)
        cv2.rectangle(img, (x0, y0), (x1, y1), (40, 30, 25), max(2, int(s / 120)))
        cv2.line(img, ((x0 + x1) // 2, y0), ((x0 + x1) // 2, y1), (40, 30, 25), max(1, int(s / 200)))
    return img


def stamp_layout(width: int, height: int) -> dict:
    """Where :func:`stamp_frame_index` puts its cells for a frame of this size."""
    cell = max(4, width // 96)
    return {"x0": cell, "y0": height - 2 * cell, "cell": cell, "bits": STAMP_BITS}


def stamp_frame_index(img: np.ndarray, index: int) -> dict:
    """Write ``index`` as 16 black/white cells in the bottom-left corner; returns where."""
    layout = stamp_layout(img.shape[1], img.shape[0])
    cell, y0 = layout["cell"], layout["y0"]
    for b in range(STAMP_BITS):
        val = 255 if (index >> b) & 1 else 0
        img[y0 : y0 + cell, (b + 1) * cell : (b + 2) * cell] = val
    return layout


def read_frame_index(img: np.ndarray, stamp: dict) -> int:
    """Read the frame index back from a decoded RGB frame (inverse of :func:`stamp_frame_index`)."""
    c = stamp["cell"]
    y = stamp["y0"] + c // 2
    bits = [img[y, stamp["x0"] + b * c + c // 2].mean() > 127 for b in range(stamp["bits"])]
    return sum(1 << b for b, on in enumerate(bits) if on)


# --------------------------------------------------------------------------------------------
# Rendering whole videos
# --------------------------------------------------------------------------------------------
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
        for k in range(shot.frames):
            t = k / spec.fps
            kp_fig = skeleton(ch, dance(shot.move, t, shot.tempo_hz, shot.phase))
            kp, scale = to_pixels(kp_fig, ch, shot.camera, spec.width, spec.height)
            img = bg.copy()
            draw_character(img, ch, kp, scale)
            if stamp:
                stamp_frame_index(img, frame)
            inside = (kp[:, 0] >= 0) & (kp[:, 0] < spec.width) & (kp[:, 1] >= 0) & (kp[:, 1] < spec.height)
            yield img, kp.astype(np.float32), inside, si
            frame += 1


def write_video(spec: VideoSpec, out_dir: Path, stamp: bool = True, crf: int = 18,
                progress: Callable[[int], None] | None = None) -> Path:
    """Render ``spec`` to ``out_dir/NAME.mp4`` (H.264) with its truth files; returns the video path."""
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
            if progress:
                progress(1)
    np.savez_compressed(out_dir / f"{spec.name}.keypoints.npz", keypoints=keypoints, visible=visible, shot=shot_of)
    truth = {
        "name": spec.name,
        "seed": spec.seed,
        "width": spec.width,
        "height": spec.height,
        "fps": spec.fps,
        "num_frames": T,
        "cuts": spec.cuts,
        "shots": [{"start": int(s), "end": int(s + sh.frames), **asdict(sh)} for s, sh in zip([0, *spec.cuts], spec.shots)],
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
                   seconds: float = 14.0, stamp: bool = True,
                   progress: Callable[[int], None] | None = None) -> list[Path]:
    """``count`` multi-shot puppet videos named ``puppet_SEED_K.mp4``; existing complete ones are kept."""
    paths = []
    for k in range(count):
        spec = plan_video(f"puppet_{seed:03d}_{k:03d}", seed * 1000 + k, seconds, size[0], size[1])
        video = Path(out_dir) / f"{spec.name}.mp4"
        truth = Path(out_dir) / f"{spec.name}.truth.json"
        if video.exists() and truth.exists():  # truth is written last: both present means complete
            if progress:
                progress(spec.num_frames)
        else:
            write_video(spec, Path(out_dir), stamp=stamp, progress=progress)
        paths.append(video)
    return paths
