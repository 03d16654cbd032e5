"""Shared by the dashboard tests and benchmark: a served log dir and a real headless chromium."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def have_chromium() -> bool:
    return os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)


@contextmanager
def served(log_dir: Path, interval: float = 0.2) -> Iterator[Any]:
    """A real dashboard server on 127.0.0.1, a free port, in a thread."""
    from cs336_basics.dashboard.server import close, make_server

    server = make_server(log_dir, "127.0.0.1", 0, interval=interval)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    try:
        yield server
    finally:
        close(server)
        thread.join(5)


def chrome(width: int = 1400, height: int = 1000, args: tuple[str, ...] = ()) -> Any:
    """Debian's chromium driven by selenium, headless, no driver download (``args``: more
    command-line switches)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    options.add_argument(f"--window-size={width},{height}")
    for arg in args:
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


def wait_for(
    driver: Any, script: str, timeout: float = 10.0, interval: float = 0.02
) -> tuple[Any, float]:
    """Poll ``return <script>`` in the page until truthy; returns (value, seconds waited)."""
    start = time.perf_counter()
    last: Any = None
    while True:
        last = driver.execute_script(f"try {{ return {script}; }} catch (e) {{ return null; }}")
        if last:
            return last, time.perf_counter() - start
        if time.perf_counter() - start > timeout:
            errors = driver.execute_script("return window.__dash && window.__dash.errors")
            raise AssertionError(f"timed out waiting for {script!r} (last {last!r}, {errors})")
        time.sleep(interval)


def wait_until(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def save_screenshot(driver: Any, target: Path) -> Path:
    driver.save_screenshot(str(target))
    shutil.copy(target, "/tmp/dashboard.png")
    return target
