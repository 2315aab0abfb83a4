"""A data root on an S3-compatible store (moto's server on loopback): tables written as whole
objects and read from the store, files fetched into each machine's own mirror, failures kept per
attempt without a lock, and clear messages for what cannot work."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from s3_server import use_in_this_process

from animate_anyone.errors import ConfigError
from animate_anyone.files import check_data_root, write_json
from animate_anyone.storage import UnusableStore
from animate_anyone.tables import failures
from animate_anyone.tables.catalog import refresh_catalog
from animate_anyone.tables.io import DataRoot, Dataset

pytestmark = pytest.mark.slow


@pytest.fixture()
def root(s3, tmp_path, monkeypatch):
    use_in_this_process(s3, tmp_path / "machine-a", monkeypatch)
    bucket = s3.bucket()
    r = DataRoot.from_uri(f"s3://{bucket}/datasets/dance/")
    check_data_root(r.path)
    return r


def _other_machine(s3, tmp_path, code: str) -> subprocess.CompletedProcess:
    """``code`` in a new process with its own mirror folder: a second machine."""
    env = {**s3.env, "ANIMATE_ANYONE_CACHE": str(tmp_path / "machine-b"), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                          timeout=120)


def test_tables_live_in_the_store_and_another_machine_reads_them(s3, root, tmp_path):
    ds = Dataset(root, "demo")
    ds.write("sources", "src1", [{"source_id": "src1", "url": "https://example.com/a", "status": "ok", "num_clips": 2}])
    bucket = root.store.base.split("/")[0]
    keys = s3.keys(bucket)
    # one object per part, under the prefix; no temporary name ever reached the store
    assert "datasets/dance/tables/sources/dataset=demo/src1.parquet" in keys
    assert not [k for k in keys if ".tmp" in k]
    assert root.uri == f"s3://{bucket}/datasets/dance"
    refresh_catalog(root)
    out = _other_machine(s3, tmp_path, f"""
        from animate_anyone.tables.catalog import query
        from animate_anyone.tables.io import DataRoot, Dataset
        root = DataRoot.from_uri("s3://{bucket}/datasets/dance")
        print(query(root, "SELECT source_id, status, dataset FROM sources").to_pylist())
        print(Dataset(root, "demo").parts("sources"), root.path)
    """)
    assert out.returncode == 0, out.stderr
    assert "[{'source_id': 'src1', 'status': 'ok', 'dataset': 'demo'}]" in out.stdout
    assert str(tmp_path / "machine-b") in out.stdout  # its own mirror, not machine a's
    # the catalog's views name the store's objects (a DuckDB with httpfs reads them there)
    import duckdb

    con = duckdb.connect(str(root.catalog), read_only=True)
    sql = con.execute("SELECT sql FROM duckdb_views() WHERE view_name = 'sources'").fetchone()[0]
    assert f"s3://{bucket}/datasets/dance/tables/sources/dataset=*/*.parquet" in sql
    assert "catalog.duckdb" in " ".join(s3.keys(bucket))


def test_files_go_up_whole_and_come_down_into_another_mirror(s3, root, tmp_path):
    clip = root.clips_dir / "src1" / "c1.mp4"
    clip.parent.mkdir(parents=True)
    from animate_anyone.files import atomic_path

    with atomic_path(clip) as tmp:
        tmp.write_bytes(b"\x00clip bytes" * 1000)
    write_json(root.snapshots_dir / "demo" / "latest.json", {"snapshot_id": "s1"})
    bucket = root.store.base.split("/")[0]
    out = _other_machine(s3, tmp_path, f"""
        from animate_anyone.tables.io import DataRoot
        root = DataRoot.from_uri("s3://{bucket}/datasets/dance")
        path = root.media_path("media/clips/src1/c1.mp4")
        print(path.is_file(), path.stat().st_size, root.owns(path))
        latest = root.snapshots_dir / "demo" / "latest.json"
        print(root.fetch(latest), latest.read_text().replace("\\n", ""))
        print(root.fetch(root.path / "nothing" / "here.json"))
    """)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "True 11000 True"
    assert lines[1].startswith("True") and '"snapshot_id": "s1"' in lines[1]
    assert lines[2] == "False"
    # a pointer rewritten under the same name is fetched again (not the stale copy)
    write_json(root.snapshots_dir / "demo" / "latest.json", {"snapshot_id": "s2"})
    out = _other_machine(s3, tmp_path, f"""
        from animate_anyone.tables.io import DataRoot
        root = DataRoot.from_uri("s3://{bucket}/datasets/dance")
        latest = root.snapshots_dir / "demo" / "latest.json"
        root.fetch(latest)
        print(latest.read_text().replace("\\n", ""))
    """)
    assert '"snapshot_id": "s2"' in out.stdout, out.stderr


def test_a_saved_model_folder_is_loaded_on_another_machine(s3, root, tmp_path):
    from animate_anyone.models import store

    folder = store.ModelStore(root.uri).path("tiny")
    store.save(folder, lambda tmp: (tmp / "model_index.json").parent.mkdir(parents=True, exist_ok=True)
               or (tmp / "model_index.json").write_text("{}"), family_name="animate-anyone")
    store.ModelStore(root.uri).link("latest", folder)
    bucket = root.store.base.split("/")[0]
    keys = s3.keys(bucket, "datasets/dance/models/")
    # the manifest, which marks a folder complete, went up after the rest
    assert keys == ["datasets/dance/models/latest.link", "datasets/dance/models/tiny/manifest.json",
                    "datasets/dance/models/tiny/model_index.json"]
    out = _other_machine(s3, tmp_path, f"""
        from animate_anyone.models import store
        models = store.ModelStore("s3://{bucket}/datasets/dance")
        print(store.is_model(models.path("latest")), store.manifest(models.path("latest"))["saved_id"])
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", store.manifest(folder)["saved_id"]]
    # saved again under the same name (a retrained model): the other machine's copy is replaced
    store.save(folder, lambda tmp: (tmp / "model_index.json").parent.mkdir(parents=True, exist_ok=True)
               or (tmp / "model_index.json").write_text('{"retrained": true}'), family_name="animate-anyone")
    out = _other_machine(s3, tmp_path, f"""
        from animate_anyone.models import store
        path = store.ModelStore("s3://{bucket}/datasets/dance").path("tiny")
        print(store.is_model(path), store.manifest(path)["saved_id"], (path / "model_index.json").read_text())
    """)
    assert out.stdout.split() == ["True", store.manifest(folder)["saved_id"], '{"retrained":', "true}"], out.stderr


def test_failures_are_one_part_per_attempt_so_two_machines_never_overwrite_each_other(s3, root, tmp_path):
    ds = Dataset(root, "demo")
    bucket = root.store.base.split("/")[0]
    code = f"""
        from animate_anyone.errors import MediaError
        from animate_anyone.tables import failures
        from animate_anyone.tables.io import Dataset
        ds = Dataset("s3://{bucket}/datasets/dance", "demo")
        for i in range(3):
            failures.record(ds, "ingest", "src9", "https://example.com/9", MediaError(f"broken {{i}}", "bad_video"))
    """
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)],
                              env={**s3.env, "ANIMATE_ANYONE_CACHE": str(tmp_path / f"m{i}"), "PATH": "/usr/bin:/bin"},
                              stderr=subprocess.PIPE, text=True) for i in range(3)]
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read()
    rows = ds.read("failures").to_pylist()
    assert len(rows) == 9 and {r["message"] for r in rows} == {"broken 0", "broken 1", "broken 2"}
    assert {r["reason"] for r in rows} == {"bad_video"}
    assert failures.clear(ds, "src9") and ds.read("failures").num_rows == 0
    assert not s3.keys(bucket, "datasets/dance/tables/failures/")


def test_what_cannot_work_says_so(s3, tmp_path, monkeypatch):
    use_in_this_process(s3, tmp_path / "m", monkeypatch)
    with pytest.raises(ConfigError, match="credentials do not belong"):
        DataRoot.from_uri("s3://KEY:SECRET@bucket/x")
    with pytest.raises(ConfigError, match="install gcsfs"):
        DataRoot.from_uri("gs://bucket/x")
    with pytest.raises(ConfigError, match="give a bucket"):
        DataRoot.from_uri("s3:///")
    missing = DataRoot.from_uri("s3://no-such-bucket-here/x")
    with pytest.raises(UnusableStore, match="s3://no-such-bucket-here/x: cannot write there"):
        check_data_root(missing.path)


def test_the_cli_runs_on_a_store_and_never_prints_the_credentials(s3, root, tmp_path):
    ds = Dataset(root, "demo")
    ds.write("sources", "src1", [{"source_id": "src1", "url": "https://example.com/a", "status": "ok", "num_clips": 0}])
    failures.record(ds, "ingest", "src2", "https://example.com/b", ValueError("nope"))
    env = {**s3.env, "ANIMATE_ANYONE_CACHE": str(tmp_path / "cli"), "PATH": "/usr/bin:/bin"}
    cli = [str(Path(sys.executable).parent / "animate-anyone")]
    out = subprocess.run([*cli, "query", "--data-root", root.uri, "SELECT item_id, attempt FROM failures"],
                         env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "src2" in out.stdout
    bad = subprocess.run([*cli, "query", "--data-root", f"s3://{s3.key_id}:{s3.secret}@bucket/x", "SELECT 1"],
                         env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "credentials do not belong" in bad.stdout + bad.stderr
    assert s3.secret not in bad.stdout + bad.stderr
    bucket = root.store.base.split("/")[0]
    for key in s3.keys(bucket):
        assert s3.secret.encode() not in s3.read(bucket, key), key
