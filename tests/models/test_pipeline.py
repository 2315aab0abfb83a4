"""AnimateAnyonePipeline on tiny models: windows, one ReferenceNet pass, save/load, continuation,
and `animate` end to end on the CPU with the inputs a user gets wrong."""
from __future__ import annotations

import cv2
import numpy as np
import PIL.Image
import pytest
import torch

from animate_anyone import animate as lib
from animate_anyone.config import Pose
from animate_anyone.media.video import VideoWriter, iter_frames, probe
from animate_anyone.models.sizes import build_components
from animate_anyone.pipeline import (
    AnimateAnyonePipeline,
    InputError,
    create_model,
    load_animate_pipeline,
    sliding_windows,
    window_weights,
)


@pytest.mark.parametrize("n", [1, 23, 24, 25, 47, 100])
def test_windows_cover_every_frame_with_the_right_weights(n):
    windows = sliding_windows(n, 24, 4)
    assert all(w == list(range(w[0], w[0] + len(w))) for w in windows)  # contiguous, no wrap-around
    assert all(len(w) == min(n, 24) for w in windows)
    assert windows[0][0] == 0 and windows[-1][-1] == n - 1  # the last window is anchored at the end
    counts = np.zeros(n)
    for w in windows:
        counts[w] += 1
    assert counts.min() >= 1
    assert torch.allclose(window_weights(n, windows), torch.tensor(1 / counts, dtype=torch.float32))
    if n > 24:  # neighbours overlap by at least 4 frames
        assert all(a[-1] - b[0] + 1 >= 4 for a, b in zip(windows, windows[1:]))
    expected = {1: 1, 23: 1, 24: 1, 25: 2, 47: 3, 100: 5}[n]
    assert len(windows) == expected


@pytest.fixture(scope="module")
def pipe():
    p = AnimateAnyonePipeline(**build_components("tiny", seed=0))
    p.set_progress_bar_config(disable=True)
    return p


def _inputs(frames=30, h=96, w=64, seed=0):
    rng = np.random.default_rng(seed)
    ref = (rng.random((h, w, 3)) * 255).astype(np.uint8)
    poses = np.zeros((frames, h, w, 3), np.uint8)
    for i in range(frames):
        cv2.circle(poses[i], (10 + i % (w - 20), h // 2), 6, (255, 80, 0), -1)
    return ref, poses


def test_reference_net_runs_once_per_call_and_output_has_the_requested_size(pipe):
    calls = []
    hook = pipe.reference_unet.register_forward_hook(lambda *a: calls.append(1))
    ref, poses = _inputs(30)
    try:
        out = pipe(ref, poses, height=48, width=32, num_inference_steps=3, window=8, overlap=2,
                   generator=torch.Generator().manual_seed(0)).frames
    finally:
        hook.remove()
    assert len(calls) == 1  # 5 windows × 3 steps, one ReferenceNet pass
    assert out.shape == (30, 48, 32, 3) and out.dtype == np.uint8
    assert pipe.reference_bank.features == {}  # nothing kept between calls


def test_batched_windows_equal_one_at_a_time(pipe):
    ref, poses = _inputs(20)
    kw = dict(num_inference_steps=2, window=8, overlap=3, output_type="latent")
    one = pipe(ref, poses, generator=torch.Generator().manual_seed(1), **kw).frames
    batched = pipe(ref, poses, generator=torch.Generator().manual_seed(1), window_batch_size=3, **kw).frames
    assert torch.allclose(one, batched, atol=1e-5)


def test_guidance_uses_a_zero_embedding_and_no_reference_tokens(pipe):
    """With guidance 1 (no unconditional branch) the result differs from guidance 3.5, and the
    unconditional rows are computed without reference tokens (bank rows -1 then 0)."""
    seen = []
    orig = pipe.unet.forward

    def spy(sample, timestep, encoder_hidden_states, **kw):
        seen.append((pipe.reference_bank.rows.tolist(), encoder_hidden_states[0].abs().sum().item(),
                     encoder_hidden_states[-1].abs().sum().item(), kw["pose_features"].shape[0]))
        return orig(sample, timestep, encoder_hidden_states, **kw)

    pipe.unet.forward = spy
    try:
        ref, poses = _inputs(6)
        pipe(ref, poses, num_inference_steps=1, guidance_scale=3.5, window=8)
    finally:
        pipe.unet.forward = orig
    rows, uncond_norm, cond_norm, pose_batch = seen[0]
    assert rows == [-1, 0] and uncond_norm == 0 and cond_norm > 0 and pose_batch == 2  # pose kept for both


def test_save_and_load_give_the_same_output(pipe, tmp_path):
    from animate_anyone.pipeline import save_animate_pipeline

    save_animate_pipeline(pipe, tmp_path / "model")
    loaded = load_animate_pipeline(tmp_path / "model")
    loaded.set_progress_bar_config(disable=True)
    ref, poses = _inputs(10)
    a = pipe(ref, poses, num_inference_steps=3, window=8, overlap=2, generator=torch.Generator().manual_seed(5),
             output_type="pt").frames
    b = loaded(ref, poses, num_inference_steps=3, window=8, overlap=2, generator=torch.Generator().manual_seed(5),
               output_type="pt").frames
    # the UNets, pose guider and VAE are bit-identical; CLIP's projection can differ in the last bit
    # (a reloaded weight's memory alignment changes the BLAS path), hence a float tolerance
    assert torch.allclose(a, b, atol=1e-5)
    for name in ("reference_unet", "unet", "pose_guider", "vae", "image_encoder"):
        mine, theirs = getattr(pipe, name).state_dict(), getattr(loaded, name).state_dict()
        assert all(torch.equal(mine[k], theirs[k]) for k in mine), name


def test_continuation_starts_from_the_given_frame(pipe):
    ref, poses = _inputs(12)
    first = (np.random.default_rng(9).random((96, 64, 3)) * 255).astype(np.uint8)
    latents = pipe(ref, poses, num_inference_steps=3, window=8, overlap=2, first_frame=first,
                   generator=torch.Generator().manual_seed(0), output_type="latent").frames
    anchor = pipe.encode_reference(PIL.Image.fromarray(first), 96, 64, "cpu", torch.float32)[1]
    assert torch.equal(latents[:, :, 0], anchor)
    free = pipe(ref, poses, num_inference_steps=3, window=8, overlap=2,
                generator=torch.Generator().manual_seed(0), output_type="latent").frames
    assert not torch.allclose(free[:, :, 1], latents[:, :, 1])  # the next frames follow it


@pytest.mark.parametrize("bad, message", [
    (dict(reference_image=np.zeros((96, 64, 4), np.uint8)), "reference_image must be an RGB image"),
    (dict(reference_image=PIL.Image.new("L", (64, 96))), "PIL mode 'L'"),
    (dict(poses=[]), "poses: got 0 frames"),
    (dict(height=50), "height must be a positive multiple of 8"),
    (dict(window=40), "window must be in [1, 32]"),
    (dict(poses=[np.zeros((96, 64, 3), np.uint8), np.zeros((90, 64, 3), np.uint8)]), "same size"),
])
def test_check_inputs_names_the_argument(pipe, bad, message):
    ref, poses = _inputs(4)
    kwargs = {**dict(reference_image=ref, poses=list(poses), num_inference_steps=1), **bad}
    with pytest.raises(InputError) as info:
        pipe(**kwargs)
    assert message in str(info.value)


# --- animate: files in, files out ------------------------------------------------------------------

@pytest.fixture(scope="module")
def media(tmp_path_factory, puppet_dir):
    tmp = tmp_path_factory.mktemp("animate")
    video = sorted(puppet_dir.glob("*.mp4"))[0]
    frame = next(iter(iter_frames(video))).to_ndarray(format="rgb24")
    PIL.Image.fromarray(frame).save(tmp / "reference.png")
    _, poses = _inputs(26, 448, 256)
    with VideoWriter(tmp / "poses.mp4", 256, 448, 25) as w:
        for p in poses:
            w.write(p)
    model = create_model(tmp / "tiny", "tiny", seed=0)
    return {"tmp": tmp, "reference": tmp / "reference.png", "poses": tmp / "poses.mp4", "model": model,
            "frame": frame, "source_video": video}


def _animate(media, out, **kw):
    args = dict(pose_cfg=Pose(backend="mediapipe"), steps=2, window=8, overlap=2, device="cpu", height=64)
    args.update(kw)
    return lib.animate(media["model"], kw.pop("reference", media["reference"]), str(kw.pop("pose", media["poses"])),
                       out, **{k: v for k, v in args.items() if k not in ("reference", "pose")})


def test_tiny_pipeline_end_to_end_on_cpu_writes_video_and_grid(media):
    out = media["tmp"] / "result.mp4"
    info = _animate(media, out, frames=20)
    assert (info["frames"], info["width"], info["height"]) == (20, 32, 64)  # 256×448 poses → 64 high, 8-aligned
    v, g = probe(out, count_frames=True), probe(out.with_name("result.grid.mp4"), count_frames=True)
    assert (v.width, v.height, v.num_frames, round(v.fps)) == (32, 64, 20, 25)
    assert (g.width, g.height, g.num_frames) == (96, 64, 20)
    assert not list(media["tmp"].glob("*.partial*"))


def test_audio_is_carried_when_asked(media, tmp_path):
    import av

    with_audio = tmp_path / "with_audio.mp4"
    with av.open(str(with_audio), "w") as c:  # one second of a 440 Hz tone under 25 black frames
        vs = c.add_stream("libx264", rate=25)
        vs.width, vs.height, vs.pix_fmt = 64, 64, "yuv420p"
        aus = c.add_stream("aac", rate=44100)
        for i in range(25):
            c.mux(vs.encode(av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")))
        t = np.arange(44100) / 44100
        samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
        for s in range(0, 44100, 1024):
            f = av.AudioFrame.from_ndarray(samples[:, s:s + 1024], format="flt", layout="mono")
            f.sample_rate, f.pts = 44100, s
            c.mux(aus.encode(f))
        c.mux(vs.encode(None))
        c.mux(aus.encode(None))
    out = tmp_path / "r.mp4"
    _animate(media, out, frames=10, audio_from=with_audio, grid=False)
    with av.open(str(out)) as c:
        assert len(c.streams.video) == 1 and len(c.streams.audio) == 1
        assert c.streams.video[0].frames == 10


@pytest.mark.parametrize("case, message", [
    ("zero_frames", "file is empty (0 bytes)"),
    ("size", "aspect ratio differs"),
    ("fps", "runs at 25.000 fps but 30.0 fps was asked for"),
    ("model", "is incomplete: missing pose_guider/"),
    ("retarget_video", "--retarget needs keypoints"),
])
def test_bad_input_is_refused_clearly_and_nothing_is_written(media, tmp_path, case, message):
    import shutil

    kw = {}
    if case == "zero_frames":
        empty = tmp_path / "empty.mp4"  # a pose video with nothing in it
        empty.write_bytes(b"")
        kw["pose"] = empty
    elif case == "size":
        kw.update(height=64, width=64)
    elif case == "fps":
        kw["fps"] = 30.0
    elif case == "model":
        broken = tmp_path / "broken"
        shutil.copytree(media["model"], broken)
        shutil.rmtree(broken / "pose_guider")
        kw["model"] = broken
    elif case == "retarget_video":
        kw["retarget"] = True
    out = tmp_path / "out.mp4"
    model = kw.pop("model", media["model"])
    with pytest.raises(lib.AnimateInputError) as info:
        lib.animate(model, kw.pop("reference", media["reference"]), str(kw.pop("pose", media["poses"])), out,
                    pose_cfg=Pose(backend="mediapipe"), steps=1, window=8, device="cpu", **kw)
    assert message in str(info.value)
    assert not out.exists() and not list(tmp_path.glob("*.partial*"))


def test_a_reference_without_a_found_person_is_animated_with_a_note_when_nothing_needs_its_keypoints(media, tmp_path):
    """A pose video needs no retargeting, so the reference's keypoints are not needed: a reference
    the pose backend finds no person in (a plain grey image here) is animated, with a note."""
    path = tmp_path / "empty.png"
    PIL.Image.new("RGB", (256, 448), (200, 200, 200)).save(path)
    out = tmp_path / "out.mp4"
    info = lib.animate(media["model"], path, str(media["poses"]), out, pose_cfg=Pose(backend="mediapipe"), steps=1,
                       window=8, device="cpu", frames=4)
    assert out.is_file() and info["frames"] == 4
    assert any("no person found" in n and "not retargeted" in n for n in info["notes"])
