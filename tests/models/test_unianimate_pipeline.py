"""UniAnimatePipeline on tiny models: the released sampler's grid and step, the unconditional
pass without any condition, the noise prior, windows ending on the last frame, continuation, and
a saved folder loaded by another process."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import PIL.Image
import pytest
import torch

from animate_anyone.models import store
from animate_anyone.models.unianimate import SCHEDULER, UniAnimateScheduler, predict
from animate_anyone.pipeline import InputError, sliding_windows
from animate_anyone.unianimate_pipeline import FAMILY, UniAnimatePipeline, build_components, create_model

H, W = 64, 48


@pytest.fixture(scope="module")
def pipe():
    return UniAnimatePipeline(**build_components("tiny", seed=0))


def inputs(frames: int = 5, seed: int = 0):
    rng = np.random.RandomState(seed)
    ref = (rng.rand(H, W, 3) * 255).astype(np.uint8)
    poses = np.zeros((frames, H, W, 3), np.uint8)
    for i in range(frames):  # a bar that moves: frames differ
        poses[i, 10:50, 4 + 6 * i: 10 + 6 * i] = 255
    return ref, poses


def test_thirty_steps_visit_the_released_31_timesteps_on_a_zero_snr_v_schedule():
    s = UniAnimateScheduler(**SCHEDULER)
    s.set_timesteps(30)
    assert s.timesteps.tolist() == list(range(991, 0, -33))
    assert len(s.timesteps) == 31 and s.timesteps[-1] == 1
    sqrt_ab = torch.cumprod(1 - torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2, 0).sqrt()
    rescaled = (sqrt_ab - sqrt_ab[-1]) * sqrt_ab[0] / (sqrt_ab[0] - sqrt_ab[-1])  # zero terminal SNR
    torch.testing.assert_close(s.alphas_cumprod.double(), rescaled ** 2, rtol=1e-5, atol=1e-7)
    assert s.alphas_cumprod[-1] == 0 and s.config.prediction_type == "v_prediction"
    with pytest.raises(ValueError, match=r"num_inference_steps must be in \[1, 1000\]; got 0"):
        s.set_timesteps(0)


def test_each_ddim_step_is_the_released_v_step_landing_on_alpha_bar_zero():
    s = UniAnimateScheduler(**SCHEDULER)
    s.set_timesteps(30)
    ab = s.alphas_cumprod.double()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 2, 3, 3, generator=g, dtype=torch.float64)
    for t in s.timesteps.tolist():
        v = torch.randn(x.shape, generator=g, dtype=torch.float64)
        a, a_prev = ab[t], ab[max(t - 33, 0)]
        x0 = a.sqrt() * x - (1 - a).sqrt() * v
        eps = ((1 / a).sqrt() * x - x0) / (1 / a - 1).sqrt()
        expected = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
        x = s.step(v.float(), t, x.float()).prev_sample.double()
        torch.testing.assert_close(x, expected, rtol=1e-4, atol=1e-4)


def test_the_unconditional_rows_drop_every_condition_the_pose_included(pipe):
    ref, poses = inputs(4)
    ref = PIL.Image.fromarray(ref)
    embeds, ref_latent = pipe.encode_reference(ref, H, W, "cpu", torch.float32, torch.Generator().manual_seed(0))
    pose = pipe._pose_tensor(poses, H, W).transpose(0, 1)[None]
    ref_pose = pipe._pose_tensor([poses[0]], H, W)
    local = pipe.pose_processor.preprocess(ref, height=H, width=W)
    latents = torch.randn(1, 4, 4, H // 8, W // 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        cond, uncond = pipe._predict(latents, [[0, 1, 2, 3]], 500, pose, embeds, ref_latent, ref_pose, local, True)
        nothing = predict(pipe.unet, pipe.conditioner, latents, 500)  # no condition at all
        everything = predict(pipe.unet, pipe.conditioner, latents, 500, image_embeds=embeds, pose=pose,
                             reference_latent=ref_latent, reference_pose=ref_pose,
                             local_image=local[:, :, None].expand(-1, -1, 4, -1, -1))
    torch.testing.assert_close(uncond, nothing, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(cond, everything, rtol=1e-5, atol=1e-6)
    assert (cond - uncond).abs().max() > 1e-3


def test_the_first_latent_is_the_reference_noised_to_949_under_offset_noise(pipe):
    ref_latent = torch.randn(1, 4, 8, 6, generator=torch.Generator().manual_seed(2))
    shape = (1, 4, 5, 8, 6)
    got = pipe.prepare_latents(shape, ref_latent, 949, 0.1, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    noise = torch.randn(shape, generator=g) + 0.1 * torch.randn(1, 4, 5, 1, 1, generator=g)
    ab = pipe.scheduler.alphas_cumprod[949]
    torch.testing.assert_close(got, ab.sqrt() * ref_latent[:, :, None] + (1 - ab).sqrt() * noise)
    plain = pipe.prepare_latents(shape, ref_latent, None, 0.0, torch.Generator().manual_seed(3))
    torch.testing.assert_close(plain, torch.randn(shape, generator=torch.Generator().manual_seed(3)))


def test_windows_of_32_with_overlap_8_end_on_the_last_frame():
    windows = sliding_windows(70, 32, 8)
    assert [(w[0], w[-1]) for w in windows] == [(0, 31), (24, 55), (38, 69)]


def test_a_long_video_in_windows_and_a_continued_one(pipe):
    ref, poses = inputs(7)
    kwargs = dict(num_inference_steps=2, guidance_scale=2.5, reference_pose=poses[0])
    one = pipe(ref, poses, window=7, overlap=0, generator=torch.Generator().manual_seed(0), **kwargs).frames
    windowed = pipe(ref, poses, window=4, overlap=2, generator=torch.Generator().manual_seed(0), **kwargs).frames
    assert one.shape == windowed.shape == (7, H, W, 3) and one.dtype == np.uint8
    assert not np.array_equal(one, windowed)  # windows see fewer frames: another result, same shape
    again = pipe(ref, poses, window=4, overlap=2, generator=torch.Generator().manual_seed(0), **kwargs).frames
    assert np.array_equal(windowed, again)  # seeded: the same frames
    continued = pipe(ref, poses, window=7, overlap=0, first_frame=one[-1], generator=torch.Generator().manual_seed(0),
                     **kwargs).frames
    assert continued.shape == one.shape and not np.array_equal(continued, one)


@pytest.mark.parametrize("kwargs, message", [
    (dict(window=0), "window must be ≥ 1; got 0"),
    (dict(window=4, overlap=4), "overlap must be in [0, window=4); got 4"),
    (dict(noise_prior=1000), "noise_prior must be a timestep in [0, 999] or None; got 1000"),
    (dict(num_inference_steps=0), "num_inference_steps must be ≥ 1; got 0"),
    (dict(guidance_scale=-1.0), "guidance_scale must be ≥ 0; got -1.0"),
    (dict(height=60), "height must be a positive multiple of 8; got 60"),
])
def test_bad_arguments_are_refused_by_name(pipe, kwargs, message):
    ref, poses = inputs(3)
    with pytest.raises(InputError) as err:
        pipe(ref, poses, **kwargs)
    assert message in err.value.message


def test_a_saved_folder_is_loaded_by_another_process_through_the_store(tmp_path):
    create_model(tmp_path / "ua", "tiny", seed=4)
    assert store.family(tmp_path / "ua") == FAMILY
    ref, poses = inputs(3)
    np.save(tmp_path / "ref.npy", ref)
    np.save(tmp_path / "poses.npy", poses)
    script = (
        "import json, numpy as np, torch\n"
        "from animate_anyone.models import store\n"
        "pipe = store.load_pipeline('ua')\n"
        "out = pipe(np.load('ref.npy'), np.load('poses.npy'), num_inference_steps=2, reference_pose=np.load('poses.npy')[0],"
        " generator=torch.Generator().manual_seed(0)).frames\n"
        "np.save('out.npy', out)\n"
        "print(json.dumps({'cls': type(pipe).__name__}))\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"cls": "UniAnimatePipeline"}
    here = store.load_pipeline(tmp_path / "ua")(ref, poses, num_inference_steps=2, reference_pose=poses[0],
                                                generator=torch.Generator().manual_seed(0)).frames
    assert np.array_equal(np.load(tmp_path / "out.npy"), here)
