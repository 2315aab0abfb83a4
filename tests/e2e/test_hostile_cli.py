"""The commands as a hostile (or unlucky) user types them: names that climb out of their folder,
unbounded queries, moved data roots, changed clips, odd references, SQL that escapes its clause,
unusable data roots and configuration files, a table write that fails half-way, native log noise.
Each runs the installed CLI in a new process from a clean folder with relative paths."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import PIL.Image
import pytest
from train_data import CONFIG, build_train_root

from animate_anyone.tables import DataRoot, read_table

NOBODY = 65534
BIN = Path(sys.executable).parent / "animate-anyone"


def _tree(path: Path) -> dict[str, int]:
    return {str(p.relative_to(path)): p.stat().st_size for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture()
def trainable(cli) -> Path:
    build_train_root(cli.cwd / "data", videos=2)
    (cli.cwd / "pipelines.yaml").write_text(CONFIG.format(root="./data", extra1=""))
    return cli.cwd / "data"


# --- 1. names that resolve outside their folder -----------------------------------------------------

HOSTILE_NAMES = ["..", ".", "../x", "a/../..", ".hidden", "/tmp"]


def test_no_command_removes_anything_outside_the_data_roots_folders_whatever_the_names(cli, trainable):
    """`train.output: ".."` once deleted the whole data root. Every such name is refused by the
    configuration, for the output and the dataset alike, and nothing anywhere is removed."""
    (cli.cwd / "keep.txt").write_text("the user's own file beside the data root")
    before_root, before_cwd = _tree(trainable), _tree(cli.cwd)
    good = (cli.cwd / "pipelines.yaml").read_text()
    for name in HOSTILE_NAMES:
        for field, command in (("output: tiny", ["train", "--max-steps", "1"]), ("dataset: demo", ["select"]),
                               ("dataset: demo", ["train", "--max-steps", "1"]), ("output: tiny", ["evaluate"])):
            key = field.split(":")[0]
            (cli.cwd / "pipelines.yaml").write_text(good.replace(field, f"{key}: {json.dumps(name)}"))
            res = cli(*command, check=2)
            assert "must be a plain folder name" in res.stderr and key in res.stderr, (name, command, res.stderr)
        (cli.cwd / "pipelines.yaml").write_text(good)
        assert _tree(trainable) == before_root and _tree(cli.cwd) == before_cwd, name


def test_the_store_refuses_to_remove_or_link_outside_models(tmp_path):
    """Checked at the removal itself, not only in the configuration."""
    from animate_anyone.files import UnsafeRemoval, remove_tree
    from animate_anyone.models.store import ModelStore

    root = tmp_path / "data"
    (root / "models" / "m").mkdir(parents=True)
    (root / "tables").mkdir()
    store = ModelStore(root)
    for bad in ("..", ".", "../tables", "a/b"):
        with pytest.raises(Exception, match="plain name"):
            store.link(bad, root / "models" / "m")
    for path in (root, root / "models", root / "models" / "..", root / "models" / "." , tmp_path):
        with pytest.raises(UnsafeRemoval):
            remove_tree(path, root / "models")
    assert (root / "tables").is_dir() and (root / "models" / "m").is_dir()
    assert remove_tree(root / "models" / "m", root / "models") and not (root / "models" / "m").exists()


def test_only_the_guarded_removal_deletes_trees():
    """`shutil.rmtree` appears in one module, files.py, behind the inside-the-owner check."""
    import ast

    package = Path(__file__).resolve().parents[2] / "animate_anyone"
    users = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr == "rmtree":
                users.add(path.name)
    assert users == {"files.py"}


# --- 2. query limits ---------------------------------------------------------------------------------

def test_a_query_is_stopped_by_its_memory_and_time_limits_and_says_which(cli, trainable):
    res = cli("query", "SELECT list(range) FROM range(300000000)", "--memory-limit", "300MB", check=2, timeout=120)
    assert "memory limit (300MB" in res.stderr and "--memory-limit" in res.stderr
    started = time.monotonic()
    res = cli("query", "SELECT count(*) FROM range(100000000) a, range(100000000) b", "--timeout", "1", check=2,
              timeout=120)
    assert "time limit (1 s" in res.stderr and time.monotonic() - started < 60
    cli.env["ANIMATE_ANYONE_QUERY_TIMEOUT"] = "1.5"
    res = cli("query", "SELECT count(*) FROM range(100000000) a, range(100000000) b", check=2, timeout=120)
    assert "time limit (1.5 s" in res.stderr and "ANIMATE_ANYONE_QUERY_TIMEOUT" in res.stderr
    del cli.env["ANIMATE_ANYONE_QUERY_TIMEOUT"]
    for flag, value in (("--timeout", "0"), ("--timeout", "-1"), ("--timeout", "soon"), ("--memory-limit", "0GB"),
                        ("--memory-limit", "-2GB"), ("--memory-limit", "lots"), ("--temp-limit", "1GB; SET x=1")):
        res = cli("query", "SELECT 1 AS one", flag, value, check=2)
        assert flag in res.stderr, (flag, value, res.stderr)
    assert '"one": 1' in cli("query", "SELECT 1 AS one", "--format", "json", "--memory-limit", "1GB").stdout
    res = cli("query", "INSTALL httpfs", check=2)
    assert "got a INSTALL statement" in res.stderr


def test_a_killed_query_stops_at_once(cli, trainable):
    proc = cli.start("query", "SELECT count(*) FROM range(100000000) a, range(100000000) b", log="q.log")
    time.sleep(6)  # well into the query, even on a loaded machine (a kill during the imports proves nothing)
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    assert time.monotonic() - started < 15 and proc.returncode != 0


# --- 3. a moved data root reads its own clips --------------------------------------------------------

def test_ingested_paths_are_relative_and_a_moved_root_reads_its_own_clips(cli, prefect_url):
    cli = cli.served(prefect_url)
    cli("puppets", "videos", "--count", "1", "--size", "256x448", "--seconds", "6")
    cli("ingest", "videos/puppet_000_000.mp4", "--dataset", "demo", timeout=600)
    cli("pose", "--dataset", "demo", "--backend", "mediapipe", timeout=600)
    clips = json.loads(cli("query", "SELECT clip_id, clip_uri FROM clips", "--format", "json").stdout)
    sources = json.loads(cli("query", "SELECT file_uri FROM sources", "--format", "json").stdout)
    assert clips and all(c["clip_uri"].startswith("media/clips/") for c in clips)
    assert all(s["file_uri"].startswith("media/sources/") for s in sources)
    shutil.move(cli.cwd / "data", cli.cwd / "moved")
    res = cli("render", clips[0]["clip_id"], "--overlay", "--data-root", "moved", "--out", "o.mp4")
    assert (cli.cwd / "o.mp4").is_file() and "wrote" in res.stdout


def test_old_absolute_rows_are_read_from_the_copy(cli, trainable):
    """Rows written before paths were relative name the original's files: a copy reads its own."""
    shutil.copytree(trainable, cli.cwd / "copy")
    shutil.rmtree(trainable)
    clip = read_table(DataRoot.from_uri(cli.cwd / "copy"), "clips").to_pylist()[0]
    assert Path(clip["clip_uri"]).is_absolute()
    cli("render", clip["clip_id"], "--overlay", "--data-root", "copy", "--out", "o.mp4")
    assert (cli.cwd / "o.mp4").is_file()


# --- 4. a clip changed on disk after its snapshot -----------------------------------------------------

def test_a_clip_changed_after_its_snapshot_stops_training_naming_it(cli, trainable):
    snap_id = json.loads((trainable / "snapshots" / "demo" / "latest.json").read_text())["snapshot_id"]
    snap = json.loads((trainable / "snapshots" / "demo" / f"{snap_id}.json").read_text())
    victim = snap["clip_ids"][-1]
    path = trainable / "media" / "clips" / f"{victim}.mp4"
    data = path.read_bytes()
    path.write_bytes(data[:-16] + bytes(16))  # same size, other bytes
    res = cli("train", "--max-steps", "1", check=2)
    assert f"clip {victim}" in res.stderr and "changed" in res.stderr
    assert not (trainable / "checkpoints").exists() or not list((trainable / "checkpoints").glob("*/step-*"))


# --- 5. greyscale and RGBA references --------------------------------------------------------------

def test_a_reference_in_any_mode_is_animated_along_a_pose_video(cli, person_inputs):
    shutil.copy(person_inputs["kps"], cli.cwd / "kps.mp4")
    frame = PIL.Image.fromarray(person_inputs["frame"])
    frame.convert("L").save(cli.cwd / "grey.png")
    rgba = frame.convert("RGBA")
    rgba.putalpha(128)
    rgba.save(cli.cwd / "half.png")
    PIL.Image.new("L", frame.size, 180).save(cli.cwd / "nobody.png")
    for ref in ("grey.png", "half.png", "nobody.png"):
        res = cli("animate", "--model", "tiny-random", "--reference", ref, "--pose", "kps.mp4", "--frames", "3",
                  "--steps", "1", "--height", "64", "--out", f"{ref}.mp4")
        assert (cli.cwd / f"{ref}.mp4").is_file(), res.stderr
    said = " ".join(res.stdout.split())  # rich folds long lines
    assert "no person found" in said and "not retargeted" in said


# --- 6. select --where stays inside its clause ------------------------------------------------------

def test_a_where_that_closes_its_parentheses_is_refused(cli, trainable):
    before = sorted(p.name for p in (trainable / "snapshots" / "demo").glob("s*.json"))
    for where in ("true) OR (1=1", "TRUE) UNION SELECT clip_id, sha256, clip_uri FROM clips --", "1=1; SELECT 1"):
        res = cli("select", "--where", where, check=2)
        assert "not one SQL expression" in res.stderr and "--where" in res.stderr
    assert sorted(p.name for p in (trainable / "snapshots" / "demo").glob("s*.json")) == before
    out = cli("select", "--where", "s.frames_one_person > 0 OR (c.num_frames > 0)")
    assert "selected" in out.stdout


# --- 7 and 9. unusable data roots, and a table write that fails half-way -----------------------------

def _as_nobody() -> list[str]:
    """The command prefix that runs as an unprivileged user (root writes into read-only folders)."""
    if os.geteuid() != 0:
        return []
    if not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: a read-only folder cannot be tested")
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


@pytest.fixture()
def open_dir():
    """A working folder an unprivileged user can enter (pytest's own are private to root)."""
    path = Path(tempfile.mkdtemp(prefix="aa-hostile-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _cli_as_nobody(cli, cwd: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    prefix = _as_nobody()
    env = {**cli.env, "PREFECT_HOME": str(cwd / "prefect-home"), "HOME": str(cwd)}
    probe = subprocess.run([*prefix, str(BIN), "--help"], cwd=cwd, env=env, capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"the environment cannot be run by an unprivileged user here: {probe.stderr[-300:]}")
    return subprocess.run([*prefix, str(BIN), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def test_an_unusable_data_root_is_one_message_and_exit_2(cli, trainable, open_dir):
    (cli.cwd / "afile").write_text("x")
    for command in (["select"], ["train"], ["query", "SELECT 1"], ["evaluate"], ["render", "c00"],
                    ["ingest", "videos/none.mp4"], ["pose"]):
        for root in ("afile", "afile/below"):
            res = cli(*command, "--data-root", root, check=2)
            assert "data root" in res.stderr and "afile" in res.stderr and "Traceback" not in res.stderr, (command, res.stderr)
    ro = open_dir / "ro"
    build_train_root(ro, videos=1)
    for p in [ro, *ro.rglob("*")]:
        p.chmod(0o555 if p.is_dir() else 0o444)
    (open_dir / "pipelines.yaml").write_text(CONFIG.format(root="./ro", extra1=""))
    res = _cli_as_nobody(cli, open_dir, "select")
    assert res.returncode == 2 and "no permission to write there" in res.stderr and str(ro) in res.stderr, res.stderr
    assert "Traceback" not in res.stderr
    res = _cli_as_nobody(cli, open_dir, "query", "SELECT count(*) AS n FROM clips", "--format", "json")
    assert res.returncode == 0 and json.loads(res.stdout)[0]["n"] > 0, res.stderr  # reading needs no writing


def test_a_failed_table_write_leaves_no_half_written_source(cli, prefect_url):
    """The clips partition cannot be written (a file stands where its folder should be: a failure
    root meets too, unlike a read-only folder): the source's shots must not land without its clips."""
    cli = cli.served(prefect_url)
    cli("puppets", "videos", "--count", "1", "--size", "256x448", "--seconds", "5")
    blocker = cli.cwd / "data" / "tables" / "clips" / "dataset=d"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a folder")
    bad = cli("ingest", "videos/puppet_000_000.mp4", "--dataset", "d", check=1)
    assert "failed" in bad.stdout
    root = DataRoot.from_uri(cli.cwd / "data")
    sources = read_table(root, "sources").to_pylist()
    assert [s["status"] for s in sources] == ["failed"]
    assert read_table(root, "shots").num_rows == 0  # none of its parts, not some
    fails = read_table(root, "failures").to_pylist()
    assert [f["stage"] for f in fails] == ["write"] and "dataset=d" in fails[0]["message"]
    assert not [p for p in (cli.cwd / "data" / "tables").rglob(".*.tmp")]
    blocker.unlink()
    cli("ingest", "videos/puppet_000_000.mp4", "--dataset", "d")
    assert [s["status"] for s in read_table(root, "sources").to_pylist()] == ["ok"]
    assert read_table(root, "shots").num_rows > 0 and read_table(root, "clips").num_rows > 0
    assert read_table(root, "failures").num_rows == 0


# --- 8. a configuration that is no file ---------------------------------------------------------------

def test_a_config_that_is_a_device_or_huge_is_refused_unread(cli):
    res = cli("query", "SELECT 1", "--config", "/dev/zero", check=2, timeout=60)
    assert "/dev/zero: not a regular file" in res.stderr
    (cli.cwd / "big.yaml").write_bytes(b"#" * (5 << 20))
    res = cli("select", "--config", "big.yaml", check=2, timeout=60)
    assert "larger than 4 MB" in res.stderr
    (cli.cwd / "bin.yaml").write_bytes(bytes(range(256)))
    res = cli("select", "--config", "bin.yaml", check=2, timeout=60)
    assert "not UTF-8 text" in res.stderr


# --- 10 and the smaller ones: quiet native logs, flags checked before loading ---------------------------

def test_animate_prints_no_native_log_lines_and_checks_flags_first(cli, person_inputs):
    shutil.copy(person_inputs["ref"], cli.cwd / "ref.png")
    shutil.copy(person_inputs["kps"], cli.cwd / "kps.mp4")
    res = cli("animate", "--model", "tiny-random", "--reference", "ref.png", "--pose", "kps.mp4", "--frames", "3",
              "--steps", "1", "--height", "64", "--out", "a.mp4")
    assert "TensorFlow Lite" not in res.stderr + res.stdout and "W0000" not in res.stderr
    verbose = cli("--verbose", "animate", "--model", "tiny-random", "--reference", "ref.png", "--pose", "kps.mp4",
                  "--frames", "3", "--steps", "1", "--height", "64", "--out", "b.mp4")
    assert "TensorFlow Lite" in verbose.stderr
    shutil.rmtree(cli.cwd / "data")
    res = cli("animate", "--model", "tiny-random", "--reference", "ref.png", "--pose", "kps.mp4", "--fit", "squash",
              check=2)
    assert "--fit must be one of pad, crop, stretch; got 'squash'" in res.stderr
    assert not (cli.cwd / "data" / "models").exists()  # refused before any model was made or loaded
