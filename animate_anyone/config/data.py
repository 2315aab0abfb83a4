"""Where the videos come from and how they become clips, poses and a selection: the
`sources`, `ingest`, `pose` and `select` sections."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from animate_anyone.config.base import _Strict


class PuppetSource(_Strict):
    """Generate puppet-world videos and serve them from a loopback HTTP server for yt-dlp."""

    count: int = Field(4, ge=1, le=1000)
    seed: int = 0
    width: int = Field(360, ge=64, le=3840)
    height: int = Field(640, ge=64, le=3840)
    seconds: float = Field(14.0, ge=1.0, le=600.0)
    # shot detection for these videos only; None = ingest.shots. The puppets' flat colours change
    # little at a cut between two cameras on the same dancer, which real-video thresholds miss;
    # settings tuned for that never apply to a user's own sources.
    shots: "ShotDetection | None" = None


class Sources(_Strict):
    urls: list[str] = []
    url_file: str | None = None  # one URL or path per line; '#' starts a comment
    paths: list[str] = []
    puppets: PuppetSource | None = None

    @field_validator("urls")
    @classmethod
    def _http_only(cls, urls: list[str]) -> list[str]:
        for u in urls:
            if not u.startswith(("http://", "https://")):
                raise ValueError(f"{u!r} is not an http(s) URL (local files go under 'paths')")
        return urls


class Retries(_Strict):
    attempts: int = Field(4, ge=1, le=20)  # tries in all, the first included
    backoff_s: float = Field(2.0, ge=0.0)  # the first wait; doubles each time
    max_backoff_s: float = Field(60.0, ge=0.0)
    jitter: float = Field(0.5, ge=0.0, le=1.0)  # each wait varies by up to this fraction


class Download(_Strict):
    max_height: int = Field(1080, ge=144)
    # yt-dlp format selection; {h} becomes max_height. `<=?` lets formats of unknown height through
    # (direct file links); a video whose every format is taller fails with a clear reason.
    format: str = "bv*[height<=?{h}][ext=mp4]+ba[ext=m4a]/b[height<=?{h}][ext=mp4]/bv*[height<=?{h}]+ba/b[height<=?{h}]"
    rate_limit_bytes_per_s: int | None = Field(None, ge=1024)
    sleep_between_s: float = Field(0.0, ge=0.0)  # pause between two downloads by one worker
    socket_timeout_s: float = Field(20.0, gt=0.0)
    retries: Retries = Retries()

    def format_string(self) -> str:
        return self.format.replace("{h}", str(self.max_height))


Detector = Literal["content", "adaptive", "hash", "histogram", "threshold"]
# Each PySceneDetect 0.7.2 detector's class and the parameters its constructor takes. Written out so
# that loading a config does not import PySceneDetect and OpenCV (0.2 s in every command, most of
# which never detect a shot); tests/test_config.py checks the table against the installed library.
DETECTORS: dict[str, tuple[str, tuple[str, ...]]] = {
    "content": ("ContentDetector", ("threshold", "min_scene_len", "weights", "luma_only", "kernel_size",
                                    "filter_mode")),
    "adaptive": ("AdaptiveDetector", ("adaptive_threshold", "min_scene_len", "window_width", "min_content_val",
                                      "weights", "luma_only", "kernel_size")),
    "hash": ("HashDetector", ("threshold", "size", "lowpass", "min_scene_len")),
    "histogram": ("HistogramDetector", ("threshold", "bins", "min_scene_len")),
    "threshold": ("ThresholdDetector", ("threshold", "min_scene_len", "fade_bias", "add_final_scene", "method",
                                        "block_size", "min_out_length")),
}


def detector_class(detector: str) -> type:
    """The PySceneDetect class of ``detector`` (imports PySceneDetect)."""
    import scenedetect

    return getattr(scenedetect, DETECTORS[detector][0])


def check_detector_params(detector: str, params: dict[str, Any]) -> None:
    """Raise ValueError naming any parameter the PySceneDetect detector does not take."""
    if detector not in DETECTORS:
        raise ValueError(f"unknown shot detector {detector!r}; known: {', '.join(DETECTORS)}")
    allowed = list(DETECTORS[detector][1])
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(f"{detector} detector does not take {unknown}; it takes {allowed}")


class ShotDetection(_Strict):
    detector: Detector = "content"
    params: dict[str, Any] = {"threshold": 27.0, "min_scene_len": 15}
    downscale: int = Field(0, ge=0, le=16)  # 0 = automatic (about 256 px wide)
    # a "cut" after which the picture returns to what it was within this many frames is a flash
    # (camera flash, strobe, white frame), not a cut; 0 turns the check off
    flash_frames: int = Field(6, ge=0, le=60)
    workers: int = Field(2, ge=1, le=32)  # segments of one video scanned in parallel

    @model_validator(mode="after")
    def _params_fit(self) -> "ShotDetection":
        check_detector_params(self.detector, self.params)
        return self


class Clips(_Strict):
    min_seconds: float = Field(2.0, gt=0.0)
    max_seconds: float = Field(10.0, gt=0.0)
    trim_frames: int = Field(1, ge=0, le=30)  # dropped at each end of a shot, against ±1 frame cut errors
    min_width: int = Field(256, ge=16)
    min_height: int = Field(256, ge=16)
    crf: int = Field(18, ge=0, le=51)
    # x264 speed/size trade-off. superfast: ~1.8x the speed of veryfast on 2 cores for ~2.5x the
    # bytes at the same crf (benchmarks/ingest.py); choose veryfast or slower where storage costs more.
    preset: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow"] = "superfast"
    split: dict[str, float] = {"train": 0.9, "val": 0.05, "test": 0.05}
    workers: int = Field(2, ge=1, le=32)  # decoder+encoder pairs cutting one video in parallel

    @model_validator(mode="after")
    def _bounds(self) -> "Clips":
        if self.max_seconds < 2 * self.min_seconds:
            raise ValueError(f"max_seconds ({self.max_seconds}) must be at least twice min_seconds ({self.min_seconds})")
        if abs(sum(self.split.values()) - 1.0) > 1e-6 or not self.split:
            raise ValueError(f"split fractions must add up to 1, got {self.split}")
        return self


class Ingest(_Strict):
    download: Download = Download()
    shots: ShotDetection = ShotDetection()
    clips: Clips = Clips()
    workers: int = Field(4, ge=1, le=64)  # sources in flight at once (the flow's thread pool)


class MediaPipePose(_Strict):
    # 1 is the model bundled in mediapipe 0.10.21; 0 and 2 would be downloaded at first use
    model_complexity: Literal[1] = 1
    min_detection_confidence: float = Field(0.5, ge=0.0, le=1.0)
    min_tracking_confidence: float = Field(0.5, ge=0.0, le=1.0)


class DWPose(_Strict):
    # a local path (relative to pipelines.yaml) or hf://OWNER/REPO/FILE (the hub's cache first)
    detector: str = "hf://yzd-v/DWPose/yolox_l.onnx"
    pose_model: str = "hf://yzd-v/DWPose/dw-ll_ucoco_384.onnx"
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:[0-9]+)?)$")  # cuda fails loudly if ONNX Runtime falls back
    batch_size: int = Field(8, ge=1, le=256)  # person crops per pose-model call
    det_threshold: float = Field(0.3, ge=0.0, le=1.0)
    nms_threshold: float = Field(0.45, gt=0.0, le=1.0)
    max_people: int = Field(8, ge=1, le=100)


class Pose(_Strict):
    backend: Literal["mediapipe", "dwpose"] = "dwpose"
    mediapipe: MediaPipePose = MediaPipePose()
    dwpose: DWPose = DWPose()
    shard_clips: int = Field(16, ge=1, le=10000)  # clips per task (and per Parquet part), within one source
    workers: int = Field(2, ge=1, le=64)  # shards at once (the flow's thread pool)
    use_gpu_slot: bool | None = None  # None: take a "gpu" slot when the backend runs on a GPU


class Select(_Strict):
    # a WHERE clause over clip_pose_summary (aliased s) joined with clips (aliased c)
    where: str = Field("TRUE", min_length=1)
    splits: list[str] = ["train"]


PuppetSource.model_rebuild()
Sources.model_rebuild()
