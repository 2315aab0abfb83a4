"""The animate use case's plan: the pipeline's settings fill what the request leaves out (None),
never what it sets (0 stays 0 and is checked), and paths mean what the user means."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from animate_anyone import animate as lib
from animate_anyone.config import load_config
from animate_anyone.pipeline import model_fingerprint, resolve_model


@pytest.fixture()
def cfg(tmp_path):
    return load_config("demo", data_root=str(tmp_path / "data"))


@pytest.fixture()
def files(tmp_path):
    PIL.Image.new("RGB", (64, 96), (10, 20, 30)).save(tmp_path / "ref.png")
    (tmp_path / "kps.mp4").write_bytes(b"")
    return tmp_path


def _plan(cfg, files, **kw):
    return lib.plan(cfg, lib.AnimateRequest(reference="ref.png", pose="kps.mp4", base_dir=str(files), **kw))


def test_none_takes_the_pipeline_value_and_zero_stays_zero(cfg, files):
    job = _plan(cfg, files)
    assert (job.frames, job.height, job.steps, job.guidance) == (96, 112, 20, 1.0)
    assert job.retarget is False  # the demo's retarget applies to keypoints, not to a pose video
    assert _plan(cfg, files, guidance=0.0).guidance == 0.0
    assert _plan(cfg, files, seed=0).seed == 0


def test_the_size_is_the_requests_or_the_pipelines_pair(cfg, files):
    """The demo animates at its training size, 64x112; a flag replaces the pair, and a pose source
    of another shape keeps its own ratio at the pipeline's height."""
    job = _plan(cfg, files)
    assert (job.width, job.height, job.size_given) == (64, 112, False)
    assert lib.output_size((360, 640), 64, 112, "clip") == (64, 112)  # 9:16 within 2 %
    job = _plan(cfg, files, height=224)
    assert (job.width, job.height, job.size_given) == (None, 224, True)
    assert lib.output_size((360, 640), job.width, job.height, "clip") == (120, 224)
    assert not lib.same_ratio((512, 768), (64, 112))  # Moore's 2:3 poses: the width follows them
    assert lib.output_size((512, 768), None, 112, "kps.mp4") == (72, 112)
    with pytest.raises(lib.AnimateInputError, match="aspect ratio differs"):
        lib.output_size((512, 768), 64, 112, "kps.mp4")  # a request's own pair is not bent


@pytest.mark.parametrize("field, value, flag", [("frames", 0, "--frames"), ("frames", -5, "--frames"),
                                                ("steps", 0, "--steps"), ("height", 0, "--height"),
                                                ("guidance", -1.0, "--guidance"), ("fit", "diagonal", "--fit"),
                                                ("background", "nope", "--background")])
def test_invalid_values_are_refused_naming_the_flag(cfg, files, field, value, flag):
    with pytest.raises(lib.AnimateInputError, match=flag):
        _plan(cfg, files, **{field: value})


def test_model_names_and_paths(cfg, files, tmp_path):
    root = Path(cfg.data_root)
    assert resolve_model("mine", root, files) == root / "models" / "mine"
    assert resolve_model("data/models/x", root, files) == (files / "data" / "models" / "x").resolve()
    assert resolve_model("/abs/m", root, files) == Path("/abs/m")
    job = _plan(cfg, files, model="models/m", out="o.mp4")
    assert job.model == str((files / "models" / "m").resolve()) and job.out == str(files / "o.mp4")
    with pytest.raises(lib.AnimateInputError, match="--retarget needs keypoints"):
        _plan(cfg, files, retarget=True)


@pytest.mark.parametrize("mode, note", [("pad", "fitted inside"), ("crop", "centre-cropped"), ("stretch", "stretched")])
def test_a_reference_of_another_shape_keeps_its_aspect_unless_stretched(mode, note):
    image = np.zeros((100, 200, 3), np.uint8)
    image[:, 50:150] = 200  # a wide image, bright in the middle, dark border
    out, said = lib.fit_image(image, (64, 96), mode)
    assert out.shape == (96, 64, 3) and note in said
    if mode == "pad":  # fitted inside: 64x32 of content, the rest the border colour
        assert (out[0] == 0).all() and (out[-1] == 0).all() and out[48, 32].mean() > 150
    if mode == "crop":  # the centre of the wide image fills the frame
        assert out[48, 32].mean() > 150 and out[48, 0].mean() > 150


def test_rgba_and_greyscale_references_are_converted_and_said(tmp_path):
    rgba = PIL.Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    rgba.putpixel((0, 0), (255, 0, 0, 255))
    rgba.save(tmp_path / "a.png")
    image, notes = lib.read_reference(tmp_path / "a.png", "#0000ff")
    assert tuple(image[0, 0]) == (255, 0, 0) and tuple(image[4, 4]) == (0, 0, 255) and "composited onto #0000ff" in notes[0]
    PIL.Image.new("L", (8, 8), 77).save(tmp_path / "g.png")
    image, notes = lib.read_reference(tmp_path / "g.png")
    assert tuple(image[0, 0]) == (77, 77, 77) and "converted to RGB" in notes[0]


def test_model_fingerprint_reads_no_weights_and_sees_a_changed_layout(tmp_path):
    import torch
    from safetensors.torch import save_file

    folder = tmp_path / "m"
    (folder / "unet").mkdir(parents=True)
    (folder / "model_index.json").write_text("{}")
    save_file({"w": torch.zeros(4)}, str(folder / "unet" / "w.safetensors"))
    first = model_fingerprint(folder)
    assert model_fingerprint(folder) == first
    time.sleep(0.01)
    save_file({"w": torch.ones(4)}, str(folder / "unet" / "w.safetensors"))  # same layout, other values
    second = model_fingerprint(folder)
    assert second != first  # rewritten: another modification time
    save_file({"w": torch.ones(5)}, str(folder / "unet" / "w.safetensors"))
    assert model_fingerprint(folder) not in (first, second)


def test_every_save_gets_its_own_manifest(tmp_path):
    import json

    from animate_anyone.pipeline import create_model

    ids = {json.loads((create_model(tmp_path / "m", "tiny", 0) / "manifest.json").read_text())["saved_id"] for _ in range(2)}
    assert len(ids) == 2
