"""Pose images as the reference implementations draw them (OpenPose colours, DWPose layout).

What the drawing is (docs/design.md §3): OpenPose-18 body with 17 coloured limbs (ellipses of half
width ``stick_width``) dimmed to 60 %, then 18 coloured joints of radius 4; each hand as 20
HSV-coloured edges (width 2) and blue joints; the face as 68 white dots; feet not drawn. Points
scored below 0.3 are hidden. Colours are RGB. ``weighted`` scales each colour by confidence
(MimicMotion's option); ``face=False`` leaves the face out (MusePose found the dots over-control
the face). Stored keypoints are rendered on demand at any canvas size; nothing is stored as video.
"""
from __future__ import annotations

import colorsys
import math

import cv2
import numpy as np

from animate_anyone.errors import PermanentError
from animate_anyone.media.video import VideoWriter, iter_frames
from animate_anyone.pose.layouts import FACE_SLICE, LEFT_HAND_SLICE, RIGHT_HAND_SLICE, VISIBLE, to_openpose18
from animate_anyone.tables.io import read_table

# OpenPose-18 limbs (pairs of OpenPose indices); the last two (shoulder to ear) are not drawn.
LIMBS = [(1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13),
         (1, 0), (0, 14), (14, 16), (0, 15), (15, 17), (2, 16), (5, 17)]
DRAWN_LIMBS = 17
COLOURS = [(255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0), (0, 255, 0),
           (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255), (0, 0, 255), (85, 0, 255),
           (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85)]
LIMB_DIM = 0.6  # limbs are dimmed once, before the joints are drawn over them
HAND_EDGES = [(0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (0, 9), (9, 10), (10, 11), (11, 12),
              (0, 13), (13, 14), (14, 15), (15, 16), (0, 17), (17, 18), (18, 19), (19, 20)]
HAND_COLOURS = [tuple(round(c * 255) for c in colorsys.hsv_to_rgb(i / len(HAND_EDGES), 1.0, 1.0))
                for i in range(len(HAND_EDGES))]
HAND_JOINT = (0, 0, 255)
FACE_DOT = (255, 255, 255)
JOINT_RADIUS, HAND_WIDTH, HAND_RADIUS, FACE_RADIUS = 4, 2, 4, 3


def _scaled(colour, f: float) -> tuple[int, ...]:
    return tuple(int(c * f) for c in colour)


def draw_pose(canvas: np.ndarray | tuple[int, int], keypoints: np.ndarray, scores: np.ndarray, *, body: bool = True,
              hands: bool = True, face: bool = True, weighted: bool = False, threshold: float = VISIBLE,
              stick_width: int = 4) -> np.ndarray:
    """Draw people ``[P, 133, 2]`` (normalised to [0, 1]) on ``canvas`` (an RGB image, drawn in
    place) or on a black canvas of ``(width, height)``; returns the image."""
    if isinstance(canvas, tuple):
        width, height = canvas
        canvas = np.zeros((height, width, 3), np.uint8)
    height, width = canvas.shape[:2]
    kp = np.asarray(keypoints, np.float32).reshape(-1, 133, 2) * np.array([width, height], np.float32)
    sc = np.asarray(scores, np.float32).reshape(-1, 133)
    if body:
        _draw_body(canvas, *to_openpose18(kp, sc, threshold), weighted, threshold, stick_width)
    if hands:
        for sl in (LEFT_HAND_SLICE, RIGHT_HAND_SLICE):
            for p in range(len(kp)):
                _draw_hand(canvas, kp[p, sl], sc[p, sl], weighted, threshold)
    if face:
        for p in range(len(kp)):
            for (x, y), s in zip(kp[p, FACE_SLICE], sc[p, FACE_SLICE]):
                if s > threshold:
                    cv2.circle(canvas, (int(x), int(y)), FACE_RADIUS, _scaled(FACE_DOT, s if weighted else 1), -1)
    return canvas


def _draw_body(canvas, body, body_scores, weighted, threshold, stick_width) -> None:
    layer = np.zeros_like(canvas)  # limbs go on black, then replace (dimmed) what they cover
    for i, (a, b) in enumerate(LIMBS[:DRAWN_LIMBS]):
        for p in range(len(body)):
            sa, sb = body_scores[p, a], body_scores[p, b]
            if sa <= threshold or sb <= threshold:
                continue
            (xa, ya), (xb, yb) = body[p, a], body[p, b]
            length = math.hypot(xa - xb, ya - yb)
            angle = math.degrees(math.atan2(ya - yb, xa - xb))
            poly = cv2.ellipse2Poly((int((xa + xb) / 2), int((ya + yb) / 2)), (int(length / 2), stick_width),
                                    int(angle), 0, 360, 1)
            cv2.fillConvexPoly(layer, poly, _scaled(COLOURS[i], sa * sb if weighted else 1))
    covered = layer.any(axis=-1)
    # the reference dims its whole (black) canvas; dimming only the limbs keeps an overlay's image intact
    canvas[covered] = (layer[covered] * LIMB_DIM).astype(np.uint8)
    for i in range(18):
        for p in range(len(body)):
            if body_scores[p, i] > threshold:
                x, y = body[p, i]
                colour = _scaled(COLOURS[i], body_scores[p, i] if weighted else 1)
                cv2.circle(canvas, (int(x), int(y)), JOINT_RADIUS, colour, -1)


def _draw_hand(canvas, points, scores, weighted, threshold) -> None:
    for i, (a, b) in enumerate(HAND_EDGES):
        if scores[a] > threshold and scores[b] > threshold:
            colour = _scaled(HAND_COLOURS[i], scores[a] * scores[b] if weighted else 1)
            cv2.line(canvas, (int(points[a][0]), int(points[a][1])), (int(points[b][0]), int(points[b][1])),
                     colour, HAND_WIDTH)
    for (x, y), s in zip(points, scores):
        if s > threshold:
            cv2.circle(canvas, (int(x), int(y)), HAND_RADIUS, _scaled(HAND_JOINT, s if weighted else 1), -1)


def read_clip_poses(root, clip_id: str) -> tuple[dict, dict[int, tuple[np.ndarray, np.ndarray]]]:
    """A clip's ``clips`` row and its people per frame: ``{frame_idx: (keypoints [P,133,2], scores [P,133])}``."""

    found = read_table(root, "clips", where={"clip_id": clip_id}).to_pylist()
    if not found:
        raise PermanentError(f"no clip {clip_id!r} in {root.tables_dir / 'clips'}", "unknown_clip")
    # only this clip's rows are read (the filter goes into the Parquet scan)
    rows = read_table(root, "pose_frames", found[0]["dataset"], where={"clip_id": clip_id},
                      columns=["frame_idx", "person_idx", "keypoints", "scores"])
    if rows.num_rows == 0:
        raise PermanentError(f"clip {clip_id} has no poses yet (or no person was found); run `animate-anyone pose`",
                             "no_poses")
    frame = rows["frame_idx"].to_numpy()
    person = rows["person_idx"].to_numpy()
    kps = np.asarray(rows["keypoints"].combine_chunks().flatten(), np.float32).reshape(-1, 133, 2)
    scs = np.asarray(rows["scores"].combine_chunks().flatten(), np.float32).reshape(-1, 133)
    people: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for f in np.unique(frame):
        sel = np.where(frame == f)[0]
        sel = sel[np.argsort(person[sel])]
        people[int(f)] = (kps[sel], scs[sel])
    return found[0], people


def render_clip(root, clip_id: str, out, overlay: bool = False, size: tuple[int, int] | None = None, **draw) -> dict:
    """Write clip ``clip_id``'s pose video (or the skeleton over its frames) to ``out`` (mp4, atomic)."""
    from pathlib import Path

    clip, people = read_clip_poses(root, clip_id)
    width, height = size or (clip["width"], clip["height"])
    empty = (np.zeros((0, 133, 2), np.float32), np.zeros((0, 133), np.float32))
    frames = (f.to_ndarray(format="rgb24", width=width, height=height) for f in iter_frames(root.media_path(clip["clip_uri"]))) \
        if overlay else (None for _ in range(clip["num_frames"]))
    n = 0
    with VideoWriter(Path(out), width, height, clip["fps"]) as writer:
        for i, image in enumerate(frames):
            canvas = image if image is not None else (width, height)
            writer.write(draw_pose(canvas, *people.get(i, empty), **draw))
            n += 1
    return {"clip_id": clip_id, "out": str(out), "frames": n, "width": width, "height": height, "fps": clip["fps"]}
