"""UniAnimate's released layout imported the way a user does it: `convert --unianimate FILE --vae
DIR --clip DIR` in one process, `animate --model` of the result in another, relative paths; bad
files and mixed flags refused with what is wrong and nothing written."""
from __future__ import annotations

import shutil

import pytest
import torch
from train_data import build_train_root

from animate_anyone.media.video import probe
from animate_anyone.models.sizes import TINY_VAE
from tests.models.test_unianimate import released_tiny

FAST = ["--frames", "4", "--steps", "1", "--height", "64"]


def _user_files(cwd, person_inputs) -> None:
    """What a user downloads, at our tiny widths: the .pth, a diffusers VAE, a transformers CLIP."""
    from diffusers import AutoencoderKL
    from transformers import CLIPConfig, CLIPModel

    torch.save(released_tiny().state_dict(), cwd / "unianimate.pth")
    AutoencoderKL(**TINY_VAE).save_pretrained(cwd / "vae")
    text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, vocab_size=49408,
                max_position_embeddings=77, hidden_act="gelu")
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=32,
                  patch_size=4, hidden_act="gelu")
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=32)).save_pretrained(cwd / "clip")
    shutil.copy(person_inputs["ref"], cwd / "ref.png")
    shutil.copy(person_inputs["kps"], cwd / "kps.mp4")


def test_the_released_layout_converts_and_the_result_animates_in_another_process(cli, person_inputs):
    _user_files(cli.cwd, person_inputs)
    done = cli("convert", "ua", "--unianimate", "unianimate.pth", "--vae", "vae", "--clip", "clip")
    assert "wrote ua: UniAnimate (tiny), 530 tensors checked; the released weights are for research use only" \
        in done.stdout.replace("\n", " ")
    manifest = (cli.cwd / "ua" / "manifest.json").read_text()
    assert '"family": "unianimate"' in manifest and "research use only" in manifest
    cli("animate", "--model", "./ua", "--reference", "ref.png", "--pose", "kps.mp4", "--out", "u.mp4", *FAST)
    info = probe(cli.cwd / "u.mp4", count_frames=True)
    assert (info.width, info.height, info.num_frames) == (32, 64, 4)


def test_a_foreign_key_missing_files_and_mixed_flags_are_refused(cli, person_inputs):
    _user_files(cli.cwd, person_inputs)
    state = released_tiny().state_dict()
    state["input_blocks.0.7.weight"] = torch.zeros(2)
    del state["out.2.bias"]
    torch.save(state, cli.cwd / "bad.pth")
    res = cli("convert", "ub", "--unianimate", "bad.pth", "--vae", "vae", "--clip", "clip", check=2)
    text = res.stderr.replace("\n", " ")
    assert "bad.pth (against the released layout, tiny size): 1 unknown key(s): input_blocks.0.7.weight" in text and "input_blocks.0.7.weight" in text
    assert "1 missing key(s): out.2.bias" in text and "Traceback" not in res.stderr
    # what needs no file read is refused before torch loads
    early = cli.without_torch()
    res = early("convert", "uc", "--unianimate", "nothere.pth", "--vae", "vae", "--clip", "clip", check=2)
    assert "missing input(s): --unianimate nothere.pth" in res.stderr.replace("\n", " ")
    res = early("convert", "ud", "--unianimate", "unianimate.pth", "--vae", "vae", "--clip", "clip", "--moore", "m",
                check=2)
    assert "--unianimate takes --vae and --clip only" in res.stderr
    res = early("convert", "ue", "--unianimate", "unianimate.pth", "--clip", "clip", check=2)
    assert "needs --unianimate FILE, --vae DIR and --clip PATH" in res.stderr
    assert not any((cli.cwd / name).exists() for name in ("ub", "uc", "ud", "ue"))


UA_TRAIN = """
default: t
pipelines:
  t:
    data_root: ./data
    dataset: demo
    pose: {backend: mediapipe}
    train:
      family: unianimate
      size: tiny
      output: ua
      device: cpu
      stage0: {steps: 2, lr: 1.0e-3, batch: 2, width: 32, height: 64, checkpoint_every: 2, val_clips: 1, val_frames: 3}
      stage1: {steps: 4, lr: 1.0e-3, batch: 2, width: 32, height: 64, frames: 2, checkpoint_every: 2, val_clips: 1, val_frames: 3, val_steps: 2}
      stage2: {steps: 2, lr: 1.0e-3, batch: 1, width: 32, height: 64, frames: 4, stride: 2, continuation: 0.5, checkpoint_every: 2, val_clips: 1, val_frames: 5, val_steps: 2}
    evaluate: {split: train, clips: 2, frames: 6, width: 32, height: 64, steps: 2, guidance: 1.0, window: 6,
               overlap: 2, device: cpu, dtype: float32, lpips: null}
"""


@pytest.mark.slow
def test_unianimate_trains_then_evaluates_and_animates_in_new_processes(cli):
    """`train` of the UniAnimate family, stage by stage, then `evaluate` of its run and `animate`
    of its folder, each a new process with relative paths."""
    import json

    build_train_root(cli.cwd / "data", videos=2)
    (cli.cwd / "pipelines.yaml").write_text(UA_TRAIN)
    for stage in ("0", "1", "2"):
        out = cli("train", "--stage", stage)
        assert "trained model:" in out.stdout, out.stdout
    assert '"family": "unianimate"' in (cli.cwd / "data" / "models" / "ua-stage2" / "manifest.json").read_text()
    run_id = next((cli.cwd / "data" / "checkpoints").glob("t-s2-*")).name
    scored = cli("evaluate", "--model", run_id)
    assert f"{run_id}@2" in scored.stdout and "untrained" in scored.stdout and "leaderboard:" in scored.stdout
    rows = json.loads(cli("query", "SELECT model_name, status, clips_done FROM eval_runs ORDER BY 1",
                          "--format", "json").stdout)
    assert {(r["model_name"], r["status"], r["clips_done"]) for r in rows} >= {
        (f"{run_id}@2", "finished", 2), ("untrained-unianimate-tiny", "finished", 2), ("still-reference", "finished", 2)}
    snap = json.loads((cli.cwd / "data" / "snapshots" / "demo" / "latest.json").read_text())["snapshot_id"]
    clips = json.loads((cli.cwd / "data" / "snapshots" / "demo" / f"{snap}.json").read_text())["clip_ids"]
    cli("animate", "--model", "ua", "--reference", f"clip:{clips[0]}", "--pose", clips[1], "--frames", "5",
        "--steps", "2", "--height", "64", "--out", "ua.mp4")
    assert probe(cli.cwd / "ua.mp4", count_frames=True).num_frames == 5
