"""mc live in a real headless Chromium: a scripted demo mission running in another process
shows up live, the approve button decides its push gate, a cross-site POST is refused."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from engine.demo import prepare_demo
from engine.store import Store
from tests.support.browser import chromium, free_port, live_server
from tests.support.tui_world import write_synthetic_mission

pytestmark = pytest.mark.slow
SCREENSHOT = os.environ.get("MC_LIVE_SCREENSHOT")  # a path: save the page there (docs/live.png)


def wait_until(check: Any, timeout: float = 30, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what or check}")


def pending_approval(db: Path) -> int | None:
    if not db.exists():
        return None
    with Store(db) as store:
        rows = store.query("SELECT id FROM approvals WHERE status = 'pending'")
    return rows[0]["id"] if rows else None


def test_page_follows_a_demo_mission_and_approves_its_push(tmp_path: Path) -> None:
    config = prepare_demo(tmp_path / "demo")
    db = tmp_path / "demo" / "repo" / ".git" / "mc" / "mission.db"
    env = {"MC_REGISTRY": str(tmp_path / "registry.db")}
    errors: list[str] = []
    with live_server(config, env=env) as url, chromium() as browser:
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(url)
        page.wait_for_selector("#conn.live")
        assert page.locator("#plan .empty").inner_text() == "no plan yet"  # no store yet
        log = open(tmp_path / "mission.log", "wb")  # noqa: SIM115
        mission = subprocess.Popen(
            [sys.executable, "-m", "mc_tui", "mission", "--no-ui", "--config", str(config)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **env}, start_new_session=True)
        try:
            # units appear and the merge queue moves, without a reload
            page.wait_for_selector("[data-unit-id]", timeout=30_000)
            page.wait_for_selector("[data-merge-id]", timeout=30_000)
            page.wait_for_selector('[data-merge-id][data-status="promoted"]', timeout=60_000)
            page.wait_for_selector("#workers [data-slot] pre:not(:empty)", timeout=10_000)
            button = page.locator(".approval.pending button.approve")
            button.wait_for(timeout=60_000)
            approval_id = pending_approval(db)
            assert approval_id is not None
            page.wait_for_timeout(300)
            if SCREENSHOT:
                page.screenshot(path=SCREENSHOT)
            button.click()
            page.wait_for_selector(f'[data-approval-id="{approval_id}"].approved', timeout=15_000)
            with Store(db) as store:
                row = store.get("approvals", approval_id)
            assert (row["status"], row["decided_by"]) == ("approved", "web")
            assert mission.wait(timeout=90) == 0, (tmp_path / "mission.log").read_text()[-3000:]
            page.wait_for_function(
                "document.getElementById('mission-status').textContent.includes('completed')",
                timeout=15_000)
            with Store(db) as store:
                spent = store.mission_cost(store.latest_mission()["id"])
            page.wait_for_function(
                f"document.getElementById('cost-total').textContent === '${spent:.2f} of $10.00'",
                timeout=5_000)
            assert page.locator("#events li").count() > 20
            assert "approval.status" in page.locator("#events").inner_text()
        finally:
            if mission.poll() is None:
                os.killpg(mission.pid, 9)
                mission.wait()
            log.close()
    assert errors == []


class _Attacker(BaseHTTPRequestHandler):
    page = b""

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(self.page)

    def log_message(self, *args: Any) -> None:
        pass


def test_cross_site_post_is_refused_and_the_page_can_deny(tmp_path: Path) -> None:
    root = tmp_path / "alpha"
    root.mkdir()
    config = root / "mission-control.toml"
    config.write_text('[target]\nname = "alpha"\npath = "."\n[state]\ndir = "state"\n')
    with Store(root / "state" / "mission.db") as store:
        approval = write_synthetic_mission(store).pending_approval
    db = root / "state" / "mission.db"
    env = {"MC_REGISTRY": str(tmp_path / "registry.db")}
    with live_server(config, env=env) as url, chromium() as browser:
        target = f"{url}/api/projects/alpha/approvals/{approval}/approve"
        _Attacker.page = f"""<!doctype html><body>
<form id="f" method="post" action="{target}"></form>
<script>
fetch("{target}", {{method: "POST", mode: "no-cors", credentials: "include"}})
  .finally(() => document.getElementById("f").submit());
</script></body>""".encode()
        attacker = ThreadingHTTPServer(("127.0.0.1", free_port()), _Attacker)
        threading.Thread(target=attacker.serve_forever, daemon=True).start()
        try:
            context = browser.new_context()
            page = context.new_page()
            page.goto(url)  # the browser holds the dashboard's cookies (same site: 127.0.0.1)
            page.wait_for_selector(f'[data-approval-id="{approval}"] button.approve')
            evil = context.new_page()
            with evil.expect_navigation(url=target):
                evil.goto(f"http://127.0.0.1:{attacker.server_address[1]}/")
            assert "refused" in evil.content() or "CSRF" in evil.content()
            time.sleep(0.3)
            assert pending_approval(db) == approval  # neither the fetch nor the form decided it
            page.locator(f'[data-approval-id="{approval}"] button.deny').click()
            page.wait_for_selector(f'[data-approval-id="{approval}"].denied', timeout=10_000)
            page.locator("#pause").click()
            page.wait_for_selector("#notice:has-text('pause requested')", timeout=10_000)
        finally:
            attacker.shutdown()
    with Store(db) as store:
        row = store.get("approvals", approval)
        commands = store.query("SELECT kind FROM commands")
    assert (row["status"], row["decided_by"]) == ("denied", "web")
    assert [c["kind"] for c in commands] == ["pause"]
