"""Drawing: characters over their skeletons, rooms as backgrounds, and the frame-index stamp."""
from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import cv2
import numpy as np

from animate_anyone.pose import layouts
from animate_anyone.synthetic.characters import CLOTH_COLOURS, Character
from animate_anyone.synthetic.motion import _rot


@dataclass(frozen=True)
class Camera:
    """Figure units to pixels: figure height as a fraction of the frame height, and placement."""

    zoom: float = 0.68
    offset_x: float = 0.0  # pelvis x, as a fraction of the frame width from the centre
    feet_y: float = 0.93  # where the ankles sit, as a fraction of the frame height


STAMP_BITS = 16


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


class _Garment:
    """Pieces of one garment drawn into a mask, then filled with its colour and pattern at once.

    The pattern is anchored at ``anchor`` (the pelvis, in pixels), so it moves with the dancer."""

    def __init__(self, img: np.ndarray):
        self.img = img
        self.mask = np.zeros(img.shape[:2], np.uint8)

    def line(self, a, b, width_px: float) -> None:
        _line(self.mask, a, b, 255, width_px)

    def poly(self, pts) -> None:
        _poly(self.mask, pts, 255)

    def fill(self, colour, pattern: str, accent, anchor: np.ndarray, period: float) -> None:
        x, y, w, h = cv2.boundingRect(self.mask)
        if w == 0 or h == 0:
            return
        alpha = self.mask[y : y + h, x : x + w].astype(np.float32)[..., None] / 255.0
        yy, xx = np.mgrid[y : y + h, x : x + w].astype(np.float32)
        u, v = (xx - anchor[0]) / period, (yy - anchor[1]) / period
        if pattern == "stripes":
            second = np.floor(v) % 2 == 1
        elif pattern == "checks":
            second = (np.floor(u) + np.floor(v)) % 2 == 1
        elif pattern == "dots":
            second = ((u - np.round(u)) ** 2 + (v - np.round(v)) ** 2) < 0.09
        elif pattern == "two-tone":  # the dancer's left and right halves
            second = xx > anchor[0]
        else:
            second = np.zeros((h, w), bool)
        fill = np.where(second[..., None], np.array(accent, np.float32), np.array(colour, np.float32))
        region = self.img[y : y + h, x : x + w]
        region[:] = np.clip(region * (1 - alpha) + fill * alpha + 0.5, 0, 255).astype(np.uint8)


def draw_character(img: np.ndarray, ch: Character, kp: np.ndarray, scale: float) -> None:
    """Draw the puppet whose keypoints (pixels) are ``kp`` onto the RGB image ``img``."""
    idx = layouts.INDEX
    g = lambda n: kp[idx[n]]  # noqa: E731
    lw = ch.limb_width * scale
    period = max(2.0, 0.045 * scale)  # pattern cells: about a limb's width
    anchor = (g("left_hip") + g("right_hip")) / 2
    head_c = (g("left_ear") + g("right_ear")) / 2
    head_r = ch.head_r * scale
    tilt = math.degrees(math.atan2(*(g("left_ear") - g("right_ear"))[::-1]))
    if ch.hair_style == "long":  # hair behind the shoulders
        _ellipse(img, head_c + np.array([0, 0.9 * head_r]), (1.15 * head_r, 1.9 * head_r), tilt, ch.hair)
    # legs: skin first, then the leg wear over it as one patterned garment
    legs = _Garment(img)
    for side in ("left", "right"):
        hip, knee, ankle = g(f"{side}_hip"), g(f"{side}_knee"), g(f"{side}_ankle")
        _line(img, hip, knee, ch.skin, 1.25 * lw)
        _line(img, knee, ankle, ch.skin, 1.05 * lw)
        if ch.leg_wear == "trousers":
            legs.line(hip, knee, 1.25 * lw)
            legs.line(knee, ankle, 1.05 * lw)
        elif ch.leg_wear == "shorts":
            legs.line(hip, hip + 0.6 * (knee - hip), 1.35 * lw)
        _poly(img, [ankle + np.array([0, -0.3 * lw]), g(f"{side}_small_toe"), g(f"{side}_big_toe")], ch.shoes)
        _line(img, ankle, (g(f"{side}_big_toe") + g(f"{side}_small_toe")) / 2, ch.shoes, 0.8 * lw)
    ls, rs, lh, rh = g("left_shoulder"), g("right_shoulder"), g("left_hip"), g("right_hip")
    out = (ls - rs) / max(np.linalg.norm(ls - rs), 1e-6)
    down = np.array([-out[1], out[0]])
    if ch.leg_wear == "skirt":
        legs.poly([rh - 0.5 * lw * out, lh + 0.5 * lw * out, lh + 1.6 * lw * out + 3.2 * lw * down,
                   rh - 1.6 * lw * out + 3.2 * lw * down])
    else:
        legs.poly([rh - 0.5 * lw * out, lh + 0.5 * lw * out, lh + 0.5 * lw * out + 0.8 * lw * np.array([0, 1]),
                   rh - 0.5 * lw * out + 0.8 * lw * np.array([0, 1])])
    legs.fill(ch.legs, ch.legs_pattern, ch.legs_accent, anchor, period)
    # torso
    shirt = _Garment(img)
    shirt.poly([rs - 0.35 * lw * out, ls + 0.35 * lw * out, lh + 0.45 * lw * out, rh - 0.45 * lw * out])
    shirt.fill(ch.shirt, ch.shirt_pattern, ch.shirt_accent, anchor, period)
    if ch.accessory == "belt":
        _line(img, rh - 0.5 * lw * out - 0.3 * lw * down, lh + 0.5 * lw * out - 0.3 * lw * down, ch.accessory_colour, 0.5 * lw)
    # neck and head
    neck_base = (ls + rs) / 2
    _line(img, neck_base, head_c + np.array([0, 0.6 * head_r]), _shade(ch.skin, 0.9), 0.9 * lw)
    if ch.accessory == "scarf":
        _line(img, neck_base - 0.9 * lw * out, neck_base + 0.9 * lw * out, ch.accessory_colour, 0.8 * lw)
        _line(img, neck_base + 0.5 * lw * out, neck_base + 0.6 * lw * out + 2.2 * lw * down, ch.accessory_colour, 0.5 * lw)
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
    elif ch.hair_style != "bald":
        _ellipse(img, crown, (0.88 * head_r, 0.68 * head_r), tilt, ch.hair, 180, 360)
        if ch.hair_style == "bun":
            top = head_c + _rot(np.array([0.0, -1.1 * head_r]), math.radians(tilt))
            _ellipse(img, top, (0.35 * head_r, 0.3 * head_r), tilt, ch.hair)
    if ch.accessory == "headband":
        _ellipse(img, crown + _rot(np.array([0.0, 0.12 * head_r]), math.radians(tilt)),
                 (0.9 * head_r, 0.1 * head_r), tilt, ch.accessory_colour)
    # arms and hands in front of the body; sleeves share the shirt's pattern
    sleeves = _Garment(img)
    for side in ("left", "right"):
        sh, el, wr = g(f"{side}_shoulder"), g(f"{side}_elbow"), g(f"{side}_wrist")
        _line(img, sh, el, ch.skin, 0.95 * lw)
        _line(img, el, wr, ch.skin, 0.8 * lw)
        if ch.sleeves == "short":
            sleeves.line(sh, sh + 0.55 * (el - sh), 1.1 * lw)
        elif ch.sleeves == "long":
            sleeves.line(sh, el, 1.1 * lw)
            sleeves.line(el, el + 0.85 * (wr - el), 0.95 * lw)
        else:  # sleeveless: a strap over the shoulder
            sleeves.line(sh, sh + 0.12 * (el - sh), 0.9 * lw)
    sleeves.fill(ch.shirt, ch.shirt_pattern, ch.shirt_accent, anchor, period)
    for side in ("left", "right"):
        wr, el = g(f"{side}_wrist"), g(f"{side}_elbow")
        if ch.accessory == "wristbands":
            _line(img, wr + 0.1 * (el - wr), wr + 0.22 * (el - wr), ch.accessory_colour, 0.95 * lw)
        hand = kp[layouts.LEFT_HAND_SLICE if side == "left" else layouts.RIGHT_HAND_SLICE]
        _poly(img, [hand[0], hand[2], hand[5], hand[9], hand[13], hand[17]], ch.skin)
        for f in range(5):
            chain = hand[0:5] if f == 0 else hand[4 * f + 1 : 4 * f + 5]  # thumb from the wrist
            for a, b in zip(chain[:-1], chain[1:]):
                _line(img, a, b, _shade(ch.skin, 0.95), 0.28 * lw)


def _room_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0.1, 0.9), rng.uniform(0.2, 0.95))
    return int(r * 255), int(g * 255), int(b * 255)


def lighting(seed: int, background: int) -> np.ndarray:
    """A room's light: a gain per RGB channel (brightness and a warm or cool tint)."""
    rng = np.random.default_rng([seed, background, 5])
    return rng.uniform(0.78, 1.12) * (1 + rng.uniform(-0.07, 0.07, 3))


def apply_lighting(img: np.ndarray, gain: np.ndarray) -> np.ndarray:
    return np.clip(img.astype(np.float32) * gain.astype(np.float32) + 0.5, 0, 255).astype(np.uint8)


def draw_background(width: int, height: int, index: int, camera: Camera, seed: int = 0) -> np.ndarray:
    """A room: wall gradient, a tiled floor, framed pictures and a window; moves with the camera."""
    rng = np.random.default_rng([seed, index, 3])
    wall = np.array(_room_colour(rng), dtype=np.float32) * 0.45 + 120
    floor = np.array(_room_colour(rng), dtype=np.float32) * 0.4 + 60
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
