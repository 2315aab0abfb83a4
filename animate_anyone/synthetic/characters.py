"""The puppet world's characters: skin, hair, clothes and body proportions from an index and a seed."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SKIN_TONES = [(255, 224, 196), (241, 194, 125), (224, 172, 105), (198, 134, 66), (141, 85, 36), (92, 56, 32)]
HAIR_COLOURS = [(20, 16, 14), (60, 40, 25), (110, 70, 35), (200, 160, 90), (150, 40, 20), (90, 90, 95)]
CLOTH_COLOURS = [
    (200, 30, 40), (30, 90, 200), (40, 150, 70), (240, 200, 40), (120, 40, 160), (240, 120, 30),
    (20, 20, 30), (230, 230, 235), (0, 150, 160), (200, 90, 150), (110, 80, 50), (70, 80, 90),
]
HAIR_STYLES = ["short", "long", "bun", "cap"]
LEG_WEAR = ["trousers", "shorts", "skirt"]
MOVES = ["wave", "jacks", "sway", "squat", "roll", "step"]


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
