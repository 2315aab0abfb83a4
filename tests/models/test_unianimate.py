"""UniAnimate's modules and the import of its released checkpoint: the full size's layout on the
meta device, and a tiny model in the released layout converted both ways and predicting exactly
what the released computation predicts."""
from __future__ import annotations

import pytest
import torch

from animate_anyone.models.convert import CheckpointError
from animate_anyone.models.convert_unianimate import export_unianimate, import_unianimate, released_shapes
from animate_anyone.models.unianimate import build_unianimate, predict
from tests.models.unianimate_released import ReleasedUniAnimate

H, W = 64, 48  # pixels; latents 8x6
RELEASED_KEYS = 1544  # unianimate_16f_32f_non_ema_223000.pth
RELEASED_PARAMETERS = 1_416_564_300


def released_tiny(seed: int = 0) -> ReleasedUniAnimate:
    """The released module tree at our `tiny` widths, every tensor random (zero-initialised
    output layers would hide a wrong mapping)."""
    torch.manual_seed(seed)
    model = ReleasedUniAnimate(dim=32, dim_mult=(1, 2), res_blocks=1, attn_levels=1, head_dim=8, num_heads=8,
                               context_dim=32, image_dim=32, hidden=8, groups=8, resolution=(W, H)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.2)
    return model


@pytest.fixture(scope="module")
def converted():
    released = released_tiny()
    state = released.state_dict()
    parts = build_unianimate("tiny", seed=1)
    import_unianimate(state, parts["unet"], parts["conditioner"], "released-tiny.pth")
    return released, state, parts["unet"].eval(), parts["conditioner"].eval()


def test_full_size_has_the_released_keys_shapes_and_parameter_count():
    with torch.device("meta"):
        parts = build_unianimate("full")
        released = ReleasedUniAnimate()
    ours = released_shapes(parts["unet"], parts["conditioner"])
    theirs = {k: tuple(v.shape) for k, v in released.state_dict().items()}
    assert len(ours) == RELEASED_KEYS
    assert {k: tuple(v) for k, v in ours.items()} == theirs
    assert sum(torch.Size(s).numel() for s in ours.values()) == RELEASED_PARAMETERS
    assert parts["unet"].config.in_channels == 12 and parts["conditioner"].config.condition_channels == 8
    # the temporal transformers' projections change shape on import (Conv1d -> Linear)
    assert theirs["input_blocks.0.1.proj_in.weight"] == (512, 320, 1)
    assert tuple(parts["unet"].transformer_in.proj_in.weight.shape) == (512, 320)
    assert sum("temopral_conv.conv4.3.weight" in k for k in theirs) == 22  # one per ResBlock: 8 down, 2 middle, 12 up
    assert sum(k.endswith(".proj_in.weight") and v[-1:] == (1,) for k, v in theirs.items()) == 17  # temporal


@pytest.mark.parametrize("conditions", ["none", "pose+reference+image", "pose+reference+image+first-frame"])
def test_converted_model_predicts_what_the_released_computation_predicts(converted, conditions):
    released, _, unet, conditioner = converted
    g = torch.Generator().manual_seed(2)
    b, f = 2, 3
    x = torch.randn(b, 4, f, H // 8, W // 8, generator=g)
    t = torch.tensor([999, 421])
    text = torch.randn(1, 77, 32, generator=g)
    image = torch.randn(b, 32, generator=g)
    poses = torch.rand(b, 3, f + 1, H, W, generator=g)  # the reference's pose first
    reference = torch.randn(b, 4, 1, H // 8, W // 8, generator=g)
    first = torch.rand(b, 3, f, H, W, generator=g)
    on = conditions.split("+")
    with torch.no_grad():
        expected = released(x, t, text, image=image if "image" in on else None,
                            dwpose=poses if "pose" in on else None, randomref=reference if "reference" in on else None,
                            local_image=first if "first-frame" in on else None)
        got = predict(unet, conditioner, x, t, text, image_embeds=image if "image" in on else None,
                      pose=poses[:, :, 1:] if "pose" in on else None,
                      reference_latent=reference[:, :, 0] if "reference" in on else None,
                      reference_pose=poses[:, :, 0] if "pose" in on else None,
                      local_image=first if "first-frame" in on else None)
    assert got.shape == expected.shape == (b, 4, f, H // 8, W // 8)  # frame 0 dropped
    assert expected.abs().mean() > 0.1
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=2e-5)


def test_each_condition_changes_the_prediction(converted):
    _, _, unet, conditioner = converted
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 4, 2, H // 8, W // 8, generator=g)
    text = torch.randn(1, 77, 32, generator=g)
    full = dict(image_embeds=torch.randn(1, 32, generator=g), pose=torch.rand(1, 3, 2, H, W, generator=g),
                reference_latent=torch.randn(1, 4, H // 8, W // 8, generator=g),
                reference_pose=torch.rand(1, 3, H, W, generator=g), local_image=torch.rand(1, 3, 2, H, W, generator=g))
    with torch.no_grad():
        base = predict(unet, conditioner, x, 500, text, **full)
        for name in full:
            dropped = predict(unet, conditioner, x, 500, text, **{**full, name: None})
            assert (dropped - base).abs().max() > 1e-3, name


def test_conversion_is_lossless_both_ways(converted):
    _, state, unet, conditioner = converted
    back = export_unianimate(unet, conditioner)
    assert set(back) == set(state)
    assert all(torch.equal(back[k], state[k]) for k in state)
    again = build_unianimate("tiny", seed=5)
    assert "conditioner.text_context" not in back and "text_context" not in back  # not in the released file
    import_unianimate(back, again["unet"], again["conditioner"], "exported.pth", text_context=conditioner.text_context)
    for a, b in ((again["unet"], unet), (again["conditioner"], conditioner)):
        sa, sb = a.state_dict(), b.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sb)


def test_unknown_missing_and_misshaped_keys_are_refused_with_a_listing(converted):
    _, state, _, _ = converted
    bad = dict(state)
    bad["input_blocks.0.9.weight"] = torch.zeros(1)
    del bad["dwpose_embedding.3.bias"]
    bad["out.2.weight"] = torch.zeros(4, 32, 1, 1)
    parts = build_unianimate("tiny")
    with pytest.raises(CheckpointError) as err:
        import_unianimate(bad, parts["unet"], parts["conditioner"], "broken.pth")
    message = err.value.message
    assert "broken.pth" in message
    assert "1 unknown key(s): input_blocks.0.9.weight" in message
    assert "1 missing key(s): dwpose_embedding.3.bias" in message
    assert "out.2.weight: file (4, 32, 1, 1) vs model (4, 32, 3, 3)" in message


def test_sizes_build_and_an_unknown_one_is_refused():
    puppet = build_unianimate("puppet")
    assert puppet["unet"].config.block_out_channels == (32, 64, 64)
    with pytest.raises(ValueError, match="size must be one of tiny, puppet, full; got 'huge'"):
        build_unianimate("huge")
