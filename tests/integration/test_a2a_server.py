"""`mc a2a` through the a2a-sdk's own client against the real server on a loopback port:
the card, a scripted mission run as a streamed task, mission status, cancel, the token."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import anyio
import httpx
import pytest
import uvicorn
from a2a.client import A2ACardResolver, A2AClientError, Client, ClientConfig, ClientFactory
from a2a.helpers import new_data_part
from a2a.types import (
    CancelTaskRequest,
    GetTaskRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    StreamResponse,
    TaskState,
)

from engine.registry import Registry
from engine.services.a2a.projects import Project, Projects
from engine.services.a2a.server import ServerSettings, build_app
from engine.services.a2a.tasks import TaskMap
from engine.store import Store
from tests.e2e.conftest import (
    AMBITION_OK,
    OBJECTIVE_MET,
    git,
    leftover_processes,
    make_target,
    plan_entry,
    worker_entry,
    write_config,
)

TITLE = "Add a farewell"
FAREWELL = worker_entry(TITLE, "app/bye.py", "def bye():\\n    return 'bye'\\n")
SLOW_WORKER = f'''
[[interaction]]
role = "worker"
when = {{ unit_title = "{TITLE}" }}
actions = [{{ type = "sleep", seconds = 120 }}]
'''
A2A_ON = "[a2a]\nenabled = true\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def project(root: Path, cassette: str, extra: str = "") -> Path:
    make_target(root)
    return write_config(root, plan_entry(TITLE, "app/bye.py") + AMBITION_OK + OBJECTIVE_MET
                        + cassette, A2A_ON + extra)


@contextmanager
def running_server(config: Path, tmp_path: Path, token: str | None = None) -> Iterator[ServerSettings]:
    """The real app under uvicorn in a thread, on a free loopback port: the project of
    ``config`` ("e2e") by default, and whatever ``tmp_path/projects.db`` registers."""
    settings = ServerSettings("127.0.0.1", free_port(), token)
    projects = Projects(registry=Registry(tmp_path / "projects.db"),
                        default=Project("e2e", config))
    app = build_app(settings, projects, TaskMap(tmp_path / "a2a-tasks.sqlite"))
    server = uvicorn.Server(uvicorn.Config(app, host=settings.host, port=settings.port,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.02)
    try:
        yield settings
    finally:
        server.should_exit = True
        thread.join(10)


@asynccontextmanager
async def a2a_client(settings: ServerSettings, token: str | None = None) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(timeout=60, headers=headers) as http:
        card = await A2ACardResolver(http, settings.url).get_agent_card()
        client = ClientFactory(ClientConfig(httpx_client=http)).create(card)
        yield client


def user_message(text: str, data: dict | None = None, task_id: str = "") -> SendMessageRequest:
    parts = [Part(text=text)] + ([new_data_part(data)] if data else [])
    return SendMessageRequest(message=Message(
        role=Role.ROLE_USER, message_id=os.urandom(8).hex(), task_id=task_id, parts=parts))


def texts(response: StreamResponse) -> list[str]:
    kind = response.WhichOneof("payload")
    if kind == "status_update":
        return [p.text for p in response.status_update.status.message.parts if p.text]
    if kind == "message":
        return [p.text for p in response.message.parts if p.text]
    return []


def db_of(config: Path) -> Path:
    return config.parent / "repo" / ".git" / "mc" / "mission.db"


def test_card_run_a_mission_streamed_to_completed_then_status(tmp_path: Path) -> None:
    config = project(tmp_path, FAREWELL)
    other = project(tmp_path / "other", FAREWELL)
    Registry(tmp_path / "projects.db").register(project(tmp_path / "third", FAREWELL), "other")

    async def scenario(settings: ServerSettings) -> None:
        async with a2a_client(settings) as client:
            card = await A2ACardResolver(httpx.AsyncClient(), settings.url).get_agent_card()
            assert card.name == "Mission Control" and card.version
            assert card.capabilities.streaming
            assert [s.id for s in card.skills] == ["run-mission", "mission-status"]
            assert card.supported_interfaces[0].url == settings.url + "/a2a"
            assert not card.security_schemes  # no token: loopback only, no scheme

            states, updates, artifacts, task_id = [], [], [], ""
            async for response in client.send_message(
                    user_message(TITLE, {"skill": "run-mission", "project": "e2e"})):
                kind = response.WhichOneof("payload")
                if kind == "task":
                    task_id = response.task.id
                elif kind == "status_update":
                    states.append(response.status_update.status.state)
                    updates.extend(texts(response))
                elif kind == "artifact_update":
                    artifacts.append(response.artifact_update.artifact.name)
            assert states[0] == TaskState.TASK_STATE_WORKING
            assert states[-1] == TaskState.TASK_STATE_COMPLETED, updates
            joined = "\n".join(updates)
            for fact in ("mission #1 started on project e2e", "epoch 1 started",
                         f"({TITLE}) merged", "mission #1 completed"):
                assert fact in joined, joined
            assert artifacts == ["mission-summary", "mission-report"]

            task = await client.get_task(GetTaskRequest(id=task_id))
            assert task.status.state == TaskState.TASK_STATE_COMPLETED
            summary = task.artifacts[0].parts[0].text
            assert "mission #1: completed" in summary and "units: 1 merged" in summary
            report = task.artifacts[1].parts[0].data.struct_value
            assert report["mission"]["status"] == "completed"

            answer = [r async for r in client.send_message(
                user_message("", {"skill": "mission-status", "project": "e2e", "mission_id": 1}))]
            assert answer[0].WhichOneof("payload") == "message"
            text = texts(answer[0])[0]
            assert "mission #1: completed" in text and "spend: $0.10" in text
            data = answer[0].message.parts[1].data.struct_value
            assert data["units"]["merged"] == 1 and data["epoch"]["number"] == 1

            unknown = [r async for r in client.send_message(user_message("status nope"))]
            assert "unknown project 'nope': known projects are e2e, other" in texts(unknown[0])[0]
            # a project registered while the server runs is served at once
            Registry(tmp_path / "projects.db").register(other, "later")
            fresh = [r async for r in client.send_message(
                user_message("", {"skill": "mission-status", "project": "later"}))]
            assert "project 'later' has no missions yet" in texts(fresh[0])[0]

    with running_server(config, tmp_path) as settings:
        anyio.run(scenario, settings)
    repo = tmp_path / "repo"
    assert git(repo, "show", "mc/green:app/bye.py").startswith("def bye")
    mission = Store(db_of(config)).latest_mission()
    assert mission["status"] == "completed" and mission["objective"] == TITLE


def test_cancel_stops_the_mission_then_the_task_is_canceled(tmp_path: Path) -> None:
    config = project(tmp_path, SLOW_WORKER)
    db = db_of(config)

    async def scenario(settings: ServerSettings) -> None:
        async with a2a_client(settings) as client:
            task_id, seen = "", []
            async for response in client.send_message(user_message(TITLE)):
                if response.WhichOneof("payload") == "task":
                    task_id = response.task.id
                seen.extend(texts(response))
                if any("epoch 1 running" in t for t in seen):
                    break
            deadline = time.monotonic() + 30  # the slow agent is at work
            while not Store(db).query("SELECT 1 FROM attempts WHERE role = 'worker' "
                                      "AND status = 'running'"):
                assert time.monotonic() < deadline, seen
                await anyio.sleep(0.05)
            # the target is busy: a second mission is refused with the reason, nothing else
            second = [r async for r in client.send_message(user_message("Something else"))]
            final = second[-1].status_update.status
            assert final.state == TaskState.TASK_STATE_FAILED
            assert "is running a mission on this target" in final.message.parts[0].text
            started = time.monotonic()
            task = await client.cancel_task(CancelTaskRequest(id=task_id))
            assert time.monotonic() - started < 60  # the agent was cancelled, not awaited
            assert task.status.state == TaskState.TASK_STATE_CANCELED
            assert "stopped" in task.status.message.parts[0].text
            again = await client.get_task(GetTaskRequest(id=task_id))
            assert again.status.state == TaskState.TASK_STATE_CANCELED

    with running_server(config, tmp_path) as settings:
        anyio.run(scenario, settings)
    store = Store(db)
    mission = store.latest_mission()
    assert mission["status"] == "stopped" and mission["outcome"] == "stopped by the user"
    assert store.query("SELECT kind FROM commands")[0]["kind"] == "stop"
    assert not store.query("SELECT 1 FROM attempts WHERE status = 'running'")
    owner = int(mission["pid"])
    with pytest.raises(ProcessLookupError):
        os.kill(owner, 0)  # the mission process ended (and was reaped)


def test_a_token_is_required_and_compared_when_set(tmp_path: Path) -> None:
    config = project(tmp_path, FAREWELL)
    token = "a2a-test-token-" + os.urandom(8).hex()

    async def scenario(settings: ServerSettings) -> None:
        async with httpx.AsyncClient(timeout=30) as http:
            card = await A2ACardResolver(http, settings.url).get_agent_card()  # public
            scheme = card.security_schemes["bearer"].http_auth_security_scheme
            assert scheme.scheme == "Bearer"
            assert "bearer" in card.security_requirements[0].schemes
            assert token not in str(card)
        for presented in (None, "wrong-" + token, token[:-1]):
            async with a2a_client(settings, presented) as client:
                with pytest.raises(A2AClientError) as denied:
                    [r async for r in client.send_message(user_message("status"))]
                assert "401" in str(denied.value) or "nauthorized" in str(denied.value)
        async with httpx.AsyncClient(timeout=30) as http:
            raw = await http.post(settings.url + "/a2a", json={
                "jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": "x"}})
            assert raw.status_code == 401 and token not in raw.text
        async with a2a_client(settings, token) as client:
            answer = [r async for r in client.send_message(user_message("status"))]
            assert "no missions yet" in texts(answer[0])[0]

    with running_server(config, tmp_path, token=token) as settings:
        anyio.run(scenario, settings)


def run_mc(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mc_tui", *args], capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL,
                          env={**os.environ, "COLUMNS": "200", **(env or {})})


@pytest.fixture(autouse=True)
def own_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads or writes the user's registry (nor its A2A task table)."""
    monkeypatch.setenv("MC_REGISTRY", str(tmp_path / "projects.db"))


def test_mc_a2a_refuses_a_public_bind_without_a_token_and_a_disabled_server(tmp_path: Path) -> None:
    config = project(tmp_path, FAREWELL)
    env = {"MC_A2A_TOKEN": ""}
    refused = run_mc("a2a", "--config", str(config), "--host", "0.0.0.0", env=env)
    assert refused.returncode == 2
    assert "not a loopback address" in refused.stderr and "MC_A2A_TOKEN" in refused.stderr
    config.write_text(config.read_text().replace("enabled = true", "enabled = false"))
    off = run_mc("a2a", "--config", str(config), env=env)
    assert off.returncode == 2 and "[a2a] enabled = true" in off.stderr


def test_mc_a2a_serves_its_card_on_the_configured_port(tmp_path: Path) -> None:
    port = free_port()
    config = project(tmp_path, FAREWELL, f"port = {port}\n")  # under [a2a]
    proc = subprocess.Popen([sys.executable, "-m", "mc_tui", "a2a", "--config", str(config),
                             "--public-url", "https://mc.example/agent/"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "MC_A2A_TOKEN": ""}, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                card = httpx.get(f"http://127.0.0.1:{port}/.well-known/agent-card.json", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
                time.sleep(0.1)
        assert card.status_code == 200 and card.json()["name"] == "Mission Control"
        interface = card.json()["supportedInterfaces"][0]
        assert interface == {"url": "https://mc.example/agent/a2a", "protocolBinding": "JSONRPC",
                             "protocolVersion": "1.0"}
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(15)


def test_a_pending_approval_asks_for_input_and_a_reply_approves_it(tmp_path: Path) -> None:
    config = project(tmp_path, FAREWELL,
                     '[green_branch]\nauto_push = true\n[hitl]\nenabled = true\n'
                     'gates = ["push"]\npoll_timeout = 60\n')
    repo, origin = tmp_path / "repo", tmp_path / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", str(origin)], check=True)
    git(repo, "remote", "add", "origin", str(origin))
    git(repo, "push", "-q", "origin", "main")

    async def scenario(settings: ServerSettings) -> None:
        async with a2a_client(settings) as client:
            task_id, states, seen = "", [], []
            async for response in client.send_message(user_message(TITLE)):
                if response.WhichOneof("payload") == "task":
                    task_id = response.task.id
                if response.WhichOneof("payload") == "status_update":
                    states.append(response.status_update.status.state)
                seen.extend(texts(response))
            assert states[-1] == TaskState.TASK_STATE_INPUT_REQUIRED, seen
            assert "approval #1 pending: push" in seen[-1]
            parked = await client.get_task(GetTaskRequest(id=task_id))
            assert parked.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
            states, seen = [], []
            async for response in client.send_message(user_message("approve", task_id=task_id)):
                if response.WhichOneof("payload") == "status_update":
                    states.append(response.status_update.status.state)
                seen.extend(texts(response))
            assert "approval #1 approved" in seen[0], seen
            assert states[-1] == TaskState.TASK_STATE_COMPLETED, seen

    with running_server(config, tmp_path) as settings:
        anyio.run(scenario, settings)
    approval = Store(db_of(config)).rows("approvals")[0]
    assert approval["status"] == "approved" and approval["decided_by"] == "a2a"
    assert git(origin, "rev-parse", "main") == git(repo, "rev-parse", "mc/green")


def test_a_restarted_server_still_answers_for_and_cancels_its_tasks(tmp_path: Path) -> None:
    config = project(tmp_path, SLOW_WORKER)
    db = db_of(config)

    async def start(settings: ServerSettings) -> str:
        async with a2a_client(settings) as client:
            task_id = ""
            async for response in client.send_message(user_message(TITLE)):
                if response.WhichOneof("payload") == "task":
                    task_id = response.task.id
                if any("epoch 1 running" in t for t in texts(response)):
                    return task_id
        raise AssertionError("the mission never ran")

    async def after_restart(settings: ServerSettings, task_id: str) -> None:
        async with a2a_client(settings) as client:
            task = await client.get_task(GetTaskRequest(id=task_id))
            assert task.status.state == TaskState.TASK_STATE_WORKING
            assert "mission #1: running" in task.status.message.parts[0].text
            canceled = await client.cancel_task(CancelTaskRequest(id=task_id))
            assert canceled.status.state == TaskState.TASK_STATE_CANCELED

    with running_server(config, tmp_path) as settings:
        task_id = anyio.run(start, settings)
    # the server is gone; its mission runs on in its own process
    assert Store(db).latest_mission()["status"] == "running"
    with running_server(config, tmp_path) as settings:
        anyio.run(after_restart, settings, task_id)
    mission = Store(db).latest_mission()
    assert mission["status"] == "stopped" and mission["outcome"] == "stopped by the user"


def test_a_mission_process_that_dies_fails_its_task_with_the_resume_line(tmp_path: Path) -> None:
    config = project(tmp_path, SLOW_WORKER)

    async def scenario(settings: ServerSettings) -> None:
        async with a2a_client(settings) as client:
            states, seen, killed = [], [], False
            async for response in client.send_message(user_message(TITLE)):
                if response.WhichOneof("payload") == "status_update":
                    states.append(response.status_update.status.state)
                seen.extend(texts(response))
                if not killed and any("epoch 1 running" in t for t in seen):
                    killed = True
                    owner = int(Store(db_of(config)).latest_mission()["pid"])
                    os.killpg(owner, signal.SIGKILL)  # its own process group
            assert states[-1] == TaskState.TASK_STATE_FAILED, seen
            assert "exited with code -9; mission #1 is running" in seen[-1]
            assert "mc mission --resume --config" in seen[-1]

    with running_server(config, tmp_path) as settings:
        anyio.run(scenario, settings)
    assert not leftover_processes(tmp_path)  # its agents died with it
