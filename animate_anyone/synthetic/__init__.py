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

from animate_anyone.synthetic.characters import (
                                                 CLOTH_COLOURS,
                                                 HAIR_COLOURS,
                                                 HAIR_STYLES,
                                                 LEG_WEAR,
                                                 MOVES,
                                                 SKIN_TONES,
                                                 Character,
                                                 make_character,
)
from animate_anyone.synthetic.drawing import (
                                                 STAMP_BITS,
                                                 draw_background,
                                                 draw_character,
                                                 read_frame_index,
                                                 stamp_frame_index,
                                                 stamp_layout,
)
from animate_anyone.synthetic.motion import PoseParams, dance, skeleton
from animate_anyone.synthetic.world import (
                                                 FPS,
                                                 Camera,
                                                 ShotSpec,
                                                 VideoSpec,
                                                 generate_world,
                                                 load_truth,
                                                 plan_video,
                                                 render_frames,
                                                 to_pixels,
                                                 write_video,
)

__all__ = ["CLOTH_COLOURS", "FPS", "HAIR_COLOURS", "HAIR_STYLES", "LEG_WEAR", "MOVES", "SKIN_TONES", "STAMP_BITS",
           "Camera", "Character", "PoseParams", "ShotSpec", "VideoSpec", "dance", "draw_background", "draw_character",
           "generate_world", "load_truth", "make_character", "plan_video", "read_frame_index", "render_frames",
           "skeleton", "stamp_frame_index", "stamp_layout", "to_pixels", "write_video"]
