"""SSH worker hosts against a real OpenSSH server on 127.0.0.1 (tests/support/sshd.py).

Units run on SSH and local slots in one mission (the scripted backend's ``run`` actions are
real processes on the remote side, their commits fetched back); an unreachable host is drained
at start and its units run locally; a connection dropped mid-session drains the host and the
unit is done again locally, nothing lost; a wrong host key is refused unless trusted.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import anyio
import pytest

from engine.controller import Controller
from engine.host_config import SshHostConfig
from engine.hosts.ssh import SshHost
from engine.models import MissionStatus, UnitStatus
from tests.e2e.conftest import make_target
from tests.support.host_missions import mission
from tests.support.sshd import Sshd, free_port, keygen, start_sshd

pytestmark = pytest.mark.skipif(
    shutil.which("sshd") is None and os.environ.get("CI") != "true",
    reason="openssh-server is not installed (apt-get install openssh-server)",
)


@pytest.fixture
def sshd(tmp_path: Path):  # type: ignore[no-untyped-def]
    server = start_sshd(tmp_path / "sshd")
    yield server
    server.stop()


def worker_hosts(controller: Controller) -> list[tuple[str, str, str]]:
    return [(r["unit_id"], r["host"], r["status"]) for r in controller.store.query(
        "SELECT unit_id, host, status FROM attempts WHERE role = 'worker' ORDER BY id")]


def merged(controller: Controller, mission_id: int) -> set[str]:
    return {u["status"] for u in controller.store.units(mission_id) if u["is_leaf"]}


def test_a_mission_runs_units_on_ssh_and_local_slots(tmp_path: Path, sshd: Sshd) -> None:
    # the remote side proves where it ran: sshd sets SSH_CONNECTION there
    controller = mission(tmp_path, sshd.host_config() + '[[hosts]]\nkind = "local"\n',
                         first="test -n \\\"$SSH_CONNECTION\\\" && echo remote > "
                         "ran_on_remote_${SSH_CONNECTION%% *}.txt; ")
    outcome = anyio.run(controller.run)
    assert outcome.status == MissionStatus.COMPLETED, outcome
    rows = worker_hosts(controller)
    assert {h for _, h, _ in rows} == {"remote", "local1"}, rows
    assert merged(controller, outcome.mission_id) == {UnitStatus.MERGED}
    assert (sshd.folder / "remote" / "repo.git").is_dir()  # the host's clone
    names = set(subprocess.run(["git", "-C", str(tmp_path / "repo"), "ls-tree", "--name-only",
                                "mc/green"], capture_output=True, text=True).stdout.split())
    assert any(n.startswith("ran_on_remote_") for n in names), names  # fetched back, merged


def test_an_unreachable_host_is_drained_at_start_and_units_run_locally(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    key = tmp_path / "key"
    keygen(key)
    hosts = (f'\n[[hosts]]\nkind = "ssh"\nname = "gone"\naddress = "127.0.0.1"\nport = {port}\n'
             f'identity_file = "{key}"\nconnect_timeout = 3\n[[hosts]]\nkind = "local"\n')
    controller = mission(tmp_path, hosts)
    outcome = anyio.run(controller.run)
    assert outcome.status == MissionStatus.COMPLETED, outcome
    assert {h for _, h, _ in worker_hosts(controller)} == {"local1"}
    logs = [e.payload.get("message", "") for e in
            controller.store.events_after(0, outcome.mission_id) if e.kind == "log"]
    assert any("host gone drained: cannot connect to 127.0.0.1" in m for m in logs), logs


def test_a_dropped_connection_drains_the_host_and_the_unit_runs_elsewhere(
    tmp_path: Path, sshd: Sshd,
) -> None:
    started = tmp_path / "remote-session-started"
    remote_first = (f"if test -n \\\"$SSH_CONNECTION\\\"; then touch {started}; sleep 8; fi; ")
    controller = mission(tmp_path, sshd.host_config() + '[[hosts]]\nkind = "local"\n',
                         first=remote_first)

    def drop_when_started() -> None:
        deadline = time.monotonic() + 60
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        sshd.stop()  # the server and its connections die mid-session

    watcher = threading.Thread(target=drop_when_started, daemon=True)
    watcher.start()
    outcome = anyio.run(controller.run)
    watcher.join(5)
    assert outcome.status == MissionStatus.COMPLETED, outcome
    events = controller.store.events_after(0, outcome.mission_id)
    (drained,) = [e for e in events if e.kind == "host.drained"]
    assert drained.payload["host"] == "remote"
    hit = drained.unit_id
    rows = [(h, s) for u, h, s in worker_hosts(controller) if u == hit]
    assert rows[0][0] == "remote" and rows[-1] == ("local1", "completed"), rows
    assert merged(controller, outcome.mission_id) == {UnitStatus.MERGED}  # nothing lost


def test_a_wrong_host_key_is_refused_unless_trusted(tmp_path: Path, sshd: Sshd) -> None:
    other = tmp_path / "other_key"
    keygen(other)
    pub = other.with_suffix(".pub").read_text().split()
    wrong = tmp_path / "known_hosts"
    wrong.write_text(f"[127.0.0.1]:{sshd.port} {pub[0]} {pub[1]}\n")
    cfg = dict(kind="ssh", address="127.0.0.1", port=sshd.port, identity_file=sshd.user_key,
               known_hosts=wrong, remote_dir=str(tmp_path / "r"))
    problem = SshHost("r", 1, SshHostConfig(**cfg)).check()
    assert problem and "host key of 127.0.0.1" in problem and "refused" in problem
    assert not (tmp_path / "r").exists()  # nothing ran there
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    assert "refused" in (SshHost("r", 1, SshHostConfig(**{**cfg, "known_hosts": empty})).check()
                         or "")
    trusted = SshHostConfig(**{**cfg, "known_hosts": empty, "trust_unknown_host_key": True})
    assert SshHost("r", 1, trusted).check() is None


@pytest.mark.parametrize("how", ["timeout", "cancel"])
def test_a_timeout_or_cancel_ends_the_remote_process_group(
    tmp_path: Path, sshd: Sshd, how: str,
) -> None:
    from engine.agents.process import build_env, run_streaming
    from engine.hosts import running_on

    repo = tmp_path / "repo"
    make_target(tmp_path)
    host = SshHost("remote", 1, SshHostConfig(
        kind="ssh", address="127.0.0.1", port=sshd.port, identity_file=sshd.user_key,
        known_hosts=sshd.known_hosts, remote_dir=str(sshd.folder / "remote")))
    subprocess.run(["git", "-C", str(repo), "worktree", "add", "-q", str(tmp_path / "wt")],
                   check=True)  # a remote host runs agents only in mc's worktrees
    lines: list[str] = []
    pgids: list[int] = []

    def seen(ln) -> None:  # type: ignore[no-untyped-def]
        lines.append(ln.text)
        if ln.text.startswith("pgid "):
            pgids.append(int(ln.text.split()[1]))

    async def go():  # type: ignore[no-untyped-def]
        with running_on(host), anyio.move_on_after(4 if how == "cancel" else 60):
            return await run_streaming(
                ["sh", "-c", "echo one; (sleep 60; echo never) & echo two; "
                 "echo pgid $(ps -o pgid= $$); sleep 60"],
                cwd=tmp_path / "wt", env=build_env(), on_line=seen,
                timeout=2 if how == "timeout" else None, kill_grace=0.5)

    outcome = anyio.run(go)
    assert lines[:2] == ["one", "two"] and pgids, lines
    if how == "timeout":
        assert outcome.timed_out and outcome.killed and outcome.pid == pgids[0]
    else:
        assert outcome is None  # cancelled: the cancellation propagated
    pgid = pgids[0]
    assert pgid > 0
    deadline = time.monotonic() + 5
    while (left := [p for p in Path("/proc").iterdir() if p.name.isdigit()
                    and _pgid(p) == pgid]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left == []  # the remote group (the agent and its background child) is gone


def _pgid(proc: Path) -> int | None:
    try:
        stat = (proc / "stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    return None if fields[0] in "ZX" else int(fields[2])  # a zombie is dead already


def test_remote_agents_get_the_same_allowlisted_environment(
    tmp_path: Path, sshd: Sshd, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from engine.agents.process import build_env, run_streaming
    from engine.hosts import running_on

    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9/allowed")
    monkeypatch.setenv("MC_TELEGRAM__TOKEN", "secret-never-sent")
    monkeypatch.setenv("SOME_OTHER_SECRET", "never-sent-either")
    make_target(tmp_path)
    subprocess.run(["git", "-C", str(tmp_path / "repo"), "worktree", "add", "-q",
                    str(tmp_path / "wt")], check=True)
    host = SshHost("remote", 1, SshHostConfig(
        kind="ssh", address="127.0.0.1", port=sshd.port, identity_file=sshd.user_key,
        known_hosts=sshd.known_hosts, remote_dir=str(sshd.folder / "remote")))
    lines: list[str] = []

    async def go():  # type: ignore[no-untyped-def]
        with running_on(host):
            return await run_streaming(["env"], cwd=tmp_path / "wt", env=build_env(),
                                       on_line=lambda ln: lines.append(ln.text), timeout=20)

    assert anyio.run(go).exit_code == 0
    assert "ANTHROPIC_BASE_URL=http://127.0.0.1:9/allowed" in lines
    assert not [ln for ln in lines if "never-sent" in ln or ln.startswith("MC_")]


def test_a_remote_host_never_runs_in_the_users_checkout(tmp_path: Path, sshd: Sshd) -> None:
    from engine.agents.process import build_env, run_streaming
    from engine.hosts import running_on

    make_target(tmp_path)
    host = SshHost("remote", 1, SshHostConfig(
        kind="ssh", address="127.0.0.1", port=sshd.port, identity_file=sshd.user_key,
        known_hosts=sshd.known_hosts, remote_dir=str(sshd.folder / "remote")))

    async def go():  # type: ignore[no-untyped-def]
        with running_on(host):
            return await run_streaming(["true"], cwd=tmp_path / "repo", env=build_env(),
                                       on_line=lambda ln: None, timeout=20)

    with pytest.raises(OSError, match="not one of mc's worktrees"):
        anyio.run(go)
