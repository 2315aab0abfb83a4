"""Training on a real (small) data root: samples, what trains, exact resume, bad states, tables."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from train_data import CONFIG

from animate_anyone import progress
from animate_anyone.config import load_config
from animate_anyone.tables import DataRoot, query, refresh_catalog
from animate_anyone.tables.io import Dataset
from animate_anyone.tables.selection import load_snapshot
from animate_anyone.training import data, run
from animate_anyone.training.loop import TrainingStopped


def make_config(tmp_path: Path, root: Path, extra1: str = "") -> Path:
    path = tmp_path / "pipelines.yaml"
    path.write_text(CONFIG.format(root=root, extra1=extra1))
    return path


def weights(folder: Path, part: str) -> dict[str, torch.Tensor]:
    return load_file(str(next((folder / part).glob("*.safetensors"))))


def test_samples_crop_resize_and_draw_like_inference(train_root):
    ds = Dataset(train_root, "demo")
    snap = load_snapshot(ds)
    clips = data.snapshot_clips(ds, snap)
    store = data.ClipStore(ds, 32, 64)
    samples = data.TrainSamples(clips, store, seed=0, frames=4, stride=2)
    item = samples[(3, 1)]
    assert item["pixels"].shape == (4, 3, 64, 32) and item["poses"].shape == (4, 3, 64, 32)
    assert item["reference"].shape == (3, 64, 32) and -1 <= float(item["pixels"].min()) <= float(item["pixels"].max()) <= 1
    # the same key is the same sample, whichever process asks; another key is another sample
    again = samples[(3, 1)]
    assert torch.equal(item["pixels"], again["pixels"]) and int(item["seed"]) == int(again["seed"])
    assert int(samples[(3, 2)]["seed"]) != int(item["seed"])
    clip, target, ref, _ = samples.pick(3, 1)
    assert target == list(range(target[0], target[0] + 7, 2)) and ref not in target
    assert min(abs(ref - t) for t in target) > max(1, clip.num_frames // 8)
    # the pose image is the inference drawing of the truth, cropped and resized with the frame:
    # the neck (between the shoulders) is drawn where the truth puts it
    box = data.crop_box(clip.width, clip.height, 32, 64)
    from animate_anyone.pose.render import read_clip_poses

    _, people = read_clip_poses(ds.root, clip.clip_id)
    kp = people[target[0]][0][0] * np.array([clip.width, clip.height])
    neck = (kp[5] + kp[6]) / 2
    sx, sy = 32 / (box[2] - box[0]), 64 / (box[3] - box[1])
    x, y = int((neck[0] - box[0]) * sx), int((neck[1] - box[1]) * sy)
    pose = item["poses"][0].permute(1, 2, 0).numpy()
    assert pose[max(0, y - 1):y + 2, max(0, x - 1):x + 2].max() > 0.3  # something drawn at the neck
    assert pose[:4, :4].max() < 0.05  # and the corner is empty


def test_a_clip_whose_bytes_changed_is_an_error_naming_it(train_root):
    ds = Dataset(train_root, "demo")
    clips = data.snapshot_clips(ds, load_snapshot(ds))
    path = Path(clips[0].path)
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(data.TrainDataError, match=f"clip {clips[0].clip_id}: .* changed since it was ingested"):
        data.ClipStore(ds, 32, 64).get(clips[0])


def test_each_stage_trains_exactly_its_parameters():
    from animate_anyone.models.sizes import build_components
    from animate_anyone.training.model import never_trained, set_trainable

    c = build_components("tiny")
    dead = never_trained(c["reference_unet"])
    # the last transformer block after norm1 and its proj_out: nothing reads them
    tail = "up_blocks.1.attentions.1."
    assert all(n.startswith(tail) for n in dead)
    assert {f"{tail}proj_out.weight", f"{tail}transformer_blocks.0.attn1.to_out.0.weight"} <= dead
    assert f"{tail}transformer_blocks.0.norm1.weight" not in dead
    trained = set_trainable(1, c)
    unet = {n for n, p in c["unet"].named_parameters() if p.requires_grad}
    assert unet and not any("motion_modules" in n for n in unet)
    assert {n for n, p in c["reference_unet"].named_parameters() if not p.requires_grad} == dead
    assert all(p.requires_grad for p in c["pose_guider"].parameters())
    assert not any(p.requires_grad for k in ("vae", "image_encoder") for p in c[k].parameters())
    set_trainable(2, c)
    assert {n for n, p in c["unet"].named_parameters() if p.requires_grad} == \
        {n for n, _ in c["unet"].named_parameters() if "motion_modules" in n}
    assert not any(p.requires_grad for k in ("reference_unet", "pose_guider", "vae") for p in c[k].parameters())
    assert len(trained["pose_guider"]) == len(list(c["pose_guider"].parameters()))


@pytest.mark.slow
def test_all_stages_train_save_and_a_rerun_skips_them(train_root, tmp_path):
    cfg = load_config("t", make_config(tmp_path, train_root))
    result = run.train(cfg)
    assert [s["stage"] for s in result["stages"]] == [0, 1, 2]
    root = DataRoot.from_uri(train_root)
    for s in result["stages"]:
        assert (Path(s["output"]) / "model_index.json").is_file() and np.isfinite(s["loss"])
        assert Path(s["val_video"]).is_file()
    # stage 1 started from stage 0's VAE; stage 2 changed only the motion modules
    assert torch.equal(weights(root.path / "models/tiny-stage0", "vae")["decoder.conv_out.weight"],
                       weights(root.path / "models/tiny-stage1", "vae")["decoder.conv_out.weight"])
    s1, s2 = weights(root.path / "models/tiny-stage1", "unet"), weights(root.path / "models/tiny-stage2", "unet")
    changed = {k for k in s1 if not torch.equal(s1[k], s2[k])}
    assert changed and all("motion_modules" in k for k in changed)
    assert Path(result["model"]).resolve() == (root.path / "models/tiny-stage2").resolve()
    # the tables: one row per run, one per step, in the catalog
    refresh_catalog(root)
    runs = query(root, "SELECT stage, status, final_step, steps FROM train_runs ORDER BY stage").to_pylist()
    assert runs == [{"stage": 0, "status": "finished", "final_step": 4, "steps": 4},
                    {"stage": 1, "status": "finished", "final_step": 6, "steps": 6},
                    {"stage": 2, "status": "finished", "final_step": 4, "steps": 4}]
    per_run = query(root, "SELECT stage, count(*) AS n, max(step) AS last, count(val_psnr) AS val FROM train_metrics "
                          "GROUP BY stage ORDER BY stage").to_pylist()
    assert per_run == [{"stage": 0, "n": 4, "last": 4, "val": 1}, {"stage": 1, "n": 6, "last": 6, "val": 1},
                       {"stage": 2, "n": 4, "last": 4, "val": 1}]
    # accelerate's TensorBoard tracker wrote event files for each stage
    assert all(list((Path(s["output"]).parent.parent / "checkpoints" / s["run_id"] / "logs").rglob("events.out.*"))
               for s in result["stages"])
    again = run.train(cfg)
    assert all(s.get("cached") for s in again["stages"])


@pytest.mark.slow
def test_a_stopped_run_resumes_to_the_same_weights_and_losses(train_root, tmp_path):
    """Stage 1 for 6 steps at once, against 2 steps, stop, then the rest (bitwise on a CPU)."""
    import shutil

    cfg = load_config("t", make_config(tmp_path, train_root, ", checkpoint_every: 2"))
    run.train(cfg, stage=0)
    snap = load_snapshot(Dataset.of(cfg))
    job = run.plan_stage(cfg, 1, snap)
    run.run_stage_job(job)
    ref = weights(Path(job.output), "unet")
    ref_losses = [r["loss"] for r in json.loads((Path(job.run_dir) / "step-00000006/trainer.json").read_text())["metrics"]]
    shutil.rmtree(job.run_dir)
    shutil.rmtree(job.output)
    first = run.run_stage_job(run.plan_stage(cfg, 1, snap, max_steps=3))
    assert first["step"] == 3
    # a crash mid-save leaves a temporary folder behind; the resume ignores and removes it
    (Path(job.run_dir) / ".step-00000004.tmp").mkdir()
    rest = run.run_stage_job(run.plan_stage(cfg, 1, snap))
    assert rest["step"] == 6 and not (Path(job.run_dir) / ".step-00000004.tmp").exists()
    got = weights(Path(job.output), "unet")
    assert all(torch.equal(ref[k], got[k]) for k in ref)
    losses = [r["loss"] for r in json.loads((Path(job.run_dir) / "step-00000006/trainer.json").read_text())["metrics"]]
    assert losses == ref_losses
    assert [p.name for p in sorted(Path(job.run_dir).glob("step-*"))] == ["step-00000004", "step-00000006"]  # keep 2


@pytest.mark.slow
def test_non_finite_losses_skip_steps_then_stop_with_the_last_checkpoint(train_root, tmp_path, monkeypatch):
    from animate_anyone.training import objective

    cfg = load_config("t", make_config(tmp_path, train_root, ", max_bad_steps: 3"))
    run.train(cfg, stage=0)
    real = objective.diffusion_loss
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        loss, info = real(*args, **kwargs)
        calls["n"] += 1
        # step 2 alone is NaN (skipped, the run goes on); from step 4 on, inf every time
        return (loss * float("nan") if calls["n"] == 2 else loss * float("inf") if calls["n"] >= 4 else loss), info

    monkeypatch.setattr(objective, "diffusion_loss", flaky)
    with pytest.raises(TrainingStopped, match="3 non-finite losses in a row"):
        run.train(cfg, stage=1)
    job = run.plan_stage(cfg, 1, load_snapshot(Dataset.of(cfg)))
    trainer = json.loads((Path(job.run_dir) / "step-00000003/trainer.json").read_text())
    assert trainer["step"] == 3 and trainer["bad_total"] == 1  # steps 1 and 3 trained, 2 skipped
    assert [m["step"] for m in trainer["metrics"]] == [1, 3]
    root = DataRoot.from_uri(train_root)
    failed = query(root, "SELECT stage, item_id, reason FROM failures").to_pylist()
    assert failed == [{"stage": "train", "item_id": job.run_id, "reason": "non_finite_loss"}]
    status = query(root, f"SELECT status FROM train_runs WHERE run_id = '{job.run_id}'").to_pylist()
    assert status == [{"status": "failed"}]


@pytest.mark.slow
def test_bad_requests_say_what_to_change(train_root, tmp_path):
    cfg = load_config("t", make_config(tmp_path, train_root))
    with pytest.raises(run.TrainInputError, match="stage 2 starts from stage 1's model"):
        run.train(cfg, stage=2)
    with pytest.raises(run.TrainInputError, match="--stage must be 0, 1, 2 or all"):
        run.parse_stages("3", cfg)
    with pytest.raises(run.TrainInputError, match="--max-steps must be at least 1"):
        run.train(cfg, max_steps=0)
    bad = load_config("t", make_config(tmp_path, train_root).parent / "pipelines.yaml")
    bad = bad.model_copy(update={"train": bad.train.model_copy(update={
        "stage0": bad.train.stage0.model_copy(update={"width": 36})})})
    from animate_anyone.training.model import TrainModelError

    with pytest.raises(TrainModelError, match=r"train.stage0: 36x64 cannot be trained: width and height must be multiples of 16 \(VAE ×8 then UNet ×2\)"):
        run.train(bad, stage=0)


def test_an_empty_snapshot_is_refused(train_root, tmp_path):
    from animate_anyone.tables.selection import select_clips

    ds = Dataset(train_root, "demo")
    snap = select_clips(ds, "FALSE", ["train"], "t")
    cfg = load_config("t", make_config(tmp_path, train_root))
    with pytest.raises(data.TrainDataError, match="has no clips"):
        run.train(cfg, stage=0, snapshot_id=snap["snapshot_id"])


@pytest.mark.slow
def test_two_processes_give_what_one_gives_with_the_same_global_batch(train_root, tmp_path):
    """Stage 1 from the same random start: 2 processes (gloo, torchrun) × batch 2 against 1 × 4."""
    results = {}
    for procs, batch in ((1, 4), (2, 2)):
        text = CONFIG.format(root=train_root, extra1="").replace("stage1: {steps: 6, lr: 1.0e-3, batch: 2,",
                                                                   f"stage1: {{steps: 3, lr: 1.0e-3, batch: {batch},")
        text = text.replace("      stage0:", "      stage0_off:").replace("output: tiny", f"output: p{procs}")
        text = text.replace("      device: cpu", f"      device: cpu\n      processes: {procs}")
        text = "\n".join(line for line in text.splitlines() if "stage0_off" not in line and "stage2:" not in line)
        path = tmp_path / f"p{procs}.yaml"
        path.write_text(text)
        cfg = load_config("t", path)
        steps = []

        def on(what, done, total, details, steps=steps):
            steps.append((details["stage"], done, total, round(details["loss"], 6)))

        with progress.listen(on):
            results[procs] = run.train(cfg, stage=1)
        # the launched processes' step reports reach the caller's listener as in one process
        assert [s[:3] for s in steps] == [(1, 1, 3), (1, 2, 3), (1, 3, 3)], steps
    one, two = Path(results[1]["stages"][0]["output"]), Path(results[2]["stages"][0]["output"])
    a, b = weights(one, "unet"), weights(two, "unet")
    # gradients summed in another order, nothing more: typical differences are float32 rounding
    # (~1e-8); Adam divides by sqrt(v), so where a gradient is near zero that rounding grows, but
    # stays below half of one step's update (lr 1e-3; 1.6e-4 was seen once on a loaded machine)
    diffs = torch.cat([(a[k] - b[k]).abs().flatten() for k in a])
    assert float(diffs.median()) < 1e-7 and float(diffs.max()) < 5e-4, (float(diffs.median()), float(diffs.max()))
    from animate_anyone.models.sizes import build_components

    start = build_components("tiny", seed=0)["unet"].state_dict()
    assert max(float((a[k] - start[k]).abs().max()) for k in a if "motion_modules" not in k) > 1e-4  # it trained
    assert abs(results[1]["stages"][0]["loss"] - results[2]["stages"][0]["loss"]) < 1e-6


def test_the_shipped_accelerate_configs_load(tmp_path):
    from accelerate.commands.config.config_args import load_config_from_file

    repo = Path(__file__).resolve().parents[2]
    kinds = {Path(f).stem: load_config_from_file(str(f)) for f in sorted((repo / "infra" / "accelerate").glob("*.yaml"))}
    assert {k: (c.distributed_type.value, c.num_processes) for k, c in kinds.items()} == {
        "1gpu": ("NO", 1), "8gpu": ("MULTI_GPU", 8), "deepspeed_zero2": ("DEEPSPEED", 8), "multinode": ("MULTI_GPU", 16)}
    assert kinds["deepspeed_zero2"].deepspeed_config["zero_stage"] == 2
    production = load_config("production")
    assert (repo / production.train.accelerate_config).is_file()


def test_starting_weights_load_from_local_folders_and_hub_ids(moore_tiny, tmp_path, monkeypatch):
    """train.init: an SD-style folder's UNet into both UNets, and AnimateDiff-layout motion modules
    from a local file and from hf://OWNER/REPO/FILE (the hub's cache, offline)."""
    import huggingface_hub.constants as hub
    from diffusers import UNet2DConditionModel

    from animate_anyone.config import Train
    from animate_anyone.models.sizes import TINY_UNET
    from animate_anyone.training.model import initial_components, load_motion

    base = tmp_path / "sd15"
    torch.manual_seed(5)
    sd = UNet2DConditionModel(**TINY_UNET)
    sd.save_pretrained(base / "unet")
    for part in ("vae", "image_encoder"):
        shutil.copytree(moore_tiny["base"] / part, base / part)
    train = Train(size="tiny", init={"base": "sd15"})
    c = initial_components(train, tmp_path)
    want = sd.state_dict()
    ref = c["reference_unet"].state_dict()
    assert all(torch.equal(ref[k], want[k]) for k in ref)
    den = c["unet"].state_dict()
    spatial = [k for k in den if "motion_modules" not in k and not k.endswith(".pe")]
    assert all(torch.equal(den[k], want[k]) for k in spatial)
    # motion modules: a local file, then the same file as a hub id from the local cache
    mm = tmp_path / "mm_sd_v15_v2.ckpt"
    torch.save(moore_tiny["mm"], mm)
    load_motion(c, "mm_sd_v15_v2.ckpt", tmp_path)
    key = next(k for k in moore_tiny["mm"] if k.endswith("attention_blocks.0.to_q.weight"))
    from animate_anyone.models.convert import motion_key

    assert torch.equal(c["unet"].state_dict()[motion_key(key)], moore_tiny["mm"][key])
    snap = tmp_path / "hub" / "models--guoyww--animatediff" / "snapshots" / "0123abcd"
    snap.mkdir(parents=True)
    shutil.copy(mm, snap / "mm_sd_v15_v2.ckpt")
    (snap.parent.parent / "refs").mkdir()
    (snap.parent.parent / "refs" / "main").write_text("0123abcd")
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    fresh = initial_components(Train(size="tiny"), tmp_path)
    load_motion(fresh, "hf://guoyww/animatediff/mm_sd_v15_v2.ckpt", None)
    assert torch.equal(fresh["unet"].state_dict()[motion_key(key)], moore_tiny["mm"][key])
    from animate_anyone.training.model import TrainModelError

    with pytest.raises(TrainModelError, match="hf://guoyww/animatediff/absent.ckpt .*not in the Hugging Face cache"):
        load_motion(fresh, "hf://guoyww/animatediff/absent.ckpt", None)
    with pytest.raises(TrainModelError, match="train.init.base: no folder"):
        initial_components(Train(size="tiny", init={"base": "nowhere"}), tmp_path)


@pytest.mark.slow
def test_a_full_disk_while_saving_keeps_the_previous_checkpoint(train_root, tmp_path, monkeypatch):
    import errno

    from accelerate import Accelerator

    from animate_anyone.training.checkpoints import CheckpointSaveError

    cfg = load_config("t", make_config(tmp_path, train_root))
    real = Accelerator.save_state
    saves = {"n": 0}

    def filling(self, output_dir=None, **kwargs):
        saves["n"] += 1
        if saves["n"] == 2:  # the step-4 save: write a little, then the disk is full
            Path(output_dir).mkdir(parents=True, exist_ok=True)
            (Path(output_dir) / "model.safetensors").write_bytes(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, output_dir, **kwargs)

    monkeypatch.setattr(Accelerator, "save_state", filling)
    with pytest.raises(CheckpointSaveError, match="cannot save the step 4 checkpoint .*No space left on device.*"
                                                  "the previous checkpoint step-00000002 is intact"):
        run.train(cfg, stage=0)
    job = run.plan_stage(cfg, 0, load_snapshot(Dataset.of(cfg)))
    assert [p.name for p in Path(job.run_dir).iterdir() if p.name.startswith((".step", "step"))] == ["step-00000002"]
    monkeypatch.setattr(Accelerator, "save_state", real)
    assert run.train(cfg, stage=0)["stages"][0]["step"] == 4  # room again: it resumes and finishes


def test_a_puppet_size_motion_step_runs_backward():
    """Stage 2 at the demo's size through the real loss: a permuted (non-contiguous) latent once
    crashed torch's CPU backward with SIGSEGV here, which the tiny size never showed."""
    from animate_anyone.config import TrainStage
    from animate_anyone.models.denoiser import AnimateModel
    from animate_anyone.models.sizes import build_components, zero_motion_outputs
    from animate_anyone.training.model import set_trainable
    from animate_anyone.training.objective import diffusion_loss

    c = build_components("puppet")
    zero_motion_outputs(c["unet"])
    set_trainable(2, c)
    model = AnimateModel(c["reference_unet"], c["unet"], c["pose_guider"])
    stage = TrainStage(width=64, height=112, batch=2, frames=8, stride=2, continuation=0.5)
    g = torch.Generator().manual_seed(0)
    batch = {"pixels": torch.rand(2, 8, 3, 112, 64, generator=g) * 2 - 1, "poses": torch.rand(2, 8, 3, 112, 64, generator=g),
             "reference": torch.rand(2, 3, 112, 64, generator=g) * 2 - 1, "seed": torch.tensor([3, 4])}
    loss, _ = diffusion_loss(model, c, batch, stage, "cpu")
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert torch.isfinite(loss) and grads and all(g is not None for g in grads)


def test_stage_one_skips_the_motion_modules_as_if_absent():
    """Stage 1 trains the image model alone: with motion=False the motion modules pass their input
    through, which equals the fresh (zeroed) modules exactly and differs from trained ones."""
    from animate_anyone.models.denoiser import AnimateModel
    from animate_anyone.models.sizes import build_components, zero_motion_outputs

    c = build_components("tiny")
    g = torch.Generator().manual_seed(1)
    args = (torch.randn(1, 4, 3, 8, 4, generator=g), torch.tensor([500]), torch.rand(3, 3, 64, 32, generator=g),
            torch.randn(1, 1, 32, generator=g), torch.tensor([0]))
    ref = dict(ref_latents=torch.randn(1, 4, 8, 4, generator=g), ref_context=torch.randn(1, 1, 32, generator=g))
    with torch.no_grad():
        for p in c["pose_guider"].parameters():  # a pose guider that adds something
            p.add_(0.1)
        model = AnimateModel(c["reference_unet"], c["unet"], c["pose_guider"])

        def run(motion):
            model.motion = motion
            return model(*args, **ref)

        assert not torch.allclose(run(False), run(True))  # random motion outputs change the result
        zero_motion_outputs(c["unet"])
        assert torch.equal(run(False), run(True))
        assert not any("forward" in vars(m) for m in c["unet"].modules())  # nothing left patched


def test_a_fresh_vae_starts_with_a_narrow_posterior():
    from animate_anyone.models.sizes import build_components
    from animate_anyone.training.model import narrow_posterior

    vae = build_components("puppet")["vae"]
    x = torch.rand(2, 3, 112, 64) * 2 - 1
    with torch.no_grad():
        assert float(vae.encode(x).latent_dist.std.mean()) > 0.5  # diffusers' init: about as wide as the latents
        narrow_posterior(vae)
        std = vae.encode(x).latent_dist.std
    assert torch.allclose(std, torch.full_like(std, 0.05), rtol=1e-4)


def test_stage_zero_weighs_the_pixels_near_the_person():
    """With person_weight, an error on the drawn person costs more than the same error on the
    room; without it both cost the same."""
    from animate_anyone.config import TrainStage
    from animate_anyone.models.sizes import build_components
    from animate_anyone.training.objective import VaeAutoencoder, person_mask, vae_loss

    poses = torch.zeros(1, 1, 3, 112, 64)
    poses[..., 40:80, 30:33] = 1.0  # one drawn limb
    mask = person_mask(poses[:, 0])
    assert mask[0, 0, 60, 31] == 1 and mask[0, 0, 60, 27] == 1 and mask[0, 0, 60, 20] == 0 and mask[0, 0, 10, 31] == 0
    vae = build_components("puppet")["vae"]

    class Fixed(torch.nn.Module):  # a "reconstruction" that is the input plus a chosen error
        def __init__(self, err):
            super().__init__()
            self.err = err

        def forward(self, x, eps):
            return x + self.err, torch.zeros(x.shape[0])

    x = torch.zeros(1, 1, 3, 112, 64)
    on_person, on_room = torch.zeros(1, 3, 112, 64), torch.zeros(1, 3, 112, 64)
    on_person[..., 60, 31] = 1.0
    on_room[..., 10, 10] = 1.0
    frozen = {"vae": vae}
    batch = {"pixels": x, "poses": poses, "seed": torch.tensor([0])}
    weighted, plain = TrainStage(person_weight=5.0), TrainStage()
    assert float(vae_loss(Fixed(on_person), frozen, batch, weighted, "cpu")[0]) == pytest.approx(
        5 * float(vae_loss(Fixed(on_room), frozen, batch, weighted, "cpu")[0]))
    assert float(vae_loss(Fixed(on_person), frozen, batch, plain, "cpu")[0]) == pytest.approx(
        float(vae_loss(Fixed(on_room), frozen, batch, plain, "cpu")[0]))
    assert isinstance(VaeAutoencoder(vae), torch.nn.Module)


def test_a_held_out_reference_is_a_test_clips_first_frame(train_root):
    import PIL.Image

    from animate_anyone.animate import AnimateInputError, resolve_sources
    from animate_anyone.tables.io import Dataset as Ds

    ds = Ds(train_root, "demo")
    with pytest.raises(AnimateInputError, match="has no clip in the test split"):
        resolve_sources(ds, "clip:held-out", "auto")
    # mark one clip of the dataset as held out: its first frame becomes the reference
    rows = ds.read("clips").to_pylist()
    source = rows[-1]["source_id"]
    part = [dict(r, split="test") if r["source_id"] == source else r for r in ds.read_part("clips", source)]
    ds.write_all([("clips", source, part)])
    reference, pose = resolve_sources(ds, "clip:held-out", "auto")
    held = sorted(r["clip_id"] for r in part)[0]
    assert Path(reference).name == f"{held}.png" and PIL.Image.open(reference).size == (part[0]["width"], part[0]["height"])
    assert pose in load_snapshot(ds)["clip_ids"]
