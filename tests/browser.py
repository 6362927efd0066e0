"""Pages in headless Chromium (Debian's chromium and chromium-driver, through selenium): console messages,
what rendered, and a screenshot. In CI a missing browser fails the test; elsewhere it skips."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@dataclass
class Page:
    console: list[dict[str, Any]]  # every console message (level, message)
    found: int  # elements matching the selector asked for
    screenshot: Path

    @property
    def errors(self) -> list[str]:
        return [m["message"] for m in self.console if m.get("level") == "SEVERE"]

    def colours(self) -> int:
        """Distinct colours in the screenshot (a blank page has one or two)."""
        from PIL import Image

        with Image.open(self.screenshot) as image:
            return len(image.convert("RGB").getcolors(maxcolors=1 << 20) or [])


def browser_or_skip() -> None:
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        message = f"headless Chromium needs {CHROMIUM} and {CHROMEDRIVER} (Debian: chromium chromium-driver)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def open_page(page: Path, selector: str, screenshot: Path, tmp: Path) -> Page:
    """Load ``page`` (a file) offline; count the elements matching ``selector`` once it has loaded."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser_or_skip()
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp / 'chromium-profile'}", "--window-size=1400,1000"):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.set_page_load_timeout(60)
        driver.get(page.resolve().as_uri())
        found = int(driver.execute_script(f"return document.querySelectorAll({selector!r}).length"))
        driver.save_screenshot(str(screenshot))
        return Page(driver.get_log("browser"), found, screenshot)
    finally:
        driver.quit()
