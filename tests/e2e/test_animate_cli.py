"""`animate` as a person runs it: a model saved by one process is loaded by another, paths are
taken from where the user stands, flags are checked, and references of any mode and shape work."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from animate_anyone.media.video import probe

REPO = Path(__file__).resolve().parents[2]

FAST = ["--frames", "4", "--steps", "1", "--height", "64"]


def _inputs(cli, person_inputs) -> None:
    shutil.copy(person_inputs["ref"], cli.cwd / "ref.png")
    shutil.copy(person_inputs["kps"], cli.cwd / "kps.mp4")


def test_a_saved_model_is_loaded_by_a_new_process_from_a_relative_path(cli, person_inputs):
    _inputs(cli, person_inputs)
    made = cli("new-model", "models/m")
    assert "wrote models/m" in made.stdout and (cli.cwd / "models" / "m" / "model_index.json").is_file()
    done = cli("animate", "--model", "models/m", "--reference", "ref.png", "--pose", "kps.mp4", "--out", "out.mp4", *FAST)
    info = probe(cli.cwd / "out.mp4", count_frames=True)
    assert (info.width, info.height, info.num_frames) == (32, 64, 4), done.stdout
    assert (cli.cwd / "out.grid.mp4").is_file() and "wrote" in done.stdout
    # a bare name is the data root's, built once; a second process loads what the first saved
    for _ in range(2):
        cli("animate", "--model", "tiny-random", "--reference", "ref.png", "--pose", "kps.mp4", "--out", "t.mp4", *FAST)
    assert (cli.cwd / "data" / "models" / "tiny-random" / "model_index.json").is_file()


def test_a_unianimate_model_is_made_and_animates_through_the_same_command(cli, person_inputs):
    _inputs(cli, person_inputs)
    made = cli("new-model", "models/u", "--family", "unianimate")
    assert "wrote models/u (unianimate, tiny, transformer, seed 0)" in made.stdout
    assert '"family": "unianimate"' in (cli.cwd / "models" / "u" / "manifest.json").read_text()
    # the window flags mean the same for both families; Animate Anyone's window stops at its
    # motion modules' 32 frames, UniAnimate's does not
    for model in ("models/u", "models/m"):
        if model == "models/m":
            cli("new-model", "models/m")
        done = cli("animate", "--model", model, "--reference", "ref.png", "--pose", "kps.mp4", "--out", "win.mp4",
                   "--window", "3", "--overlap", "1", *FAST)
        info = probe(cli.cwd / "win.mp4", count_frames=True)
        assert (info.width, info.height, info.num_frames) == (32, 64, 4), done.stdout
        assert (cli.cwd / "win.grid.mp4").is_file()
        (cli.cwd / "win.grid.mp4").unlink()
    cli("animate", "--model", "models/u", "--reference", "ref.png", "--pose", "kps.mp4", "--out", "w40.mp4",
        "--window", "40", *FAST)
    bad = cli("animate", "--model", "models/m", "--reference", "ref.png", "--pose", "kps.mp4", "--out", "w40.mp4",
              "--window", "40", *FAST, check=2)
    assert "window must be in [1, 32] (the motion modules' position table); got 40" in bad.stderr
    # the temporal Mamba variant: made, then loaded and run by another process
    made = cli("new-model", "models/w", "--family", "unianimate", "--temporal", "mamba")
    assert "wrote models/w (unianimate, tiny, mamba, seed 0)" in made.stdout
    cli("animate", "--model", "models/w", "--reference", "ref.png", "--pose", "kps.mp4", "--out", "w.mp4", *FAST)
    assert probe(cli.cwd / "w.mp4", count_frames=True).num_frames == 4
    for args, says in ((["--family", "sora"], "--family must be one of animate-anyone, unianimate; got 'sora'"),
                       (["--temporal", "lstm", "--family", "unianimate"], "--temporal must be transformer or mamba"),
                       (["--temporal", "mamba"], "--temporal mamba is for --family unianimate")):
        bad = cli.without_torch()("new-model", "models/v", *args, check=2)  # refused before torch loads
        assert says in bad.stderr, args
    assert not (cli.cwd / "models" / "v").exists()


def test_a_relative_model_path_is_taken_from_the_working_directory(cli, person_inputs):
    _inputs(cli, person_inputs)
    res = cli("animate", "--model", "data/models/x", "--reference", "ref.png", "--pose", "kps.mp4", *FAST, check=2)
    assert str(cli.cwd / "data" / "models" / "x") in res.stderr.replace("\n", "")
    assert "data/data" not in res.stderr


@pytest.mark.parametrize("flag, value, says", [
    ("--frames", "0", "--frames"), ("--frames", "-5", "--frames"), ("--frames", "abc", "--frames"),
    ("--steps", "0", "--steps"), ("--height", "0", "--height"), ("--height", "-8", "--height"),
    ("--width", "x", "--width"), ("--guidance", "-1", "--guidance"), ("--fps", "0", "--fps"),
    ("--fit", "diagonal", "--fit"), ("--background", "notacolour", "--background"), ("--device", "tpu", "--device"),
    ("--window", "0", "--window"), ("--window", "-2", "--window"), ("--window", "many", "--window"),
    ("--overlap", "-1", "--overlap"), ("--overlap", "x", "--overlap"), ("--overlap", "24", "--overlap must be smaller"),
])
def test_bad_flags_are_refused_naming_the_flag(cli, person_inputs, flag, value, says):
    _inputs(cli, person_inputs)
    res = cli("animate", "--reference", "ref.png", "--pose", "kps.mp4", flag, value, check=2, timeout=120)
    assert says in (res.stdout + res.stderr) and "Traceback" not in res.stderr
    assert not (cli.cwd / "data" / "outputs").exists()


def test_rgba_greyscale_and_other_shapes_are_used_and_said(cli, person_inputs, shared_fixtures):
    import PIL.Image

    _inputs(cli, person_inputs)
    frame = person_inputs["frame"]
    rgba = PIL.Image.fromarray(frame).convert("RGBA")
    rgba.putalpha(PIL.Image.new("L", rgba.size, 255))
    wide = PIL.Image.new("RGBA", (frame.shape[1] * 2, frame.shape[0]), (0, 0, 0, 0))
    wide.paste(rgba, (frame.shape[1] // 2, 0))
    wide.save(cli.cwd / "wide.png")
    PIL.Image.open(shared_fixtures / "images" / "mimicmotion_demo1.jpg").convert("L").save(cli.cwd / "grey.png")
    res = cli("animate", "--model", "tiny-random", "--reference", "wide.png", "--pose", "kps.mp4", "--out", "w.mp4",
              "--background", "#00ff00", *FAST)
    assert "composited onto #00ff00" in res.stdout and "fitted inside 32x64" in res.stdout.replace("\n", " ")
    grid = probe(cli.cwd / "w.grid.mp4")
    assert (grid.width, grid.height) == (96, 64)
    res = cli("animate", "--model", "tiny-random", "--reference", "grey.png", "--pose", "kps.mp4", "--out", "g.mp4",
              "--fit", "crop", *FAST)
    assert "is L: converted to RGB" in res.stdout


def _readme_block(marker: str) -> list[str]:
    text = (REPO / "README.md").read_text()
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        if marker in block:
            return [line for line in block.replace("\\\n", " ").splitlines() if line.strip()]
    raise AssertionError(f"no README block with {marker!r}")


def test_readme_convert_then_animate_runs_as_written(cli, moore_tiny, shared_fixtures):
    """The README's community-weights example, word for word, with Moore's own RGBA reference and
    pose video (tiny random weights in Moore's layout stand in for the released ones)."""
    fixtures = shared_fixtures
    weights = cli.cwd / "pretrained_weights"
    shutil.copytree(moore_tiny["moore"], weights)
    shutil.copytree(moore_tiny["base"] / "unet", weights / "stable-diffusion-v1-5" / "unet")
    shutil.copytree(moore_tiny["base"] / "vae", weights / "sd-vae-ft-mse")
    shutil.copytree(moore_tiny["base"] / "image_encoder", weights / "image_encoder")
    shutil.copy(fixtures / "images" / "moore_anyone-3_woman.png", cli.cwd / "me.png")
    shutil.copy(fixtures / "pose" / "moore_anyone-video-2_kps.mp4", cli.cwd / "dance_kps.mp4")
    commands = _readme_block("animate-anyone convert")
    assert len(commands) == 2
    for line in commands:
        res = cli(*line.split()[1:], timeout=900)
    out = probe(cli.cwd / "me_dancing.mp4", count_frames=True)
    # the demo pipeline's defaults: 96 frames, 112 high; the 512x768 poses keep their aspect
    assert (out.width, out.height, out.num_frames) == (72, 112, 96)  # the demo pipeline's height
    said = res.stdout.replace("\n", " ")
    assert "RGBA (transparent): composited onto white" in said and "fitted inside 72x112" in said
