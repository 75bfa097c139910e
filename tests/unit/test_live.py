"""mc live: snapshot and updates from a real store, the access rules, the bind check."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from engine.registry import Registry
from engine.services.live.app import create_app
from engine.services.live.hub import QUEUE_MAX, ProjectHub
from engine.services.live.projects import ProjectSource
from engine.services.live.security import CSRF_COOKIE, is_loopback
from engine.services.live.server import LiveServerError, bind_token
from engine.store import Store
from mc_tui.cli import cli
from tests.support.tui_world import write_synthetic_mission

TOKEN = "s3cret-token-for-tests-only"


def write_project(root: Path, name: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    config = root / "mission-control.toml"
    config.write_text(f'[target]\nname = "{name}"\npath = "."\n[state]\ndir = "state"\n')
    return config


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Store, int, int]:
    """A project (alpha) with a synthetic mission that has a pending push approval."""
    monkeypatch.setenv("MC_REGISTRY", str(tmp_path / "registry.db"))
    config = write_project(tmp_path / "alpha", "alpha")
    store = Store(tmp_path / "alpha" / "state" / "mission.db")
    mission = write_synthetic_mission(store)
    assert mission.pending_approval is not None
    return config, store, int(mission.mission_id), mission.pending_approval


def client(config: Path, token: str | None = None, **kwargs: object) -> TestClient:
    app = create_app(ProjectSource(config, Registry()), token=token)
    return TestClient(app, base_url="http://127.0.0.1:8780", **kwargs)  # type: ignore[arg-type]


def page_client(config: Path) -> TestClient:
    """A client that loaded the page (so it holds the CSRF cookie)."""
    c = client(config)
    assert c.get("/").status_code == 200
    assert c.cookies.get(CSRF_COOKIE)
    return c


# ---------------------------------------------------------------- reading
def test_snapshot_has_every_pane(project: tuple[Path, Store, int, int]) -> None:
    config, store, mission_id, approval = project
    snap = client(config).get("/api/projects/alpha/snapshot").json()
    assert snap["project"] == "alpha" and snap["mission"]["id"] == mission_id
    assert {u["id"] for u in snap["rows"]["units"]} == {u["id"] for u in store.units(mission_id)}
    assert snap["rows"]["merges"] and snap["rows"]["attempts"] and snap["agent"]
    assert [a["id"] for a in snap["rows"]["approvals"] if a["status"] == "pending"] == [approval]
    assert snap["costs"][-1][1] == pytest.approx(store.mission_cost(mission_id), abs=1e-4)
    assert snap["events"] and snap["last_event_id"] == store.last_event_id()
    assert "config_json" not in json.dumps(snap["mission"])


def test_projects_lists_registered_and_config(project: tuple[Path, Store, int, int],
                                              tmp_path: Path) -> None:
    config, _, _, _ = project
    other = write_project(tmp_path / "beta", "beta")
    Registry().register(other)
    listed = client(config).get("/api/projects").json()
    assert [(p["name"], p["last_status"]) for p in listed] == [("alpha", "running"), ("beta", None)]
    assert client(config).get("/api/projects/beta/snapshot").json()["mission"] is None
    assert client(config).get("/api/projects/nope/snapshot").status_code == 404


def test_hub_sends_updates_with_rows_and_resyncs_a_slow_page(
        project: tuple[Path, Store, int, int]) -> None:
    _, store, mission_id, _ = project

    async def scenario() -> None:
        hub = ProjectHub("alpha", store.path)
        sub, snap = hub.subscribe(None)
        assert json.loads(snap)["mission"]["id"] == mission_id
        unit = store.units(mission_id)[-1]
        assert unit["status"] == "planned"
        store.set_status("units", unit["id"], "ready")
        assert hub.poll() == 1
        kind, data = sub.queue.get_nowait()
        update = json.loads(data)
        assert kind == "update" and update["rows"]["units"][0]["status"] == "ready"
        assert update["events"][0]["kind"] == "unit.status"
        store.add_cost(mission_id=mission_id, role="worker", usd=0.25, model="sonnet")
        hub.poll()
        cost_update = json.loads(sub.queue.get_nowait()[1])
        assert [usd for _, usd in cost_update["cost_add"]] == [0.25]
        assert cost_update["mission"]["total_cost_usd"] == pytest.approx(
            store.mission_cost(mission_id))
        for n in range(QUEUE_MAX + 1):  # a page that reads nothing for a while
            store.append_event("log", mission_id=mission_id, level="info", message=f"m{n}")
            hub.poll()
        assert sub.resync and sub.queue.get_nowait() == ("resync", "")
        hub.unsubscribe(sub)
        hub.close()

    asyncio.run(scenario())


# ---------------------------------------------------------------- changing
def test_approve_needs_the_csrf_proof_and_records_web(project: tuple[Path, Store, int, int]) -> None:
    config, store, _, approval = project
    url = f"/api/projects/alpha/approvals/{approval}/approve"
    c = page_client(config)
    refused = c.post(url)  # the cookie alone (what a cross-site form would carry)
    assert refused.status_code == 403 and "CSRF" in refused.json()["error"]
    proof = {"X-MC-CSRF": c.cookies[CSRF_COOKIE]}
    cross = c.post(url, headers={**proof, "Origin": "http://evil.example"})
    assert cross.status_code == 403 and "cross-site" in cross.json()["error"]
    site = c.post(url, headers={**proof, "Sec-Fetch-Site": "cross-site"})
    assert site.status_code == 403
    assert store.get("approvals", approval)["status"] == "pending"
    ok = c.post(url, headers={**proof, "Origin": "http://127.0.0.1:8780"})
    assert ok.status_code == 200, ok.text
    row = store.get("approvals", approval)
    assert (row["status"], row["decided_by"]) == ("approved", "web")
    again = c.post(f"/api/projects/alpha/approvals/{approval}/deny", headers=proof)
    assert again.status_code == 409 and "already decided" in again.json()["error"]
    assert c.post("/api/projects/alpha/approvals/999/deny", headers=proof).status_code == 404


def test_pause_and_stop_write_commands(project: tuple[Path, Store, int, int]) -> None:
    config, store, mission_id, _ = project
    c = page_client(config)
    proof = {"X-MC-CSRF": c.cookies[CSRF_COOKIE]}
    assert c.post(f"/api/projects/alpha/missions/{mission_id}/pause").status_code == 403
    for command in ("pause", "stop"):
        r = c.post(f"/api/projects/alpha/missions/{mission_id}/{command}", headers=proof)
        assert r.status_code == 200, r.text
    assert [row["kind"] for row in store.take_commands(mission_id)] == ["pause", "stop"]
    assert c.post(f"/api/projects/alpha/missions/{mission_id}/explode", headers=proof).status_code == 404
    store.set_status("missions", mission_id, "completed")
    done = c.post(f"/api/projects/alpha/missions/{mission_id}/stop", headers=proof)
    assert done.status_code == 409 and "completed" in done.json()["error"]


# ---------------------------------------------------------------- access
def test_loopback_only_answers_loopback_host_names(project: tuple[Path, Store, int, int]) -> None:
    config = project[0]
    rebound = client(config).get("/api/projects", headers={"Host": "attacker.example:8780"})
    assert rebound.status_code == 403
    assert client(config).get("/api/projects", headers={"Host": "localhost:8780"}).status_code == 200


def test_token_required_and_never_echoed(project: tuple[Path, Store, int, int]) -> None:
    config, store, _, approval = project
    c = client(config, token=TOKEN, follow_redirects=False)
    assert c.get("/api/projects").status_code == 401
    assert c.get("/api/projects", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert c.get("/").headers["location"] == "/login"
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    listed = c.get("/api/projects", headers=bearer)
    assert listed.status_code == 200 and TOKEN not in listed.text
    # a bearer is proof enough for a change (browsers never attach it on their own)
    assert c.post(f"/api/projects/alpha/approvals/{approval}/deny", headers=bearer).status_code == 200
    assert store.get("approvals", approval)["decided_by"] == "web"
    # the login form: a wrong token is refused; the right one gives a session cookie (not the token)
    assert c.post("/login", data={"token": "nope"}).status_code == 401
    login = c.post("/login", data={"token": TOKEN})
    assert login.status_code == 303 and TOKEN not in login.headers["set-cookie"]
    assert "samesite=strict" in login.headers["set-cookie"].lower()
    page = c.get("/")
    assert page.status_code == 200 and TOKEN not in page.text
    assert c.get("/api/projects").status_code == 200
    snap = c.get("/api/projects/alpha/snapshot")
    assert snap.status_code == 200 and TOKEN not in snap.text
    cross_login = client(config, token=TOKEN).post(
        "/login", data={"token": TOKEN}, headers={"Origin": "http://evil.example"})
    assert cross_login.status_code == 403


def test_non_loopback_bind_needs_a_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MC_SERVICES_TOKEN", raising=False)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    with pytest.raises(LiveServerError, match="MC_SERVICES_TOKEN"):
        bind_token("0.0.0.0", "MC_SERVICES_TOKEN")
    assert bind_token("127.0.0.1", "MC_SERVICES_TOKEN") is None
    config = write_project(tmp_path / "p", "p")
    result = CliRunner().invoke(cli, ["live", "--config", str(config), "--host", "0.0.0.0"])
    assert result.exit_code == 2 and "refusing to bind 0.0.0.0" in result.output
    monkeypatch.setenv("MC_SERVICES_TOKEN", TOKEN)
    assert bind_token("0.0.0.0", "MC_SERVICES_TOKEN") == TOKEN
