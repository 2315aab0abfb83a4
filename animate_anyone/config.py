"""``pipelines.yaml``: named pipelines, validated by pydantic, with errors that name the field.

A pipeline says where data lives (``data_root``, a local path or fsspec URI), which dataset the
rows belong to, where its videos come from (URLs, a file of URLs, local paths, or the puppet
world served on loopback) and how ingest treats them.
"""
from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any, Literal

import scenedetect
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from animate_anyone.errors import ConfigError

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "pipelines.yaml"
CONFIG_ENV = "ANIMATE_ANYONE_CONFIG"
MAX_CONFIG_BYTES = 4 << 20  # a pipelines file is KBs; anything larger is refused unread
NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"  # a folder name: no separator, never `.`, `..` or hidden


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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
DETECTORS: dict[str, type] = {
    "content": scenedetect.ContentDetector,
    "adaptive": scenedetect.AdaptiveDetector,
    "hash": scenedetect.HashDetector,
    "histogram": scenedetect.HistogramDetector,
    "threshold": scenedetect.ThresholdDetector,
}


def check_detector_params(detector: str, params: dict[str, Any]) -> None:
    """Raise ValueError naming any parameter the PySceneDetect detector does not take."""
    cls = DETECTORS.get(detector)
    if cls is None:
        raise ValueError(f"unknown shot detector {detector!r}; known: {', '.join(DETECTORS)}")
    allowed = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
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


class Animate(_Strict):
    # a pipeline folder (save_pretrained / `animate-anyone convert`): a bare NAME is
    # DATA_ROOT/models/NAME; a path is taken as written (relative to this file's folder);
    # "tiny-random" builds a seeded tiny model under DATA_ROOT/models (for the demo, before training)
    model: str = "animate-anyone"
    reference: str | None = None  # an image path, or "clip:ID" / "clip:auto" for a clip's first frame
    pose: str | None = None  # a pose video path, a clip id, or "auto": the first selected val clip
    retarget: bool = True  # applies to clip poses (keypoints); a pose video is drawn already
    fit: Literal["pad", "crop", "stretch"] = "pad"  # a reference of another aspect ratio than the poses
    background: str = "white"  # what RGBA references are composited onto (a colour name or #rrggbb)
    frames: int | None = Field(None, ge=1)
    # output size; with one of them the other follows the pose source's aspect ratio, with both
    # that ratio must match within 2 % (None, None: the source's size). A --width or --height on
    # the command line replaces this pair.
    width: int | None = Field(None, ge=8)
    height: int | None = Field(None, ge=8)
    steps: int = Field(20, ge=1, le=1000)
    guidance: float = Field(3.5, ge=0)
    window: int = Field(24, ge=1, le=32)
    overlap: int = Field(4, ge=0)
    seed: int = 0
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    dtype: Literal["float32", "float16", "bfloat16"] = "float16"  # float32 on a CPU whatever this says
    use_gpu_slot: bool | None = None  # None: take a "gpu" slot when running on a GPU


Precision = Literal["no", "bf16", "fp16"]


class TrainStage(_Strict):
    """One training stage (DESIGN.md §4). Sizes are the training frames' (width, height)."""

    steps: int = Field(1000, ge=1, le=10_000_000)
    lr: float = Field(1e-5, gt=0.0, le=1.0)
    warmup_steps: int = Field(0, ge=0)
    weight_decay: float = Field(1e-2, ge=0.0)
    max_grad_norm: float = Field(1.0, gt=0.0)
    batch: int = Field(4, ge=1, le=4096)  # per process and per micro-step
    grad_accum: int = Field(1, ge=1, le=1024)  # micro-steps per optimizer step
    width: int = Field(512, ge=8, le=4096)
    height: int = Field(768, ge=8, le=4096)
    frames: int = Field(1, ge=1, le=32)  # stage 2: frames per sample (the motion modules' window)
    stride: int = Field(1, ge=1, le=64)  # stage 2: every stride-th frame of the clip
    mixed_precision: Precision = "no"  # bf16 / fp16 on GPUs; a CPU run uses "no" whatever this says
    gradient_checkpointing: bool = False
    use_8bit_adam: bool = False  # bitsandbytes' AdamW8bit, on a GPU only
    offset_noise: float = Field(0.05, ge=0.0, le=1.0)
    min_snr_gamma: float | None = Field(5.0, gt=0.0)  # None: plain MSE
    cond_drop: float = Field(0.1, ge=0.0, le=1.0)  # zero CLIP context + no reference tokens (pose kept)
    continuation: float = Field(0.0, ge=0.0, le=1.0)  # stage 2: share of samples whose frame 0 is given clean
    kl_weight: float = Field(1e-6, ge=0.0)  # stage 0 (VAE) only
    # stage 0: the L1 weight of pixels near the drawn pose (the person) against the rest; the
    # puppets fill a few % of a frame and plain L1 learns the room first
    person_weight: float = Field(1.0, ge=1.0)
    checkpoint_every: int = Field(500, ge=1)
    keep_checkpoints: int = Field(2, ge=1, le=1000)
    validate_every: int = Field(0, ge=0)  # 0: only at the end of the stage
    val_clips: int = Field(2, ge=0, le=64)
    val_frames: int = Field(16, ge=1, le=256)
    val_steps: int = Field(10, ge=1, le=200)
    val_guidance: float = Field(1.0, ge=0.0)
    max_bad_steps: int = Field(10, ge=1)  # NaN/inf losses in a row before the run stops
    workers: int = Field(0, ge=0, le=64)  # data-loading processes per training process
    cache_clips: int = Field(64, ge=0)  # decoded clips kept in memory per loading process


class TrainInit(_Strict):
    """Where a training run's weights start: local paths (relative to this file's folder) or
    ``hf://OWNER/REPO[/SUBFOLDER]`` / ``hf://OWNER/REPO/FILE`` from the hub's cache. Unset parts are
    random at ``train.size``."""

    base: str | None = None  # an SD-1.5 folder (unet/, vae/, image_encoder/): both UNets start from its UNet
    vae: str | None = None  # e.g. hf://stabilityai/sd-vae-ft-mse (then stage 0 is skipped)
    image_encoder: str | None = None  # e.g. hf://lambdalabs/sd-image-variations-diffusers/image_encoder
    motion: str | None = None  # AnimateDiff motion modules, e.g. hf://guoyww/animatediff/mm_sd_v15_v2.ckpt
    pipeline: str | None = None  # a whole pipeline folder (an earlier run's, or `convert`'s)


class Train(_Strict):
    size: Literal["tiny", "puppet", "full"] = "full"  # the model's shapes when starting from random weights
    init: TrainInit = TrainInit()
    output: str = Field("animate-anyone", pattern=NAME_PATTERN)  # DATA_ROOT/models/NAME[-stageK]
    snapshot: str = "latest"
    seed: int = 0
    processes: int = Field(1, ge=1, le=1024)  # >1: `accelerate launch` with this many processes
    accelerate_config: str | None = None  # an accelerate config file (multi-GPU, DeepSpeed ZeRO-2)
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    use_gpu_slot: bool | None = None  # None: take a "gpu" slot when training on a GPU
    stage0: TrainStage | None = None  # the VAE, for models trained from scratch (the puppet world)
    stage1: TrainStage | None = TrainStage(steps=30000, lr=1e-5, batch=4, width=768, height=768)
    stage2: TrainStage | None = TrainStage(steps=10000, lr=1e-5, batch=1, width=512, height=512, frames=24,
                                           stride=4)

    def stages(self) -> dict[int, TrainStage]:
        return {k: s for k, s in ((0, self.stage0), (1, self.stage1), (2, self.stage2)) if s is not None}


class FeatureNet(_Strict):
    """A TorchScript feature network for a Fréchet distance (FID: Inception; FVD: I3D)."""

    # a local path (relative to this file's folder) or hf://OWNER/REPO/FILE; None: not scored
    weights: str | None = None
    # what the network takes: uint8 in [0, 255], floats in [0, 1] (unit) or in [-1, 1] (signed)
    input: Literal["uint8", "unit", "signed"] = "uint8"
    kwargs: dict[str, Any] = {}  # keyword arguments of its forward (e.g. return_features: true)
    frames: int = Field(16, ge=1, le=256)  # FVD: frames per video segment


class Evaluate(_Strict):
    """`animate-anyone evaluate` and the `evaluate` flow (the Animate Anyone / UniAnimate protocol):
    each clip of ``split`` that passes the snapshot's selection is animated from its first frame
    along its own poses, and compared frame by frame with its real frames at ``width`` x ``height``
    (the centred crop of training)."""

    split: str = "test"
    # which clips of the split: a WHERE clause like select.where (s = clip_pose_summary, c = clips);
    # None: the snapshot's own selection, so held-out clips are filtered as training clips were
    where: str | None = Field(None, min_length=1)
    clips: int | None = Field(8, ge=1)  # the first N clips by id; None: all of them
    frames: int = Field(24, ge=2, le=4096)  # frames per clip (from its first)
    width: int = Field(512, ge=8, le=4096)
    height: int = Field(768, ge=8, le=4096)
    steps: int = Field(20, ge=1, le=1000)
    guidance: float = Field(3.5, ge=0.0)
    seed: int = 0
    window: int = Field(24, ge=1, le=32)
    overlap: int = Field(4, ge=0)
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    dtype: Literal["float32", "float16", "bfloat16"] = "float16"  # float32 on a CPU whatever this says
    # pose fidelity: the pipeline's pose backend (or this one) on the generated frames, enlarged
    # until their short side is at least pose_min_side (small frames lose their people)
    pose_backend: Literal["mediapipe", "dwpose"] | None = None
    pose_min_side: int = Field(256, ge=16, le=4096)
    # a frame "moved" when the driving body points moved from the reference's by more than this
    # share of the person's box size on average (a still reference scores near 1 on the rest)
    moved: float = Field(0.1, gt=0.0, le=1.0)
    lpips: Literal["alex", "vgg", "squeeze"] | None = "alex"  # torchmetrics' LPIPS (needs torchvision)
    fid: FeatureNet | None = None
    fvd: FeatureNet | None = None
    # identity: a CLIP vision model (local folder or hf://OWNER/REPO) embeds the generated frames
    # and the reference; None: not scored
    identity: str | None = None
    untrained: bool = True  # score the untrained model of train.size as a baseline
    baselines: list[str] = []  # more models to score beside (folders or DATA_ROOT/models names)
    # what the flow evaluates when nobody says: every checkpoint of the newest training run of
    # each stage (1 and 2) and the trained model, each once
    what: str = "all-new"
    schedule: str | None = None  # cron for the deployment (e.g. "0 3 * * *"); None: on demand
    timezone: str = "UTC"
    use_gpu_slot: bool | None = None  # None: take a "gpu" slot when running on a GPU

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        return _check_cron(value)


def _check_cron(value: str | None) -> str | None:
    """A cron expression as Prefect's schedules read it (cronsim, Prefect's own dependency)."""
    if value is not None:
        import datetime as dt

        from cronsim import CronSim, CronSimError

        try:
            CronSim(value, dt.datetime.now(dt.timezone.utc))
        except CronSimError as exc:
            raise ValueError(f"{value!r} is not a cron expression (minute hour day month weekday): {exc}") from None
    return value


class Runner(_Strict):
    """Where ingest and pose extraction run their tasks: a thread pool in the flow's process
    (``ingest.workers`` / ``pose.workers`` threads), or a Dask cluster (prefect-dask): the one at
    ``address`` (tcp://HOST:8786), or a local cluster of ``workers`` processes when no address."""

    type: Literal["threads", "dask"] = "threads"
    address: str | None = Field(None, min_length=1)
    workers: int | None = Field(None, ge=1, le=1024)  # local cluster's processes (None: the stage's workers)
    threads_per_worker: int = Field(1, ge=1, le=64)


class FlowDeployment(_Strict):
    """One deployment of a flow: its work pool, its schedule, and how many of its runs at once."""

    pool: str = Field("cpu", pattern=r"^[A-Za-z0-9_.-]+$")
    cron: str | None = None  # e.g. "0 1 * * *" (at most one of cron and interval_s)
    interval_s: float | None = Field(None, ge=1.0)
    timezone: str = "UTC"
    # runs of this deployment at once; a further run waits for a slot (it is never dropped)
    concurrency: int | None = Field(1, ge=1, le=1000)
    paused: bool = False  # deploy with the schedule switched off

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        return _check_cron(value)

    @model_validator(mode="after")
    def _one_schedule(self) -> "FlowDeployment":
        if self.cron is not None and self.interval_s is not None:
            raise ValueError("give cron or interval_s, not both")
        return self


DEPLOYABLE_FLOWS = ("refresh", "train", "evaluate", "animate")  # the fields of Deploy, in deploy order


class Deploy(_Strict):
    """What ``animate-anyone deploy`` creates on the Prefect server (see docs/operations.md)."""

    # process work pools and their concurrency limits (flow runs at once in the pool; None: no limit)
    pools: dict[str, int | None] = {"cpu": None, "gpu": 1}
    refresh: FlowDeployment = FlowDeployment(pool="cpu")  # ingest + poses + selection
    train: FlowDeployment = FlowDeployment(pool="gpu")
    evaluate: FlowDeployment = FlowDeployment(pool="gpu")  # cron: evaluate.schedule unless set here
    animate: FlowDeployment = FlowDeployment(pool="gpu", concurrency=None)
    # a Prefect notification block ("BLOCK_TYPE/NAME", e.g. "slack-webhook/ops") that hears of failed
    # items and failed runs; None: the failure notice is only logged and kept as an artifact
    notify: str | None = Field(None, pattern=r"^[a-z0-9-]+/[A-Za-z0-9_-]+$")

    @model_validator(mode="after")
    def _pools_exist(self) -> "Deploy":
        for name in DEPLOYABLE_FLOWS:
            pool = getattr(self, name).pool
            if pool not in self.pools:
                raise ValueError(f"{name}.pool {pool!r} is not among the pools {sorted(self.pools)}")
        for pool, limit in self.pools.items():
            if limit is not None and limit < 1:
                raise ValueError(f"pools.{pool}: a concurrency limit is at least 1 (or null for none); got {limit}")
        return self


class PipelineConfig(_Strict):
    name: str = ""
    base_dir: str = ""  # the pipelines file's folder: relative paths in it are taken from there
    description: str = ""
    data_root: str = "./data"
    dataset: str = Field("default", pattern=NAME_PATTERN)
    sources: Sources = Sources()
    ingest: Ingest = Ingest()
    pose: Pose = Pose()
    select: Select = Select()
    animate: Animate = Animate()
    train: Train = Train()
    evaluate: Evaluate = Evaluate()
    gpu_slots: int = Field(1, ge=1, le=64)  # size of the global concurrency limit "gpu" (pose, animate, train)
    runner: Runner = Runner()  # where ingest and pose tasks run: threads, or a Dask cluster
    deploy: Deploy = Deploy()


class PipelinesFile(_Strict):
    default: str = "demo"
    pipelines: dict[str, PipelineConfig]

    @model_validator(mode="after")
    def _default_exists(self) -> "PipelinesFile":
        if self.default not in self.pipelines:
            raise ValueError(f"default pipeline {self.default!r} is not among {sorted(self.pipelines)}")
        return self


PuppetSource.model_rebuild()
Sources.model_rebuild()


def _field_path(loc: tuple) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def _explain(path: Path, exc: ValidationError) -> str:
    lines = [f"{path}: invalid pipeline configuration"]
    for err in exc.errors():
        got = err.get("input")
        got_s = repr(got) if not isinstance(got, dict) else "a mapping"
        if len(got_s) > 80:
            got_s = got_s[:77] + "..."
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field (check its spelling)"
        elif err["type"] == "literal_error":
            msg = f"must be one of {err['ctx']['expected']}"
        elif err["type"] == "string_pattern_mismatch" and err["ctx"]["pattern"] == NAME_PATTERN:
            msg = ("must be a plain folder name (letters, digits, '_', '.', '-'; no path separator, not '.', '..' "
                   "or starting with a dot)")
        lines.append(f"  {_field_path(err['loc'])}: {msg}; got {got_s}")
    return "\n".join(lines)


def config_path(path: Path | str | None = None) -> Path:
    """The pipelines file in use: ``path``, ``$ANIMATE_ANYONE_CONFIG``, ./pipelines.yaml, or the bundled one."""
    if path or os.environ.get(CONFIG_ENV):
        return Path(path or os.environ[CONFIG_ENV]).resolve()
    local = Path("pipelines.yaml")
    return local.resolve() if local.exists() else DEFAULT_CONFIG


def load_file(path: Path | str | None = None) -> PipelinesFile:
    """Parse and validate a pipelines file (see :func:`config_path` for which one)."""
    path = config_path(path)
    try:
        if path.exists() and not path.is_file():
            raise ConfigError(f"{path}: not a regular file (a device, pipe or folder); give a pipelines YAML file")
        with open(path, "rb") as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read pipeline configuration ({exc.strerror})") from exc
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES // (1 << 20)} MB; a pipelines file is a few KB "
                          "of YAML (is this the right file?)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); give a pipelines YAML file") from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with 'pipelines', got {type(raw).__name__}")
    try:
        parsed = PipelinesFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_explain(path, exc)) from exc
    named = {name: p.model_copy(update={"name": name, "base_dir": str(path.parent)})
             for name, p in parsed.pipelines.items()}
    return parsed.model_copy(update={"pipelines": named})


def load_config(name: str | None = None, path: Path | str | None = None, **overrides: Any) -> PipelineConfig:
    """PipelineConfig ``name`` (the file's default if None), with non-None top-level ``overrides``."""
    cfg = load_file(path)
    name = name or cfg.default
    if name not in cfg.pipelines:
        raise ConfigError(f"{config_path(path)}: no pipeline named {name!r}; defined: {', '.join(sorted(cfg.pipelines))}")
    pipe = cfg.pipelines[name]
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if overrides:
        try:
            pipe = PipelineConfig.model_validate({**pipe.model_dump(), **overrides})
        except ValidationError as exc:
            raise ConfigError(_explain(Path("command-line options"), exc)) from exc
    return pipe
