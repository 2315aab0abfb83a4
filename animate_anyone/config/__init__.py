"""``pipelines.yaml``: named pipelines, validated by pydantic, with errors that name the field.

A pipeline says where data lives (``data_root``, a local path or fsspec URI), which dataset the
rows belong to, where its videos come from (URLs, a file of URLs, local paths, or the puppet
world served on loopback) and how ingest treats them.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, model_validator

from animate_anyone.config.base import NAME_PATTERN, _Strict
from animate_anyone.config.data import (
    DETECTORS,
    Clips,
    Download,
    DWPose,
    Ingest,
    MediaPipePose,
    Pose,
    PuppetSource,
    Retries,
    Select,
    ShotDetection,
    Sources,
    check_detector_params,
    detector_class,
)
from animate_anyone.config.deploy import DEPLOYABLE_FLOWS, Deploy, FlowDeployment, Runner
from animate_anyone.config.models import Animate, Augment, Evaluate, FeatureNetSpec, Train, TrainInit, TrainStage
from animate_anyone.errors import ConfigError

__all__ = ["CONFIG_ENV", "DEFAULT_CONFIG", "DETECTORS", "DEPLOYABLE_FLOWS", "MAX_CONFIG_BYTES", "NAME_PATTERN", "Animate", "Clips",
           "DWPose", "Deploy", "Download", "Evaluate", "FeatureNetSpec", "FlowDeployment", "Ingest", "MediaPipePose",
           "PipelineConfig", "PipelinesFile", "Pose", "PuppetSource", "Retries", "Runner", "Select", "ShotDetection",
           "Sources", "Train", "TrainInit", "TrainStage", "Augment", "check_detector_params", "config_path", "detector_class", "load_config",
           "load_file"]

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "pipelines.yaml"
CONFIG_ENV = "ANIMATE_ANYONE_CONFIG"
MAX_CONFIG_BYTES = 4 << 20  # a pipelines file is KBs; anything larger is refused unread


class PipelineConfig(_Strict):
    name: str = ""
    base_dir: str = ""  # the pipelines file's folder: relative paths in it are taken from there
    description: str = ""
    data_root: str = "./data"
    dataset: str = Field("default", pattern=NAME_PATTERN)
    sources: Sources = Sources()
    ingest: Ingest = Ingest()
    pose: Pose = Pose()
    select: Select = Select()
    animate: Animate = Animate()
    train: Train = Train()
    evaluate: Evaluate = Evaluate()
    gpu_slots: int = Field(1, ge=1, le=64)  # size of the global concurrency limit "gpu" (pose, animate, train)
    runner: Runner = Runner()  # where ingest and pose tasks run: threads, or a Dask cluster
    deploy: Deploy = Deploy()


class PipelinesFile(_Strict):
    default: str = "demo"
    pipelines: dict[str, PipelineConfig]

    @model_validator(mode="after")
    def _default_exists(self) -> "PipelinesFile":
        if self.default not in self.pipelines:
            raise ValueError(f"default pipeline {self.default!r} is not among {sorted(self.pipelines)}")
        return self


def _field_path(loc: tuple) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def _explain(path: Path, exc: ValidationError) -> str:
    lines = [f"{path}: invalid pipeline configuration"]
    for err in exc.errors():
        got = err.get("input")
        got_s = repr(got) if not isinstance(got, dict) else "a mapping"
        if len(got_s) > 80:
            got_s = got_s[:77] + "..."
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field (check its spelling)"
        elif err["type"] == "literal_error":
            msg = f"must be one of {err['ctx']['expected']}"
        elif err["type"] == "string_pattern_mismatch" and err["ctx"]["pattern"] == NAME_PATTERN:
            msg = ("must be a plain folder name (letters, digits, '_', '.', '-'; no path separator, not '.', '..' "
                   "or starting with a dot)")
        lines.append(f"  {_field_path(err['loc'])}: {msg}; got {got_s}")
    return "\n".join(lines)


def config_path(path: Path | str | None = None) -> Path:
    """The pipelines file in use: ``path``, ``$ANIMATE_ANYONE_CONFIG``, ./pipelines.yaml, or the bundled one."""
    if path or os.environ.get(CONFIG_ENV):
        return Path(path or os.environ[CONFIG_ENV]).resolve()
    local = Path("pipelines.yaml")
    return local.resolve() if local.exists() else DEFAULT_CONFIG


def load_file(path: Path | str | None = None) -> PipelinesFile:
    """Parse and validate a pipelines file (see :func:`config_path` for which one)."""
    path = config_path(path)
    try:
        if path.exists() and not path.is_file():
            raise ConfigError(f"{path}: not a regular file (a device, pipe or folder); give a pipelines YAML file")
        with open(path, "rb") as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read pipeline configuration ({exc.strerror})") from exc
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES // (1 << 20)} MB; a pipelines file is a few KB "
                          "of YAML (is this the right file?)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); give a pipelines YAML file") from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with 'pipelines', got {type(raw).__name__}")
    try:
        parsed = PipelinesFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_explain(path, exc)) from exc
    named = {name: p.model_copy(update={"name": name, "base_dir": str(path.parent)})
             for name, p in parsed.pipelines.items()}
    return parsed.model_copy(update={"pipelines": named})


def load_config(name: str | None = None, path: Path | str | None = None, **overrides: Any) -> PipelineConfig:
    """PipelineConfig ``name`` (the file's default if None), with non-None top-level ``overrides``."""
    cfg = load_file(path)
    name = name or cfg.default
    if name not in cfg.pipelines:
        raise ConfigError(f"{config_path(path)}: no pipeline named {name!r}; defined: {', '.join(sorted(cfg.pipelines))}")
    pipe = cfg.pipelines[name]
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if overrides:
        try:
            pipe = PipelineConfig.model_validate({**pipe.model_dump(), **overrides})
        except ValidationError as exc:
            raise ConfigError(_explain(Path("command-line options"), exc)) from exc
    return pipe
