"""The model sections: `animate`, `train` (its stages and starting weights) and `evaluate`."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from animate_anyone.config.base import NAME_PATTERN, _check_cron, _Strict


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
    # sampling; None: the model family's own (Animate Anyone: 20 steps, guidance 3.5, windows of
    # 24 overlapping by 4; UniAnimate: 30, 2.5, 32 and 8, as each was released). The flags
    # --steps, --guidance, --window and --overlap replace these.
    steps: int | None = Field(None, ge=1, le=1000)
    guidance: float | None = Field(None, ge=0)
    window: int | None = Field(None, ge=1)  # Animate Anyone: at most its motion modules' 32 frames
    overlap: int | None = Field(None, ge=0)
    seed: int = 0
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    dtype: Literal["float32", "float16", "bfloat16"] = "float16"  # float32 on a CPU whatever this says
    use_gpu_slot: bool | None = None  # None: take a "gpu" slot when running on a GPU


Precision = Literal["no", "bf16", "fp16"]


class Augment(_Strict):
    """Changes to each training sample, the same for its target frames, reference and pose, so that
    a model learns to take the look from the reference instead of remembering the training people.
    All off by default: a pipeline turns on what suits its data (the demo: every one)."""

    flip: float = Field(0.0, ge=0.0, le=1.0)  # chance of a mirror image; the pose's left and right swap
    scale: float = Field(0.0, ge=0.0, le=0.5)  # zoom by a factor in [1 - scale, 1 + scale]
    shift: float = Field(0.0, ge=0.0, le=0.5)  # move by up to this fraction of the width and height
    # brightness, contrast and saturation by a factor in [1 - colour, 1 + colour] and hue by up to
    # colour/2 turns: one draw for the target frames and the reference together
    colour: float = Field(0.0, ge=0.0, le=0.5)
    # the reference: of this many frames away from the target, the one whose body pose is farthest
    # from the target's (1: any one of them)
    reference_far: int = Field(1, ge=1, le=32)

    @property
    def geometric(self) -> bool:
        return bool(self.scale or self.shift)


class TrainStage(_Strict):
    """One training stage (docs/design.md §4). Sizes are the training frames' (width, height)."""

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
    augment: Augment = Augment()


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
    # which model trains (docs/design.md §4, §4b): Animate Anyone (ReferenceNet, stage 1 images,
    # stage 2 motion modules) or UniAnimate (one video UNet, stage 1 short clips, stage 2 longer)
    family: Literal["animate-anyone", "unianimate"] = "animate-anyone"
    size: Literal["tiny", "puppet", "full"] = "full"  # the model's shapes when starting from random weights
    # UniAnimate only: the trunk's temporal layers, attention over time or Mamba (linear in frames)
    temporal: Literal["transformer", "mamba"] = "transformer"
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

    @model_validator(mode="after")
    def _fits_family(self) -> "Train":
        if self.family != "unianimate" and self.temporal != "transformer":
            raise ValueError(f"temporal: {self.temporal!r} is for family unianimate (Animate Anyone's motion modules "
                             "are transformers)")
        if self.family == "unianimate" and self.init.motion:
            raise ValueError("init.motion: AnimateDiff motion modules are for family animate-anyone; a UniAnimate "
                             "trunk has its own temporal layers (start it from init.base, a ModelScope-T2V folder)")
        return self


class FeatureNetSpec(_Strict):
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
    fid: FeatureNetSpec | None = None
    fvd: FeatureNetSpec | None = None
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


