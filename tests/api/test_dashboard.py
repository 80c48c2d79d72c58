"""The dashboard in a real headless Chromium (Debian's chromium + chromedriver, selenium).

The pool page and a miner page load without console errors, their charts draw from
the node's real history, and a block the devnet finds appears without a reload.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.api.node import Node

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1200,1600",
)


@pytest.fixture
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    assert not missing, (
        f"{' and '.join(missing)} missing: apt-get install -y chromium chromium-driver "
        "(scripts/test checks this)"
    )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    # A new empty profile each run: with the default one, a Chromium left over from an
    # earlier run (or its stale SingletonLock) makes this one hand over and exit.
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait(driver: Any, what: str, script: str, timeout: float = 90.0) -> Any:
    """Poll a JavaScript expression until it is truthy (no timing is asserted)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script(f"return ({script});")
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"the page never showed {what}")


def console_errors(driver: Any) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


ACCENT_PIXELS = """
const canvas = document.querySelector(arguments[0] + ' canvas');
if (!canvas) return 0;
const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
let n = 0;
for (let i = 0; i < data.length; i += 4) {
  if (data[i] > 200 && data[i + 1] > 130 && data[i + 1] < 190 && data[i + 2] < 60) n++;
}
return n;
"""


@pytest.mark.timeout(300)
def test_pool_and_miner_pages_draw_real_data_and_show_a_new_block_live(
    mined: Node, browser: Any, tmp_path: Path
) -> None:
    browser.get(mined.base + "/")
    wait(browser, "the live socket", "document.getElementById('live').textContent === 'live'")
    wait(browser, "a blocks row", "document.querySelectorAll('#blocks tbody tr').length > 0")
    wait(browser, "the pool chart", "Number(document.getElementById('pool-chart').dataset.max) > 0")
    assert browser.find_element("id", "hr10m").text.endswith("/s")
    assert "stratum+tcp://127.0.0.1:" in browser.find_element("id", "connect").text
    assert browser.execute_script(ACCENT_PIXELS, "#pool-chart") > 0

    # A block found from now on appears without a reload.
    browser.execute_script("window.notReloaded = true;")
    before = browser.execute_script(
        "return [...document.querySelectorAll('#blocks tbody tr')].map(r => r.dataset.hash);"
    )
    wait(
        browser,
        "a new block row",
        "[...document.querySelectorAll('#blocks tbody tr')]"
        f".some(r => !{before!r}.includes(r.dataset.hash))",
    )
    assert browser.execute_script("return window.notReloaded === true;")
    screenshot = tmp_path / "dashboard.png"
    assert browser.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 10_000

    # The miner page, reached through the address form.
    field = browser.find_element("id", "address")
    field.send_keys(mined.address)
    browser.find_element("css selector", "#lookup button").click()
    wait(browser, "the miner page", "!document.getElementById('miner-page').hidden")
    wait(browser, "the miner's worker", "document.querySelector('#workers tbody tr') !== null")
    wait(
        browser, "the miner chart", "Number(document.getElementById('miner-chart').dataset.max) > 0"
    )
    assert browser.find_element("css selector", "#workers tbody td").text == "cpu"
    assert browser.find_element("id", "m-immature").text != "\u2013"  # the placeholder dash
    assert browser.execute_script(ACCENT_PIXELS, "#miner-chart") > 0
    browser.save_screenshot(str(tmp_path / "dashboard-miner.png"))
    assert console_errors(browser) == []
