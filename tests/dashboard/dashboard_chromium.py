"""Start and stop Debian's headless Chromium for the browser tests (never a downloaded one)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
)


def start_chromium(*extra_flags: str) -> webdriver.Chrome:
    """Debian's headless Chromium through Debian's chromedriver, with a fresh profile."""
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("needs Debian's chromium and chromium-driver packages")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="tuner-chromium-")
    for flag in (*CHROMIUM_FLAGS, *extra_flags, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver._tuner_profile = profile  # type: ignore[attr-defined]
    return driver


def stop_chromium(driver: webdriver.Chrome) -> None:
    driver.quit()
    shutil.rmtree(driver._tuner_profile, ignore_errors=True)  # type: ignore[attr-defined]
