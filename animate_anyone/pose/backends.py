"""Pose backends: one interface, chosen by ``pose.backend`` in ``pipelines.yaml``.

A backend turns RGB frames into :class:`FramePoses` (pixels of the frame, COCO-WholeBody-133).

- ``dwpose``: ONNX Runtime. A YOLOX person detector, then the DWPose/RTMPose whole-body model on
  each person crop (SimCC outputs), with DWPose's preprocessing and decoding.
- ``mediapipe``: MediaPipe 0.10.21's bundled Holistic model (CPU, no download), mapped into
  COCO-WholeBody-133; points it cannot give get score 0. One person per frame.

People are ordered main subject first: the largest and most confident (box area × mean body score).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from animate_anyone.errors import ConfigError, PermanentError
from animate_anyone.ids import sha256_file
from animate_anyone.pose.layouts import BODY_SLICE, FACE_SLICE, INDEX, LEFT_HAND_SLICE, NUM_KEYPOINTS, RIGHT_HAND_SLICE

BACKEND_VERSIONS = {"dwpose": "1", "mediapipe": "1"}


class ModelError(PermanentError):
    """A pose model is missing, unreadable or has the wrong inputs/outputs; the message says which."""


@dataclass
class FramePoses:
    """The people found in one frame, main subject first; coordinates in the frame's pixels."""

    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))  # [P, 4] x1, y1, x2, y2
    det_scores: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.float32))  # [P]
    keypoints: np.ndarray = field(default_factory=lambda: np.zeros((0, NUM_KEYPOINTS, 2), np.float32))  # [P, 133, 2]
    scores: np.ndarray = field(default_factory=lambda: np.zeros((0, NUM_KEYPOINTS), np.float32))  # [P, 133]

    def __len__(self) -> int:
        return len(self.boxes)

    def ordered(self) -> "FramePoses":
        """Main subject first: the largest and most confident person."""
        if len(self) < 2:
            return self
        area = (self.boxes[:, 2] - self.boxes[:, 0]).clip(0) * (self.boxes[:, 3] - self.boxes[:, 1]).clip(0)
        rank = np.argsort(-(area * self.scores[:, BODY_SLICE].mean(axis=1)), kind="stable")
        return FramePoses(self.boxes[rank], self.det_scores[rank], self.keypoints[rank], self.scores[rank])


# --- model files ---------------------------------------------------------------------------------

def resolve_model(spec: str, field_name: str, base_dir: Path | None = None) -> Path:
    """A local path (relative to ``base_dir``), or ``hf://OWNER/REPO/FILE`` from the Hugging Face hub
    (its local cache first; a download only when online)."""
    if spec.startswith("hf://"):
        parts = spec[len("hf://"):].split("/")
        if len(parts) < 3:
            raise ConfigError(f"{field_name}: {spec!r} is not hf://OWNER/REPO/FILE")
        repo, filename = "/".join(parts[:2]), "/".join(parts[2:])
        try:
            from huggingface_hub import hf_hub_download

            return Path(hf_hub_download(repo_id=repo, filename=filename))
        except Exception as exc:  # offline, missing file, no access: all say the same to the user
            raise ModelError(
                f"{field_name}: cannot get {filename!r} from the Hugging Face repo {repo!r} "
                f"(not in the local cache and the hub is unreachable or refused: {type(exc).__name__}: {exc}). "
                f"Download it where there is internet, or set {field_name} to a local path") from exc
    path = Path(spec).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if not path.is_file():
        raise ModelError(f"{field_name}: model file {path} does not exist")
    return path


def _providers(device: str) -> list:
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device == "cpu" or (device == "auto" and "CUDAExecutionProvider" not in available):
        return ["CPUExecutionProvider"]
    device_id = int(device.split(":", 1)[1]) if ":" in device else 0
    return [("CUDAExecutionProvider", {"device_id": device_id}), "CPUExecutionProvider"]


def open_session(path: Path, device: str, field_name: str):
    """An ONNX Runtime session on ``device`` (auto | cpu | cuda | cuda:N); refuses a silent CPU fallback."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), sess_options=opts, providers=_providers(device))
    except Exception as exc:
        raise ModelError(f"{field_name}: ONNX Runtime cannot load {path}: {exc}") from exc
    if device.startswith("cuda") and session.get_providers()[0] != "CUDAExecutionProvider":
        raise ModelError(
            f"{field_name}: the pipeline asks for device {device!r} but ONNX Runtime runs {path.name} on "
            f"{session.get_providers()[0]} (available: {', '.join(ort.get_available_providers())}). "
            f"Install onnxruntime-gpu with a matching CUDA, or set the device to 'auto' or 'cpu'")
    return session


def _io(session) -> str:
    ins = ", ".join(f"{i.name}{list(i.shape)}" for i in session.get_inputs())
    outs = ", ".join(f"{o.name}{list(o.shape)}" for o in session.get_outputs())
    return f"inputs [{ins}], outputs [{outs}]"


# --- DWPose on ONNX Runtime --------------------------------------------------------------------

POSE_MEAN = np.array([123.675, 116.28, 103.53], np.float32)
POSE_STD = np.array([58.395, 57.12, 57.375], np.float32)
CROP_PADDING = 1.25
LETTERBOX_FILL = 114.0


class YoloxDetector:
    """A YOLOX person detector: raw head output (``[1, N, 5 + classes]``, decoded and NMS'd here, as
    DWPose's yolox_l.onnx) or an mmdeploy export with NMS inside (``dets [1, N, 5]``, ``labels [1, N]``)."""

    def __init__(self, path: Path, device: str, score_threshold: float = 0.3, nms_threshold: float = 0.45,
                 field_name: str = "pose.dwpose.detector"):
        self.session = open_session(path, device, field_name)
        self.score_threshold, self.nms_threshold = score_threshold, nms_threshold
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        expected = ("one input [1, 3, H, W] and either one output [1, N, 5 + classes] (raw YOLOX head) "
                    "or two outputs dets [1, N, 5] and labels [1, N] (NMS inside)")
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise ModelError(f"{field_name}: {path.name} is not a YOLOX detector: expected {expected}; found {_io(self.session)}")
        self.input_name = inputs[0].name
        h, w = inputs[0].shape[2:]
        self.size = (h if isinstance(h, int) else 640, w if isinstance(w, int) else 640)
        shapes = [o.shape for o in outputs]
        if len(outputs) == 1 and len(shapes[0]) == 3 and isinstance(shapes[0][2], int) and shapes[0][2] >= 6:
            self.kind = "raw"
        elif len(outputs) == 2 and len(shapes[0]) == 3 and shapes[0][2] == 5 and len(shapes[1]) == 2:
            self.kind = "nms"
        else:
            raise ModelError(f"{field_name}: {path.name} is not a YOLOX detector: expected {expected}; found {_io(self.session)}")

    def _letterbox(self, bgr: np.ndarray) -> tuple[np.ndarray, float]:
        h, w = bgr.shape[:2]
        r = min(self.size[0] / h, self.size[1] / w)
        padded = np.full((self.size[0], self.size[1], 3), LETTERBOX_FILL, np.float32)
        resized = cv2.resize(bgr, (int(w * r), int(h * r)), interpolation=cv2.INTER_LINEAR)
        padded[: resized.shape[0], : resized.shape[1]] = resized
        return padded.transpose(2, 0, 1)[None], r

    def _decode_raw(self, out: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        grids, strides = [], []
        for stride in (8, 16, 32):
            hs, ws = self.size[0] // stride, self.size[1] // stride
            xv, yv = np.meshgrid(np.arange(ws), np.arange(hs))
            grids.append(np.stack((xv, yv), 2).reshape(-1, 2))
            strides.append(np.full((hs * ws, 1), stride))
        grid, stride = np.concatenate(grids), np.concatenate(strides)
        if len(grid) != len(out):
            raise ModelError(f"detector output has {len(out)} anchors; a YOLOX head at {self.size} has {len(grid)}")
        xy = (out[:, :2] + grid) * stride
        wh = np.exp(out[:, 2:4]) * stride
        boxes = np.concatenate([xy - wh / 2, xy + wh / 2], axis=1)
        cls = out[:, 5:]
        label = cls.argmax(axis=1)
        score = out[:, 4] * cls[np.arange(len(cls)), label]
        return boxes, score, label

    def __call__(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Person boxes ``[P, 4]`` (x1, y1, x2, y2 in pixels) and scores ``[P]``."""
        blob, r = self._letterbox(np.ascontiguousarray(rgb[..., ::-1]))
        outs = self.session.run(None, {self.input_name: blob})
        if self.kind == "raw":
            boxes, score, label = self._decode_raw(outs[0][0])
            keep = (label == 0) & (score > self.score_threshold)
            boxes, score = boxes[keep], score[keep]
            if len(boxes):
                xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
                idx = np.asarray(cv2.dnn.NMSBoxes(xywh.tolist(), score.tolist(), self.score_threshold,
                                                  self.nms_threshold), int).reshape(-1)
                boxes, score = boxes[idx], score[idx]
        else:
            dets, labels = outs[0][0], outs[1][0]
            keep = (labels == 0) & (dets[:, 4] > self.score_threshold)
            boxes, score = dets[keep, :4], dets[keep, 4]
        h, w = rgb.shape[:2]
        boxes = (boxes / r).clip(0, [w, h, w, h]).astype(np.float32)
        return boxes, score.astype(np.float32)


class SimCCPoseModel:
    """DWPose/RTMPose whole-body model: person crops ``[N, 3, H, W]`` → ``simcc_x``, ``simcc_y``."""

    def __init__(self, path: Path, device: str, field_name: str = "pose.dwpose.pose_model"):
        self.session = open_session(path, device, field_name)
        inputs = self.session.get_inputs()
        outputs = {o.name: o.shape for o in self.session.get_outputs()}
        expected = "one input [N, 3, H, W] and outputs simcc_x [N, 133, W*k] and simcc_y [N, 133, H*k]"
        ok = (len(inputs) == 1 and len(inputs[0].shape) == 4 and all(isinstance(d, int) for d in inputs[0].shape[2:])
              and set(outputs) >= {"simcc_x", "simcc_y"}
              and all(len(outputs[n]) == 3 and outputs[n][1] == NUM_KEYPOINTS for n in ("simcc_x", "simcc_y")))
        if not ok:
            raise ModelError(f"{field_name}: {path.name} is not a whole-body SimCC pose model: expected {expected}; "
                             f"found {_io(self.session)}")
        self.input_name = inputs[0].name
        self.height, self.width = inputs[0].shape[2:]
        batch = inputs[0].shape[0]
        self.max_batch = batch if isinstance(batch, int) and batch > 0 else None  # None: any batch size

    def crop(self, rgb: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """The normalised crop around ``box`` (padded by 1.25, widened to the model's aspect ratio),
        its centre and its pixels-per-crop-pixel scale."""
        x1, y1, x2, y2 = box
        centre = np.array([(x1 + x2) / 2, (y1 + y2) / 2], np.float32)
        sw, sh = (x2 - x1) * CROP_PADDING, (y2 - y1) * CROP_PADDING
        aspect = self.width / self.height
        if sw > sh * aspect:
            sh = sw / aspect
        else:
            sw = sh * aspect
        k = self.width / max(sw, 1e-6)  # crop pixels per image pixel
        m = np.array([[k, 0, self.width / 2 - k * centre[0]], [0, k, self.height / 2 - k * centre[1]]], np.float32)
        patch = cv2.warpAffine(rgb, m, (self.width, self.height), flags=cv2.INTER_LINEAR)
        return ((patch.astype(np.float32) - POSE_MEAN) / POSE_STD).transpose(2, 0, 1), centre, 1.0 / k

    def __call__(self, rgb: np.ndarray, boxes: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints ``[P, 133, 2]`` in image pixels and scores ``[P, 133]`` for each box."""
        if not len(boxes):
            return np.zeros((0, NUM_KEYPOINTS, 2), np.float32), np.zeros((0, NUM_KEYPOINTS), np.float32)
        crops = [self.crop(rgb, b) for b in boxes]
        step = self.max_batch or max(batch_size, 1)
        kps, scs = [], []
        for i in range(0, len(crops), step):
            chunk = crops[i: i + step]
            x = np.stack([c[0] for c in chunk])
            simcc_x, simcc_y = self.session.run(["simcc_x", "simcc_y"], {self.input_name: x})
            kp, sc = decode_simcc(simcc_x, simcc_y, self.width, self.height)
            for (_, centre, px), k, s in zip(chunk, kp, sc):
                kps.append((k - np.array([self.width / 2, self.height / 2], np.float32)) * px + centre)
                scs.append(s)
        return np.stack(kps).astype(np.float32), np.stack(scs).astype(np.float32)


def decode_simcc(simcc_x: np.ndarray, simcc_y: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """SimCC vectors to crop-pixel keypoints (argmax / split ratio) and scores (the smaller maximum)."""
    ratio_x, ratio_y = simcc_x.shape[-1] / width, simcc_y.shape[-1] / height
    x = simcc_x.argmax(axis=-1) / ratio_x
    y = simcc_y.argmax(axis=-1) / ratio_y
    score = np.minimum(simcc_x.max(axis=-1), simcc_y.max(axis=-1))
    return np.stack([x, y], axis=-1).astype(np.float32), score.astype(np.float32)


class DWPoseBackend:
    name = "dwpose"

    def __init__(self, cfg, base_dir: Path | None = None):
        self.cfg = cfg
        self.detector_path = resolve_model(cfg.detector, "pose.dwpose.detector", base_dir)
        self.pose_path = resolve_model(cfg.pose_model, "pose.dwpose.pose_model", base_dir)
        self.detector = YoloxDetector(self.detector_path, cfg.device, cfg.det_threshold, cfg.nms_threshold)
        self.pose = SimCCPoseModel(self.pose_path, cfg.device)
        self.provider = self.pose.session.get_providers()[0]

    @property
    def on_gpu(self) -> bool:
        return self.provider == "CUDAExecutionProvider"

    def fingerprint(self) -> dict:
        return {"backend": self.name, "version": BACKEND_VERSIONS[self.name], "detector": sha256_file(self.detector_path),
                "pose_model": sha256_file(self.pose_path), **self.cfg.model_dump(exclude={"detector", "pose_model", "device", "batch_size"})}

    @property
    def model_name(self) -> str:
        return f"dwpose:{self.pose_path.name}+{self.detector_path.name}"

    def start_clip(self) -> None:
        """Nothing to reset: DWPose looks at every frame on its own (no tracking)."""

    def process(self, frames: list[np.ndarray]) -> list[FramePoses]:
        out = []
        for rgb in frames:
            boxes, det = self.detector(rgb)
            boxes, det = boxes[: self.cfg.max_people], det[: self.cfg.max_people]
            kp, sc = self.pose(rgb, boxes, self.cfg.batch_size)
            out.append(FramePoses(boxes, det, kp, sc).ordered())
        return out

    def close(self) -> None:
        """Sessions are freed with the object; nothing to release early."""


# --- MediaPipe Holistic ----------------------------------------------------------------------------

# COCO body point → MediaPipe pose landmark
MP_BODY = {"nose": 0, "left_eye": 2, "right_eye": 5, "left_ear": 7, "right_ear": 8, "left_shoulder": 11,
           "right_shoulder": 12, "left_elbow": 13, "right_elbow": 14, "left_wrist": 15, "right_wrist": 16,
           "left_hip": 23, "right_hip": 24, "left_knee": 25, "right_knee": 26, "left_ankle": 27, "right_ankle": 28,
           "left_big_toe": 31, "left_heel": 29, "right_big_toe": 32, "right_heel": 30}  # no small toes
# iBUG-68 face point → MediaPipe face mesh landmark (jaw 17, brows 10, nose 9, eyes 12, mouth 20)
MP_FACE68 = [162, 234, 93, 58, 172, 136, 149, 148, 152, 377, 378, 365, 397, 288, 323, 454, 389,
             71, 63, 105, 66, 107, 336, 296, 334, 293, 301,
             168, 197, 5, 4, 75, 97, 2, 326, 305,
             33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,
             61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181, 78, 82, 13, 312, 308, 317, 14, 87]
assert len(MP_FACE68) == 68


class MediaPipeBackend:
    """Holistic tracks one person through a clip; call :meth:`start_clip` before each clip.

    Scores: body and feet points take MediaPipe's visibility; a detected hand's points take the
    visibility of its wrist, and a detected face's points that of the nose (Holistic gives hands
    and faces no per-point confidence); anything not detected, and the small toes, score 0.
    """

    name = "mediapipe"

    def __init__(self, cfg, base_dir: Path | None = None):
        try:
            import mediapipe  # noqa: F401
        except ImportError as exc:
            raise ConfigError("pose.backend 'mediapipe' needs the optional extra: pip install 'animate-anyone[mediapipe]'") from exc
        self.cfg = cfg
        self._holistic = None
        self.on_gpu = False
        self.provider = "CPU"

    def fingerprint(self) -> dict:
        import mediapipe

        return {"backend": self.name, "version": BACKEND_VERSIONS[self.name], "mediapipe": mediapipe.__version__,
                **self.cfg.model_dump()}

    @property
    def model_name(self) -> str:
        import mediapipe

        return f"mediapipe-holistic:{mediapipe.__version__}"

    def start_clip(self) -> None:
        import mediapipe as mp

        self.close()
        self._holistic = mp.solutions.holistic.Holistic(
            static_image_mode=False, model_complexity=self.cfg.model_complexity,
            refine_face_landmarks=False, min_detection_confidence=self.cfg.min_detection_confidence,
            min_tracking_confidence=self.cfg.min_tracking_confidence)

    def process(self, frames: list[np.ndarray]) -> list[FramePoses]:
        if self._holistic is None:
            self.start_clip()
        return [self._one(np.ascontiguousarray(rgb)) for rgb in frames]

    def _one(self, rgb: np.ndarray) -> FramePoses:
        res = self._holistic.process(rgb)
        if res.pose_landmarks is None:
            return FramePoses()
        h, w = rgb.shape[:2]
        size = np.array([w, h], np.float32)
        kp = np.zeros((NUM_KEYPOINTS, 2), np.float32)
        sc = np.zeros(NUM_KEYPOINTS, np.float32)
        lms = res.pose_landmarks.landmark
        for name, j in MP_BODY.items():
            kp[INDEX[name]] = (lms[j].x * w, lms[j].y * h)
            sc[INDEX[name]] = lms[j].visibility
        for group, sl, anchor in ((res.left_hand_landmarks, LEFT_HAND_SLICE, "left_wrist"),
                                  (res.right_hand_landmarks, RIGHT_HAND_SLICE, "right_wrist"),
                                  (res.face_landmarks, FACE_SLICE, "nose")):
            if group is None:
                continue
            pts = np.array([(p.x, p.y) for p in group.landmark], np.float32)
            if sl == FACE_SLICE:
                pts = pts[MP_FACE68]
            kp[sl] = pts * size
            sc[sl] = sc[INDEX[anchor]]
        seen = kp[sc > 0.5] if (sc > 0.5).any() else kp[BODY_SLICE]  # the box: points it is sure of
        box = np.concatenate([seen.min(axis=0), seen.max(axis=0)]).clip(0, [w, h, w, h]).astype(np.float32)
        det = float(sc[BODY_SLICE].mean())
        return FramePoses(box[None], np.array([det], np.float32), kp[None], sc[None])

    def close(self) -> None:
        if self._holistic is not None:
            self._holistic.close()
            self._holistic = None


BACKENDS = {"dwpose": DWPoseBackend, "mediapipe": MediaPipeBackend}


def load_backend(cfg, name: str | None = None, base_dir: Path | None = None):
    """The backend ``name`` (default: ``cfg.backend``) configured from the pipeline's ``pose`` section."""
    name = name or cfg.backend
    if name not in BACKENDS:
        raise ConfigError(f"pose backend {name!r} is unknown; choose one of {', '.join(BACKENDS)}")
    return BACKENDS[name](getattr(cfg, name), base_dir)


def backend_uses_gpu(backend) -> bool:
    return bool(getattr(backend, "on_gpu", False))

