"""Training the UniAnimate family: what each stage trains, its loss, a whole run on a real data
root, gradient checkpointing, and the temporal Mamba blocks trained and reloaded."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from train_data import CONFIG

from animate_anyone.config import Train, TrainStage, load_config
from animate_anyone.models import store
from animate_anyone.tables import DataRoot, query, refresh_catalog
from animate_anyone.training import run
from animate_anyone.training import unianimate as ua
from animate_anyone.unianimate_pipeline import build_components

UNIANIMATE = CONFIG.replace("      size: tiny\n", "      family: unianimate\n      size: tiny\n{temporal}") \
    .replace("stage1: {{steps: 6,", "stage1: {{steps: 6, frames: 2,")


def config(tmp_path: Path, root: Path, temporal: str = "") -> Path:
    path = tmp_path / "pipelines.yaml"
    path.write_text(UNIANIMATE.format(root=root, extra1="", temporal=temporal))
    return path


def weights(folder: Path, part: str) -> dict[str, torch.Tensor]:
    return load_file(str(next((folder / part).glob("*.safetensors"))))


def batch(f: int = 3, b: int = 2, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"pixels": torch.rand(b, f, 3, 64, 32, generator=g) * 2 - 1, "poses": torch.rand(b, f, 3, 64, 32, generator=g),
            "reference": torch.rand(b, 3, 64, 32, generator=g) * 2 - 1,
            "reference_pose": torch.rand(b, 3, 64, 32, generator=g), "seed": torch.arange(b) + 100 * seed}


def test_stages_train_the_whole_trunk_and_conditioner_and_nothing_frozen():
    c = build_components("tiny")
    trained = ua.set_trainable(1, c)
    assert set(trained) == {"unet", "conditioner"}
    assert all(p.requires_grad for k in ("unet", "conditioner") for p in c[k].parameters())
    assert not any(p.requires_grad for k in ("vae", "image_encoder") for p in c[k].parameters())
    assert "text_context" not in dict(c["conditioner"].named_parameters())  # a stored buffer, never trained
    assert set(ua.set_trainable(0, c)) == {"vae"}
    assert not any(p.requires_grad for p in c["unet"].parameters())


def test_the_loss_drops_every_condition_of_a_dropped_sample():
    """cond_drop 1: the loss cannot depend on the pose, the reference or its pose; cond_drop 0: it does."""
    c = build_components("tiny")
    model = ua.UniAnimateModel(c["unet"], c["conditioner"])
    b = batch()
    other = dict(b, poses=torch.rand_like(b["poses"]), reference=-b["reference"], reference_pose=torch.rand_like(b["poses"][:, 0]))
    for drop, same in ((1.0, True), (0.0, False)):
        stage = TrainStage(cond_drop=drop, continuation=0.0)
        with torch.no_grad():
            one, info = ua.diffusion_loss(model, c, b, stage, "cpu")
            two, _ = ua.diffusion_loss(model, c, other, stage, "cpu")
        assert torch.isfinite(one) and info["dropped"] == (2 if drop else 0)
        assert (float(one) == float(two)) is same, (drop, float(one), float(two))


def test_continuation_samples_see_their_first_frame():
    c = build_components("tiny")
    model = ua.UniAnimateModel(c["unet"], c["conditioner"])
    b = batch()
    changed = b["pixels"].clone()
    changed[:, 0] = -changed[:, 0]
    with torch.no_grad():
        # the first frame reaches the loss as its target and, with continuation, as a condition too
        given = TrainStage(cond_drop=0.0, continuation=1.0)
        loss, info = ua.diffusion_loss(model, c, b, given, "cpu")
        assert info["continued"] == 2 and torch.isfinite(loss)
        seen = []
        orig = c["conditioner"].local_image_encoder.forward
        c["conditioner"].local_image_encoder.forward = lambda x: seen.append(x.clone()) or orig(x)
        ua.diffusion_loss(model, c, b, given, "cpu")
        ua.diffusion_loss(model, c, b, TrainStage(cond_drop=0.0, continuation=0.0), "cpu")
    assert len(seen) == 1  # only the continuation run used the path
    first = b["pixels"][:, 0] / 2 + 0.5
    assert torch.allclose(seen[0], first[:, :, None].expand_as(seen[0]))


def test_gradient_checkpointing_gives_the_same_gradients():
    c = build_components("tiny")
    ua.set_trainable(1, c)
    c["unet"].train()
    model = ua.UniAnimateModel(c["unet"], c["conditioner"])
    stage = TrainStage(cond_drop=0.0)

    def grads():
        model.zero_grad()
        torch.manual_seed(0)  # the temporal convs' dropout
        loss, _ = ua.diffusion_loss(model, c, batch(), stage, "cpu")
        loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain = grads()
    saved = []
    c["unet"].enable_gradient_checkpointing()
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        loss, _ = ua.diffusion_loss(model, c, batch(), stage, "cpu")
    checkpointed_bytes = sum(saved)
    saved.clear()
    c["unet"].disable_gradient_checkpointing()
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        ua.diffusion_loss(model, c, batch(), stage, "cpu")
    assert checkpointed_bytes < 0.5 * sum(saved)  # what the backward pass keeps, at most half
    c["unet"].enable_gradient_checkpointing()
    again = grads()
    assert plain.keys() == again.keys() and len(plain) > 100
    assert all(torch.allclose(plain[k], again[k], atol=1e-6) for k in plain)


def test_a_train_config_refuses_what_does_not_fit_its_family():
    with pytest.raises(ValueError, match="temporal: 'mamba' is for family unianimate"):
        Train(temporal="mamba")
    with pytest.raises(ValueError, match="init.motion"):
        Train(family="unianimate", init={"motion": "mm.ckpt"})


@pytest.mark.slow
def test_all_stages_train_a_unianimate_model_and_a_rerun_skips_them(train_root, tmp_path):
    cfg = load_config("t", config(tmp_path, train_root))
    result = run.train(cfg)
    assert [s["stage"] for s in result["stages"]] == [0, 1, 2]
    root = DataRoot.from_uri(train_root)
    for s in result["stages"]:
        assert store.family(Path(s["output"])) == "unianimate" and np.isfinite(s["loss"])
        assert Path(s["val_video"]).is_file()
    s0, s1, s2 = (root.path / f"models/tiny-stage{k}" for k in range(3))
    # stage 1 kept stage 0's VAE and trained trunk and conditioner; stage 2 went on with both
    assert torch.equal(weights(s0, "vae")["decoder.conv_out.weight"], weights(s1, "vae")["decoder.conv_out.weight"])
    for part in ("unet", "conditioner"):
        a, b = weights(s1, part), weights(s2, part)
        assert any(not torch.equal(a[k], b[k]) for k in a), part
    c1, c2 = weights(s1, "conditioner"), weights(s2, "conditioner")
    assert torch.equal(c1["text_context"], c2["text_context"])
    refresh_catalog(root)
    rows = query(root, "SELECT stage, status, final_step FROM train_runs ORDER BY stage").to_pylist()
    assert [(r["stage"], r["status"]) for r in rows] == [(0, "finished"), (1, "finished"), (2, "finished")]
    again = run.train(cfg)
    assert all(s.get("cached") for s in again["stages"])


@pytest.mark.slow
def test_a_mamba_model_trains_saves_and_loads_in_place_of_temporal_attention(train_root, tmp_path):
    path = config(tmp_path, train_root, temporal="      temporal: mamba\n")
    # no VAE stage: the point is the trunk's temporal layers
    path.write_text("".join(line for line in path.read_text().splitlines(True) if "stage0:" not in line))
    result = run.train(load_config("t", path))
    out = Path(result["model"])
    pipe = store.load_pipeline(out)
    assert pipe.unet.config.temporal == "mamba"
    assert type(pipe.unet.mid_block.temp_attentions[0]).__name__ == "TemporalMamba"
    first = weights(Path(result["stages"][0]["output"]), "unet")
    last = weights(out, "unet")
    mamba = [k for k in last if ".forwards." in k or ".backwards." in k]
    assert mamba and any(not torch.equal(first[k], last[k]) for k in mamba)


@pytest.mark.slow
def test_two_processes_train_a_unianimate_model(train_root, tmp_path):
    """DDP over the trunk and conditioner: steps without a continuation sample leave the
    first-frame encoder without a gradient, which DDP must accept (it stopped the run before)."""
    path = config(tmp_path, train_root, temporal="      processes: 2\n")
    path.write_text("\n".join(line for line in path.read_text().splitlines()
                              if "stage0:" not in line and "stage2:" not in line))
    result = run.train(load_config("t", path), stage=1)
    stage = result["stages"][0]
    assert np.isfinite(stage["loss"]) and store.family(Path(stage["output"])) == "unianimate"


def test_a_failed_launch_names_the_processes_own_error():
    from animate_anyone.training.run import EXCEPTION_LINE

    said = ["[rank1]: RuntimeError: Expected to have finished reduction in the prior iteration",
            "animate_anyone.training.loop.TrainingStopped: stage 1 stopped at step 3",
            "torch.distributed.elastic.multiprocessing.errors.ChildFailedError: "]
    assert [bool(EXCEPTION_LINE.match(line)) for line in said] == [True, True, True]
    assert not EXCEPTION_LINE.match("  File \"x.py\", line 3, in <module>")
    assert not EXCEPTION_LINE.match("stage 1 step 2: loss 0.3")
