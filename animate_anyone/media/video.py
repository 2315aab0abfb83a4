"""Video probing, frame iteration and H.264 writing with PyAV.

PyAV carries FFmpeg's libraries inside its wheel, so nothing here needs an ``ffmpeg`` binary.
Where a binary is needed (yt-dlp merging separate audio and video), :func:`ffmpeg_exe` points
at the one bundled in ``imageio-ffmpeg``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np

from animate_anyone import storage
from animate_anyone.errors import MediaError
from animate_anyone.files import temp_name


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: float
    fps_fraction: Fraction
    num_frames: int
    duration_s: float
    codec: str
    has_audio: bool


def ffmpeg_exe() -> str | None:
    """Path of the ffmpeg binary shipped in ``imageio-ffmpeg``, or None if that is missing."""
    try:
        import imageio_ffmpeg
    except ImportError:
        return None
    return imageio_ffmpeg.get_ffmpeg_exe()


def _open(path: Path) -> av.container.InputContainer:
    path = Path(path)
    if not path.exists():
        raise MediaError(f"{path}: file does not exist", "missing_file")
    if path.stat().st_size == 0:
        raise MediaError(f"{path}: file is empty (0 bytes)", "empty_file")
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as exc:
        raise MediaError(f"{path}: not a readable video ({exc.strerror or exc})", "not_a_video") from exc
    if not container.streams.video:
        container.close()
        raise MediaError(f"{path}: has no video stream", "no_video_stream")
    return container


def probe(path: Path, count_frames: bool = False) -> VideoInfo:
    """Size, frame rate, frame count and duration of ``path``.

    The frame count comes from the container when it states one; with ``count_frames`` (or when
    it does not) the packets are counted, which also catches files truncated mid-stream.
    """
    with _open(path) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        if not rate:
            raise MediaError(f"{path}: video stream has no frame rate", "no_frame_rate")
        rate = Fraction(rate)
        frames = int(stream.frames or 0)
        if count_frames or frames <= 0:
            try:
                frames = sum(1 for p in container.demux(stream) if p.size > 0)
            except av.error.FFmpegError as exc:
                raise MediaError(f"{path}: stream is corrupt ({exc})", "corrupt_stream") from exc
        if stream.width <= 0 or stream.height <= 0:
            raise MediaError(f"{path}: video stream has no size", "not_a_video")
        return VideoInfo(
            width=stream.width,
            height=stream.height,
            fps=float(rate),
            fps_fraction=rate,
            num_frames=frames,
            duration_s=frames / float(rate),
            codec=stream.codec_context.name,
            has_audio=bool(container.streams.audio),
        )


def _configure(stream, threads: bool, fast: bool):
    """Decoder options: FFmpeg's own threads, and the fast mode described in :func:`iter_frames`."""
    if threads:
        stream.thread_type = "AUTO"
    if fast:
        stream.codec_context.options = {"skip_loop_filter": "all", "flags2": "+fast"}
    return stream


def iter_frames(path: Path, threads: bool = True, fast: bool = False) -> Iterator[av.VideoFrame]:
    """Decoded frames of the first video stream, in presentation order.

    ``fast`` skips H.264's deblocking filter and allows non-spec-compliant speedups: about 30%
    quicker, with tiny block-edge differences that do not matter for analysis (shot detection),
    only for frames that are kept. A decoding error mid-stream becomes a :class:`MediaError`
    naming the frame it stopped at.
    """
    with _open(path) as container:
        stream = _configure(container.streams.video[0], threads, fast)
        n = 0
        try:
            for frame in container.decode(stream):
                yield frame
                n += 1
        except av.error.FFmpegError as exc:
            raise MediaError(f"{path}: decoding failed after {n} frames ({exc})", "corrupt_stream") from exc


def constant_rate(path: Path) -> bool:
    """True when the stream's average frame rate equals its nominal one (safe to index by time)."""
    with _open(path) as container:
        s = container.streams.video[0]
        avg, real = s.average_rate, s.base_rate or s.guessed_rate
        return bool(avg and real and abs(float(avg) - float(real)) < 1e-3 * float(real))


def iter_frames_from(path: Path, start: int, fps: Fraction, fast: bool = False) -> Iterator[tuple[int, av.VideoFrame]]:
    """``(index, frame)`` from frame ``start`` on, seeking to the keyframe before it.

    After a seek, indices come from timestamps (``(pts - start_time) * fps``), which equals the
    decode count for constant-frame-rate video; check :func:`constant_rate` first.
    """
    if start <= 0:
        yield from enumerate(iter_frames(path, fast=fast))
        return
    with _open(path) as container:
        stream = _configure(container.streams.video[0], True, fast)
        tb = stream.time_base
        origin = stream.start_time or 0
        target = origin + int((start - 2) / fps / tb)
        container.seek(max(target, origin), stream=stream, backward=True, any_frame=False)
        try:
            for frame in container.decode(stream):
                if frame.pts is None:
                    raise MediaError(f"{path}: frame without timestamp after seeking; cannot index exactly", "no_timestamps")
                idx = round(float((frame.pts - origin) * tb * fps))
                if idx >= start:
                    yield idx, frame
        except av.error.FFmpegError as exc:
            raise MediaError(f"{path}: decoding failed near frame {start} ({exc})", "corrupt_stream") from exc


def yuv_thumbnail(frame: av.VideoFrame, step: int) -> np.ndarray:
    """A cheap BGR thumbnail (every ``step``-th pixel) straight from the YUV 4:2:0 planes."""
    import cv2

    if frame.format.name not in ("yuv420p", "yuvj420p"):
        frame = frame.reformat(format="yuv420p")
    y = _plane(frame, 0)[::step, ::step]
    half = max(1, step // 2)
    u = _plane(frame, 1)[::half, ::half]
    v = _plane(frame, 2)[::half, ::half]
    h, w = min(y.shape[0], u.shape[0]), min(y.shape[1], u.shape[1])
    yuv = cv2.merge([np.ascontiguousarray(y[:h, :w]), np.ascontiguousarray(u[:h, :w]), np.ascontiguousarray(v[:h, :w])])
    return cv2.cvtColor(yuv, cv2.COLOR_YUV2BGR)


def _plane(frame: av.VideoFrame, i: int) -> np.ndarray:
    plane = frame.planes[i]
    buf = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
    return buf[:, : plane.width]


# x264's output depends on its thread count, and by default that count follows the CPUs the process
# may use (a container's limit, `taskset`, a worker's affinity): the same frames then encode to
# different bytes on another machine, and clip hashes and snapshot ids change. A fixed count makes
# the bytes a function of the frames and the settings alone... with one more setting: x264's
# macroblock tree (`mbtree`, on in `veryfast` and the slower presets) made the same frames encode
# to one of several files from process to process, with one thread or two, whenever anything else
# in the process (a progress bar's thread, another allocation) ran differently: measured on the
# demo's 288x512 puppet videos, 39 of 44 sources differed between two ingests on one machine.
# Without it the bytes were equal in every variant tried (tests/e2e/test_reproducible_cli.py); its
# cost is a few per cent of bitrate at the same quality.
ENCODER_THREADS = 2
X264_PARAMS = "mbtree=0"


class VideoWriter:
    """H.264 writer that only shows the file under its real name once it is complete.

    Frames go to a hidden temporary name unique to this writer; leaving the ``with`` block without an error renames it
    into place, an error deletes it. Frame timestamps are 0, 1, 2… at ``fps``. The encoder runs
    ``threads`` threads whatever the machine, so equal frames give equal bytes everywhere.
    """

    def __init__(self, path: Path, width: int, height: int, fps: float | Fraction, crf: int = 18,
                 preset: str = "veryfast", codec: str = "libx264", pix_fmt: str = "yuv420p",
                 threads: int = ENCODER_THREADS):
        self.path = Path(path)
        self.tmp = temp_name(self.path).with_suffix(self.path.suffix)  # unique to this writer
        self.width, self.height = width - width % 2, height - height % 2
        self.rate = Fraction(fps).limit_denominator(1001) if not isinstance(fps, Fraction) else fps
        self.options = {"crf": str(crf), "preset": preset}
        if codec == "libx264":
            self.options["threads"] = str(threads)
            self.options["x264-params"] = X264_PARAMS
        self.codec, self.pix_fmt = codec, pix_fmt
        self.frames = 0
        self._container = None
        self._stream = None

    def __enter__(self) -> "VideoWriter":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._container = av.open(str(self.tmp), "w", format="mp4")
        self._stream = self._container.add_stream(self.codec, rate=self.rate)
        self._stream.width, self._stream.height = self.width, self.height
        self._stream.pix_fmt = self.pix_fmt
        self._stream.options = self.options
        return self

    def write(self, frame: np.ndarray | av.VideoFrame) -> None:
        if isinstance(frame, np.ndarray):
            frame = av.VideoFrame.from_ndarray(frame[: self.height, : self.width], format="rgb24")
        elif frame.width != self.width or frame.height != self.height:
            frame = frame.reformat(width=self.width, height=self.height)
        frame.pts = self.frames
        frame.time_base = 1 / self.rate
        self._container.mux(self._stream.encode(frame))
        self.frames += 1

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self._container.mux(self._stream.encode(None))
            self._container.close()
        finally:
            if exc_type is None:
                os.replace(self.tmp, self.path)
                storage.publish(self.path)
            else:
                self.tmp.unlink(missing_ok=True)


def mux_audio(video: Path, audio_source: Path) -> bool:
    """Copy ``audio_source``'s first audio stream into ``video`` (in place, atomically), cut to the
    video's length. Returns False (and leaves ``video`` as it was) when the source has no audio."""
    video, audio_source = Path(video), Path(audio_source)
    tmp = temp_name(video).with_suffix(video.suffix)
    with _open(audio_source) as src:
        if not src.streams.audio:
            return False
        try:
            _copy_streams(video, src, tmp)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    os.replace(tmp, video)
    storage.publish(video)
    return True


def _copy_streams(video: Path, src, tmp: Path) -> None:
    with _open(video) as vin, av.open(str(tmp), "w", format="mp4") as out:
        v_in, a_in = vin.streams.video[0], src.streams.audio[0]
        v_out = out.add_stream_from_template(v_in)
        a_out = out.add_stream_from_template(a_in)
        end = float(v_in.duration * v_in.time_base) if v_in.duration else None
        for packet in vin.demux(v_in):
            if packet.dts is not None:
                packet.stream = v_out
                out.mux(packet)
        for packet in src.demux(a_in):
            if packet.dts is None:
                continue
            if end is not None and packet.pts is not None and float(packet.pts * a_in.time_base) >= end:
                break
            packet.stream = a_out
            out.mux(packet)
