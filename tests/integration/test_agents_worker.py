"""run_unit_agent: prompts, one pass or architect -> editor, marker or git-facts outcome."""

from __future__ import annotations

import json
import os
from pathlib import Path

import anyio
import pytest
from agents_support import FAKES, git, make_unit

from engine.agents import (
    AgentRequest,
    AgentResult,
    AgentRole,
    ClaudeBackend,
    FailureReason,
    ScriptedBackend,
    UnitRunOutcome,
    load_cassette,
    run_unit_agent,
)
from engine.config import MissionConfig
from engine.store import Store


class Spy(ScriptedBackend):
    """A scripted backend that remembers the requests it got."""

    def __init__(self, cassette: object) -> None:
        super().__init__(cassette, kill_grace=0.3)
        self.requests: list[AgentRequest] = []

    async def run(self, request: AgentRequest, on_event=None) -> AgentResult:
        self.requests.append(request)
        return await super().run(request, on_event)


def spy(tmp_path: Path, text: str) -> Spy:
    path = tmp_path / "cassette.toml"
    path.write_text(text)
    return Spy(load_cassette(path))


def config(**agent: object) -> MissionConfig:
    cfg = MissionConfig()
    cfg.scheduler.session_timeout = 20
    cfg.scheduler.model = "haiku"
    for key, value in agent.items():
        setattr(cfg.agent, key, value)
    return cfg


def run_unit(store: Store, backend, repo: Path, cfg: MissionConfig | None = None,
             **kwargs: object) -> UnitRunOutcome:
    mission_id, unit = make_unit(store, **kwargs.pop("unit_fields", {}))
    base = git(repo, "rev-parse", "HEAD")

    async def main() -> UnitRunOutcome:
        return await run_unit_agent(store, backend, config=cfg or config(), mission_id=mission_id,
                                    unit=unit, objective="A calculator with subtract.",
                                    workdir=repo, base_commit=base, slot=1, **kwargs)

    return anyio.run(main)


MARKER_ENTRY = '''
[[interaction]]
role = "worker"
cost_usd = 0.3
  [[interaction.actions]]
  type = "write"
  path = "calc.py"
  content = "def add(a, b):\\n    return a + b\\n\\n\\ndef subtract(a, b):\\n    return a - b\\n"
  [[interaction.actions]]
  type = "commit"
  message = "Add subtract"
  [[interaction.actions]]
  type = "text"
  text = """<mc-result>
{"status": "completed", "summary": "added subtract", "files_changed": ["calc.py"], "discoveries": ["d1"], "concerns": []}
</mc-result>"""
'''


def test_marker_outcome_and_prompt(store: Store, repo: Path, tmp_path: Path) -> None:
    backend = spy(tmp_path, MARKER_ENTRY)
    outcome = run_unit(store, backend, repo, feedback="Please add a docstring.",
                       unit_fields={"specialist": "test_writer"})
    assert outcome.status == "completed" and outcome.marker_source == "marker"
    assert outcome.summary == "added subtract" and outcome.marker.discoveries == ["d1"]
    assert outcome.commits == 1 and outcome.files_changed == ["calc.py"]
    assert outcome.head_commit == git(repo, "rev-parse", "HEAD")
    assert outcome.cost_usd == 0.3 and len(outcome.attempt_ids) == 1 and outcome.error is None
    (request,) = backend.requests
    assert request.role == AgentRole.WORKER and request.model == "haiku"
    assert request.timeout_s == 20 and request.budget_usd == 5.0 and request.max_turns == 50
    assert request.metadata["unit_id"] == "u1" and request.metadata["attempt"] == "1"
    assert request.metadata["specialist"] == "test_writer"
    prompt = request.prompt
    for needle in ("A calculator with subtract.", "Add subtract (`u1`)", "- calc.py",
                   "- subtract(3, 1) == 2", "**test writer**", "Please add a docstring.",
                   "<mc-result>"):
        assert needle in prompt, needle
    assert "$" not in prompt.replace("$$", "")


def test_missing_marker_falls_back_to_git_and_saves_uncommitted_work(
    store: Store, repo: Path, tmp_path: Path
) -> None:
    backend = spy(tmp_path, '''
[[interaction]]
  [[interaction.actions]]
  type = "write"
  path = "notes/new.md"
  content = "hi"
  [[interaction.actions]]
  type = "text"
  text = "I wrote a note but forgot the marker"
''')
    outcome = run_unit(store, backend, repo)
    assert outcome.status == "completed" and outcome.marker_source == "git"
    assert outcome.marker is None and outcome.commits == 1
    assert outcome.files_changed == ["notes/new.md"]
    assert git(repo, "log", "-1", "--format=%an") == "mc-agent"
    assert git(repo, "status", "--porcelain") == ""
    logs = [e.payload for e in store.events_after(0) if e.kind == "log"]
    assert any("committed the agent's uncommitted changes" in p["message"] for p in logs)
    assert any(p.get("marker_source") == "git" for p in logs)


def test_on_session_end_is_told_before_the_work_is_judged(
    store: Store, repo: Path, tmp_path: Path
) -> None:
    # a worker slot is given back then (engine/dispatch.py): the judging (git in the
    # worktree) holds no agent. Here the agent left its note uncommitted: when the callback
    # runs, the judge has not committed it yet.
    backend = spy(tmp_path, '[[interaction]]\n  [[interaction.actions]]\n  type = "write"\n'
                            '  path = "notes/new.md"\n  content = "hi"\n')
    seen: list[tuple[str, str]] = []

    def ended(result: AgentResult) -> None:
        seen.append((result.status, git(repo, "status", "--porcelain")))

    outcome = run_unit(store, backend, repo, on_session_end=ended)
    assert seen == [("completed", "?? notes/")]
    assert outcome.commits == 1 and git(repo, "status", "--porcelain") == ""


def test_no_marker_no_changes_is_a_failure(store: Store, repo: Path, tmp_path: Path) -> None:
    backend = spy(tmp_path, '[[interaction]]\n  [[interaction.actions]]\n  type = "text"\n'
                            '  text = "<mc-result>{broken</mc-result>"\n')
    outcome = run_unit(store, backend, repo)
    assert outcome.status == "failed" and outcome.marker_source == "git"
    assert outcome.commits == 0 and "no changes" in outcome.error


def test_blocked_marker(store: Store, repo: Path, tmp_path: Path) -> None:
    backend = spy(tmp_path, '[[interaction]]\n  [[interaction.actions]]\n  type = "text"\n'
                            '  text = \'<mc-result>{"status": "blocked", "summary": "needs u0"}'
                            '</mc-result>\'\n')
    outcome = run_unit(store, backend, repo)
    assert outcome.status == "blocked" and outcome.error == "needs u0"


def test_agent_failure_keeps_its_work(store: Store, repo: Path, tmp_path: Path) -> None:
    backend = spy(tmp_path, '''
[[interaction]]
  [[interaction.actions]]
  type = "write"
  path = "half.py"
  content = "x = 1"
  [[interaction.actions]]
  type = "fail"
  error = "usage limit"
  reason = "usage_limit"
''')
    outcome = run_unit(store, backend, repo)
    assert outcome.status == "failed" and outcome.failure_reason == FailureReason.USAGE_LIMIT
    assert outcome.commits == 1 and outcome.files_changed == ["half.py"]


def test_two_pass_architect_then_editor(store: Store, repo: Path, tmp_path: Path) -> None:
    backend = spy(tmp_path, '''
[[interaction]]
role = "architect"
cost_usd = 0.1
  [[interaction.actions]]
  type = "text"
  text = "PLAN-XYZ: edit calc.py, add subtract"

[[interaction]]
role = "editor"
match = "PLAN-XYZ"
cost_usd = 0.2
  [[interaction.actions]]
  type = "write"
  path = "calc.py"
  content = "def subtract(a, b):\\n    return a - b\\n"
  [[interaction.actions]]
  type = "text"
  text = '<mc-result>{"status": "completed", "summary": "did the plan"}</mc-result>'
''')
    outcome = run_unit(store, backend, repo, config(two_pass=True))
    assert outcome.status == "completed" and outcome.summary == "did the plan"
    assert len(outcome.attempt_ids) == 2 and outcome.cost_usd == pytest.approx(0.3)
    architect, editor = backend.requests
    assert architect.role == AgentRole.ARCHITECT and architect.read_only
    assert architect.permission_mode == "plan"
    assert editor.role == AgentRole.EDITOR and not editor.read_only
    assert "PLAN-XYZ: edit calc.py" in editor.prompt
    roles = [r["role"] for r in store.rows("attempts")]
    assert roles == ["architect", "editor"]


def test_two_pass_architect_failure_skips_the_editor(store: Store, repo: Path,
                                                     tmp_path: Path) -> None:
    backend = spy(tmp_path, '[[interaction]]\nrole = "architect"\n')
    outcome = run_unit(store, backend, repo, config(two_pass=True))
    assert outcome.status == "failed" and outcome.failure_reason == FailureReason.BAD_OUTPUT
    assert len(backend.requests) == 1


def test_fixup_prompt(store: Store, repo: Path, tmp_path: Path) -> None:
    backend = spy(tmp_path, '[[interaction]]\nrole = "fixup"\nwhen = { approach = "*tests*" }\n')
    run_unit(store, backend, repo, role=AgentRole.FIXUP, approach="Adjust the tests.",
             failure_output="FAILED test_calc.py::test_add - assert 3 == 4", candidate=2)
    (request,) = backend.requests
    assert request.role == AgentRole.FIXUP and request.metadata["candidate"] == "2"
    assert "Adjust the tests." in request.prompt
    assert "FAILED test_calc.py::test_add" in request.prompt


@pytest.mark.parametrize("marker", ["good", "bad"])
def test_with_the_real_claude_backend_and_the_fake(
    store: Store, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, marker: str
) -> None:
    monkeypatch.setenv("PATH", f"{FAKES}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_CLAUDE_SCENARIO", "success")
    monkeypatch.setenv("FAKE_CLAUDE_MARKER", marker)
    monkeypatch.setenv("FAKE_CLAUDE_EDITS", json.dumps([{"path": "calc.py", "content": "x = 2\n"}]))
    monkeypatch.delenv("FAKE_CLAUDE_COMMIT", raising=False)
    backend = ClaudeBackend(env_passthrough=["FAKE_CLAUDE_*"], kill_grace=0.5)
    outcome = run_unit(store, backend, repo)
    source = "marker" if marker == "good" else "git"  # a malformed marker: git facts decide
    assert outcome.status == "completed" and outcome.marker_source == source
    fallback = [e.payload for e in store.events_after(0)
                if e.kind == "log" and e.payload.get("marker_source") == "git"]
    assert len(fallback) == (marker == "bad")
    assert all("1 commit(s), 1 file(s)" in p["message"] for p in fallback)
    assert outcome.commits == 1 and outcome.files_changed == ["calc.py"]  # saved by mc-agent
    assert outcome.cost_usd == pytest.approx(0.0421)
    attempt = store.get("attempts", outcome.attempt_ids[0])
    assert attempt["backend"] == "claude" and attempt["status"] == "completed"
    live = [e.payload["type"] for e in store.events_after(0) if e.kind == "agent.event"]
    assert {"init", "text", "tool_use", "tool_result", "usage"} <= set(live)


def test_a_worker_refused_by_the_cli_fails_as_denied(
    store: Store, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The old default: a worktree under .git/. Claude Code refuses every Write there and
    still says success; the unit's reason is the denial, never "no changes"."""
    inside = repo / ".git" / "mc" / "pool" / "slot-1"
    git(repo, "worktree", "add", "-q", "--detach", str(inside))
    monkeypatch.setenv("PATH", f"{FAKES}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_CLAUDE_SCENARIO", "success")
    monkeypatch.setenv("FAKE_CLAUDE_EDITS", json.dumps([{"path": "calc.py", "content": "x\n"}]))
    monkeypatch.setenv("FAKE_CLAUDE_COMMIT", "Change calc")
    backend = ClaudeBackend(env_passthrough=["FAKE_CLAUDE_*"], kill_grace=0.5)
    outcome = run_unit(store, backend, inside)
    assert outcome.status == "failed" and outcome.failure_reason == FailureReason.DENIED
    assert outcome.error.startswith(f"agent was denied: Write {inside}/calc.py")
    assert "no changes" not in (outcome.error + outcome.summary)
    assert outcome.commits == 0
    logged = [e.payload for e in store.events_after(0)
              if e.kind == "log" and e.payload.get("denials")]
    assert logged and "scheduler.parallel.pool_dir" in logged[0]["message"]


def test_the_default_profile_lets_a_worker_commit_and_run_the_tests(
    store: Store, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same fake, worktree outside .git: the profile's rules let the commit and the
    verification command through (they are refused without them, see the test above)."""
    monkeypatch.setenv("PATH", f"{FAKES}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_CLAUDE_SCENARIO", "success")
    monkeypatch.setenv("FAKE_CLAUDE_LOG", str(tmp_path / "call.json"))
    monkeypatch.setenv("FAKE_CLAUDE_EDITS", json.dumps([{"path": "calc.py", "content": "x = 3\n"}]))
    monkeypatch.setenv("FAKE_CLAUDE_COMMIT", "Change calc")
    monkeypatch.setenv("FAKE_CLAUDE_BASH", json.dumps(["python3 -m unittest -q 2>&1 | tail -1"]))
    cfg = config()
    cfg.target.verification.command = "python3 -m unittest discover -q"
    backend = ClaudeBackend(env_passthrough=["FAKE_CLAUDE_*"], kill_grace=0.5)
    outcome = run_unit(store, backend, repo, cfg)
    assert outcome.status == "completed" and outcome.failure_reason is None
    assert git(repo, "log", "-1", "--format=%s") == "Change calc"  # the agent's own commit
    argv = json.loads((tmp_path / "call.json").read_text())["argv"]
    rules = argv[argv.index("--allowedTools") + 1].split(",")
    assert {"Bash(python3 -m unittest:*)", "Bash(git add:*)", "Bash(git commit:*)"} <= set(rules)
    assert argv[argv.index("--permission-mode") + 1] == "acceptEdits"
    attempt = store.get("attempts", outcome.attempt_ids[0])
    assert attempt["error"] is None


def test_a_silent_worker_is_ended_at_the_stall_limit_and_retried_once(
    store: Store, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fake prints one line then goes silent (and ignores SIGTERM, with a hanging
    grandchild): each session ends after ``stall_seconds``, long before ``session_timeout``;
    the session is retried once, told why; the unit fails as stalled with the reason."""
    import time

    pidfile = tmp_path / "grandchild.pid"
    monkeypatch.setenv("PATH", f"{FAKES}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_CLAUDE_SCENARIO", "hang")
    monkeypatch.setenv("FAKE_CLAUDE_IGNORE_TERM", "1")
    monkeypatch.setenv("FAKE_CLAUDE_CHILD_PIDFILE", str(pidfile))
    log = tmp_path / "fake.json"
    monkeypatch.setenv("FAKE_CLAUDE_LOG", str(log))
    backend = ClaudeBackend(env_passthrough=["FAKE_CLAUDE_*"], kill_grace=0.3)
    cfg = config(stall_seconds=1.0)
    cfg.scheduler.session_timeout = 60
    started = time.monotonic()
    outcome = run_unit(store, backend, repo, cfg)
    assert time.monotonic() - started < 15  # two stalls of ~1 s, never the 60 s timeout
    assert outcome.status == "timeout" and outcome.failure_reason == FailureReason.STALLED
    assert outcome.error == "stalled: no output for 1 s"
    assert len(outcome.attempt_ids) == 2  # retried once, not more
    attempts = [store.get("attempts", a) for a in outcome.attempt_ids]
    assert [a["failure_reason"] for a in attempts] == ["stalled", "stalled"]
    stalled = [e.payload for e in store.events_after(0) if e.kind == "agent.stalled"]
    assert len(stalled) == 1 and stalled[0]["stall_s"] == 1.0
    assert "stalled: no output for 1 s" in json.loads(log.read_text())["stdin"]  # told why
    grandchild = int(pidfile.read_text())
    stat = Path(f"/proc/{grandchild}/stat")
    assert not stat.exists() or stat.read_text().split(") ")[1][0] in "ZX"  # the whole group
