"""The metrics on cases with known answers, and their weights loaded from local files as a user
gives them (tiny random networks saved to a temporary folder: the real ones cannot be downloaded
here)."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from animate_anyone.config import FeatureNetSpec as FeatureNetCfg
from animate_anyone.evaluation import metrics
from animate_anyone.evaluation.pose_fidelity import box_size, frame_pck, moved_frames
from animate_anyone.pose.backends import FramePoses


def _closed_form(a: np.ndarray, b: np.ndarray) -> float:
    mu_a, mu_b = a.mean(0), b.mean(0)
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(ca @ cb).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(ca + cb - 2 * root))


def test_frechet_distance_has_the_known_answers():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 6)) @ rng.normal(size=(6, 6))
    assert metrics.frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    shift = np.array([1.0, -2.0, 0.5, 0.0, 3.0, 1.0])
    # same covariance, means apart by d: the distance is |d|^2 exactly
    assert metrics.frechet_distance(x, x + shift) == pytest.approx(float((shift ** 2).sum()), rel=1e-6)
    y = rng.normal(size=(300, 6)) * 2 + 1
    assert metrics.frechet_distance(x, y) == pytest.approx(_closed_form(x, y), rel=1e-4)
    with pytest.raises(metrics.MetricUnavailable, match="at least 2"):
        metrics.frechet_distance(x[:1], y)


def test_frame_scores_of_known_images():
    real = torch.full((3, 3, 16, 16), 0.5)
    same = metrics.frame_scores(real, real)
    assert same["l1"] == pytest.approx([0, 0, 0]) and same["ssim"] == pytest.approx([1, 1, 1], abs=1e-6)
    off = metrics.frame_scores(real + 0.1, real)  # error 0.1 everywhere: L1 0.1, PSNR 20 dB
    assert off["l1"] == pytest.approx([0.1] * 3, abs=1e-6) and off["psnr"] == pytest.approx([20.0] * 3, abs=1e-3)


class _Images(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(3, 5)

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        assert x.dtype == torch.uint8  # as the Inception of FID takes them
        pooled = x.float().mean(dim=(2, 3)) / 255
        return self.proj(pooled) if return_features else pooled


class _Videos(torch.nn.Module):
    def forward(self, x: torch.Tensor, rescale: bool = True, resize: bool = False,
                return_features: bool = False) -> torch.Tensor:
        return x.mean(dim=(3, 4)).flatten(1)  # (S, 3, T, H, W) -> (S, 3T)


def test_feature_networks_load_from_a_local_torchscript_file(tmp_path):
    torch.jit.script(_Images()).save(str(tmp_path / "inception.pt"))
    torch.jit.script(_Videos()).save(str(tmp_path / "i3d.pt"))
    fid = metrics.FeatureNet(FeatureNetCfg(weights="inception.pt", input="uint8", kwargs={"return_features": True}),
                             "evaluate.fid", tmp_path)
    frames = torch.rand(7, 3, 20, 12)
    assert fid.images(frames).shape == (7, 5)
    fvd = metrics.FeatureNet(FeatureNetCfg(weights=str(tmp_path / "i3d.pt"), input="signed", frames=4,
                                           kwargs={"rescale": False}), "evaluate.fvd", None)
    feats = fvd.video(frames)  # 7 frames: one whole segment of 4
    assert feats.shape == (1, 12)
    assert feats[0, 0] == pytest.approx(float(frames[0, 0].mean() * 2 - 1), abs=1e-5)  # channel 0, frame 0, in [-1, 1]


def test_missing_or_wrong_weights_are_a_clear_unavailable_metric(tmp_path):
    with pytest.raises(metrics.MetricUnavailable, match="no file .*nope.pt"):
        metrics.FeatureNet(FeatureNetCfg(weights="nope.pt"), "evaluate.fid", tmp_path)
    (tmp_path / "text.pt").write_text("not a network")
    with pytest.raises(metrics.MetricUnavailable, match="not a TorchScript network"):
        metrics.FeatureNet(FeatureNetCfg(weights="text.pt"), "evaluate.fid", tmp_path)
    with pytest.raises(metrics.MetricUnavailable, match="evaluate.identity"):
        metrics.Identity("hf://nobody-here/no-such-clip", None)


def test_identity_of_a_tiny_clip_model_saved_to_a_folder(tmp_path):
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    cfg = CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                           image_size=32, patch_size=8, projection_dim=16)
    CLIPVisionModelWithProjection(cfg).save_pretrained(tmp_path / "clip")
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(tmp_path / "clip")
    ident = metrics.Identity("clip", tmp_path)
    ref = torch.rand(3, 64, 48)
    sims = ident(torch.stack([ref, torch.rand(3, 64, 48), 1 - ref]), ref)
    assert sims[0] == pytest.approx(1.0, abs=1e-5) and sims[1] < 0.9999 and sims[2] < 0.9999


def test_lpips_scores_or_says_what_is_missing():
    try:
        import torchvision  # noqa: F401
    except Exception:  # this project's machines: torchvision does not install beside the CPU torch
        with pytest.raises(metrics.MetricUnavailable, match="torchvision"):
            metrics.Lpips("alex")
        return
    try:
        lpips = metrics.Lpips("alex")
    except metrics.MetricUnavailable as exc:  # torchvision, but no backbone weights (offline)
        assert "weights" in exc.message and "TORCH_HOME" in exc.message
        return
    x = torch.rand(2, 3, 64, 64)
    same, other = lpips(x, x), lpips(x, torch.rand(2, 3, 64, 64))
    assert same == pytest.approx([0, 0], abs=1e-6) and (other > 0.01).all()


def _pose(points: dict[int, tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    kp, sc = np.zeros((133, 2), np.float32), np.zeros(133, np.float32)
    for i, xy in points.items():
        kp[i], sc[i] = xy, 1.0
    return kp, sc


def test_pck_counts_points_within_a_share_of_the_box_size():
    # body points spanning 100 px: a 5 px error is within 0.05 and 0.1 of it, a 8 px one only within 0.1
    body = {0: (50, 0), 5: (0, 30), 6: (100, 30), 11: (20, 100), 12: (80, 100), 9: (0, 60)}
    drive = _pose(body)
    assert box_size(*drive) == 100
    got = {i: (x + (5 if i in (0, 5, 6) else 8), y) for i, (x, y) in body.items()}
    found = FramePoses(np.zeros((1, 4), np.float32), np.ones(1, np.float32), _pose(got)[0][None], _pose(got)[1][None])
    row = frame_pck(drive, found)
    assert row["person"] == 1 and row["pck05_body"] == pytest.approx(3 / 6) and row["pck10_body"] == 1.0
    assert np.isnan(row["pck10_hands"]) and np.isnan(row["pck10_face"])  # the driving pose shows none
    empty = frame_pck(drive, FramePoses())
    assert empty["person"] == 0 and empty["pck10_body"] == 0  # nobody found: every point missed
    # the wrist (9) moved 40 px from the reference's: only it is a moving point; a copy of the
    # reference misses it, a model that follows hits it
    ref = _pose({**body, 9: (0, 20)})
    still = FramePoses(np.zeros((1, 4), np.float32), np.ones(1, np.float32), ref[0][None], ref[1][None])
    assert frame_pck(drive, still, ref)["pck10_body_moving"] == 0.0
    assert frame_pck(drive, found, ref)["pck10_body_moving"] == 1.0
    assert moved_frames([ref, ref, drive], 0.05) == [False, False, True]
