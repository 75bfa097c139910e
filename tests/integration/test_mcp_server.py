"""`mc mcp` through the official MCP SDK's own client: over stdio (the server spawned as a
subprocess) and over streamable HTTP (a server process on a free loopback port, with and
without a bearer token), against the store of a real scripted mission on a real repository."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from engine.registry import Registry
from engine.store import Store
from tests.e2e.conftest import (
    AMBITION_OK,
    OBJECTIVE_MET,
    git,
    make_target,
    plan_entry,
    run_mc,
    worker_entry,
    write_config,
)

CASSETTE = (plan_entry("Add a farewell", "app/bye.py") + AMBITION_OK + OBJECTIVE_MET
            + worker_entry("Add a farewell", "app/bye.py", "def bye():\\n    return 'bye'\\n"))
TOKEN = "s3cret-token-for-tests"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A finished scripted mission on a real repo, registered as `demo` in a temp registry."""
    root = tmp_path_factory.mktemp("mcp")
    make_target(root)
    config = write_config(root, CASSETTE)
    done = run_mc("mission", "--config", str(config), "--no-ui")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    registry_path = root / "registry" / "projects.db"
    Registry(registry_path).register(config, "demo")
    yield {"root": root, "config": config, "registry": registry_path,
           "db": root / "repo" / ".git" / "mc" / "mission.db"}


def server_env(registry: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MC_MCP_TOKEN", "MC_SERVICES_TOKEN")}
    return {**env, "MC_REGISTRY": str(registry), **extra}


def stdio_client(registry: Path, *args: str) -> Client:
    return Client(StdioServerParameters(
        command=sys.executable, args=["-m", "mc_tui", "mcp", *args], env=server_env(registry)))


def data(result: Any) -> dict[str, Any]:
    """The JSON a tool returned (structured content, else its text)."""
    assert not result.is_error, result.content
    if result.structured_content is not None:
        return result.structured_content
    return json.loads(result.content[0].text)


def error_text(result: Any) -> str:
    assert result.is_error, result
    return result.content[0].text


def test_stdio_tools_and_resources_on_a_real_mission(project: dict[str, Any]) -> None:
    async def main() -> None:
        async with stdio_client(project["registry"]) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert {"status", "list_missions", "list_units", "unit_detail", "start_mission",
                    "pause", "resume", "stop", "approve", "deny", "list_projects",
                    "list_backlog", "add_backlog_item"} <= names

            projects = data(await client.call_tool("list_projects", {}))["projects"]
            assert [(p["name"], p["last_status"]) for p in projects] == [("demo", "completed")]

            status = data(await client.call_tool("status", {}))  # the only project: the default
            assert status["project"] == "demo" and status["running"] is False
            (mission,) = status["missions"]
            assert mission["status"] == "completed" and mission["spend_usd"] > 0
            assert mission["units_by_status"] == {"merged": 1}
            assert mission["epoch"]["number"] == 1

            missions = data(await client.call_tool("list_missions", {"project": "demo"}))
            assert [m["id"] for m in missions["missions"]] == [mission["id"]]
            units = data(await client.call_tool("list_units", {"mission_id": mission["id"]}))
            (unit,) = [u for u in units["units"] if u["is_leaf"]]
            assert unit["title"] == "Add a farewell" and unit["status"] == "merged"

            detail = data(await client.call_tool("unit_detail", {"unit_id": unit["id"]}))["unit"]
            assert "+def bye():" in detail["diff"] and "app/bye.py" in detail["diffstat"]
            assert detail["files_changed"] == 1 and detail["attempts"]
            small = data(await client.call_tool(
                "unit_detail", {"unit_id": unit["id"], "max_diff_bytes": 1000}))["unit"]
            assert len(small["diff"]) < 1200

            report = await client.read_resource(f"mc://demo/missions/{mission['id']}/report")
            body = json.loads(report.contents[0].text)
            assert body["mission"]["status"] == "completed"
            assert [u["title"] for u in body["units"] if u["is_leaf"]] == ["Add a farewell"]
            events = await client.read_resource("mc://demo/missions/latest/events?limit=5")
            tail = json.loads(events.contents[0].text)["events"]
            assert len(tail) == 5 and tail == sorted(tail, key=lambda e: e["id"])
            with Store(project["db"]) as store:
                assert tail[-1]["id"] == store.query(
                    "SELECT MAX(id) AS m FROM events WHERE mission_id = ?", (mission["id"],))[0]["m"]

            # clear errors, not crashes
            assert "unknown project 'nope' (registered: demo)" in error_text(
                await client.call_tool("status", {"project": "nope"}))
            assert "mission 99 does not exist" in error_text(
                await client.call_tool("list_units", {"mission_id": 99}))
            assert "unit 'u-nope' does not exist" in error_text(
                await client.call_tool("unit_detail", {"unit_id": "u-nope"}))
            assert "approval 42 does not exist" in error_text(
                await client.call_tool("approve", {"approval_id": 42}))
            assert "is completed: nothing to pause" in error_text(
                await client.call_tool("pause", {}))
            with pytest.raises(MCPError, match="mission 99 does not exist"):
                await client.read_resource("mc://demo/missions/99/report")
            assert (await client.list_tools()).tools  # the server is still up

    anyio.run(main)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_http(registry: Path, *args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mc_tui", "mcp", "--http", "--port", str(port), *args],
        env=server_env(registry, **(env or {})), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/mcp"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("mc mcp --http did not listen")


def stop_http(proc: subprocess.Popen[str]) -> str:
    proc.terminate()
    try:
        _, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err


def test_http_on_loopback_without_a_token(project: dict[str, Any]) -> None:
    proc, url = start_http(project["registry"])
    try:
        async def main() -> None:
            async with Client(url) as client:
                status = data(await client.call_tool("status", {"project": "demo"}))
                assert status["missions"][0]["status"] == "completed"
        anyio.run(main)
        # DNS rebinding: a page on another origin cannot reach the loopback server
        rebound = httpx2.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                              headers={"host": "evil.example", "origin": "http://evil.example",
                                       "accept": "application/json, text/event-stream"})
        assert rebound.status_code in (403, 421), rebound.status_code
    finally:
        err = stop_http(proc)
    assert "Traceback" not in err, err


def test_http_with_a_token_denies_requests_without_it(project: dict[str, Any]) -> None:
    proc, url = start_http(project["registry"], env={"MC_MCP_TOKEN": TOKEN})
    try:
        init = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
        headers = {"accept": "application/json, text/event-stream"}
        missing = httpx2.post(url, json=init, headers=headers)
        wrong = httpx2.post(url, json=init, headers={**headers, "authorization": "Bearer nope"})
        for response in (missing, wrong):
            assert response.status_code == 401
            assert TOKEN not in response.text
            assert response.headers["www-authenticate"].startswith("Bearer")

        async def main() -> None:
            with pytest.raises(Exception):  # noqa: B017 - the SDK raises its transport error
                async with Client(url) as client:
                    await client.call_tool("status", {})
            auth = httpx2.AsyncClient(headers={"authorization": f"Bearer {TOKEN}"})
            async with auth, Client(streamable_http_client(url, http_client=auth)) as client:
                status = data(await client.call_tool("status", {}))
                assert status["missions"][0]["status"] == "completed"
                assert TOKEN not in json.dumps(status)
        anyio.run(main)
    finally:
        stop_http(proc)


def test_non_loopback_bind_without_a_token_is_refused(project: dict[str, Any]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mc_tui", "mcp", "--http", "--host", "0.0.0.0", "--port", "0"],
        env=server_env(project["registry"]), capture_output=True, text=True, timeout=30,
        stdin=subprocess.DEVNULL)
    assert result.returncode == 2
    assert "refusing to serve MCP on 0.0.0.0" in result.stderr
    assert "MC_MCP_TOKEN" in result.stderr


def test_backlog_tools(project: dict[str, Any]) -> None:
    async def main() -> None:
        async with stdio_client(project["registry"]) as client:
            added = data(await client.call_tool("add_backlog_item", {
                "title": "Sanitise user input", "track": "security", "impact": 5, "effort": 2,
                "evidence": "app/greet.py:1"}))
            assert added["created"] and added["score"] == 3.75  # 1.5 x 5 / 2
            again = data(await client.call_tool("add_backlog_item", {
                "title": "sanitise user input!", "track": "security"}))
            assert (again["id"], again["created"]) == (added["id"], False)
            items = data(await client.call_tool("list_backlog", {}))["items"]
            assert [i["title"] for i in items] == ["Sanitise user input"]
            assert items[0]["source"] == "mcp" and items[0]["evidence"] == "app/greet.py:1"
            assert "track: 'docs' is not one of" in error_text(await client.call_tool(
                "add_backlog_item", {"title": "x", "track": "docs"}))

    anyio.run(main)


def test_several_projects_need_a_name_or_a_default(project: dict[str, Any], tmp_path: Path) -> None:
    registry = tmp_path / "projects.db"
    Registry(registry).register(project["config"], "demo")
    other = tmp_path / "other"
    make_target(other)
    Registry(registry).register(write_config(other, CASSETTE), "other")

    async def main() -> None:
        async with stdio_client(registry) as client:
            text = error_text(await client.call_tool("status", {}))
            assert "several projects are registered: name one (registered: demo, other)" in text
            assert "has no missions yet" in error_text(
                await client.call_tool("status", {"project": "other"}))
            assert data(await client.call_tool("status", {"project": "demo"}))["project"] == "demo"
        async with stdio_client(registry, "--config", str(project["config"])) as client:
            assert data(await client.call_tool("status", {}))["project"] == "demo"
        # --config serves its project even when it is not registered
        async with stdio_client(tmp_path / "empty.db", "--config", str(project["config"])) as client:
            (served,) = data(await client.call_tool("list_projects", {}))["projects"]
            assert (served["registered"], served["default"], served["last_status"]) == (
                False, True, "completed")
            assert data(await client.call_tool("status", {}))["missions"][0]["status"] == "completed"

    anyio.run(main)


@pytest.mark.slow
def test_start_a_mission_approve_its_push_and_see_it_finish(tmp_path: Path) -> None:
    make_target(tmp_path)
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", str(origin)], check=True)
    git(tmp_path / "repo", "remote", "add", "origin", str(origin))
    git(tmp_path / "repo", "push", "-q", "origin", "main")
    config = write_config(tmp_path, CASSETTE, '[green_branch]\nauto_push = true\n[hitl]\n'
                          'enabled = true\ngates = ["push"]\npoll_timeout = 60\n')
    registry = tmp_path / "projects.db"
    Registry(registry).register(config, "tiny")
    db = tmp_path / "repo" / ".git" / "mc" / "mission.db"

    async def main() -> None:
        async with stdio_client(registry) as client:
            started = data(await client.call_tool(
                "start_mission", {"objective": "Add a farewell helper", "project": "tiny"}))
            mission_id = started["mission_id"]
            assert Path(started["log"]).is_file()
            approval = None
            with anyio.fail_after(60):
                while approval is None:
                    status = data(await client.call_tool("status", {}))
                    pending = status["missions"][0]["pending_approvals"]
                    approval = pending[0] if pending else None
                    await anyio.sleep(0.2)
            assert status["running"] and status["missions"][0]["id"] == mission_id
            assert status["missions"][0]["objective"] == "Add a farewell helper"
            paused = data(await client.call_tool("pause", {"mission_id": mission_id}))
            assert paused["command"] == "pause"
            data(await client.call_tool("resume", {"mission_id": mission_id}))
            decided = data(await client.call_tool("approve", {"approval_id": approval["id"]}))
            assert (decided["status"], decided["decided_by"]) == ("approved", "mcp")
            with Store(db) as store:
                row = store.get("approvals", approval["id"])
                assert (row["status"], row["decided_by"]) == ("approved", "mcp")
                commands = [c["kind"] for c in store.rows("commands", "mission_id = ?", (mission_id,))]
                assert commands == ["pause", "resume"]
            assert "already decided: approved by mcp" in error_text(
                await client.call_tool("deny", {"approval_id": approval["id"]}))
            with anyio.fail_after(60):
                while True:
                    mission = data(await client.call_tool("status", {}))["missions"][0]
                    if mission["status"] not in ("running", "paused", "pending"):
                        break
                    await anyio.sleep(0.3)
            assert mission["status"] == "completed", mission

    anyio.run(main)
    assert git(tmp_path / "origin.git", "rev-parse", "main") == git(
        tmp_path / "repo", "rev-parse", "mc/green")


def test_start_mission_reports_a_failed_start(project: dict[str, Any], tmp_path: Path) -> None:
    """`mc mission` that exits before creating a mission: its output comes back as the error;
    a target that is no repository is refused before anything is spawned."""
    registry = tmp_path / "projects.db"
    broken = tmp_path / "broken"
    make_target(broken)
    Registry(registry).register(write_config(broken, CASSETTE), "broken")
    (broken / "cassette.toml").unlink()  # the scripted backend is unavailable
    gone = tmp_path / "gone"
    make_target(gone)
    Registry(registry).register(write_config(gone, CASSETTE), "gone")
    (gone / "repo" / ".git" / "HEAD").rename(gone / "repo" / ".git" / "HEAD.bak")

    async def main() -> None:
        async with stdio_client(registry) as client:
            text = error_text(await client.call_tool(
                "start_mission", {"objective": "anything", "project": "broken"}))
            assert "exited with code 2 before creating a mission" in text
            assert "scripted backend" in text and "cassette.toml" in text
            text = error_text(await client.call_tool(
                "start_mission", {"objective": "anything", "project": "gone"}))
            assert "project 'gone': target.path:" in text
            assert not (gone / "repo" / ".git" / "mc" / "mcp-missions").exists()
            assert "must not be empty" in error_text(await client.call_tool(
                "start_mission", {"objective": "  ", "project": "broken"}))

    anyio.run(main)


def test_started_missions_do_not_inherit_the_server_token(monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.services.mcp.operations import mission_env

    monkeypatch.setenv("MC_MCP_TOKEN", TOKEN)
    monkeypatch.setenv("MY_TOKEN_VAR", "other-secret")
    monkeypatch.setenv("KEEP_ME", "1")
    env = mission_env(("MY_TOKEN_VAR",))
    assert "MC_MCP_TOKEN" not in env and "MY_TOKEN_VAR" not in env and env["KEEP_ME"] == "1"


@pytest.mark.slow
def test_start_mission_resumes_an_interrupted_mission_with_that_objective(tmp_path: Path) -> None:
    """`mc mission` adopts an interrupted mission with the same objective (no new row): the
    tool returns that mission's id, found by the pid the process wrote into it."""
    make_target(tmp_path)
    config = write_config(tmp_path, CASSETTE)
    db = tmp_path / "repo" / ".git" / "mc" / "mission.db"
    with Store(db) as store:  # a mission that "crashed" before planning anything
        from engine.config import load_config
        from engine.mission import create_mission

        old = create_mission(store, load_config(config), objective="Add a farewell helper")
        store.set_status("missions", old, "interrupted", ended_at=time.time())
        store.update("missions", old, pid=1, heartbeat_at=time.time() - 3600)
    registry = tmp_path / "projects.db"
    Registry(registry).register(config, "tiny")

    async def main() -> None:
        async with stdio_client(registry) as client:
            started = data(await client.call_tool(
                "start_mission", {"objective": "Add a farewell helper"}))
            assert started["mission_id"] == old
            with anyio.fail_after(60):
                while data(await client.call_tool("status", {}))["running"]:
                    await anyio.sleep(0.3)
            (mission,) = data(await client.call_tool("list_missions", {}))["missions"]
            assert (mission["id"], mission["status"]) == (old, "completed")

    anyio.run(main)
