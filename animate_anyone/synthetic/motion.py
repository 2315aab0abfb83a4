"""Motion: procedural dance moves as joint angles over time, and the 133 keypoints they give (figure units)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from animate_anyone.pose import layouts
from animate_anyone.synthetic.characters import MOVES, Character


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
    elif move == "reach":  # one arm then the other straight overhead, leaning into it
        p.arm = (1.5 + 1.1 * s, 1.5 - 1.1 * s)
        p.elbow = (0.15, 0.15)
        p.lean = -0.1 * s
        p.dx = -0.04 * s
        p.hip = (0.1 + 0.06 * s, 0.1 - 0.06 * s)
        p.curl = (0.0, 0.0)
    elif move == "lunge":  # a deep crouch to one side and back up, arms out for balance
        down = 0.5 + 0.5 * c
        p.dx, p.dy = 0.08 * s, 0.1 * down
        p.hip = (0.2 + 0.35 * down + 0.15 * s, 0.2 + 0.35 * down - 0.15 * s)
        p.knee = (0.8 * down, 0.8 * down)
        p.arm = (1.5 + 0.3 * s, 1.5 - 0.3 * s)
        p.elbow = (0.2, 0.2)
        p.curl = (0.2, 0.2)
    else:
        raise ValueError(f"unknown puppet move {move!r}; known: {', '.join(MOVES)}")
    return p


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
