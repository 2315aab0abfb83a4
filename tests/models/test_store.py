"""The model store: folders appear whole with their manifest, say their family and what trained
them, are checked for completeness, and names stay inside DATA_ROOT/models."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from animate_anyone.models import store
from animate_anyone.models.store import ModelFolderError, ModelStore


def _writer(files: dict[str, str]):
    def write(folder):
        folder.mkdir()
        for name, text in files.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text)
    return write


def test_a_saved_folder_has_its_manifest_family_and_trainer(tmp_path):
    out = tmp_path / "models" / "m"
    files = {"model_index.json": "{}", "unet/config.json": "{}", "unet/w.safetensors": "x", "scheduler/scheduler_config.json": "{}"}
    trained = {"run_id": "r-s1-0123456789ab", "stage": 1, "step": 7, "snapshot_id": "s1"}
    store.save(out, _writer(files), {"trained": trained})
    assert store.is_model(out) and store.family(out) == "animate-anyone" and store.trained_by(out) == trained
    assert store.check_complete(out, ("unet", "scheduler"), weightless=("scheduler",)) == out
    first = store.fingerprint(out)
    store.save(out, _writer(files), {})  # saved again: a new id, so a new identity
    assert store.fingerprint(out) != first and store.trained_by(out) == {}
    assert [p.name for p in out.parent.iterdir()] == ["m"]  # no temporary folder left beside it


def test_a_failed_save_keeps_the_old_folder_and_leaves_nothing_behind(tmp_path):
    out = tmp_path / "models" / "m"
    store.save(out, _writer({"model_index.json": "{}"}), {"created": "first"})

    def broken(folder):
        folder.mkdir()
        (folder / "model_index.json").write_text("{}")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        store.save(out, broken, {"created": "second"})
    assert store.manifest(out)["source"] == {"created": "first"} and [p.name for p in out.parent.iterdir()] == ["m"]


def test_incomplete_and_missing_folders_are_named(tmp_path):
    with pytest.raises(ModelFolderError, match="no model_index.json"):
        store.require_model(tmp_path / "nothing")
    out = store.save(tmp_path / "m", _writer({"model_index.json": "{}", "vae/config.json": "{}"}))
    with pytest.raises(ModelFolderError, match=r"missing vae/ \(no weights\), unet/ \(no config\)"):
        store.check_complete(out, ("vae", "unet"))


def test_names_resolve_inside_models_and_paths_as_written(tmp_path):
    models = ModelStore(tmp_path / "data")
    assert models.resolve("mine") == tmp_path / "data" / "models" / "mine"
    assert models.stage("demo", 2) == tmp_path / "data" / "models" / "demo-stage2"
    assert models.resolve("x/y", tmp_path) == (tmp_path / "x" / "y").resolve()
    for bad in ("..", ".", ".hidden"):
        with pytest.raises(Exception, match="plain name"):
            models.path(bad)


def test_a_new_process_reads_the_family_and_trainer(tmp_path):
    out = store.save(tmp_path / "m", _writer({"model_index.json": "{}"}), {"trained": {"run_id": "r", "step": 3}})
    code = ("import json, sys; from animate_anyone.models import store; "
            "print(json.dumps([store.family(sys.argv[1]), store.trained_by(sys.argv[1])]))")
    res = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, check=True)
    assert json.loads(res.stdout) == ["animate-anyone", {"run_id": "r", "step": 3}]
