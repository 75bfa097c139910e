"""Agents in bubblewrap sandboxes (``kind = "sandbox"``), with the real ``bwrap``.

The sandbox lets an agent commit in its worktree and refuses, with the kernel's own reason
(read-only file system), every write outside it: the user's checkout, the repository's
``.git/config`` and hooks, the home folder. ``network = "none"`` cuts it off from a server on
127.0.0.1. In a mission, units run on sandbox and local slots; a host that breaks is drained
and its unit runs elsewhere; with no host healthy the mission does not start.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import anyio
import pytest

from engine.agents.process import build_env, run_streaming
from engine.config import load_config
from engine.controller import Controller
from engine.host_config import SandboxHostConfig
from engine.hosts import SandboxHost, running_on
from engine.models import MissionStatus, UnitStatus
from engine.services.live.snapshot import snapshot
from engine.store import Store
from engine.wiring import MissionSetupError
from mc_tui.widgets.workers import host_label
from tests.e2e.conftest import make_target, write_config
from tests.support.host_missions import GIT_ID, mission, plan, worker

pytestmark = pytest.mark.skipif(
    shutil.which("bwrap") is None and os.environ.get("CI") != "true",
    reason="bubblewrap is not installed (apt-get install bubblewrap)",
)


@pytest.fixture
def worktree(tmp_path: Path) -> tuple[Path, Path]:
    repo, wt = tmp_path / "repo", tmp_path / "wt"
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    (repo / "a.txt").write_text("a\n")
    subprocess.run(f"git -C {repo} add a.txt && git -C {repo} {GIT_ID} commit -qm init",
                   shell=True, check=True)
    subprocess.run(["git", "-C", str(repo), "worktree", "add", "-q", str(wt), "-b", "unit"],
                   check=True)
    return repo, wt


def run_in(host: SandboxHost, script: str, cwd: Path) -> tuple[int | None, str]:
    lines: list[str] = []

    async def go() -> int | None:
        with running_on(host):
            out = await run_streaming(["/bin/sh", "-c", script], cwd=cwd, env=build_env(),
                                      on_line=lambda line: lines.append(line.text), timeout=30)
        return out.exit_code

    return anyio.run(go), "\n".join(lines)


def test_an_agent_commits_in_its_worktree_and_cannot_write_outside_it(
    worktree: tuple[Path, Path],
) -> None:
    repo, wt = worktree
    host = SandboxHost("sbx", 1, SandboxHostConfig(kind="sandbox"))
    code, out = run_in(host, f"echo b > b.txt && git add b.txt && git {GIT_ID} commit -qm b "
                       "&& echo committed", wt)
    assert code == 0 and "committed" in out, out
    log = subprocess.run(["git", "-C", str(repo), "log", "--format=%s", "unit"],
                         capture_output=True, text=True, check=True).stdout.split()
    assert log == ["b", "init"]  # the commit is in the user's repository, on the unit's branch
    home = Path(os.path.expanduser("~"))
    for target in (repo / "escape.txt", repo / ".git" / "config", repo / ".git" / "hooks" / "x",
                   home / "mc-sandbox-escape"):
        code, out = run_in(host, f"echo x >> {target}", wt)
        assert code != 0 and "Read-only file system" in out, (target, out)
    assert not (repo / "escape.txt").exists() and not (home / "mc-sandbox-escape").exists()
    assert "x" not in (repo / ".git" / "config").read_text().split()


def test_network_none_cuts_the_agent_off_from_a_server_on_loopback(tmp_path: Path) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    threading.Thread(target=lambda: [server.accept()[0].close() for _ in range(1)],
                     daemon=True).start()
    probe = (f"{sys.executable} -c \"import socket; socket.create_connection(('127.0.0.1', "
             f"{port}), timeout=3); print('connected')\"")
    try:
        off = SandboxHost("sbx", 1, SandboxHostConfig(kind="sandbox"))
        code, out = run_in(off, probe, tmp_path)
        assert code != 0 and "Connection refused" in out, out
        on = SandboxHost("sbx", 1, SandboxHostConfig(kind="sandbox", network="host"))
        code, out = run_in(on, probe, tmp_path)
        assert code == 0 and "connected" in out, out
    finally:
        server.close()


def test_allowed_loopback_endpoints_are_relayed_into_a_sandbox_without_network(
    tmp_path: Path,
) -> None:
    allowed, other = socket.create_server(("127.0.0.1", 0)), socket.create_server(("127.0.0.1", 0))

    def greet() -> None:
        conn, _ = allowed.accept()
        conn.sendall(b"hello from outside\n")
        conn.close()

    threading.Thread(target=greet, daemon=True).start()
    port, other_port = allowed.getsockname()[1], other.getsockname()[1]
    probe = (f"{sys.executable} -c \"import socket\n"
             f"print(socket.create_connection(('127.0.0.1', {port}), timeout=3).recv(99))\n"
             f"socket.create_connection(('127.0.0.1', {other_port}), timeout=3)\"")
    try:
        host = SandboxHost("sbx", 1, SandboxHostConfig(kind="sandbox",
                                                        allow=[f"127.0.0.1:{port}"]))
        code, out = run_in(host, probe, tmp_path)
        assert "hello from outside" in out, out  # the allowed endpoint answers
        assert code != 0 and "Connection refused" in out, out  # nothing else does
    finally:
        allowed.close()
        other.close()


def attempts(controller: Controller) -> list[dict]:
    return controller.store.query(
        "SELECT unit_id, host, status FROM attempts WHERE role = 'worker' ORDER BY id")


def test_a_mission_runs_units_on_sandbox_and_local_slots(tmp_path: Path) -> None:
    controller = mission(tmp_path, '\n[[hosts]]\nkind = "sandbox"\nname = "sbx"\n'
                         '[[hosts]]\nkind = "local"\n')
    outcome = anyio.run(controller.run)
    assert outcome.status == MissionStatus.COMPLETED, outcome
    rows = attempts(controller)
    assert {r["host"] for r in rows} == {"sbx", "local1"}, rows
    assert all(r["status"] == "completed" for r in rows)
    units = controller.store.units(outcome.mission_id)
    assert {u["status"] for u in units if u["is_leaf"]} == {UnitStatus.MERGED}
    logs = [e.payload.get("message", "") for e in controller.store.events_after(0, outcome.mission_id)]
    assert any("NO permission checks (bypassPermissions) inside a bubblewrap" in m for m in logs)
    # the dashboard's snapshot and the TUI workers pane show each session's host
    view = snapshot(controller.store, outcome.mission_id, 10**9)
    assert {a["host"] for a in view["rows"]["attempts"] if a["role"] == "worker"} == {"sbx", "local1"}
    sbx = next(a for a in view["rows"]["attempts"] if a["host"] == "sbx")
    assert host_label(sbx).startswith("sbx: scripted/")


def test_bypass_outside_a_sandbox_is_refused_when_hosts_are_configured(tmp_path: Path) -> None:
    make_target(tmp_path)
    path = write_config(tmp_path, plan(1) + worker(1))
    path.write_text(path.read_text().replace("[agent]", '[agent]\npermission_mode = '
                                             '"bypassPermissions"') + '\n[[hosts]]\nkind = "local"\n')
    controller = Controller(load_config(path), Store(tmp_path / "m.db"))
    with pytest.raises(MissionSetupError, match="allowed only inside a sandbox.*not on local0"):
        controller.prepare()


FLAKY_BWRAP = """#!/bin/sh
# bubblewrap that breaks for good at its first agent session (a --chdir in the command line)
case "$*" in *--chdir*) touch "{flag}";; esac
if [ -e "{flag}" ]; then echo "bwrap: setting up uid map: Permission denied" >&2; exit 1; fi
exec {bwrap} "$@"
"""


def test_a_host_that_breaks_is_drained_and_its_unit_runs_elsewhere(tmp_path: Path) -> None:
    fake = tmp_path / "bwrap-flaky"
    fake.write_text(FLAKY_BWRAP.format(flag=tmp_path / "broken", bwrap=shutil.which("bwrap")))
    fake.chmod(0o755)
    controller = mission(tmp_path, f'\n[[hosts]]\nkind = "sandbox"\nname = "sbx"\n'
                         f'bwrap = "{fake}"\n[[hosts]]\nkind = "local"\n')
    outcome = anyio.run(controller.run)
    assert outcome.status == MissionStatus.COMPLETED, outcome
    events = controller.store.events_after(0, outcome.mission_id)
    (drained,) = [e for e in events if e.kind == "host.drained"]
    assert drained.payload["host"] == "sbx" and "uid map" in drained.payload["reason"]
    rows = attempts(controller)
    hit = drained.unit_id
    assert [r["host"] for r in rows if r["unit_id"] == hit] == ["sbx", "local1"], rows
    unit = controller.store.get("units", hit)
    assert unit["status"] == UnitStatus.MERGED and unit["attempt_count"] == 1  # not counted
    moves = [e.payload.get("reason") or "" for e in events
             if e.kind == "unit.status" and e.unit_id == hit]
    assert any("host sbx drained" in r and "re-dispatched" in r for r in moves), moves


def test_no_healthy_host_stops_the_mission_at_start_with_the_reason(tmp_path: Path) -> None:
    make_target(tmp_path)
    path = write_config(tmp_path, plan(1) + worker(1))
    path.write_text(path.read_text() + '\n[[hosts]]\nkind = "sandbox"\nbwrap = "/nonexistent/bwrap"\n')
    controller = Controller(load_config(path), Store(tmp_path / "m.db"))
    with pytest.raises(MissionSetupError, match="no host can run agents: sandbox0: .*not found"):
        controller.prepare()
