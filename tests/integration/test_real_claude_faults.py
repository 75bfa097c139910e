"""Failure runs: the real Claude Code through ``ClaudeBackend.run`` against a faulty server.

Claude Code's own retries are cut short with ``CLAUDE_CODE_MAX_RETRIES`` (default 10, with
a doubling back-off from ~0.5 s), so each test takes seconds.
"""

from __future__ import annotations

import fnmatch
import os
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from engine.agents.claude import ClaudeBackend
from engine.agents.process import BACKEND_ENV
from engine.agents.types import (
    COMPLETED,
    ERROR,
    FAILED,
    TIMEOUT,
    AgentEvent,
    AgentRequest,
    AgentResult,
    AgentRole,
    FailureReason,
)
from tests.support.model_server import (
    ModelServer,
    Rule,
    auth_error,
    cut_stream,
    hang,
    overloaded,
    rate_limited,
    stream_error,
    text,
    usage_limit_reached,
)
from tests.support.real_clis import claude_env

Runner = Callable[..., tuple[AgentResult, list[AgentEvent], float]]


@pytest.fixture
def server() -> ModelServer:
    with ModelServer([Rule(name="answer", match="MC-FAULT", reply=text("All done."))]) as s:
        yield s


@pytest.fixture
def run_claude(claude_cli: str, server: ModelServer, tmp_path: Path,
               monkeypatch: pytest.MonkeyPatch) -> Runner:
    workdir = tmp_path / "work"
    workdir.mkdir()

    def run(*, timeout_s: float = 60, max_retries: int = 2, oauth: bool = False,
            extra: dict[str, str] | None = None) -> tuple[AgentResult, list[AgentEvent], float]:
        for name in list(os.environ):  # nothing of this machine's agent settings
            if any(fnmatch.fnmatchcase(name, pat) for pat in BACKEND_ENV):
                monkeypatch.delenv(name)
        env = claude_env(server.url, tmp_path / "home", oauth=oauth,
                         extra={"CLAUDE_CODE_MAX_RETRIES": str(max_retries), **(extra or {})})
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        backend = ClaudeBackend(executable=claude_cli, kill_grace=1,
                                env_passthrough=["API_TIMEOUT_MS"])
        request = AgentRequest(role=AgentRole.WORKER, prompt="MC-FAULT: say done.",
                               workdir=workdir, model="sonnet", max_turns=3, timeout_s=timeout_s)
        events: list[AgentEvent] = []
        started = time.monotonic()
        result = anyio.run(backend.run, request, events.append)
        return result, events, time.monotonic() - started

    return run


def retries(events: list[AgentEvent]) -> list[dict]:
    return [e.data for e in events if e.type == "retry"]


def test_429_with_retry_after_is_retried_then_completes(server: ModelServer,
                                                        run_claude: Runner) -> None:
    server.fail_next(rate_limited(retry_after=1), n=2)
    result, events, took = run_claude()
    assert result.status == COMPLETED and result.failure_reason is None
    assert result.text == "All done."
    assert [(r["error"], r["error_status"]) for r in retries(events)] == [
        ("rate_limit", 429), ("rate_limit", 429)]
    assert took >= 2  # the CLI waited for retry-after
    assert [r.status for r in server.model_requests()] == [429, 429, 200]


def test_529_storm_fails_as_overloaded_without_hanging(server: ModelServer,
                                                       run_claude: Runner) -> None:
    server.fail_next(overloaded(), n=1000)
    result, events, took = run_claude(max_retries=2)
    assert result.status == ERROR and result.failure_reason == FailureReason.OVERLOADED
    assert "529" in (result.error or "")
    assert len(retries(events)) == 2 and took < 30
    assert result.exit_code == 1


def test_401_fails_as_auth(server: ModelServer, run_claude: Runner) -> None:
    server.fail_next(auth_error(), n=1000)
    result, _events, _took = run_claude(max_retries=1)
    assert result.status == ERROR and result.failure_reason == FailureReason.AUTH
    assert "Invalid API key" in (result.error or "")


def test_401_storm_ends_at_the_first_retry_not_after_the_cli_backoff(
        server: ModelServer, run_claude: Runner) -> None:
    """With Claude Code's default retries a 401 storm takes about 3 minutes; mc ends the
    session after the first authentication retry and its short grace."""
    server.fail_next(auth_error(), n=1000)
    result, events, took = run_claude(max_retries=10)
    assert result.status == ERROR and result.failure_reason == FailureReason.AUTH
    assert "refused the credentials" in (result.error or "")
    assert retries(events) and retries(events)[0]["error"] == "authentication_failed"
    assert took < 30, took


def test_a_stream_cut_once_is_retried_by_the_cli(server: ModelServer,
                                                 run_claude: Runner) -> None:
    server.fail_next(cut_stream(after_events=4))
    result, events, _took = run_claude()
    assert result.status == COMPLETED and result.text == "All done."
    assert [(r["error"], r["error_status"]) for r in retries(events)] == [("unknown", None)]
    assert [r.fault for r in server.model_requests()] == ["cut", None]


def test_stream_cuts_every_time_fail_with_the_reason(server: ModelServer,
                                                     run_claude: Runner) -> None:
    server.fail_next(cut_stream(after_events=4), n=1000)
    result, _events, took = run_claude(max_retries=1)
    assert result.status == ERROR and result.failure_reason == FailureReason.API_ERROR
    assert "Connection to the API was lost" in (result.error or "")
    assert took < 30


def test_a_server_that_never_answers_is_killed_at_the_timeout(server: ModelServer,
                                                              run_claude: Runner,
                                                              tmp_path: Path) -> None:
    server.fail_next(hang(), n=1000)
    result, _events, took = run_claude(timeout_s=6)
    assert result.status == TIMEOUT and result.failure_reason == FailureReason.TIMEOUT
    assert 6 <= took < 6 + 1 + 5  # the timeout, the kill grace, some slack
    assert server.model_requests()  # it did ask
    workdir = str(tmp_path / "work")
    left = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink(f"/proc/{pid}/cwd") == workdir:
                left.append(pid)
        except OSError:
            continue
    assert left == []  # the whole process group is gone


def test_an_overload_mid_stream_is_retried_without_streaming(server: ModelServer,
                                                             run_claude: Runner) -> None:
    server.fail_next(stream_error(after_events=3))
    result, _events, _took = run_claude()
    assert result.status == COMPLETED and result.text == "All done."
    sent = server.model_requests()
    assert [(r.fault, r.view.stream) for r in sent] == [("stream_error", True), (None, False)]


def test_max_tokens_every_time_is_a_failed_session(server: ModelServer,
                                                   run_claude: Runner) -> None:
    server.prepend(Rule(reply=text("cut sho", stop_reason="max_tokens")))
    result, _events, _took = run_claude()
    assert result.status == FAILED and result.failure_reason == FailureReason.BAD_OUTPUT
    assert "output token maximum" in (result.error or "")
    assert len(server.model_requests()) == 4  # the CLI asked to continue three times


def test_a_refusal_is_a_failed_session(server: ModelServer, run_claude: Runner) -> None:
    server.prepend(Rule(reply=text("", stop_reason="refusal")))
    result, _events, _took = run_claude()
    assert result.status == FAILED and result.failure_reason == FailureReason.BAD_OUTPUT
    assert (result.error or "").startswith("the model refused")


def test_a_subscription_usage_limit_stops_at_once(server: ModelServer,
                                                  run_claude: Runner) -> None:
    server.fail_next(usage_limit_reached(reset_in=3600), n=1000)
    result, events, took = run_claude(oauth=True)
    assert result.status == ERROR and result.failure_reason == FailureReason.USAGE_LIMIT
    assert "hit your 5-hour limit" in (result.error or "")
    limits = [e.data for e in events if e.type == "rate_limit"]
    assert limits and limits[0]["status"] == "rejected"
    assert len(server.model_requests()) == 1 and took < 20  # no retry against a long reset
    assert server.model_requests()[0].headers["authorization"] == "<redacted>"
