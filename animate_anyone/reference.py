"""The reference image: read in any common mode (RGBA composited, greyscale converted), fitted to
the output's shape (pad, crop or stretch), and checked to show a person. Each step says what it did."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from animate_anyone.errors import PermanentError


class AnimateInputError(PermanentError):
    """The reference image, the pose source or an option cannot be used; the message says which."""


def parse_colour(text: str) -> tuple[int, int, int]:
    import PIL.ImageColor

    try:
        return PIL.ImageColor.getrgb(text)[:3]
    except ValueError as exc:
        raise AnimateInputError(f"--background {text!r} is not a colour (a name like white, or #rrggbb)",
                                "bad_option") from exc


def read_reference(path: Path, background: str = "white") -> tuple[np.ndarray, list[str]]:
    """An RGB image (H, W, 3) uint8 and what was done to make it one: transparent images are
    composited onto ``background``, greyscale and palette images converted."""
    import PIL.Image

    path = Path(path)
    if not path.is_file():
        raise AnimateInputError(f"reference image not found: {path}", "missing_file")
    notes = []
    try:
        with PIL.Image.open(path) as im:
            mode = im.mode
            if mode == "P" and "transparency" in im.info:
                im = im.convert("RGBA")
            if im.mode in ("RGBA", "LA", "PA"):
                canvas = PIL.Image.new("RGB", im.size, parse_colour(background))
                canvas.paste(im.convert("RGBA"), mask=im.convert("RGBA").getchannel("A"))
                image = canvas
                notes.append(f"reference {path.name} is {mode} (transparent): composited onto {background}")
            else:
                image = im.convert("RGB")
                if mode != "RGB":
                    notes.append(f"reference {path.name} is {mode}: converted to RGB")
            image = np.asarray(image)
    except (OSError, ValueError) as exc:
        raise AnimateInputError(f"reference image {path} cannot be read: {exc}", "bad_image") from exc
    return image, notes


def fit_image(image: np.ndarray, size: tuple[int, int], mode: str) -> tuple[np.ndarray, str | None]:
    """``image`` at ``size`` (width, height), keeping its aspect unless ``mode`` is stretch:
    ``pad`` fits it inside and fills the rest with the median colour of its border, ``crop`` covers
    and cuts the centre. Returns the image and a note when the aspect ratios differed."""
    import PIL.Image

    h, w = image.shape[:2]
    W, H = size
    pil = PIL.Image.fromarray(image)
    if abs(w / h - W / H) <= 0.01 * (W / H) or mode == "stretch":
        note = None if abs(w / h - W / H) <= 0.01 * (W / H) else f"reference {w}x{h} stretched to {W}x{H}"
        return np.asarray(pil.resize((W, H), PIL.Image.BICUBIC)), note
    if mode == "crop":
        scale = max(W / w, H / h)
        nw, nh = max(W, round(w * scale)), max(H, round(h * scale))
        big = pil.resize((nw, nh), PIL.Image.BICUBIC)
        left, top = (nw - W) // 2, (nh - H) // 2
        return np.asarray(big.crop((left, top, left + W, top + H))), \
            f"reference {w}x{h} scaled and centre-cropped to {W}x{H} (--fit crop)"
    scale = min(W / w, H / h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    fill = tuple(int(v) for v in np.median(border, axis=0))
    canvas = PIL.Image.new("RGB", (W, H), fill)
    canvas.paste(pil.resize((nw, nh), PIL.Image.BICUBIC), ((W - nw) // 2, (H - nh) // 2))
    return np.asarray(canvas), f"reference {w}x{h} fitted inside {W}x{H}, padded with its border colour {fill} (--fit pad)"


def find_person(image: np.ndarray, backend, what: str) -> tuple[np.ndarray, np.ndarray]:
    """The main person's keypoints (133, 2) and scores (133,) in `image`, or a clear error."""
    backend.start_clip()
    found = backend.process([image])[0].ordered()
    if len(found) == 0:
        raise AnimateInputError(f"{what}: no person found by the {backend.name} pose backend; "
                                "the reference must show the character to animate", "no_person")
    return found.keypoints[0], found.scores[0]
