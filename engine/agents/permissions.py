"""Headless permission profiles: what an agent may do unattended, per role.

Claude Code in ``-p`` mode has nobody to ask, so anything that needs approval is refused
(the tool result says so and the result line lists it under ``permission_denials``).
Measured on Claude Code 2.1.328 (``docs/agents.md``):

- ``acceptEdits`` lets Write/Edit change files inside the working directory, except under
  any ``.git/`` directory ("... which is a sensitive file");
- read-only shell commands (``ls``, ``git status``, ``git log``, ``git diff``) run without a
  rule; anything else (``git add``, ``git commit``, ``pytest``, ``python -m ...``) needs an
  ``--allowedTools`` rule such as ``Bash(git commit:*)`` (``Bash(git commit *)`` works too);
  a command joined with ``&&`` needs a rule for every part;
- ``plan`` refuses every write and every command that changes files.

So the editing roles (worker, editor, fixup) get ``acceptEdits`` plus rules for exactly what a
unit needs: the verification command's programs, the project's test runner and the git
commands a worker commits with. The other roles (planner, reviewer, objective check,
architect, ambition, strategist) run in ``plan`` mode. User settings: ``[agent]
allowed_tools`` *extends* the editing roles' rules; ``[agent] permission_mode`` *replaces*
their mode (``bypassPermissions`` is the opt-in full bypass). Read-only roles stay ``plan``.

MCP tools are named ``mcp__<server>__<tool>`` by Claude Code and, headless, are refused like
any other tool without a rule. An editing role served mc's session tools
(``engine/services/session_tools.py``) gets the rule ``mcp__<server>`` (every tool of that
server: ``run_verification``, ``recall``, ``report_discovery`` and the unit's template tools);
measured on Claude Code 2.1.332 (``tests/e2e/test_real_claude_tools.py``).
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from engine.agents.types import AgentRole

EDITING_ROLES = frozenset({AgentRole.WORKER, AgentRole.EDITOR, AgentRole.FIXUP})
BYPASS_MODES = frozenset({"bypassPermissions"})
FILE_TOOLS = ("Read", "Edit", "Write", "Glob", "Grep")
GIT_COMMANDS = ("git add", "git commit", "git status", "git diff", "git log", "git show")

# Programs that run another program: the rule names both (``uv run pytest``, not ``uv``).
_RUNNERS = {"uv": "run", "poetry": "run", "pdm": "run", "hatch": "run", "pipenv": "run",
            "rye": "run", "bundle": "exec", "pnpm": "exec"}
_PREFIX_RUNNERS = frozenset({"npx", "bunx", "pnpx", "uvx", "pipx", "time", "nice", "env"})
_PYTHONS = re.compile(r"^(?:python(?:\d+(?:\.\d+)?)?|py|pypy3?)$")
# Programs whose first word after them is a subcommand (``cargo test``, ``npm run lint``).
_SUBCOMMANDS = frozenset({"npm", "pnpm", "yarn", "bun", "cargo", "go", "make", "dotnet", "mvn",
                          "gradle", "./gradlew", "deno", "mix", "rake", "just", "tox", "nox"})
_SEPARATORS = re.compile(r"\s*(?:&&|\|\||;|\||\n)\s*")
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")

# Test runners by the files that announce them (the project's own runner, beyond the
# verification command, so a worker can run one test file).
_RUNNER_MARKERS: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("pyproject.toml", "setup.py", "setup.cfg", "pytest.ini", "tox.ini"),
     ("pytest", "python -m pytest", "python3 -m pytest", "python -m unittest",
      "python3 -m unittest")),
    (("uv.lock",), ("uv run",)),
    (("package.json",), ("npm test", "npm run test", "npx jest", "npx vitest")),
    (("Cargo.toml",), ("cargo test", "cargo build", "cargo check")),
    (("go.mod",), ("go test", "go build", "go vet")),
    (("Makefile",), ("make test", "make check")),
)


@dataclass(frozen=True)
class PermissionProfile:
    """What one role may do: a permission mode and ``--allowedTools`` rules."""

    mode: str
    allowed_tools: list[str] = field(default_factory=list)

    @property
    def bypass(self) -> bool:
        return self.mode in BYPASS_MODES


def command_heads(command: str) -> list[str]:
    """The program part of each simple command in a shell command line.

    ``"uv run pytest -q && ruff check ."`` -> ``["uv run pytest", "ruff check"]``. Environment
    assignments in front are dropped; ``cd`` is left out (always allowed). A part that does not
    parse (unbalanced quotes) is skipped.
    """
    heads: list[str] = []
    for part in _SEPARATORS.split(command.strip()):
        try:
            words = shlex.split(part)
        except ValueError:
            continue
        while words and _ASSIGNMENT.match(words[0]):
            words.pop(0)
        head = _head(words)
        if head and head.split()[0] not in ("cd", "true", ":") and head not in heads:
            heads.append(head)
    return heads


def _head(words: list[str]) -> str:
    if not words:
        return ""
    first, rest = words[0], words[1:]
    if first in _RUNNERS and rest and rest[0] == _RUNNERS[first]:
        i = 1  # `uv run --frozen pytest`: the runner's options stay in the rule
        while i < len(rest) and rest[i].startswith("-"):
            i += 1
        return " ".join([first, *rest[:i], _head(rest[i:])]).strip()
    if first in _PREFIX_RUNNERS and rest:
        return f"{first} {_head(rest)}"
    if _PYTHONS.match(os.path.basename(first)) and len(rest) >= 2 and rest[0] == "-m":
        return f"{first} -m {rest[1]}"
    if first in _SUBCOMMANDS and rest and not rest[0].startswith("-"):
        if first in ("npm", "pnpm", "yarn", "bun") and rest[0] == "run" and len(rest) > 1:
            return f"{first} run {rest[1]}"
        return f"{first} {rest[0]}"
    return first


def bash_rule(prefix: str) -> str:
    """The Claude Code rule allowing commands that start with ``prefix``: ``Bash(prefix:*)``."""
    return f"Bash({prefix}:*)"


def mcp_rule(server: str) -> str:
    """The Claude Code rule allowing every tool of the MCP server ``server``: ``mcp__<server>``."""
    return f"mcp__{server}"


def project_runners(repo: Path | None) -> list[str]:
    """Test-runner command prefixes the project's files announce (``pytest``, ``cargo test``...)."""
    if repo is None:
        return []
    found: list[str] = []
    for markers, prefixes in _RUNNER_MARKERS:
        if any((repo / m).exists() for m in markers):
            found += [p for p in prefixes if p not in found]
    return found


def worker_rules(verification_command: str, repo: Path | None = None,
                 extra: Iterable[str] = ()) -> list[str]:
    """``--allowedTools`` rules of an editing role, in a stable order, without duplicates."""
    rules = list(FILE_TOOLS)
    for prefix in (*command_heads(verification_command), *project_runners(repo), *GIT_COMMANDS):
        rule = bash_rule(prefix)
        if rule not in rules:
            rules.append(rule)
    for rule in extra:
        if rule and rule not in rules:
            rules.append(rule)
    return rules


def profile_for(role: AgentRole, *, verification_command: str, repo: Path | None = None,
                mode_override: str | None = None, extra_tools: Iterable[str] = (),
                mcp_servers: Iterable[str] = ()) -> PermissionProfile:
    """The permission profile of ``role``.

    Editing roles: ``acceptEdits`` (or ``mode_override``), :func:`worker_rules` and an
    :func:`mcp_rule` per server in ``mcp_servers`` (the session's own MCP servers). Every
    other role: ``plan`` with no extra rules, whatever the overrides say.
    """
    if role not in EDITING_ROLES:
        return PermissionProfile("plan", [])
    rules = worker_rules(verification_command, repo, extra_tools)
    rules += [r for r in map(mcp_rule, mcp_servers) if r not in rules]
    return PermissionProfile(mode_override or "acceptEdits", rules)


# ---------------------------------------------------------------------- denials
# Tool-result texts of a refused call (Claude Code 2.1.328): "This command requires approval",
# "... The following parts require approval: ...", "Claude requested permissions to edit X
# which is a sensitive file.", "... but you haven't granted it yet.", "Cannot write to X while
# in plan mode.", "touch in 'X' needs approval. ...".
DENIAL_TEXT = re.compile(
    r"requires? approval|needs approval|requested permissions to|haven't granted|"
    r"while in plan mode|permission for this tool use was denied|was not run",
    re.I,
)


def is_denial_text(text: str) -> bool:
    """Whether a tool result's text says the call was refused (not that the command failed)."""
    return bool(DENIAL_TEXT.search(text[:2000]))


def describe_call(tool: str, tool_input: object, limit: int = 120) -> str:
    """``Write .git/mc/pool/slot-1/a.py`` / ``Bash(git commit -m ...)`` / ``WebFetch``."""
    data = tool_input if isinstance(tool_input, dict) else {}
    if tool == "Bash" or "command" in data:
        command = " ".join(str(data.get("command", "")).split())
        if len(command) > limit:
            command = command[: limit - 3] + "..."
        return f"{tool}({command})"
    for key in ("file_path", "notebook_path", "path", "url"):
        if isinstance(data.get(key), str):
            return f"{tool} {data[key]}"
    return tool


def denial_message(denials: Iterable[str], limit: int = 5) -> str:
    """``agent was denied: Write a.py, Bash(git commit -m x)`` (at most ``limit`` named)."""
    items = list(dict.fromkeys(denials))
    text = ", ".join(items[:limit])
    if len(items) > limit:
        text += f" and {len(items) - limit} more"
    return f"agent was denied: {text}"
