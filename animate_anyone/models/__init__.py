"""The Animate Anyone model: pose guider, reference attention, the two UNets, sizes, checkpoint import."""

from __future__ import annotations

from pathlib import Path


def model_fingerprint(path: Path) -> str:
    """sha256 over every file of a pipeline folder (names and contents): the model's identity."""
    import hashlib

    from animate_anyone.ids import sha256_file

    path = Path(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode() + b"\0" + sha256_file(f).encode())
    return h.hexdigest()


def create_model(out: Path, size: str = "tiny", seed: int = 0) -> Path:
    """A randomly initialised pipeline folder of `size` (tiny: a few MB; full: SD-1.5 shapes)."""
    from animate_anyone.models.sizes import build_components
    from animate_anyone.pipeline import AnimateAnyonePipeline, save_pipeline

    pipe = AnimateAnyonePipeline(**build_components(size, seed=seed))
    return save_pipeline(pipe, Path(out), source={"created": f"random {size}", "seed": seed})


def ensure_model(spec: str, root_path: Path, seed: int = 0) -> Path:
    """Resolve `animate.model`: "tiny-random" builds (once) a seeded tiny model under the data root."""
    if spec == "tiny-random":
        path = Path(root_path) / "models" / "tiny-random"
        if not (path / "model_index.json").is_file():
            create_model(path, "tiny", seed)
        return path
    path = Path(spec)
    return path if path.is_absolute() else Path(root_path) / path
