"""The real Claude Code waiting on a model server that never answers prints nothing: mc ends
it at ``stall_s`` (its whole process group), not at the session timeout."""

from __future__ import annotations

import fnmatch
import os
import time
from pathlib import Path

import anyio
import pytest

from engine.agents.claude import ClaudeBackend
from engine.agents.process import BACKEND_ENV
from engine.agents.types import TIMEOUT, AgentRequest, AgentRole, FailureReason
from tests.support.model_server import ModelServer, Rule, hang, text
from tests.support.real_clis import claude_env


def test_a_silent_real_claude_is_ended_at_the_stall_limit(
    claude_cli: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    with ModelServer([Rule(name="answer", match="MC-STALL", reply=text("done"))]) as server:
        server.fail_next(hang(), n=1000)
        for name in list(os.environ):
            if any(fnmatch.fnmatchcase(name, pat) for pat in BACKEND_ENV):
                monkeypatch.delenv(name)
        for key, value in claude_env(server.url, tmp_path / "home").items():
            monkeypatch.setenv(key, value)
        backend = ClaudeBackend(executable=claude_cli, kill_grace=1)
        request = AgentRequest(role=AgentRole.WORKER, prompt="MC-STALL: say done.",
                               workdir=workdir, model="sonnet", max_turns=3, timeout_s=120,
                               stall_s=4)
        started = time.monotonic()
        result = anyio.run(backend.run, request)
        took = time.monotonic() - started
        assert server.model_requests()  # it did ask, then waited in silence
    assert result.status == TIMEOUT and result.failure_reason == FailureReason.STALLED
    assert result.error == "stalled: no output for 4 s"
    assert 4 <= took < 4 + 1 + 8, took  # the stall limit, the kill grace, start-up slack
    left = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink(f"/proc/{pid}/cwd") == str(workdir):
                left.append(pid)
        except OSError:
            continue
    assert left == []  # the whole process group is gone
