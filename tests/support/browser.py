"""A real headless Chromium (Debian's ``chromium`` package) driven by Playwright, and a real
``mc live`` server in a subprocess, for the web dashboard's tests and screenshot.

Never ``playwright install``: the system browser is used. Missing outside CI: the tests skip
with the reason; under ``CI=true`` they fail instead (``.ci/run`` installs the package).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def require_chromium() -> Path:
    if CHROMIUM.exists():
        return CHROMIUM
    reason = f"{CHROMIUM} not found: apt-get install -y chromium"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI must run the browser tests)")
    pytest.skip(reason)


@contextmanager
def chromium() -> Iterator[Any]:
    """A launched browser (Playwright ``Browser``)."""
    path = require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(path), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def live_server(config: Path, *, env: dict[str, str], host: str = "127.0.0.1",
                log: Path | None = None) -> Iterator[str]:
    """``mc live --config CONFIG`` on a free port; yields its base URL, stops it at the end."""
    port = free_port()
    out = open(log or config.parent / "live.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "mc_tui", "live", "--config", str(config), "--host", host,
         "--port", str(port)],
        stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env={**os.environ, **env}, start_new_session=True)
    url = f"http://{host}:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                out.flush()
                raise AssertionError(f"mc live did not start: {Path(out.name).read_text()[-2000:]}")
            time.sleep(0.1)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        out.close()
