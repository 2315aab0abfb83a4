"""A writer killed mid-file leaves its hidden temporary file; the next writer there removes it."""
from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from animate_anyone.files import write_text

WRITER = """
import sys, time
import numpy as np
from animate_anyone.media.video import VideoWriter
with VideoWriter(sys.argv[1], 64, 48, 25, preset="ultrafast") as w:
    for i in range(60):
        w.write(np.full((48, 64, 3), i, np.uint8))
    print("writing", flush=True)
    time.sleep(600)
"""


def _start_writer(path: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    return proc


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_a_killed_writers_temporary_file_goes_with_the_next_write_there(tmp_path):
    clips = tmp_path / "clips"
    killed = _start_writer(clips / "a.mp4")
    running = _start_writer(clips / "b.mp4")
    try:
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=30)
        left = _hidden(clips)
        assert len(left) == 2 and all(n.startswith((".a.mp4.", ".b.mp4.")) for n in left), left
        # another machine's leftover (its processes cannot be seen from here) stays
        foreign = clips / ".c.mp4.0badc0de-1-12345678.mp4"
        foreign.write_bytes(b"x")
        # a new process writing anything in the folder clears the dead writer's file only
        subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; "
                        "from animate_anyone.files import write_text; write_text(Path(sys.argv[1]), 'ok')",
                        str(clips / "note.txt")], check=True, timeout=60)
        assert (clips / "note.txt").read_text() == "ok"
        after = _hidden(clips)
        assert [n for n in after if n.startswith(".a.mp4.")] == [], after
        assert len([n for n in after if n.startswith(".b.mp4.")]) == 1, "a running writer's file must stay"
        assert foreign.name in after
    finally:
        running.kill()
        running.wait(timeout=30)
    assert not (clips / "a.mp4").exists() and not (clips / "b.mp4").exists()


def test_a_folder_is_swept_once_per_process(tmp_path):
    write_text(tmp_path / "one.txt", "1")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    from animate_anyone.files import HOST
    late = tmp_path / f".x.{HOST}-{dead}-abcdef12.tmp"
    late.write_text("left by a dead writer after this process swept the folder")
    write_text(tmp_path / "two.txt", "2")
    assert late.exists(), "the folder was swept at this process's first write there, not at every write"
