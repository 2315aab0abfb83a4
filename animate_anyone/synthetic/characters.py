"""The puppet world's characters: a look and body proportions drawn from a large space by (seed, index).

A character's look is sampled, not picked from a short palette: skin between the lightest and the
darkest tone, hair colour and style, a shirt and leg wear with their own colours and patterns
(plain, stripes, checks, dots, two-tone), sleeves, shoes and an accessory. Two characters of
different (seed, index) are different identities; a video's characters are its own (its seed is
in their identity), so a held-out video's dancers never appear in a training video.
"""
from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np

# ends of the skin range (light to dark); a character's skin lies on the line between two neighbours
SKIN_TONES = [(255, 224, 196), (241, 194, 125), (224, 172, 105), (198, 134, 66), (141, 85, 36), (92, 56, 32)]
HAIR_COLOURS = [(20, 16, 14), (60, 40, 25), (110, 70, 35), (200, 160, 90), (150, 40, 20), (90, 90, 95)]
# a few named garment colours for rooms and props; characters sample theirs from the whole colour space
CLOTH_COLOURS = [
    (200, 30, 40), (30, 90, 200), (40, 150, 70), (240, 200, 40), (120, 40, 160), (240, 120, 30),
    (20, 20, 30), (230, 230, 235), (0, 150, 160), (200, 90, 150), (110, 80, 50), (70, 80, 90),
]
HAIR_STYLES = ["short", "long", "bun", "cap", "bald"]
LEG_WEAR = ["trousers", "shorts", "skirt"]
SLEEVES = ["none", "short", "long"]
PATTERNS = ["plain", "stripes", "checks", "dots", "two-tone"]
ACCESSORIES = ["none", "belt", "scarf", "headband", "wristbands"]
MOVES = ["wave", "jacks", "sway", "squat", "roll", "step", "reach", "lunge"]

Colour = tuple[int, int, int]


def identity_id(video_seed: int, index: int) -> int:
    """The identity of character ``index`` of the video whose seed is ``video_seed``."""
    return video_seed * 100 + index


@dataclass(frozen=True)
class Character:
    """A puppet's look and proportions (figure units)."""

    index: int
    skin: Colour
    hair: Colour
    hair_style: str
    shirt: Colour
    sleeves: str
    legs: Colour
    leg_wear: str
    shoes: Colour
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
    shirt_pattern: str = "plain"
    shirt_accent: Colour = (255, 255, 255)
    legs_pattern: str = "plain"
    legs_accent: Colour = (0, 0, 0)
    accessory: str = "none"
    accessory_colour: Colour = (0, 0, 0)
    identity: int = 0

    @property
    def long_sleeves(self) -> bool:
        return self.sleeves == "long"


def _colour(rng: np.random.Generator, sat: tuple[float, float] = (0.15, 0.95), val: tuple[float, float] = (0.12, 0.96)) -> Colour:
    r, g, b = colorsys.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(*sat), rng.uniform(*val))
    return int(round(r * 255)), int(round(g * 255)), int(round(b * 255))


def _contrast(rng: np.random.Generator, base: Colour) -> Colour:
    """A second colour that differs clearly from ``base`` (a pattern must be visible)."""
    for _ in range(20):
        c = _colour(rng)
        if sum(abs(a - b) for a, b in zip(c, base)) > 150:
            return c
    return tuple(255 - v for v in base)


def _between(rng: np.random.Generator, tones: list[Colour]) -> Colour:
    k = int(rng.integers(0, len(tones) - 1))
    t = rng.uniform(0, 1)
    return tuple(int(round((1 - t) * a + t * b)) for a, b in zip(tones[k], tones[k + 1]))


def make_character(index: int, seed: int = 0) -> Character:
    """Character ``index`` of the video with ``seed``: every (seed, index) is its own identity.

    Styles cycle with the index (consecutive characters differ in hair, sleeves and leg wear);
    colours, patterns, accessories and proportions are sampled.
    """
    rng = np.random.default_rng([seed, index, 7])
    build = rng.uniform(0.82, 1.22)  # narrow to broad
    tall = rng.uniform(0.9, 1.1)  # short-legged to long-legged
    shirt = _colour(rng)
    legs = _colour(rng)
    shirt_pattern = PATTERNS[int(rng.integers(0, len(PATTERNS)))]
    legs_pattern = ["plain", "plain", "stripes", "checks", "two-tone"][int(rng.integers(0, 5))]
    return Character(
        index=index,
        skin=_between(rng, SKIN_TONES),
        hair=tuple(int(np.clip(c * rng.uniform(0.8, 1.2), 0, 255)) for c in HAIR_COLOURS[int(rng.integers(0, len(HAIR_COLOURS)))]),
        hair_style=HAIR_STYLES[(index + seed) % len(HAIR_STYLES)],
        shirt=shirt,
        sleeves=SLEEVES[(index + seed // 3) % len(SLEEVES)],
        legs=legs,
        leg_wear=LEG_WEAR[(index // 3 + index + seed) % len(LEG_WEAR)],
        shoes=_colour(rng, val=(0.05, 0.9)),
        head_r=float(rng.uniform(0.058, 0.076)),
        shoulder_half=float(0.105 * build),
        hip_half=float(0.06 * build),
        torso=float(rng.uniform(0.27, 0.32)),
        neck=float(rng.uniform(0.04, 0.055)),
        upper_arm=float(0.165 * tall),
        forearm=float(0.145 * tall),
        hand=float(0.085 * tall),
        thigh=float(0.225 * tall),
        shin=float(0.215 * tall),
        limb_width=float(0.042 * build),
        shirt_pattern=shirt_pattern,
        shirt_accent=_contrast(rng, shirt),
        legs_pattern=legs_pattern,
        legs_accent=_contrast(rng, legs),
        accessory=ACCESSORIES[int(rng.integers(0, len(ACCESSORIES)))],
        accessory_colour=_colour(rng, sat=(0.5, 1.0), val=(0.4, 1.0)),
        identity=identity_id(seed, index),
    )
