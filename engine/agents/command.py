"""The command backend: other agent CLIs (codex, gemini, aider) or a user-defined template.

Each tool has an argv template and an output parser (:mod:`engine.agents.command_parsers`).
A user template (``[agent] command = [...]``) may use ``{prompt_file}``, ``{workdir}``
and ``{model}``; its output is plain text and its cost is reported as unknown. The
prompt is always written to a private temp file and also given on stdin.

The built-in templates were measured against the real CLIs (codex 0.171.0, gemini-cli
0.61.0, aider 0.86.2) pointed at a scripted model server; ``docs/agents.md`` lists what
each one does headless. Permission profile per role (from :mod:`engine.agents.permissions`):

- codex: editing roles ``--sandbox workspace-write`` (writes inside the worktree and the
  temp dirs; every ``.git`` directory stays read-only, so the agent cannot commit and mc
  commits its work), others ``--sandbox read-only``; ``approval_policy="never"`` always
  (nobody is there to approve: a refused command fails back to the model).
- gemini: editing roles ``--approval-mode default`` plus a policy file allowing the edit
  tools (``write_file``, ``replace``; gemini keeps their paths inside the workspace) and
  ``run_shell_command`` for exactly the profile's command prefixes (verification command,
  the project's test runner, ``git add/commit/status/diff/log/show``) and a few read-only
  helpers; everything else is "denied by policy". Not ``auto_edit``: there an allowed
  command with a redirection (``git status > ~/x``) runs, in ``default`` it needs a
  confirmation nobody can give. Others ``--approval-mode plan``. ``--skip-trust`` because
  headless gemini drops to ``default`` approval in an untrusted folder (and exits 55 in plan
  mode), and mc made the worktree.
- aider: edits files only (it runs no shell commands unattended); editing roles get
  ``--auto-test --test-cmd <verification>``, others ``--chat-mode ask``. No auto-commits
  (mc commits the work), nothing written into the worktree besides the edits.
- ``[agent] permission_mode = "bypassPermissions"`` (opt-in): codex
  ``--dangerously-bypass-approvals-and-sandbox``, gemini ``--approval-mode yolo``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from engine.agents.command_parsers import PARSERS, CodexParser
from engine.agents.permissions import BYPASS_MODES, GIT_COMMANDS
from engine.agents.process import Line, build_env, run_streaming
from engine.agents.types import (
    ERROR,
    AgentBackend,
    AgentEvent,
    AgentRequest,
    AgentResult,
    AgentUnavailable,
    EventCallback,
    FailureReason,
    emit,
    stalled_result,
)

INSTALL_HINTS = {
    "codex": "install the Codex CLI (`npm install -g @openai/codex`) and set OPENAI_API_KEY",
    "gemini": "install the Gemini CLI (`npm install -g @google/gemini-cli`) and set GEMINI_API_KEY",
    "aider": "install aider (`pipx install aider-chat`) and set the API key of its model",
    "command": "check the [agent] command template in mission-control.toml",
}
CLAUDE_ALIASES = ("sonnet", "opus", "haiku")
MAX_STDERR_EVENTS = 100
# The model whose prices estimate a session's cost when the CLI runs its own default model
# (a Claude alias is never passed to codex or gemini): never Claude prices for their tokens.
DEFAULT_PRICE_MODEL = {"codex": "gpt-5", "gemini": "gemini-2.5-pro"}
# gemini -p: "Prompt text, appended to stdin input if provided. Forces non-interactive mode."
# The prompt itself goes on stdin (argv is size-limited and visible in ps); this is the tail.
GEMINI_P = "Carry out the task described above."
# aider flags that keep it headless and keep its own files out of the worktree (measured on
# 0.86.2: by default it appends ".aider*" to .gitignore and writes .aider.chat.history.md,
# .aider.input.history and .aider.tags.cache.v4/ into the repo, which mc would commit).
AIDER_FLAGS = (
    "--yes-always", "--no-stream", "--no-pretty", "--no-fancy-input", "--no-check-update",
    "--no-show-model-warnings", "--no-show-release-notes", "--analytics-disable",
    "--no-gitignore", "--no-auto-commits", "--no-dirty-commits", "--map-tokens", "0",
    "--chat-history-file", os.devnull, "--input-history-file", os.devnull,
)
# gemini-cli: the edit tools an editing role may use without asking, and read-only shell
# helpers allowed besides the profile (each part of a compound command is checked; gemini does
# not pass `cd x && ...` or `... | head` otherwise).
GEMINI_EDIT_TOOLS = ("write_file", "replace")
GEMINI_READ_ONLY = ("cd", "pwd", "ls", "cat", "head", "tail", "grep", "wc")
_BASH_RULE = re.compile(r"^Bash\((?P<prefix>[^()]*?)(?::\*|\s\*)?\)$")


def _native_model(model: str) -> str | None:
    """The model for a non-Claude CLI: Claude aliases/ids are dropped (use the CLI's default)."""
    if not model or model in CLAUDE_ALIASES or model.startswith("claude"):
        return None
    return model


def price_model(tool: str, model: str) -> str:
    """The model a session's tokens are priced at (see ``DEFAULT_PRICE_MODEL``)."""
    if tool in DEFAULT_PRICE_MODEL:
        return _native_model(model) or DEFAULT_PRICE_MODEL[tool]
    return model


def editing(request: AgentRequest) -> bool:
    """Whether the request may change files (worker, editor, fixup; not plan/read-only)."""
    return not request.read_only and request.permission_mode != "plan"


def shell_prefixes(request: AgentRequest) -> list[str]:
    """The shell command prefixes an editing role may run, from its ``Bash(prefix:*)`` rules.

    The rules come from :func:`engine.agents.permissions.profile_for` (verification command,
    the project's test runner, git). Without any, the git commands a worker commits with.
    """
    prefixes: list[str] = []
    for rule in request.allowed_tools:
        match = _BASH_RULE.match(rule.strip())
        if match and match.group("prefix").strip():
            prefix = match.group("prefix").strip()
            if prefix not in prefixes:
                prefixes.append(prefix)
    return prefixes or list(GIT_COMMANDS)


def gemini_policy(request: AgentRequest) -> str:
    """A gemini-cli policy file (TOML) for an editing role: its edit tools and its shell
    command prefixes (:func:`shell_prefixes` plus :data:`GEMINI_READ_ONLY`) are allowed."""
    prefixes = [*shell_prefixes(request)]
    prefixes += [p for p in GEMINI_READ_ONLY if p not in prefixes]
    rules = ["# Written by Mission Control for one headless session."]
    for tool in GEMINI_EDIT_TOOLS:
        rules.append(f'[[rule]]\ntoolName = "{tool}"\ndecision = "allow"\npriority = 100\n')
    rules.append('[[rule]]\ntoolName = "run_shell_command"\n'
                 f"commandPrefix = [{', '.join(json.dumps(p) for p in prefixes)}]\n"
                 'decision = "allow"\npriority = 100\n')
    return "\n".join(rules)


def tool_argv(tool: str, request: AgentRequest, policy_file: str | None = None) -> list[str]:
    """The built-in argv template of ``tool`` (``{prompt_file}`` filled in later).

    ``policy_file``: for gemini's editing roles, the file holding :func:`gemini_policy`.
    """
    model = _native_model(request.model)
    bypass = request.permission_mode in BYPASS_MODES and not request.read_only
    if tool == "codex":
        argv = ["codex", "exec", "--json", "--color", "never", "--skip-git-repo-check"]
        if bypass:
            argv += ["--dangerously-bypass-approvals-and-sandbox"]
        else:
            argv += ["--sandbox", "workspace-write" if editing(request) else "read-only",
                     "-c", 'approval_policy="never"']
        if model:
            argv += ["-m", model]
        return [*argv, "-"]  # "-": read the prompt from stdin
    if tool == "gemini":
        argv = ["gemini", "-p", GEMINI_P, "-o", "stream-json", "--skip-trust"]
        if bypass:
            argv += ["--approval-mode", "yolo"]
        elif editing(request):
            argv += ["--approval-mode", "default"]
            if policy_file:
                argv += ["--policy", policy_file]
        else:
            argv += ["--approval-mode", "plan"]
        if model:
            argv += ["-m", model]
        return argv
    if tool == "aider":
        argv = ["aider", "--message-file", "{prompt_file}", *AIDER_FLAGS]
        if not editing(request):
            argv += ["--chat-mode", "ask"]
        elif request.verify_command:
            argv += ["--auto-test", "--test-cmd", request.verify_command]
        if request.model:
            argv += ["--model", request.model]  # aider knows the sonnet/opus/haiku aliases
        return argv
    raise ValueError(f"unknown command tool {tool!r}")


# What an editing role cannot do under this CLI's profile, told up front so the model does not
# spend turns fighting it (the worker prompt asks it to commit and run the tests).
PROMPT_NOTES = {
    "codex": (
        "Note from Mission Control: your sandbox keeps the .git directory read-only, so "
        "`git add` and `git commit` fail here. Do not try to commit or to work around it: leave "
        "your changes in the working tree; Mission Control commits them for you. Running the "
        "tests works as usual."
    ),
    "aider": (
        "Note from Mission Control: you cannot run commands or commit here. Make the edits "
        "(SEARCH/REPLACE blocks); the verification command runs after your edits and Mission "
        "Control commits them for you."
    ),
}


def codex_home(env: dict[str, str]) -> Path:
    """Where codex keeps its config and session rollouts: ``$CODEX_HOME`` or ``~/.codex``."""
    if env.get("CODEX_HOME"):
        return Path(env["CODEX_HOME"])
    return Path(env.get("HOME") or Path.home()) / ".codex"


def prompt_text(tool: str, request: AgentRequest) -> str:
    """The text the CLI gets: system instructions, the prompt, and the tool's note for
    editing roles (:data:`PROMPT_NOTES`)."""
    text = request.prompt
    if request.system_prompt:
        text = f"{request.system_prompt}\n\n{text}"
    note = PROMPT_NOTES.get(tool)
    if note and editing(request):
        text = f"{text}\n\n{note}"
    return text


def fill_template(template: list[str], *, prompt_file: str, workdir: str, model: str) -> list[str]:
    """Replace the three placeholders (plain text replacement, other braces stay)."""
    out = []
    for arg in template:
        out.append(arg.replace("{prompt_file}", prompt_file).replace("{workdir}", workdir)
                   .replace("{model}", model))
    return out


class CommandBackend(AgentBackend):
    """Runs codex, gemini, aider or a user template and parses its output."""

    def __init__(
        self,
        tool: str,
        *,
        template: list[str] | None = None,
        kill_grace: float = 5.0,
        result_grace: float = 5.0,
        env_passthrough: Iterable[str] = (),
        env_deny: Iterable[str] = (),
    ) -> None:
        if tool not in PARSERS:
            raise ValueError(f"unknown command tool {tool!r} (one of {', '.join(PARSERS)})")
        self.tool = tool
        self.name = tool
        self.template = list(template or [])
        self.kill_grace = kill_grace
        self.result_grace = result_grace
        self.env_passthrough = list(env_passthrough)
        self.env_deny = list(env_deny)

    def _env(self) -> dict[str, str]:
        return build_env(passthrough=self.env_passthrough, deny=self.env_deny)

    def _executable(self) -> str:
        if self.tool == "command":
            return self.template[0] if self.template else ""
        return self.tool

    def check_available(self) -> None:
        if self.tool == "command" and not self.template:
            raise AgentUnavailable(
                "backend 'command' needs [agent] command = [\"tool\", \"{prompt_file}\", ...]")
        exe = self._executable()
        if shutil.which(exe, path=self._env().get("PATH")) is None:
            raise AgentUnavailable(f"`{exe}` was not found on PATH: {INSTALL_HINTS[self.tool]}")

    def build_argv(self, request: AgentRequest, prompt_file: str,
                   policy_file: str | None = None) -> list[str]:
        template = (self.template if self.tool == "command"
                    else tool_argv(self.tool, request, policy_file))
        return fill_template(template, prompt_file=prompt_file, workdir=str(request.workdir),
                             model=request.model)

    async def run(
        self, request: AgentRequest, on_event: EventCallback | None = None
    ) -> AgentResult:
        try:
            self.check_available()
        except AgentUnavailable as exc:
            return AgentResult(status=ERROR, error=str(exc), summary=str(exc)[:200],
                               failure_reason=FailureReason.NOT_FOUND)
        parser = PARSERS[self.tool](model=price_model(self.tool, request.model))
        stderr_seen = 0

        def on_line(line: Line) -> None:
            nonlocal stderr_seen
            if line.stream == "stderr":
                stderr_seen += 1
                if stderr_seen <= MAX_STDERR_EVENTS:
                    emit(on_event, AgentEvent("stderr", line.text[:2000]))
                return
            for event in parser.feed(line.text, truncated=line.truncated, size=line.size):
                emit(on_event, event)

        text = prompt_text(self.tool, request)
        env = self._env()
        fd, prompt_path = tempfile.mkstemp(prefix="mc-prompt-", suffix=".md")
        policy_path: str | None = None
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            if self.tool == "gemini" and editing(request):
                pfd, policy_path = tempfile.mkstemp(prefix="mc-gemini-policy-", suffix=".toml")
                with os.fdopen(pfd, "w", encoding="utf-8") as fh:
                    fh.write(gemini_policy(request))
            try:
                outcome = await run_streaming(
                    self.build_argv(request, prompt_path, policy_path), cwd=request.workdir,
                    env=env,
                    on_line=on_line, stdin=text.encode("utf-8"), timeout=request.timeout_s,
                    kill_grace=self.kill_grace, result_seen=lambda: parser.terminal,
                    result_grace=self.result_grace, stall_timeout=request.stall_s,
                )
            except OSError as exc:
                return AgentResult(status=ERROR, error=f"could not start {self.tool}: {exc}",
                                   failure_reason=FailureReason.CRASH, summary="could not start")
        finally:
            Path(prompt_path).unlink(missing_ok=True)
            if policy_path:
                Path(policy_path).unlink(missing_ok=True)
        if isinstance(parser, CodexParser):
            parser.read_rollout(codex_home(env))
        result = parser.finish(exit_code=outcome.exit_code, timed_out=outcome.timed_out,
                               stderr_tail=outcome.stderr_tail)
        return stalled_result(result, request.stall_s) if outcome.stalled else result
