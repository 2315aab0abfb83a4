"""Weights named in a config: a local path (relative to the pipelines file's folder) or
``hf://OWNER/REPO[/PATH]`` from the Hugging Face hub's cache (a download only when online).
One resolver for every part that loads weights (pose models, training's starting parts, the
evaluation's feature networks); each passes the error class its callers catch."""
from __future__ import annotations

from pathlib import Path

from animate_anyone.errors import ConfigError, PermanentError


class WeightsError(PermanentError):
    """Weights named in the config cannot be found or fetched; the message names the field."""


def local_path(spec: str, base_dir: Path | None) -> Path:
    """``spec`` as a path: ``~`` expanded, a relative one taken from ``base_dir``."""
    path = Path(spec).expanduser()
    return path if path.is_absolute() or base_dir is None else Path(base_dir) / path


def from_hub(spec: str, field: str, want: str = "file", error: type[PermanentError] = WeightsError) -> Path:
    """``hf://OWNER/REPO/FILE`` (``want="file"``) or ``hf://OWNER/REPO[/SUBFOLDER]`` (``"dir"``)
    from the hub's cache; unreachable or refused is one ``error`` that says what to do."""
    parts = spec[len("hf://"):].strip("/").split("/")
    if len(parts) < (3 if want == "file" else 2):
        raise ConfigError(f"{field}: {spec!r} is not hf://OWNER/REPO/{'FILE' if want == 'file' else '[PATH]'}")
    repo, sub = "/".join(parts[:2]), "/".join(parts[2:])
    try:
        from huggingface_hub import hf_hub_download, snapshot_download

        if want == "file":
            return Path(hf_hub_download(repo_id=repo, filename=sub))
        # a subfolder, or a diffusers repo's configs and the parts training reads (never its big .ckpt files)
        patterns = [f"{sub}/*"] if sub else ["*.json", "unet/*", "vae/*", "image_encoder/*", "feature_extractor/*"]
        root = Path(snapshot_download(repo_id=repo, allow_patterns=patterns))
        return root / sub if sub else root
    except Exception as exc:  # offline, missing, refused: one clear message
        raise error(f"{field}: cannot get {spec} (not in the Hugging Face cache and the hub is unreachable or "
                    f"refused: {type(exc).__name__}). Download it where there is internet, or set {field} to a "
                    "local path", "missing_weights") from exc


def resolve_weights(spec: str, field: str, base_dir: Path | None, want: str = "file",
                    error: type[PermanentError] = WeightsError) -> Path:
    """The file (``want="file"``) or folder (``"dir"``) that ``spec`` names; a missing one is an
    ``error`` naming the field and the path."""
    if spec.startswith("hf://"):
        return from_hub(spec, field, want, error)
    path = local_path(spec, base_dir)
    if not (path.is_file() if want == "file" else path.is_dir()):
        raise error(f"{field}: no {'file' if want == 'file' else 'folder'} {path}", "missing_weights")
    return path
