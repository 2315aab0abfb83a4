"""Helpers of the web page's tests: `animate-anyone app` in its own process, and screenshots."""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent / "animate-anyone"
CHROMIUM, DRIVER = shutil.which("chromium") or "/usr/bin/chromium", shutil.which("chromedriver") or "/usr/bin/chromedriver"
IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Page:
    """A running `animate-anyone app` (its process, URL and log)."""

    def __init__(self, proc: subprocess.Popen, url: str, log: Path, folder: Path):
        self.proc, self.url, self.log, self.folder = proc, url, log, folder

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_page(folder: Path, *args: str, env: dict | None = None, timeout: float = 120) -> Page:
    """`animate-anyone app --port P ARGS` from ``folder``; waits until it serves."""
    port = free_port()
    log = folder / f"app-{port}.log"
    environ = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "GRADIO_ANALYTICS_ENABLED": "False",
               "COLUMNS": "250", **(env or {})}
    environ.pop("ANIMATE_ANYONE_CONFIG", None)
    with open(log, "w") as fh:
        proc = subprocess.Popen([str(BIN), "app", "--port", str(port), *args], cwd=folder, env=environ, stdout=fh,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text()
        if re.search(rf"Running on local URL:\s+http://127\.0\.0\.1:{port}", text):
            return Page(proc, f"http://127.0.0.1:{port}", log, folder)
        if proc.poll() is not None:
            raise AssertionError(f"the page exited {proc.returncode}:\n{text[-3000:]}")
        time.sleep(0.3)
    proc.kill()
    raise AssertionError(f"the page did not serve in {timeout} s:\n{log.read_text()[-3000:]}")


def screenshot(driver, name: str) -> None:
    """With ANIMATE_ANYONE_SCREENSHOTS=1, the page as it is now, for the README (docs/images/NAME.png)."""
    if os.environ.get("ANIMATE_ANYONE_SCREENSHOTS"):
        height = driver.execute_script("return document.body.scrollHeight")
        driver.set_window_size(1400, min(max(height, 900), 2600))
        IMAGES.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(IMAGES / f"{name}.png"))
        driver.set_window_size(1400, 2000)
