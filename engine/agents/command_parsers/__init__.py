"""Output parsers for the command backend: codex ``exec --json``, gemini ``-o stream-json``,
aider (plain text) and plain user templates. Pure: lines in, events and a result out.

Shapes are those the real CLIs printed against a scripted model server (codex 0.171.0,
gemini-cli 0.61.0, aider 0.86.2); short real transcripts are in
``tests/fixtures/agent_output/``. ``terminal`` turns true at the CLI's final line
(codex ``turn.completed``/``turn.failed``, gemini ``result``) so the process gets only a short
grace to exit; ``denials`` lists the tool calls the CLI refused ("run_shell_command(rm x)").

One module per dialect: ``base.py`` (:class:`OutputParser`, plain user templates),
``codex.py``, ``gemini.py``, ``aider.py``; every name is importable from here.
"""

from __future__ import annotations

from engine.agents.command_parsers.aider import AiderParser, parse_count
from engine.agents.command_parsers.base import OutputParser
from engine.agents.command_parsers.codex import (
    SANDBOX_DENIAL,
    CodexParser,
    codex_rollout_denials,
)
from engine.agents.command_parsers.gemini import GEMINI_EXIT, GeminiParser, is_gemini_denial

__all__ = [
    "GEMINI_EXIT", "PARSERS", "SANDBOX_DENIAL", "AiderParser", "CodexParser", "GeminiParser",
    "OutputParser", "codex_rollout_denials", "is_gemini_denial", "parse_count",
]


PARSERS: dict[str, type[OutputParser]] = {
    "codex": CodexParser, "gemini": GeminiParser, "aider": AiderParser, "command": OutputParser,
}
