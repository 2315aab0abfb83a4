"""The model's parts: checkpoint layouts and their exact import, the pose guider, reference
attention, the motion modules' normalisation, sizes, and save/load."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from accelerate import init_empty_weights

from animate_anyone.models.convert import CheckpointError, import_motion_modules, motion_key
from animate_anyone.models.pose_guider import PoseGuider
from animate_anyone.models.reference_attention import ReferenceBank, ReferenceReadProcessor, attend
from animate_anyone.models.sizes import (
    MOTION,
    POSE_GUIDER,
    build_components,
    parameter_count,
    unet2d_config,
    video_unet_config,
)
from animate_anyone.models.unets import ReferenceNet, VideoUNet
from animate_anyone.pipeline import convert_moore

REPO = Path(__file__).resolve().parents[2]
KEYS = REPO.parent / "shared" / "docs" / "model_keys"


def _layout(name: str) -> dict:
    if not KEYS.is_dir():
        pytest.skip(f"checkpoint layouts not present at {KEYS} (only in the project's own checkouts)")
    return json.loads((KEYS / f"{name}.json").read_text())


def _shapes(layout: dict) -> dict:
    return {k: tuple(v) for k, v in layout.items() if not k.startswith("__")}


@pytest.fixture(scope="module")
def full_models():
    with init_empty_weights():
        unet2d = unet2d_config("full")
        return {"reference_unet": ReferenceNet(**unet2d), "unet": VideoUNet(**video_unet_config(unet2d, MOTION)),
                "pose_guider": PoseGuider(**POSE_GUIDER)}


def _state_shapes(module, keep=lambda k: True) -> dict:
    return {k: tuple(v.shape) for k, v in module.state_dict().items() if keep(k)}


def test_full_size_layouts_and_parameter_counts(full_models):
    """The full size has exactly the released files' keys, shapes and parameter counts (MODEL_KEYS.md)."""
    ref, den, mm, pg = (_layout(n) for n in ("reference_unet", "denoising_unet_stage1", "motion_module", "pose_guider"))
    assert _state_shapes(full_models["reference_unet"]) == _shapes(ref)
    assert parameter_count(full_models["reference_unet"]) == ref["__params__"] == 859_508_800
    assert _state_shapes(full_models["unet"], lambda k: "motion_modules" not in k) == _shapes(den)
    assert _state_shapes(full_models["pose_guider"]) == _shapes(pg)
    assert parameter_count(full_models["pose_guider"]) == pg["__params__"] == 1_086_480
    motion = [p for n, p in full_models["unet"].named_parameters() if "motion_modules" in n]
    assert len(motion) == 546 and sum(p.numel() for p in motion) == mm["__params__"] == 453_209_280
    assert parameter_count(full_models["unet"]) == den["__params__"] + mm["__params__"] == 1_312_730_244


def test_motion_key_mapping_is_the_published_table(full_models):
    table = json.loads((KEYS / "moore_to_diffusers_motion_key_map.json").read_text()) if KEYS.is_dir() else \
        pytest.skip("no layouts")
    dropped = {k for k, v in table.items() if v is None}  # the position tables: we compute ours
    assert len(dropped) == 42 and all(motion_key(k).endswith(".pos_embed.pe") for k in dropped)
    assert {k: motion_key(k) for k in table if k not in dropped} == {k: v for k, v in table.items() if k not in dropped}
    ours = _state_shapes(full_models["unet"], lambda k: "motion_modules" in k)
    mapped = {motion_key(k): v for k, v in _shapes(_layout("motion_module")).items()}
    assert {k: v for k, v in mapped.items() if not k.endswith(".pe")} == {k: v for k, v in ours.items()
                                                                          if not k.endswith(".pe")}


def test_full_size_motion_and_pose_guider_values_land_in_place(full_models):
    """Random tensors in the exact AnimateDiff/Moore layout: every key consumed, every value in place."""
    torch.manual_seed(0)
    state = {k: (torch.randn(v) if not k.endswith(".pe") else None) for k, v in _shapes(_layout("motion_module")).items()}
    pe_table = {motion_key(k): k for k in state if k.endswith(".pe")}
    for ours, theirs in pe_table.items():  # the buffers are the sinusoidal table, as in the files
        state[theirs] = full_models["unet"].state_dict()[ours].clone()
    with init_empty_weights():
        unet = VideoUNet(**video_unet_config(unet2d_config("full"), MOTION))
    import_motion_modules(unet, state, "motion_module.pth")
    mine = unet.state_dict()
    for key, value in state.items():
        if not key.endswith(".pe"):
            assert torch.equal(mine[motion_key(key)], value), key
    assert not any(p.is_meta for n, p in unet.named_parameters() if "motion_modules" in n)
    # the pose guider: same names, loaded strictly
    pg = {k: torch.randn(v) for k, v in _shapes(_layout("pose_guider")).items()}
    guider = PoseGuider(**POSE_GUIDER)
    guider.load_state_dict(pg, strict=True)
    assert all(torch.equal(guider.state_dict()[k], v) for k, v in pg.items())


def test_wrong_keys_are_refused_with_a_listing(full_models):
    state = {k: torch.zeros(v) for k, v in list(_shapes(_layout("motion_module")).items())[:40]}
    state["down_blocks.0.motion_modules.0.temporal_transformer.bogus.weight"] = torch.zeros(3)
    with init_empty_weights():
        unet = VideoUNet(**video_unet_config(unet2d_config("full"), MOTION))
    with pytest.raises(CheckpointError) as info:
        import_motion_modules(unet, state, "mm.ckpt")
    msg = str(info.value)
    assert "mm.ckpt" in msg and "1 unknown key(s): down_blocks.0.motion_modules.0.bogus.weight" in msg
    assert "missing key(s)" in msg and "more)" in msg


# --- tiny models ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny():
    return build_components("tiny", seed=0)


def test_pose_guider_adds_exactly_zero_at_initialisation(tiny):
    unet, guider = tiny["unet"], PoseGuider(**dict(POSE_GUIDER, block_out_channels=(4, 8, 16, 16), out_channels=32))
    x = torch.randn(1, 4, 3, 8, 8)
    pose = torch.rand(3, 3, 64, 64)
    features = guider(pose)
    assert features.shape == (3, 32, 8, 8) and torch.count_nonzero(features) == 0
    ctx = torch.randn(1, 1, 32)
    with torch.no_grad():
        plain = unet(x, 10, ctx).sample
        with_pose = unet(x, 10, ctx, pose_features=features.reshape(1, 3, 32, 8, 8).transpose(1, 2)).sample
        nudged = unet(x, 10, ctx, pose_features=torch.ones(3, 32, 8, 8)).sample
    assert torch.equal(plain, with_pose)
    assert not torch.allclose(plain, nudged)  # the features really are added


def _attention(dim=32, heads=2):
    from diffusers.models.attention_processor import Attention, AttnProcessor2_0

    torch.manual_seed(1)
    return Attention(dim, heads=heads, dim_head=dim // heads, processor=AttnProcessor2_0()).eval()


def test_read_processor_without_reference_tokens_is_plain_self_attention():
    attn = _attention()
    x = torch.randn(6, 16, 32)
    with torch.no_grad():
        expected = attn(x)
        bank = ReferenceBank()
        proc = ReferenceReadProcessor(bank, "blk")
        with pytest.raises(RuntimeError, match="rows are not set"):  # never a silent fallback
            proc(attn, x)
        bank.rows = torch.tensor([0, -1])
        with pytest.raises(RuntimeError, match="wrote none"):
            proc(attn, x)
        bank.rows = torch.tensor([-1, -1])
        assert torch.allclose(proc(attn, x), expected, atol=1e-6)  # empty bank, nobody reads it
        bank.store("blk", torch.randn(1, 16, 32))
        bank.rows = torch.tensor([-1, -1])  # two videos of 3 frames, neither reads the reference
        assert torch.allclose(proc(attn, x), expected, atol=1e-6)


def test_read_processor_attends_to_own_then_reference_tokens_per_video():
    """Cond rows: softmax over [own tokens, reference tokens] (computed here by hand); uncond rows: plain."""
    attn = _attention()
    x = torch.randn(6, 16, 32)  # [uncond video (3 frames), cond video (3 frames)]
    ref = torch.randn(1, 16, 32)
    bank = ReferenceBank(dtype=None)
    bank.store("blk", ref)
    bank.rows = torch.tensor([-1, 0])
    with torch.no_grad():
        out = ReferenceReadProcessor(bank, "blk")(attn, x)

        def by_hand(q_in, kv_in):
            q, k, v = attn.to_q(q_in), attn.to_k(kv_in), attn.to_v(kv_in)
            split = lambda t: t.view(t.shape[0], -1, 2, 16).transpose(1, 2)  # noqa: E731
            w = torch.softmax(split(q) @ split(k).transpose(-1, -2) / 4.0, dim=-1)
            return attn.to_out[0]((w @ split(v)).transpose(1, 2).reshape(q.shape[0], -1, 32))

        assert torch.allclose(out[:3], by_hand(x[:3], x[:3]), atol=1e-5)
        kv = torch.cat([x[3:], ref.expand(3, -1, -1)], dim=1)
        assert torch.allclose(out[3:], by_hand(x[3:], kv), atol=1e-5)
        assert not torch.allclose(out[3:], attend(attn, x[3:], x[3:]), atol=1e-3)


def test_reference_tokens_are_stored_as_float16_like_the_reference_implementation():
    bank = ReferenceBank()
    bank.store("a", torch.randn(1, 4, 8, dtype=torch.float32))
    assert bank.features["a"].dtype == torch.float16


def _animatediff_temporal(mm, x: torch.Tensor, frames: int) -> torch.Tensor:
    """AnimateDiff's temporal transformer written out from its description (per-frame GroupNorm,
    positions added to each attention's normalised input, GEGLU feed-forward), with `mm`'s weights."""
    bf, c, h, w = x.shape
    b = bf // frames
    y = torch.nn.functional.group_norm(x, 32, mm.norm.weight, mm.norm.bias, mm.norm.eps)  # per frame
    y = y.permute(0, 2, 3, 1).reshape(bf, h * w, c)
    y = mm.proj_in(y)
    y = y.reshape(b, frames, h * w, c).permute(0, 2, 1, 3).reshape(b * h * w, frames, c)  # (b·d, f, c)
    blk = mm.transformer_blocks[0]
    pe = blk.pos_embed.pe[:, :frames]
    for attn, norm in ((blk.attn1, blk.norm1), (blk.attn2, blk.norm2)):
        n = norm(y) + pe
        heads = attn.heads
        q, k, v = (t.view(t.shape[0], frames, heads, -1).transpose(1, 2) for t in (attn.to_q(n), attn.to_k(n), attn.to_v(n)))
        a = torch.softmax(q @ k.transpose(-1, -2) * attn.scale, dim=-1) @ v
        y = attn.to_out[0](a.transpose(1, 2).reshape(y.shape)) + y
    y = blk.ff(blk.norm3(y)) + y
    y = mm.proj_out(y)
    y = y.reshape(b, h * w, frames, c).permute(0, 2, 3, 1).reshape(bf, c, h, w)
    return y + x


def test_motion_modules_normalise_each_frame_like_animatediff(tiny):
    """diffusers pools GroupNorm statistics over all frames; AnimateDiff (and the weights) do not."""
    mm = tiny["unet"].down_blocks[0].motion_modules[0]
    torch.manual_seed(2)
    for p in mm.parameters():
        p.data.normal_(0, 0.2)
    frames = 5
    x = torch.randn(2 * frames, 32, 4, 4) * torch.linspace(0.2, 3, frames).repeat(2)[:, None, None, None]
    with torch.no_grad():
        ours = mm(x, num_frames=frames)
        expected = _animatediff_temporal(mm, x, frames)
        assert torch.allclose(ours, expected, atol=1e-5)
        pooled = torch.nn.GroupNorm(32, 32, eps=mm.norm.eps)
        pooled.load_state_dict(mm.norm.state_dict())
        original, mm.norm = mm.norm, pooled
        try:
            assert not torch.allclose(mm(x, num_frames=frames), expected, atol=1e-3)
        finally:
            mm.norm = original


def test_only_the_motion_modules_are_temporal(tiny):
    names = [n for n, _ in tiny["unet"].named_parameters() if "motion_modules" in n]
    assert names and len(tiny["unet"].motion_parameters()) == len(names)
    assert not any("motion" in n for n, _ in tiny["reference_unet"].named_parameters())


# --- import of a Moore-layout tiny checkpoint, value by value -----------------------------------------

def test_convert_moore_tiny_every_value_in_place(moore_tiny):
    from animate_anyone.pipeline import load_animate_pipeline

    out = moore_tiny["tmp"] / "converted"
    info = convert_moore(moore_tiny["moore"], moore_tiny["base"], out)
    assert info["reference_unet"] == len(moore_tiny["ref"]) and info["pose_guider"] == len(moore_tiny["pg"])
    pipe = load_animate_pipeline(out)
    for ours, theirs in ((pipe.reference_unet, moore_tiny["ref"]), (pipe.pose_guider, moore_tiny["pg"])):
        sd = ours.state_dict()
        assert set(sd) == set(theirs) and all(torch.equal(sd[k], v) for k, v in theirs.items())
    sd = pipe.unet.state_dict()
    assert all(torch.equal(sd[k], v) for k, v in moore_tiny["den"].items())
    for k, v in moore_tiny["mm"].items():
        assert torch.allclose(sd[motion_key(k)], v[0] if k.endswith(".pe") else v, atol=0 if not k.endswith(".pe") else 1e-6)
    assert pipe.scheduler.config.prediction_type == "v_prediction" and pipe.scheduler.config.rescale_betas_zero_snr


def test_convert_refuses_a_missing_file_and_a_foreign_key(moore_tiny, tmp_path):
    import shutil

    partial = tmp_path / "partial"
    shutil.copytree(moore_tiny["moore"], partial)
    (partial / "pose_guider.pth").unlink()
    with pytest.raises(CheckpointError, match="missing checkpoint file.*pose_guider.pth"):
        convert_moore(partial, moore_tiny["base"], tmp_path / "out")
    bad = dict(moore_tiny["ref"], **{"module.extra.weight": torch.zeros(1)})
    torch.save(bad, partial / "reference_unet.pth")
    shutil.copy(moore_tiny["moore"] / "pose_guider.pth", partial / "pose_guider.pth")
    with pytest.raises(CheckpointError, match=r"reference_unet.pth: 1 unknown key\(s\): module.extra.weight"):
        convert_moore(partial, moore_tiny["base"], tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()
    # pickles with code in them are refused by weights_only loading
    (partial / "reference_unet.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        convert_moore(partial, moore_tiny["base"], tmp_path / "out")


def test_animatediff_motion_checkpoint_replaces_moore_motion(moore_tiny, tmp_path):
    """Moore's stage-1 files + an AnimateDiff `mm_sd_v15_v2.ckpt`-layout file (wrapped in state_dict)."""
    torch.manual_seed(4)
    mm = {k: (v if k.endswith(".pe") else torch.randn_like(v)) for k, v in moore_tiny["mm"].items()}
    ckpt = tmp_path / "mm_sd_v15_v2.ckpt"
    torch.save({"state_dict": mm}, ckpt)
    out = tmp_path / "converted"
    convert_moore(moore_tiny["moore"], moore_tiny["base"], out, motion=ckpt)
    from animate_anyone.pipeline import load_animate_pipeline

    sd = load_animate_pipeline(out).unet.state_dict()
    assert all(torch.equal(sd[motion_key(k)], v) for k, v in mm.items() if not k.endswith(".pe"))


def test_convert_reads_safetensors_by_content_under_any_name(moore_tiny, tmp_path):
    """Re-uploads of Moore's weights are often safetensors, named `.safetensors` or still `.pth`."""
    from safetensors.torch import save_file

    folder = tmp_path / "reuploaded"
    folder.mkdir()
    for name, key, ext in (("reference_unet", "ref", ".safetensors"), ("denoising_unet", "den", ".safetensors"),
                           ("motion_module", "mm", ".pth"), ("pose_guider", "pg", ".pth")):
        save_file({k: v.contiguous() for k, v in moore_tiny[key].items()}, str(folder / f"{name}{ext}"))
    out = tmp_path / "converted"
    convert_moore(folder, moore_tiny["base"], out)
    from animate_anyone.pipeline import load_animate_pipeline

    pipe = load_animate_pipeline(out)
    assert all(torch.equal(pipe.reference_unet.state_dict()[k], v) for k, v in moore_tiny["ref"].items())
    assert all(torch.equal(pipe.pose_guider.state_dict()[k], v) for k, v in moore_tiny["pg"].items())
