"""Fixtures for the training tests (the data itself: ``tests/train_data.py``)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from train_data import build_train_root

from animate_anyone.tables.io import Dataset


@pytest.fixture(scope="session")
def train_root_template(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("trainroot") / "data"
    build_train_root(dest)
    return dest


@pytest.fixture()
def train_root(train_root_template, tmp_path) -> Path:
    """A private copy of the template data root (tests write checkpoints and tables into it)."""
    dest = tmp_path / "data"
    shutil.copytree(train_root_template, dest)
    # clip_uri paths point into the template; a copy must use its own files
    ds = Dataset(dest, "demo")
    for part in ds.parts("clips"):
        rows = ds.read_part("clips", part)
        for r in rows:
            r["clip_uri"] = str(dest / "media" / "clips" / Path(r["clip_uri"]).name)
        ds.write("clips", part, rows)
    return dest
