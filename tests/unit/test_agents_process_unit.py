"""Pure parts of process control: line splitting and the environment allowlist."""

from __future__ import annotations

from pathlib import Path

from engine.agents.process import LineSplitter, build_env
from engine.bytecode import pycache_prefix


def test_line_splitter_handles_chunks_long_lines_and_tails() -> None:
    splitter = LineSplitter(limit=10)
    out = splitter.feed(b"ab")
    out += splitter.feed(b"c\nshort\n" + b"x" * 25)
    out += splitter.feed(b"yy\nnext\npartial")
    assert out == [(b"abc", False, 3), (b"short", False, 5), (b"x" * 10, True, 27),
                   (b"next", False, 4)]
    assert splitter.flush() == [(b"partial", False, 7)]
    assert splitter.flush() == []


def test_line_splitter_exact_limit_is_not_truncated() -> None:
    splitter = LineSplitter(limit=4)
    assert splitter.feed(b"abcd\nabcde\n") == [(b"abcd", False, 4), (b"abcd", True, 5)]


def test_env_allowlist_and_denials() -> None:
    base = {
        "PATH": "/bin", "HOME": "/h", "LC_ALL": "C", "ANTHROPIC_API_KEY": "sk-1",
        "CLAUDE_CODE_USE_BEDROCK": "1", "AIDER_MODEL": "x", "MC_TELEGRAM_TOKEN": "t",
        "MC_DASHBOARD_TOKEN": "d", "TELEGRAM_BOT_TOKEN": "tg", "AWS_SECRET_ACCESS_KEY": "a",
        "RANDOM": "r", "FAKE_CLAUDE_SCENARIO": "success", "MC_SCHEDULER__MODEL": "opus",
    }
    env = build_env(base=base, passthrough=["FAKE_CLAUDE_*", "MC_DASHBOARD_TOKEN",
                                            "TELEGRAM_BOT_TOKEN"],
                    deny=["TELEGRAM_BOT_TOKEN"], extra={"MC_X": "no", "EXTRA": "yes"})
    assert env.pop("PYTHONPYCACHEPREFIX") == pycache_prefix()
    assert env == {
        "PATH": "/bin", "HOME": "/h", "LC_ALL": "C", "ANTHROPIC_API_KEY": "sk-1",
        "CLAUDE_CODE_USE_BEDROCK": "1", "AIDER_MODEL": "x", "FAKE_CLAUDE_SCENARIO": "success",
        "EXTRA": "yes",
    }


def test_env_keeps_bytecode_out_of_the_worktree_unless_the_user_chose() -> None:
    assert build_env(base={"PATH": "/bin"})["PYTHONPYCACHEPREFIX"] == pycache_prefix()
    assert ".git" not in Path(pycache_prefix()).parts
    mine = build_env(base={"PATH": "/bin", "PYTHONPYCACHEPREFIX": "/mine"})
    assert mine["PYTHONPYCACHEPREFIX"] == "/mine"
    off = build_env(base={"PATH": "/bin", "PYTHONDONTWRITEBYTECODE": "1"})
    assert off["PYTHONDONTWRITEBYTECODE"] == "1" and "PYTHONPYCACHEPREFIX" not in off
