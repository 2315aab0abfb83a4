"""UniAnimate's released layout imported the way a user does it: `convert --unianimate FILE --vae
DIR --clip DIR` in one process, `animate --model` of the result in another, relative paths; bad
files and mixed flags refused with what is wrong and nothing written."""
from __future__ import annotations

import shutil

import torch

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
    res = cli("convert", "uc", "--unianimate", "nothere.pth", "--vae", "vae", "--clip", "clip", check=2)
    assert "missing input(s): --unianimate nothere.pth" in res.stderr.replace("\n", " ")
    res = cli("convert", "ud", "--unianimate", "unianimate.pth", "--vae", "vae", "--clip", "clip", "--moore", "m",
              check=2)
    assert "--unianimate takes --vae and --clip only" in res.stderr
    res = cli("convert", "ue", "--unianimate", "unianimate.pth", "--clip", "clip", check=2)
    assert "needs --unianimate FILE, --vae DIR and --clip PATH" in res.stderr
    assert not any((cli.cwd / name).exists() for name in ("ub", "uc", "ud", "ue"))
