"""`animate-anyone app` in Chromium: a picture and a pose video animated with a tiny trained model
(the video found on the page and on disk at the asked size), bad input answered next to its field
in the command line's words (and kept in `failures`), the Browse tab's clip overlay, failures,
training run and leaderboard, and a second request waiting in the queue while the first runs."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from app_root import app_root, write_config
from browser import screenshot, start_page

from animate_anyone.media.video import probe

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def page(tmp_path_factory, person_inputs):
    """The page from an operator's folder: a copy of the test data root, ./pipelines.yaml with a
    relative data root, `animate-anyone app` as the README writes it."""
    folder = tmp_path_factory.mktemp("operator")
    shutil.copytree(app_root() / "data", folder / "data", symlinks=True)
    write_config(folder, Path("./data"))
    running = start_page(folder)
    yield running
    running.stop()


def _by(driver, css: str):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, css)


def _wait(driver, what, timeout: float = 60, message: str = ""):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    try:  # the page redraws elements as values arrive: one read may find an element just replaced
        return WebDriverWait(driver, timeout, poll_frequency=0.2,
                             ignored_exceptions=(StaleElementReferenceException,)).until(lambda d: what())
    except Exception as exc:
        raise AssertionError(f"{message}: not seen in {timeout} s; errors on the page: {_errors(driver)}") from exc


def _errors(driver) -> dict:
    from selenium.common.exceptions import StaleElementReferenceException

    try:
        return {e.get_attribute("id"): e.text for e in _by(driver, ".field-error[id]") if e.text}
    except StaleElementReferenceException:
        return {}


def _cells(driver, table_id: str, test) -> list:
    """The shown cells of a table on the page whose text passes ``test`` (Gradio draws the rows as
    spans in a scrolling view; a hidden row of td elements only measures the columns)."""
    from selenium.webdriver.common.by import By

    cells = driver.find_elements(By.XPATH, f"//*[@id='{table_id}']//span[normalize-space(text()) != '']")
    return [c for c in cells if c.is_displayed() and test(c.text.strip())]


def _type(driver, elem_id: str, text: str) -> None:
    box = _by(driver, f"#{elem_id} textarea, #{elem_id} input")[0]
    box.clear()
    box.send_keys(text)


def _open(driver, page) -> None:
    driver.get(page.url)
    _wait(driver, lambda: _by(driver, "#reference input[type=file]"), message="the Animate tab")


def _tab(driver, label: str) -> None:
    buttons = [b for b in _by(driver, "button[role=tab]") if b.text.strip() == label]
    assert buttons, [b.text for b in _by(driver, "button[role=tab]")]
    buttons[0].click()


def test_a_picture_and_a_pose_video_become_a_video_on_the_page(browser, page, person_inputs):
    _open(browser, page)
    _by(browser, "#reference input[type=file]")[0].send_keys(str(person_inputs["ref"]))
    _by(browser, "#motion input[type=file]")[0].send_keys(str(person_inputs["kps"]))
    # the preview: the reference fitted to the pose video's 256x448 (the pipeline sets no size)
    _wait(browser, lambda: "256x448" in _by(browser, "#preview-note")[0].text, message="the fitted preview")
    assert _by(browser, "#preview img")
    _type(browser, "width", "64")  # 64 wide: the height follows the poses' aspect (112)
    _by(browser, "#animate")[0].click()
    _wait(browser, lambda: _by(browser, "#result video[src]") or _errors(browser), timeout=300,
          message="the animation")
    assert not _errors(browser)
    status = _by(browser, "#status")[0].text
    assert "4 frames, 64x112" in status and "by tiny-stage1 (animate-anyone)" in status, status  # frames: the pipeline's
    assert _by(browser, "#grid video[src]") and _by(browser, "#download a[href]")
    videos = sorted((page.folder / "data" / "outputs" / "app").glob("*/ref.kps.mp4"))
    assert len(videos) == 1, videos
    info, grid = probe(videos[0], count_frames=True), probe(videos[0].with_name("ref.kps.grid.mp4"))
    assert (info.width, info.height, info.num_frames) == (64, 112, 4)
    assert (grid.width, grid.height) == (192, 112)  # reference | pose | result
    screenshot(browser, "app-animate")


def test_bad_input_gets_the_command_lines_message_next_to_its_field(browser, page, tmp_path):
    _open(browser, page)
    broken = tmp_path / "holiday.png"
    broken.write_text("not a picture")
    _by(browser, "#reference input[type=file]")[0].send_keys(str(broken))
    _wait(browser, lambda: _errors(browser).get("reference-error"), message="the bad image's message")
    message = _errors(browser)["reference-error"]
    assert "reference image" in message and "holiday.png cannot be read" in message, message
    # the button refuses it too, and the refusal lands in `failures` as the command line's does
    _by(browser, "#animate")[0].click()
    _wait(browser, lambda: "holiday.png cannot be read" in _errors(browser).get("reference-error", "") and
          not _by(browser, "#result video[src]"), message="the refusal")
    screenshot(browser, "app-bad-image")
    # a setting out of its limits, or not a number: the command line's words, beside that setting
    for value, expected in (("0", "--frames must be at least 1; got 0"), ("-2", "--frames must be at least 1; got -2"),
                            ("many", "--frames must be a whole number; got 'many'")):
        _type(browser, "frames", value)
        _by(browser, "#animate")[0].click()
        _wait(browser, lambda: _errors(browser).get("frames-error", "").endswith(expected),
              message=f"frames {value!r}")
    _type(browser, "frames", "4")
    _type(browser, "guidance", "-1")
    _by(browser, "#animate")[0].click()
    _wait(browser, lambda: "--guidance must be at least 0; got -1" in _errors(browser).get("guidance-error", ""),
          message="guidance -1")
    from animate_anyone.tables import DataRoot, read_table

    rows = read_table(DataRoot.from_uri(page.folder / "data"), "failures").to_pylist()
    assert any(r["stage"] == "animate" and r["reason"] == "bad_image" and "holiday.png" in r["message"]
               for r in rows), rows


def test_the_browse_tab_shows_overlays_failures_runs_and_the_leaderboard(browser, page):
    _open(browser, page)
    _tab(browser, "Browse")
    # clips: the table is filled when the page loads; a row's click picks it, the button draws its poses
    _wait(browser, lambda: _cells(browser, "browse-clips", lambda t: t == "c00"), message="the clips table")
    _cells(browser, "browse-clips", lambda t: t == "c00")[0].click()
    _wait(browser, lambda: _by(browser, "#browse-clip-id textarea, #browse-clip-id input")[0].get_attribute("value")
          == "c00", message="the picked clip")
    _by(browser, "#overlay-button")[0].click()
    _wait(browser, lambda: _by(browser, "#overlay video[src]"), timeout=120, message="the overlay video")
    overlay = page.folder / "data" / "outputs" / "app" / "overlays" / "c00.mp4"
    clip = probe(page.folder / "data" / "media" / "clips" / "c00.mp4", count_frames=True)
    drawn = probe(overlay, count_frames=True)
    assert (drawn.width, drawn.height, drawn.num_frames) == (clip.width, clip.height, clip.num_frames)
    screenshot(browser, "app-browse-clips")
    # failures: the request the data root was made with could not be animated (its reference is missing)
    _tab(browser, "Failures")
    _wait(browser, lambda: _cells(browser, "failures", lambda t: "reference image not found" in t),
          message="the failures table")
    # training runs: the stage-1 run, and its loss curve when its row is clicked
    _tab(browser, "Training runs")
    run_cells = _wait(browser, lambda: _cells(browser, "runs", lambda t: t.startswith("t-s1-")),
                      message="the training run")
    run_cells[0].click()
    _wait(browser, lambda: _by(browser, "#loss-curve img"), message="the loss curve")
    # the leaderboard: the trained model beside the still reference, and a grid video
    _tab(browser, "Leaderboard")
    _wait(browser, lambda: "still-reference" in _by(browser, "#leaderboard")[0].text, message="the leaderboard")
    board = _by(browser, "#leaderboard")[0].text
    assert "tiny-stage1" in board and "pose-only-drawing" in board, board
    _wait(browser, lambda: _by(browser, "#board-grid video[src]"), message="a grid video")
    screenshot(browser, "app-browse-leaderboard")


def test_a_second_request_waits_in_the_queue_and_says_so(page, person_inputs, puppet_dir):
    """One GPU slot (the pipeline's gpu_slots): a second request made while the first runs waits
    in the queue, its place reported, and runs once the first is done. The first's motion is a plain puppet
    video, its poses extracted on the fly; the second animates with a UniAnimate model of the store."""
    from gradio_client import Client, handle_file
    from gradio_client.utils import Status

    client = Client(page.url, verbose=False)
    args = dict(ref=handle_file(str(person_inputs["ref"])), kind_="Pose video",
                upload=handle_file(str(person_inputs["kps"])), clip="", model_="ua-tiny", frames_="4",
                steps_="2", guidance_="1", w="32", h="", retarget_=False, fit_="pad", seed_="0")
    video = dict(args, kind_="Video (poses extracted here)", upload=handle_file(str(puppet_dir / "random_0.mp4")),
                 model_="tiny-stage1")
    first = client.submit(**video, api_name="/do_animate")
    deadline = time.monotonic() + 300
    steps = set()  # what the progress bar says while the first runs
    while first.status().code not in (Status.PROGRESS, Status.PROCESSING, Status.FINISHED):
        assert time.monotonic() < deadline, first.status()
        time.sleep(0.05)
    second = client.submit(**args, api_name="/do_animate")  # small files: it joins while the first runs
    queued = set()
    while not (first.done() and second.done()) and time.monotonic() < deadline:
        status = second.status()
        if status.code == Status.IN_QUEUE and not first.done():
            queued.add(status.rank)
        steps |= {p.desc for p in (first.status().progress_data or []) if p.desc}
        time.sleep(0.05)
    outputs = [first.result(), second.result()]
    # the server held it back, first in line, while the first ran (the only other request)
    assert queued == {0}, (queued, [o[0] for o in outputs], [o[4:] for o in outputs])
    assert steps & {"extracting poses", "starting", "denoising"}, steps
    for status_text, result, *errors in outputs:
        assert "4 frames, 32x56" in status_text, (status_text, errors)
        assert result and Path(result["video"] if isinstance(result, dict) else result).is_file()
    assert "poses of random_0.mp4 extracted by mediapipe: a person in" in outputs[0][0], outputs[0][0]
    assert "by tiny-stage1 (animate-anyone)" in outputs[0][0] and "by ua-tiny (unianimate)" in outputs[1][0]
    drawn = sorted((page.folder / "data" / "uploads").glob("*/random_0.poses-mediapipe-4.mp4"))
    assert len(drawn) == 1 and probe(drawn[0], count_frames=True).num_frames == 4
