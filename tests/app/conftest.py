"""The web page as a person uses it: `animate-anyone app` started as the README writes it, in its
own process from an operator's folder, and driven in a real headless Chromium (Debian's
`chromium` and `chromium-driver`, which `.ci/run` installs) by Selenium."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from browser import CHROMIUM, DRIVER


def pytest_collection_modifyitems(items):
    for item in items:
        if "/app/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium under Selenium (its own chromedriver, no Selenium Manager download)."""
    if not (Path(CHROMIUM).exists() and Path(DRIVER).exists()):
        if os.environ.get("CI"):
            pytest.fail(f"CI must have Chromium and its driver ({CHROMIUM}, {DRIVER}): .ci/run installs them")
        pytest.skip("no Chromium here: apt-get install chromium chromium-driver (what .ci/run does)")
    from selenium import webdriver

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,2000",
                "--lang=en-GB"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(options=opts, service=webdriver.ChromeService(executable_path=DRIVER))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


