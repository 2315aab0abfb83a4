"""`ingest` and `pose` as people run them: three copies at once on one data root, a run killed
at several points and started again, failed items cleaned up and counted in the exit code, and
advice that works when followed."""
from __future__ import annotations

import shutil
import signal
import time

import psutil
import pytest

from animate_anyone import synthetic
from animate_anyone.files import TEMP
from animate_anyone.tables import DataRoot, read_table

SOURCES = ["videos/a.mp4", "videos/b.mp4", "videos/c.mp4", "videos/copy_of_a.mp4", "videos/notes.mp4",
           "ftp://127.0.0.1/videos/a.mp4", "ftp://127.0.0.1/videos/b.mp4"]


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Three two-shot puppet videos (cuts between different dancers and rooms), a copy, a text file."""
    out = tmp_path_factory.mktemp("videos")
    C = synthetic.Camera
    for name, (d1, r1, d2, r2) in zip("abc", [(0, 1, 4, 6), (2, 3, 7, 9), (5, 8, 1, 2)]):
        shots = (synthetic.ShotSpec(75, d1, r1, "wave", C(0.5)), synthetic.ShotSpec(70, d2, r2, "step", C(0.45)))
        synthetic.write_video(synthetic.VideoSpec(name, 256, 448, shots, seed=ord(name)), out)
    shutil.copy(out / "a.mp4", out / "copy_of_a.mp4")
    (out / "notes.mp4").write_text("not a video\n" * 50)
    return out


def _lay_out(cli, videos) -> None:
    shutil.copytree(videos, cli.cwd / "videos", ignore=shutil.ignore_patterns("*.json", "*.npz"))


def _tables(root_path) -> dict:
    root = DataRoot.from_uri(root_path)
    drop = {"fetched_at", "at", "file_uri", "clip_uri", "attempt", "message", "source"}
    out = {}

    def same(v):  # paths inside the data root read alike from any root
        return v.replace(str(root.path), "DATA_ROOT") if isinstance(v, str) else v

    for table in ("sources", "shots", "clips", "failures"):
        rows = [{k: same(v) for k, v in r.items() if k not in drop} for r in read_table(root, table).to_pylist()]
        # failures keep one attempt per run: N runs give N attempts of the same failure
        out[table] = sorted({repr(r) for r in rows}) if table == "failures" else sorted(rows, key=repr)
    return out


def _children(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _gone(procs: list[psutil.Process], timeout: float = 15) -> list[str]:
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    return [" ".join(p.cmdline()[:6]) for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def test_three_runs_at_once_equal_one_run(cli, videos, tmp_path):
    _lay_out(cli, videos)
    single = cli("ingest", *SOURCES, "--data-root", "single", check=1)
    assert "3 ok, 1 duplicate, 3 failed" in single.stdout
    expected = _tables(cli.cwd / "single")
    # the rejected URLs get two ids, the text file's link into the data root is gone
    ids = {r["source_id"] for r in expected["sources"] if r["status"] == "failed"}
    assert len(ids) == 3
    kept = sorted(p.name for p in (cli.cwd / "single" / "media" / "sources").iterdir())
    assert len([k for k in kept if k.endswith(".mp4")]) == 3 and len([k for k in kept if k.endswith(".info.json")]) == 3

    runs = [cli.start("ingest", *SOURCES, "--data-root", "shared", log=f"run{i}.log") for i in range(3)]
    codes = [p.wait(timeout=600) for p in runs]
    logs = "\n".join((cli.cwd / f"run{i}.log").read_text() for i in range(3))
    assert codes == [1, 1, 1], logs[-4000:]
    assert _tables(cli.cwd / "shared") == expected, logs[-4000:]
    assert "FileNotFoundError" not in logs
    leftovers = [p for p in (cli.cwd / "shared").rglob("*") if p.name.endswith(".tmp") or ".partial" in p.name]
    assert not leftovers


def test_a_killed_run_leaves_no_process_and_resumes_to_the_same_tables(cli, videos, prefect_url):
    _lay_out(cli, videos)
    good = SOURCES[:4]
    served = cli.served(prefect_url)  # the killed runs start servers of their own; the others need none
    served("ingest", *good, "--data-root", "once")
    expected = _tables(cli.cwd / "once")
    media = cli.cwd / "data" / "media"

    def fetched() -> list:
        return sorted(media.glob("sources/*.mp4"))

    def cut() -> list:
        return sorted(media.glob("clips/**/*.mp4"))

    # killed at three moments, each as soon as it comes (fixed delays were early on a slow machine
    # and late on a fast one): its server started, one more source fetched, one more clip cut
    for k, (moment, files) in enumerate((("its server started", None), ("a source fetched", fetched),
                                         ("a clip cut", cut))):
        before = files() if files else None
        proc = cli.start("ingest", *good, "--data-root", "data", log=f"kill{k}.log")
        deadline, family = time.monotonic() + 120, []
        while proc.poll() is None and time.monotonic() < deadline:
            family = _children(proc.pid) or family
            if family and (files is None or files() != before):
                break
            time.sleep(0.05)
        family = _children(proc.pid) or family
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert not _gone(family), f"left running after SIGKILL once {moment}"
    served("ingest", *good)  # the demo pipeline's data root is ./data
    assert _tables(cli.cwd / "data") == expected
    # what the killed writers left under hidden temporary names went with the rerun
    assert [p for p in media.rglob(".*") if TEMP.match(p.name)] == []

    # advice that works when followed: a clip deleted by hand
    clip = cut()[0]
    clip.unlink()
    res = served("pose", check=1)
    assert "animate-anyone ingest --refresh" in res.stdout.replace("\n", " ")
    served("ingest", *good, "--refresh")
    assert clip.is_file()
    again = served("pose")
    assert "0 failed" in again.stdout


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "kill"])
def test_ctrl_c_and_kill_stop_the_run_and_its_server(cli, videos, sig):
    _lay_out(cli, videos)
    proc = cli.start("ingest", *SOURCES[:3], log="term.log")
    time.sleep(6)
    family = _children(proc.pid)
    assert family, "the run should have started its temporary Prefect server"
    proc.send_signal(sig)
    proc.wait(timeout=60)
    assert not _gone(family)


def test_all_failed_exits_1_and_a_bad_config_fails_fast_in_one_line(cli):
    res = cli("ingest", "ftp://127.0.0.1/nothing.mp4", check=1)
    assert "0 ok, 0 duplicate, 1 failed" in res.stdout
    (cli.cwd / "pipelines.yaml").write_text("default: demo\npipelines:\n  demo:\n    ingest: {workers: many}\n")
    started = time.monotonic()
    bad = cli("ingest", "videos/a.mp4", check=2)
    assert time.monotonic() - started < 8
    assert "pipelines.demo.ingest.workers" in bad.stderr and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) <= 3
