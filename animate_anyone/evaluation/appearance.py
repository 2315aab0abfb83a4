"""Appearance: does the generated person wear the right colours? Offline, without learned features.

Body regions (head, torso, upper limbs, lower limbs) are placed by keypoints: the core of each
region (thin limb lines, the torso shrunk towards its centre, a small disc on the face), so that
a person drawn a little off the pose is still measured on itself and not on the room. A region's
colour is the mean of its pixels in CIE Lab; two regions are compared with CIEDE2000
(scikit-image's ``deltaE_ciede2000``). About 2.3 is a just-noticeable difference.

The same geometry at full width (``core=False``) draws the pose-only baseline: the driving
skeleton as a flat figure in the training population's mean colours (``evaluation.baselines``).
"""
from __future__ import annotations

import cv2
import numpy as np
from skimage.color import deltaE_ciede2000, rgb2lab

from animate_anyone.pose import layouts

REGIONS = ("head", "torso", "upper_limbs", "lower_limbs")
_I = layouts.INDEX
_HEAD = [_I[n] for n in ("nose", "left_eye", "right_eye", "left_ear", "right_ear")]
_TORSO = [_I[n] for n in ("left_shoulder", "right_shoulder", "right_hip", "left_hip")]
_ARMS = [(_I[f"{s}_{a}"], _I[f"{s}_{b}"]) for s in ("left", "right") for a, b in (("shoulder", "elbow"), ("elbow", "wrist"))]
_LEGS = [(_I[f"{s}_{a}"], _I[f"{s}_{b}"]) for s in ("left", "right") for a, b in (("hip", "knee"), ("knee", "ankle"))]


def _scale(kp: np.ndarray, seen: np.ndarray) -> float | None:
    """The body's size in pixels: shoulder width, or hip width x 1.7 when the shoulders are not seen."""
    ls, rs, lh, rh = (_I[n] for n in ("left_shoulder", "right_shoulder", "left_hip", "right_hip"))
    if seen[ls] and seen[rs]:
        return float(np.linalg.norm(kp[ls] - kp[rs]))
    if seen[lh] and seen[rh]:
        return 1.7 * float(np.linalg.norm(kp[lh] - kp[rh]))
    return None


def region_masks(kp: np.ndarray, scores: np.ndarray, height: int, width: int, threshold: float = 0.3,
                 core: bool = True) -> dict[str, np.ndarray]:
    """Boolean masks of the regions whose keypoints are seen (score above ``threshold``).

    ``kp``: (133, 2) pixels; ``core`` keeps the middle of each region (for measuring), otherwise
    the regions have about a person's full widths (for drawing)."""
    seen = np.asarray(scores) > threshold
    size = _scale(kp, seen)
    if size is None or size < 1:
        return {}
    thick = max(1, int(round((0.1 if core else 0.24) * size)))
    out: dict[str, np.ndarray] = {}

    def canvas() -> np.ndarray:
        return np.zeros((height, width), np.uint8)

    if seen[_TORSO].all():
        pts = kp[_TORSO]
        centre = pts.mean(axis=0)
        shrunk = centre + (0.6 if core else 1.05) * (pts - centre)
        m = canvas()
        cv2.fillPoly(m, [np.round(shrunk).astype(np.int32)], 1)
        out["torso"] = m.astype(bool)
    for name, pairs in (("upper_limbs", _ARMS), ("lower_limbs", _LEGS)):
        m = canvas()
        for k, (a, b) in enumerate(pairs):
            if seen[a] and seen[b]:
                # a limb's core leaves out the joint it shares with the torso (upper arm, thigh)
                start = kp[a] + (0.3 if core and k % 2 == 0 else 0.0) * (kp[b] - kp[a])
                cv2.line(m, tuple(int(v) for v in np.round(start)), tuple(int(v) for v in np.round(kp[b])), 1, thick)
        if m.any():
            out[name] = m.astype(bool)
    face = [i for i in _HEAD if seen[i]]
    if len(face) >= 2:
        m = canvas()
        r = max(1, int(round((0.16 if core else 0.32) * size)))
        cv2.circle(m, tuple(int(v) for v in np.round(kp[face].mean(axis=0))), r, 1, -1)
        out["head"] = m.astype(bool)
    return {k: v for k, v in out.items() if v.any()}


def to_lab(img: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB, or floats in [0, 1], to CIE Lab (D65)."""
    img = np.asarray(img)
    return rgb2lab(img.astype(np.float64) / 255.0 if img.dtype == np.uint8 else img.astype(np.float64))


def region_colours(lab: np.ndarray, masks: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each region's mean Lab colour."""
    return {name: lab[m].mean(axis=0) for name, m in masks.items()}


def colour_distances(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, float]:
    """CIEDE2000 between the regions present in both."""
    return {r: float(deltaE_ciede2000(a[r], b[r])) for r in REGIONS if r in a and r in b}


def appearance_values(generated: np.ndarray, real: np.ndarray, reference: np.ndarray, driving: list,
                      reference_pose) -> dict[str, np.ndarray]:
    """Per frame (1…n-1): the colour distance of the generated person to the real one (both
    measured where the driving keypoints put the body) and to the reference's person (measured
    where the reference's own keypoints put it), averaged over the regions, and per region.

    ``generated``, ``real``: (n, H, W, 3) uint8; ``reference``: (H, W, 3) uint8; ``driving``: per
    frame (keypoints, scores) in pixels or None; ``reference_pose``: the reference's, or None."""
    n, height, width = len(generated), generated.shape[1], generated.shape[2]
    ref_colours = {}
    if reference_pose is not None:
        ref_colours = region_colours(to_lab(reference), region_masks(*reference_pose, height, width))
    names = [f"appearance_{w}{suffix}" for w in ("real", "reference") for suffix in ("", *(f"_{r}" for r in REGIONS))]
    out = {k: np.full(n - 1, np.nan) for k in names}
    for i in range(1, n):
        if driving[i] is None:
            continue
        masks = region_masks(*driving[i], height, width)
        if not masks:
            continue
        gen = region_colours(to_lab(generated[i]), masks)
        for what, other in (("real", region_colours(to_lab(real[i]), masks)), ("reference", ref_colours)):
            d = colour_distances(gen, other)
            if d:
                out[f"appearance_{what}"][i - 1] = float(np.mean(list(d.values())))
            for r, v in d.items():
                out[f"appearance_{what}_{r}"][i - 1] = v
    return out
