"""The model store: every model folder's files and the ``DATA_ROOT/models`` layout, in one place.

A model folder is what ``save_pretrained`` writes (``model_index.json`` and one subfolder per
component) plus ``manifest.json``: a fresh id per save, the model family and where the weights
came from (``source``; ``source.trained`` says which run, stage, step and snapshot trained it).
Folders appear whole (written under a temporary name, then renamed), so a reader never loads half
of one. Under a data root:

```
models/NAME                     a model named on the command line (`--model NAME`)
models/OUTPUT-stage<k>          training stage k's result; models/OUTPUT links to the last stage's
models/baselines/NAME           models scored beside the trained ones (the untrained start)
```

Names are plain folder names: ``.``, ``..``, separators and hidden names are refused, and the
store removes nothing that is not strictly inside ``models/`` (``files.remove_tree``).
Training runs keep their checkpoints beside: ``checkpoints/RUN_ID/step-NNNNNNNN/`` (complete ones
hold ``trainer.json``) and ``checkpoints/RUN_ID/job.json`` (what the run was asked to do).

This module knows files, not networks. Each family's module (``FAMILIES``) turns components into
its pipeline: ``PIPELINE`` (the class), ``COMPONENTS`` (its constructor's names, in order) and
``load_pipeline(path, dtype, device)``. It is imported by name when a folder of that family is
loaded or saved, so the store stays below every pipeline.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import struct
import uuid
from pathlib import Path
from typing import Callable

from animate_anyone import storage
from animate_anyone.errors import PermanentError
from animate_anyone.files import check_name, remove_tree, replace_dir, temp_name
from animate_anyone.provenance import now
from animate_anyone.tables.io import DataRoot

INDEX = "model_index.json"
MANIFEST = "manifest.json"
DEFAULT_FAMILY = "animate-anyone"
SIZES = ("tiny", "puppet", "full")  # what models.sizes builds; named here, where torch is not needed
FAMILIES = {"animate-anyone": "animate_anyone.pipeline",  # family → the module that builds its pipeline
            "unianimate": "animate_anyone.unianimate_pipeline"}
CHECKPOINT = re.compile(r"^step-(\d{8})$")
RUN_JOB = "job.json"
# what a component folder must hold: a config, and weights unless it is a processor or scheduler
CONFIGS = ("config.json", "preprocessor_config.json", "scheduler_config.json")
WEIGHTS = (".safetensors", ".bin")


class ModelFolderError(PermanentError, ValueError):
    """A model folder is missing, incomplete or of an unknown family; the message names it."""


# --- one folder ----------------------------------------------------------------------------------

def is_model(path: Path) -> bool:
    """Whether ``path`` holds a saved model (its index is there). A folder in a store's mirror is
    fetched first (again when the store holds a newer save)."""
    if storage.store_of(path) is not None:
        storage.fetch(path)
    return (Path(path) / INDEX).is_file()


def require_model(path: Path, hint: str = "make one with `animate-anyone convert` or `save_pretrained`") -> Path:
    """``path`` if it is a model folder, else an error that names it and says what to do."""
    if not is_model(path):
        raise ModelFolderError(f"model folder {path}: no {INDEX} ({hint})", "missing_model")
    return Path(path)


def check_complete(path: Path, components: tuple[str, ...], weightless: tuple[str, ...] = ()) -> Path:
    """``path`` if every component has its config (and weights unless in ``weightless``); the
    error lists every missing part at once."""
    path = require_model(path)
    missing = []
    for name in components:
        folder = path / name
        if not folder.is_dir() or not any((folder / c).is_file() for c in CONFIGS):
            missing.append(f"{name}/ (no config)")
        elif name not in weightless and not any(f.suffix in WEIGHTS for f in folder.iterdir()):
            missing.append(f"{name}/ (no weights)")
    if missing:
        raise ModelFolderError(f"model folder {path} is incomplete: missing {', '.join(missing)}", "incomplete_model")
    return path


def missing_unianimate_inputs(unianimate, vae, clip) -> str | None:
    """What a UniAnimate import lacks, in one message (None: all there): the released .pth, a
    diffusers VAE folder and a CLIP folder or OpenCLIP file. Files only, so the command line asks
    before torch loads and the import asks again before it reads anything."""
    absent = [f"{flag} {p}" for flag, p, ok in (("--unianimate", unianimate, Path(unianimate).is_file()),
                                               ("--vae", vae, (Path(vae) / "config.json").is_file()),
                                               ("--clip", clip, Path(clip).exists())) if not ok]
    if not absent:
        return None
    return ("missing input(s): " + ", ".join(absent) + " (the UniAnimate .pth, a diffusers VAE folder with "
            "config.json, a CLIP folder or OpenCLIP file)")


def manifest(path: Path) -> dict:
    """The folder's manifest (``{}`` for a folder saved by another tool)."""
    file = Path(path) / MANIFEST
    return json.loads(file.read_text()) if file.is_file() else {}


def family(path: Path) -> str:
    """Which model family a folder holds (folders from before families were recorded: Animate Anyone)."""
    return manifest(path).get("family", DEFAULT_FAMILY)


def trained_by(path: Path) -> dict:
    """What trained the folder: ``{run_id, stage, step, snapshot_id, …}``, or ``{}``."""
    return manifest(path).get("source", {}).get("trained", {})


def save(out: Path, write: Callable[[Path], None], source: dict | None = None,
         family_name: str = DEFAULT_FAMILY) -> Path:
    """``write(folder)`` into a temporary folder, add the manifest, then rename into place: the
    folder at ``out`` is the old one or the new one, never half of either."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(out)
    try:
        write(tmp)
        record = {"saved_id": uuid.uuid4().hex, "saved_at": now().isoformat(),
                  "family": family_name, "source": source or {}}
        (tmp / MANIFEST).write_text(json.dumps(record, indent=2))
        replace_dir(tmp, out)
    except BaseException:
        if tmp.exists():
            remove_tree(tmp, out.parent)
        raise
    return out


def family_module(name: str):
    """The module that builds family ``name``'s pipeline."""
    if name not in FAMILIES:
        raise ModelFolderError(f"model family {name!r} is unknown; known: {', '.join(FAMILIES)}", "unknown_family")
    return importlib.import_module(FAMILIES[name])


def family_of(components: dict) -> str:
    """The family whose pipeline ``components`` make (the one whose ``COMPONENTS`` they hold)."""
    for name in FAMILIES:
        if set(family_module(name).COMPONENTS) <= set(components):
            return name
    raise ModelFolderError(f"components {sorted(components)} make no known family's pipeline", "unknown_family")


def pipeline_of(components: dict, family_name: str | None = None):
    """The family's pipeline made of ``components`` (a dict with at least its ``COMPONENTS``;
    the family found from them when not given)."""
    module = family_module(family_name or family_of(components))
    return module.PIPELINE(**{k: components[k] for k in module.COMPONENTS})


def save_components(components: dict, out: Path, source: dict | None = None,
                    family_name: str | None = None) -> Path:
    """``components`` as a model folder of ``family_name`` (found from them when not given) at
    ``out`` (atomic, with its manifest)."""
    family_name = family_name or family_of(components)
    pipe = pipeline_of(components, family_name)
    return save(out, lambda tmp: pipe.save_pretrained(tmp, safe_serialization=True), source, family_name)


def load_components(path: Path) -> dict:
    """The components of folder ``path`` (float32, eval mode), checked complete first."""
    module = family_module(family(require_model(path)))
    check_complete(path, module.COMPONENTS, module.WEIGHTLESS)
    return module.load_components(Path(path))


def load_pipeline(path: Path, dtype=None, device: str | None = None):
    """The pipeline in folder ``path``, by the family its manifest names (checked complete first)."""
    module = family_module(family(require_model(path)))
    return module.load_pipeline(Path(path), dtype=dtype, device=device)


def fingerprint(path: Path) -> str:
    """A model folder's identity, cheap at any size: every file's name, size and modification
    time, the contents of the small ones (configs, index, and the manifest that every save writes
    with a fresh id) and each safetensors file's header (tensor names, dtypes, shapes, offsets).
    Weights are never read, so a folder of gigabytes costs milliseconds. Any rewrite changes a
    time or the manifest; a copied folder may read as new (a cache miss, never a wrong hit). In a
    store's mirror times are left out: each machine's copy has its own, and the manifest's id
    and the headers already tell saves apart."""
    path = Path(path)
    mirrored = storage.store_of(path) is not None
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        st = f.stat()
        size = st.st_size
        h.update(f"{f.relative_to(path)}\0{size}\0{0 if mirrored else st.st_mtime_ns}\0".encode())
        with open(f, "rb") as fh:
            if f.suffix == ".safetensors" and size >= 8:
                (n,) = struct.unpack("<Q", fh.read(8))
                h.update(fh.read(min(n, size - 8)))
            elif size <= 1 << 20:
                h.update(fh.read())
    return h.hexdigest()


# --- training runs' checkpoints ------------------------------------------------------------------

def checkpoints(run_dir: Path) -> list[Path]:
    """A run's complete checkpoints, oldest first (in a store's mirror: those in the store, whose
    ``trainer.json``, uploaded last, is there)."""
    if storage.store_of(run_dir) is not None:
        found = [p.parent for p in storage.glob(run_dir, "step-*/trainer.json") if CHECKPOINT.match(p.parent.name)]
        return sorted(found, key=checkpoint_step)
    found = [p for p in Path(run_dir).glob("step-*") if CHECKPOINT.match(p.name) and (p / "trainer.json").is_file()]
    return sorted(found, key=checkpoint_step)


def checkpoint_step(path: Path) -> int:
    return int(CHECKPOINT.match(Path(path).name).group(1))


def run_job(run_dir: Path) -> dict | None:
    """What a training run was asked to do (its ``job.json``), or None for a run from before it was kept."""
    file = Path(run_dir) / RUN_JOB
    storage.fetch(file)
    return json.loads(file.read_text()) if file.is_file() else None


# --- the data root's models/ ---------------------------------------------------------------------

class ModelStore:
    """``DATA_ROOT/models``: where named, trained and baseline models live."""

    def __init__(self, data_root: Path | str):
        self.dir = DataRoot.from_uri(data_root).models_dir

    def path(self, name: str) -> Path:
        """``models/NAME`` (a plain name: see the module's notes)."""
        return self.dir / check_name(name, "model name")

    def stage(self, output: str, stage: int) -> Path:
        """Where training stage ``stage`` of ``output`` saves its model."""
        return self.path(f"{check_name(output, 'train.output')}-stage{stage}")

    def baseline(self, name: str) -> Path:
        return self.dir / "baselines" / check_name(name, "baseline name")

    def link(self, name: str, target: Path) -> Path:
        """``models/NAME`` → ``target`` (a relative link, replaced atomically). A real folder in
        the way is removed, only from inside ``models/``."""
        link = self.path(name)
        target = Path(target)
        if target.parent.resolve() != self.dir.resolve():
            raise ModelFolderError(f"cannot link {link} to {target}: not a folder of {self.dir}", "bad_link")
        tmp = temp_name(link)
        os.symlink(target.name, tmp)
        try:
            if link.exists() and not link.is_symlink():
                remove_tree(link, self.dir)
            os.replace(tmp, link)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        storage.publish(link)
        return link

    def resolve(self, spec: str, base_dir: Path | None = None) -> Path:
        """Where a model named on the command line or in the config is: a bare NAME (no path
        separator) is ``models/NAME``; anything else is a path as the user wrote it, relative to
        ``base_dir`` (the working directory for a flag; the pipelines file's folder for the config)."""
        if "/" not in spec and "\\" not in spec and spec not in (".", ".."):
            return self.path(spec)
        path = Path(spec).expanduser()
        return (path if path.is_absolute() else Path(base_dir or Path.cwd()) / path).resolve()
