"""The real Claude Code CLI inside a bubblewrap sandbox host, against the scripted model server.

Inside the sandbox the worker runs with ``bypassPermissions`` (the sandbox's default): it
writes and commits in its worktree without a single permission prompt, and its Write to the
user's checkout outside the worktree fails with the file system's reason. The sandbox has no
network (``network = "none"``) except the model server's loopback endpoint, relayed in
(``allow``; docs/hosts.md, "Network").
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import subprocess
from pathlib import Path

import anyio
import pytest

from engine.agents.claude import ClaudeBackend
from engine.agents.process import BACKEND_ENV
from engine.agents.types import COMPLETED, AgentEvent, AgentRequest, AgentRole
from engine.host_config import SandboxHostConfig
from engine.hosts import SandboxHost, running_on
from tests.support.model_server import ModelServer, Rule
from tests.support.real_clis import claude_env
from tests.support.script import turns
from tests.support.scripts import bash, finish, write_file

HELLO = "def hello():\n    return 'hello'\n"

# as tests/integration/test_hosts_sandbox.py: .ci/run installs bubblewrap; under CI=true a
# missing bwrap fails the test instead
pytestmark = pytest.mark.skipif(
    shutil.which("bwrap") is None and os.environ.get("CI") != "true",
    reason="bubblewrap is not installed (apt-get install bubblewrap)",
)


def test_real_claude_in_a_sandbox_commits_inside_and_cannot_write_outside(
    claude_cli: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    repo, wt = tmp_path / "repo", tmp_path / "wt"
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    (repo / "README.md").write_text("tiny\n")
    ident = ["-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(repo), *ident, "commit", "-qm", "init"], check=True)
    subprocess.run(["git", "-C", str(repo), "worktree", "add", "-q", str(wt), "-b", "unit"],
                   check=True)
    escape = repo / "escape.py"
    rule = Rule(name="worker", match="You are a worker agent", reply=turns([
        write_file("hello.py", HELLO),
        bash("git add -A && git -c user.name=a -c user.email=a@a commit -qm hello", "Commit"),
        write_file(str(escape), "x = 1\n"),
        finish("Added hello.", ["hello.py"]),
    ]))
    events: list[AgentEvent] = []
    with ModelServer([rule]) as server:
        endpoint = server.url.split("//", 1)[1].split("/", 1)[0]  # 127.0.0.1:<port>
        host = SandboxHost("sbx", 1, SandboxHostConfig(kind="sandbox", allow=[endpoint]))
        for name in list(os.environ):  # no real agent settings or keys from this machine
            if any(fnmatch.fnmatchcase(name, pat) for pat in BACKEND_ENV):
                monkeypatch.delenv(name)
        for key, value in claude_env(server.url, tmp_path / "home").items():
            monkeypatch.setenv(key, value)
        backend = ClaudeBackend(executable=claude_cli, kill_grace=2)
        request = AgentRequest(role=AgentRole.WORKER, prompt="You are a worker agent. Add hello.",
                               workdir=wt, model="sonnet", max_turns=10, timeout_s=90,
                               permission_mode=host.permission_mode or "acceptEdits")

        async def go():  # type: ignore[no-untyped-def]
            with running_on(host):
                return await backend.run(request, events.append)

        result = anyio.run(go)
    assert result.status == COMPLETED, (result.error, [e.text for e in events][-8:])
    log = subprocess.run(["git", "-C", str(repo), "log", "--format=%s", "unit"],
                         capture_output=True, text=True, check=True).stdout.split()
    assert log == ["hello", "init"]
    results = [e for e in events if e.type == "tool_result"]
    assert len(results) == 3, [e.text for e in results]
    assert not results[0].data.get("is_error") and not results[1].data.get("is_error")
    assert results[2].data.get("is_error") and "read-only file system" in results[2].text.lower()
    assert not escape.exists()
    assert not [e for e in events if "approval" in e.text.lower()]  # no permission prompt
