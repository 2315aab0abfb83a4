"""DWPose on ONNX Runtime: a YOLOX person detector, then the whole-body SimCC model on each
person crop, with DWPose's preprocessing and decoding."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from animate_anyone.config import DWPose
from animate_anyone.ids import sha256_file
from animate_anyone.pose.backends.base import BACKEND_VERSIONS, FramePoses, ModelError
from animate_anyone.pose.backends.onnx import _io, model_file, open_session
from animate_anyone.pose.layouts import NUM_KEYPOINTS

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

    def __init__(self, cfg: DWPose, base_dir: Path | None = None):
        self.cfg = cfg
        self.detector_path = model_file(cfg.detector, "pose.dwpose.detector", base_dir)
        self.pose_path = model_file(cfg.pose_model, "pose.dwpose.pose_model", base_dir)
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
