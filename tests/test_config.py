"""pipelines.yaml: the bundled pipelines load; bad files say which file, field and value."""
from __future__ import annotations

import pytest

from animate_anyone.config import load_config, load_file
from animate_anyone.errors import ConfigError


def test_bundled_pipelines_load():
    cfg = load_file()
    assert cfg.default == "demo" and {"demo", "production"} <= set(cfg.pipelines)
    demo = load_config()
    assert demo.name == "demo" and demo.sources.puppets is not None
    assert demo.ingest.clips.min_seconds == 2 and demo.ingest.clips.max_seconds == 10
    prod = load_config("production")
    assert prod.sources.url_file and prod.ingest.download.max_height == 1080


def test_invalid_yaml_names_file_and_line(tmp_path):
    bad = tmp_path / "pipelines.yaml"
    bad.write_text("default: demo\npipelines:\n  demo:\n    dataset: [unclosed\n")
    with pytest.raises(ConfigError) as e:
        load_file(bad)
    msg = str(e.value)
    assert str(bad) in msg and "not valid YAML" in msg and "line" in msg


@pytest.mark.parametrize("body, field, fragment", [
    ("    ingest: {shots: {detector: magic}}", "pipelines.demo.ingest.shots.detector", "'content'"),
    ("    ingest: {clips: {min_seconds: -1}}", "pipelines.demo.ingest.clips.min_seconds", "-1"),
    ("    ingest: {shots: {detector: content, params: {thresold: 20}}}", "pipelines.demo.ingest.shots", "thresold"),
    ("    sources: {urls: ['ftp://example.org/a.mp4']}", "pipelines.demo.sources.urls", "ftp://"),
    ("    colour: blue", "pipelines.demo.colour", "unknown field"),
    ("    dataset: 'has spaces'", "pipelines.demo.dataset", "has spaces"),
    # deployments and the task runner
    ("    deploy: {pools: {cpu: null, gpu: 0}}", "pipelines.demo.deploy", "pools.gpu: a concurrency limit is at least 1"),
    ("    deploy: {pools: {cpu: null, gpu: -1}}", "pipelines.demo.deploy", "got -1"),
    ("    deploy: {pools: {cpu: many, gpu: 1}}", "pipelines.demo.deploy.pools.cpu", "'many'"),
    ("    deploy: {train: {pool: tpu}}", "pipelines.demo.deploy", "train.pool 'tpu' is not among the pools ['cpu', 'gpu']"),
    ("    deploy: {refresh: {cron: '61 * * * *'}}", "pipelines.demo.deploy.refresh.cron", "not a cron expression"),
    ("    deploy: {refresh: {cron: '0 1 * * *', interval_s: 60}}", "pipelines.demo.deploy.refresh", "not both"),
    ("    deploy: {refresh: {interval_s: 0}}", "pipelines.demo.deploy.refresh.interval_s", "got 0"),
    ("    deploy: {refresh: {interval_s: often}}", "pipelines.demo.deploy.refresh.interval_s", "'often'"),
    ("    deploy: {refresh: {concurrency: 0}}", "pipelines.demo.deploy.refresh.concurrency", "got 0"),
    ("    deploy: {notify: 'https://hooks.example/x'}", "pipelines.demo.deploy.notify", "hooks.example"),
    ("    runner: {type: ray}", "pipelines.demo.runner.type", "'threads'"),
    ("    runner: {type: dask, workers: 0}", "pipelines.demo.runner.workers", "got 0"),
    ("    runner: {type: dask, workers: -2}", "pipelines.demo.runner.workers", "got -2"),
])
def test_invalid_values_name_the_field(tmp_path, body, field, fragment):
    bad = tmp_path / "p.yaml"
    bad.write_text(f"default: demo\npipelines:\n  demo:\n{body}\n")
    with pytest.raises(ConfigError) as e:
        load_file(bad)
    msg = str(e.value)
    assert str(bad) in msg and field in msg and fragment in msg, msg


def test_unknown_pipeline_lists_the_known_ones():
    with pytest.raises(ConfigError) as e:
        load_config("nope")
    assert "demo" in str(e.value) and "production" in str(e.value)


def test_overrides_are_validated():
    assert load_config("demo", data_root="/tmp/x").data_root == "/tmp/x"
    with pytest.raises(ConfigError) as e:
        load_config("demo", dataset="bad name!")
    assert "dataset" in str(e.value)


def test_the_shot_detectors_table_is_the_installed_pyscenedetects():
    """The config checks detector parameters from a table (loading a config does not import
    PySceneDetect); the table must name every detector's class and constructor parameters."""
    import inspect

    from animate_anyone.config import DETECTORS, detector_class

    for name, (_, params) in DETECTORS.items():
        taken = tuple(p for p in inspect.signature(detector_class(name).__init__).parameters if p != "self")
        assert params == taken, name


def test_loading_a_config_does_not_import_opencv():
    import subprocess
    import sys

    code = ("import sys; from animate_anyone.config import load_config; load_config('demo'); "
            "print(sorted(m for m in ('scenedetect', 'cv2', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
