"""ONNX models built for tests: a whole-body SimCC pose model whose peaks are known.

``marker_pose_model`` finds a pure red marker in its input crop: for every one of the 133
keypoints, ``simcc_x`` is the crop's column profile of "redness" (R minus G minus B after DWPose's
normalisation, above a margin) repeated twice per pixel (SimCC split ratio 2), and ``simcc_y`` the
row profile. So each keypoint decodes to the marker's position in the crop, and through the
backend to the marker's pixel in the image: detection, crop, affine warp, channel order,
normalisation, model call, decoding and the way back are all checked by one known point.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

K = 133


def _const(name: str, value) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(value), name))


def marker_pose_model(path: Path, height: int = 384, width: int = 288, batch: int | str = "N",
                      input_name: str = "input", output_names=("simcc_x", "simcc_y"), keypoints: int = K,
                      opset: int = 17) -> Path:
    nodes = [
        _const("c0", np.array([0], np.int64)), _const("c1", np.array([1], np.int64)),
        _const("c2", np.array([2], np.int64)), _const("c3", np.array([3], np.int64)),
        _const("ax1", np.array([1], np.int64)), _const("margin", np.array(5.0, np.float32)),
        helper.make_node("Slice", [input_name, "c0", "c1", "ax1"], ["r"]),
        helper.make_node("Slice", [input_name, "c1", "c2", "ax1"], ["g"]),
        helper.make_node("Slice", [input_name, "c2", "c3", "ax1"], ["b"]),
        helper.make_node("Sub", ["r", "g"], ["rg"]), helper.make_node("Sub", ["rg", "b"], ["rgb"]),
        helper.make_node("Sub", ["rgb", "margin"], ["rm"]), helper.make_node("Relu", ["rm"], ["red"]),  # [N,1,H,W]
        _const("axes_cols", np.array([1, 2], np.int64)), _const("axes_rows", np.array([1, 3], np.int64)),
        helper.make_node("ReduceSum", ["red", "axes_cols"], ["col"], keepdims=0),  # [N, W]
        helper.make_node("ReduceSum", ["red", "axes_rows"], ["row"], keepdims=0),  # [N, H]
        _const("last", np.array([2], np.int64)), _const("mid", np.array([1], np.int64)),
        _const("expand", np.array([1, keypoints, 1], np.int64)),
    ]
    for src, n, out in (("col", width, output_names[0]), ("row", height, output_names[1])):
        nodes += [
            helper.make_node("Unsqueeze", [src, "last"], [f"{src}_u"]),  # [N, L, 1]
            helper.make_node("Concat", [f"{src}_u", f"{src}_u"], [f"{src}_2"], axis=2),  # [N, L, 2]
            _const(f"{src}_shape", np.array([0, 2 * n], np.int64)),
            helper.make_node("Reshape", [f"{src}_2", f"{src}_shape"], [f"{src}_flat"]),  # [N, 2L]
            helper.make_node("Unsqueeze", [f"{src}_flat", "mid"], [f"{src}_k"]),  # [N, 1, 2L]
            helper.make_node("Expand", [f"{src}_k", "expand"], [out]),  # [N, K, 2L]
        ]
    graph = helper.make_graph(
        nodes, "marker_pose",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [batch, 3, height, width])],
        [helper.make_tensor_value_info(output_names[0], TensorProto.FLOAT, [batch, keypoints, 2 * width]),
         helper.make_tensor_value_info(output_names[1], TensorProto.FLOAT, [batch, keypoints, 2 * height])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def paint_marker(img: np.ndarray, x: int, y: int, radius: int = 4) -> np.ndarray:
    """A red cone centred on pixel (x, y) of an RGB image (in place): pure red at the centre, greying
    towards the rim, so the model's column and row profiles have one clear maximum at (x, y)."""
    yy, xx = np.mgrid[: img.shape[0], : img.shape[1]]
    d = np.sqrt((xx - x) ** 2 + (yy - y) ** 2)
    inside = d <= radius
    grey = (60 * d[inside] / radius).astype(np.uint8)
    img[inside] = np.stack([np.full_like(grey, 255), grey, grey], axis=-1)
    return img
