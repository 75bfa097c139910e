"""The command backend with small stand-in CLIs that print the documented output."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import anyio
import pytest

from engine.agents import (
    AgentRequest,
    AgentResult,
    AgentRole,
    AgentUnavailable,
    ClaudeBackend,
    CommandBackend,
    FailureReason,
    ScriptedBackend,
    make_backend,
)
from engine.agents.command import GEMINI_P
from engine.agents.pricing import estimate_cost
from engine.config import MissionConfig

CODEX = r'''
import json, sys
prompt = sys.stdin.read()
open("codex_argv.json", "w").write(json.dumps({"argv": sys.argv[1:], "prompt": prompt}))
open("edited.txt", "w").write("by codex\n")
for obj in [
    {"type": "thread.started", "thread_id": "th-1"},
    {"type": "turn.started"},
    {"type": "item.completed", "item": {"id": "item_0", "type": "file_change", "status": "completed",
                                         "changes": [{"path": "edited.txt", "kind": "add"}]}},
    {"type": "item.completed", "item": {"id": "item_1", "type": "agent_message",
                                         "text": "codex done: " + prompt[:10]}},
    {"type": "turn.completed", "usage": {"input_tokens": 1000, "cached_input_tokens": 400,
                                         "output_tokens": 50}},
]:
    print(json.dumps(obj), flush=True)
'''

GEMINI = r'''
import json, sys
prompt = sys.stdin.read()
open("gemini_argv.json", "w").write(json.dumps({"argv": sys.argv[1:], "prompt": prompt}))
print(json.dumps({"type": "init", "timestamp": "t", "session_id": "g-1", "model": "gemini-2.5-flash"}))
print(json.dumps({"type": "message", "timestamp": "t", "role": "assistant", "content": "ok ",
                  "delta": True}))
print(json.dumps({"type": "message", "timestamp": "t", "role": "assistant", "content": "done",
                  "delta": True}))
print(json.dumps({"type": "result", "status": "error", "error": {"type": "auth",
                  "message": "no credentials"}, "stats": {"input_tokens": 1, "output_tokens": 1}}))
sys.exit(41)
'''

AIDER = r'''
import sys
args = sys.argv[1:]
prompt = open(args[args.index("--message-file") + 1]).read()
print("Aider v0.86.1")
print("Applied edit to calc.py")
print("Tokens: 2.5k sent, 120 received. Cost: $0.01 message, $0.02 session.")
print("prompt was:", prompt)
'''


def install(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "bin"
    path.mkdir()
    install(path, "codex", CODEX)
    install(path, "gemini", GEMINI)
    install(path, "aider", AIDER)
    monkeypatch.setenv("PATH", f"{path}{os.pathsep}{os.environ['PATH']}")
    return path


def go(backend: CommandBackend, workdir: Path, model: str = "gpt-5") -> AgentResult:
    request = AgentRequest(role=AgentRole.WORKER, prompt="Add subtract please", workdir=workdir,
                           model=model, timeout_s=20)
    return anyio.run(backend.run, request)


def test_codex(bin_dir: Path, tmp_path: Path) -> None:
    backend = CommandBackend("codex", kill_grace=0.3)
    backend.check_available()
    result = go(backend, tmp_path)
    assert result.status == "completed" and result.text == "codex done: Add subtra"
    assert result.session_id == "th-1" and result.tokens.cache_read == 400
    assert result.cost_estimated and result.cost_usd > 0
    seen = json.loads((tmp_path / "codex_argv.json").read_text())
    assert seen["prompt"].startswith("Add subtract please\n\nNote from Mission Control")
    assert seen["argv"][-3:] == ["-m", "gpt-5", "-"]
    assert (tmp_path / "edited.txt").exists()


def test_codex_with_a_claude_alias_runs_its_default_model_priced_as_such(
    bin_dir: Path, tmp_path: Path
) -> None:
    result = go(CommandBackend("codex", kill_grace=0.3), tmp_path, model="sonnet")
    seen = json.loads((tmp_path / "codex_argv.json").read_text())
    assert "-m" not in seen["argv"] and seen["argv"][-1] == "-"  # codex picks its own model
    # its tokens are priced at the codex default, not at Claude Sonnet's prices
    assert result.cost_estimated
    assert result.cost_usd == pytest.approx(estimate_cost("gpt-5", result.tokens))
    assert result.cost_usd != pytest.approx(estimate_cost("sonnet", result.tokens))


def test_gemini_auth_exit_code(bin_dir: Path, tmp_path: Path) -> None:
    result = go(CommandBackend("gemini"), tmp_path)
    assert (result.status, result.failure_reason) == ("error", FailureReason.AUTH)
    assert "no credentials" in result.error and result.text == "ok done"
    # headless by -p (whose text gemini appends to stdin); the prompt itself is on stdin only
    seen = json.loads((tmp_path / "gemini_argv.json").read_text())
    argv = seen["argv"]
    assert argv[:2] == ["-p", GEMINI_P] and argv[argv.index("-o") + 1] == "stream-json"
    assert seen["prompt"] == "Add subtract please"
    assert not any("subtract" in a for a in argv)


def test_aider_prompt_file_and_cost(bin_dir: Path, tmp_path: Path) -> None:
    result = go(CommandBackend("aider"), tmp_path, model="sonnet")
    assert result.status == "completed" and result.cost_usd == 0.02
    assert "prompt was: Add subtract please" in result.text
    leftovers = [p for p in Path(os.environ.get("TMPDIR", "/tmp")).glob("mc-prompt-*")
                 if "Add subtract please" in p.read_text(errors="ignore")]
    assert leftovers == []  # the prompt file is removed afterwards


def test_user_template_cost_unknown(tmp_path: Path) -> None:
    script = tmp_path / "agent.sh"
    script.write_text('#!/bin/sh\necho "model=$2 in $(pwd)"\ncat "$1"\n')
    script.chmod(0o755)
    backend = CommandBackend("command", template=[str(script), "{prompt_file}", "{model}"])
    backend.check_available()
    result = go(backend, tmp_path, model="my-model")
    assert result.status == "completed" and result.cost_usd is None and not result.cost_estimated
    assert result.text.splitlines() == [f"model=my-model in {tmp_path}", "Add subtract please"]
    fails = CommandBackend("command", template=["/bin/sh", "-c", "echo bad >&2; exit 4"])
    failed = go(fails, tmp_path)
    assert failed.status == "failed" and failed.exit_code == 4 and "bad" in failed.error


def test_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(AgentUnavailable, match="codex.*npm install"):
        CommandBackend("codex").check_available()
    with pytest.raises(AgentUnavailable, match=r"\[agent\] command"):
        CommandBackend("command").check_available()
    result = go(CommandBackend("gemini"), tmp_path)
    assert result.failure_reason == FailureReason.NOT_FOUND


def test_make_backend(tmp_path: Path) -> None:
    def cfg(**agent: object) -> MissionConfig:
        return MissionConfig(agent=agent)

    assert isinstance(make_backend(cfg(backend="claude")), ClaudeBackend)
    codex = make_backend(cfg(backend="codex", kill_grace_seconds=1.5, env_passthrough=["X_*"]))
    assert isinstance(codex, CommandBackend) and codex.name == "codex"
    assert codex.kill_grace == 1.5 and codex.env_passthrough == ["X_*"]
    assert codex.result_grace == MissionConfig().agent.result_grace_seconds
    # every variable holding an engine secret (bot and server tokens) is denied to agents
    assert codex.env_deny == ["MC_TELEGRAM_TOKEN", "MC_A2A_TOKEN", "MC_SERVICES_TOKEN"]
    template = make_backend(cfg(backend="command", command=["t", "{prompt_file}"]))
    assert isinstance(template, CommandBackend) and template.template == ["t", "{prompt_file}"]
    cassette = tmp_path / "c.toml"
    cassette.write_text("[[interaction]]\n")
    scripted = make_backend(cfg(backend="scripted", cassette=str(cassette)))
    assert isinstance(scripted, ScriptedBackend)
    scripted.check_available()
