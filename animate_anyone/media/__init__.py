"""Decoding, encoding and probing video with PyAV (no ffmpeg binary needed)."""
from animate_anyone.media.video import VideoInfo, VideoWriter, ffmpeg_exe, iter_frames, probe

__all__ = ["VideoInfo", "VideoWriter", "ffmpeg_exe", "iter_frames", "probe"]
