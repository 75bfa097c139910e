"""Ready-made scripts for the model server: Claude Code tool calls and a small mission.

Tool helpers use Claude Code's tool names and input shapes (``Read``/``Write``/``Edit`` want
absolute ``file_path`` s, ``Bash`` a ``command``). Paths given relative are made absolute
against the session's working directory, read from the request (Claude Code states it as
``Primary working directory: <path>`` in its system prompt), so one script serves every
worktree::

    worker = worker_turns({"greet.py": "def greet():\\n    return 'hi'\\n"},
                          test_command="python -m unittest -q")
    rules = small_mission_rules([MissionUnit("Add greet", {"greet.py": ...})])

:func:`small_mission_rules` answers every role of a mission: planner (the units as plan
JSON), ambition, worker / editor (Read, Write each file, Bash the tests, result marker),
architect, fixup, reviewer (passing scores), objective check (met) and strategist.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from tests.support.script import (
    ModelRequest,
    Reply,
    Responder,
    Rule,
    Turns,
    custom_tool,
    text,
    tool_use,
)

_WORKDIR = re.compile(r"Primary working directory: (\S+)")
_UNIT = re.compile(r"## (?:Your|The) unit: (.+?) \(`([^`]*)`\)")

PLANNER = r"You are the planner of Mission Control"
WORKER = r"You are a worker agent of Mission Control"
EDITOR = r"You are the editor of a two-pass worker"
ARCHITECT = r"You are the architect of a two-pass worker"
FIXUP = r"You are a fixup agent of Mission Control"
REVIEWER = r"You are the code reviewer of Mission Control"
OBJECTIVE = r"You verify objectives for Mission Control"
AMBITION = r"You review plans for Mission Control"
STRATEGIST = r"You are the strategist of Mission Control"


def workdir_of(request: ModelRequest) -> str | None:
    """The session's working directory as Claude Code states it in the prompt."""
    found = _WORKDIR.search(request.prompt_text)
    return found.group(1) if found else None


def absolute(path: str, request: ModelRequest) -> str:
    if PurePosixPath(path).is_absolute():
        return path
    base = workdir_of(request)
    return str(PurePosixPath(base) / path) if base else path


def read_file(path: str) -> Responder:
    """A ``Read`` call (path relative to the working directory, or absolute)."""
    return lambda req: tool_use("Read", {"file_path": absolute(path, req)})


def write_file(path: str, content: str) -> Responder:
    """A ``Write`` call creating or replacing ``path``."""
    return lambda req: tool_use("Write", {"file_path": absolute(path, req), "content": content})


def edit_file(path: str, old: str, new: str) -> Responder:
    """An ``Edit`` call replacing ``old`` by ``new`` in ``path`` (it must be Read first)."""
    return lambda req: tool_use("Edit", {"file_path": absolute(path, req),
                                         "old_string": old, "new_string": new})


def bash(command: str, description: str = "Run a command") -> Reply:
    """A ``Bash`` call."""
    return tool_use("Bash", {"command": command, "description": description})


def marker(status: str = "completed", summary: str = "Done.", files_changed: Sequence[str] = (),
           discoveries: Sequence[str] = (), concerns: Sequence[str] = ()) -> str:
    """The worker result marker text (the format of ``engine/agents/marker.py``)."""
    data = {"status": status, "summary": summary, "files_changed": list(files_changed),
            "discoveries": list(discoveries), "concerns": list(concerns)}
    return f"<mc-result>\n{json.dumps(data)}\n</mc-result>"


def finish(summary: str = "Done.", files_changed: Sequence[str] = (), status: str = "completed",
           ) -> Reply:
    """The final worker turn: a sentence and the result marker."""
    return text(f"{summary}\n\n{marker(status, summary, files_changed)}")


def json_reply(data: Any) -> Reply:
    """A text reply holding ``data`` in a ```json fence (planner, reviewer, ... answers)."""
    return text(f"```json\n{json.dumps(data, indent=2)}\n```")


def worker_turns(files: dict[str, str], *, test_command: str | None = "python -m unittest -q",
                 read_first: str | None = None, commit: bool = False,
                 summary: str | None = None) -> Turns:
    """A worker session: Read (optional), Write each file, Bash the tests, git commit (optional),
    then the result marker. ``commit`` runs ``git add`` and ``git commit`` as two Bash calls."""
    steps: list[Reply | Responder] = []
    if read_first:
        steps.append(read_file(read_first))
    steps += [write_file(path, content) for path, content in files.items()]
    if test_command:
        steps.append(bash(test_command, "Run the tests"))
    if commit:
        steps.append(bash("git add -A", "Stage the change"))
        steps.append(bash("git commit -q -m 'mc test worker change'", "Commit"))
    steps.append(finish(summary or f"Wrote {', '.join(files)}.", list(files)))
    return Turns(steps)


@dataclass
class MissionUnit:
    """One planned unit and what its worker writes."""

    title: str
    files: dict[str, str]
    description: str = ""
    acceptance_criteria: list[str] = field(default_factory=lambda: ["the tests pass"])
    dependencies: list[str] = field(default_factory=list)

    def plan_entry(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "description": self.description or f"Create {', '.join(self.files)}.",
            "files_hint": list(self.files), "acceptance_criteria": self.acceptance_criteria,
            "priority": 2, "dependencies": self.dependencies, "specialist": "general",
            "leaf": True,
        }


def small_mission_rules(units: Sequence[MissionUnit], *,
                        test_command: str | None = "python -m unittest -q",
                        commit: bool = False, objective_met: bool = True) -> list[Rule]:
    """Rules answering every role of a small mission made of ``units``.

    Each worker/editor finds its unit by the title in its prompt (``## Your unit: <title>``, ``## The unit: ...`` for the editor)
    and writes that unit's files; an unknown title gets a ``failed`` marker.
    """
    by_title = {u.title: u for u in units}
    sessions = {u.title: worker_turns(u.files, test_command=test_command, commit=commit)
                for u in units}

    def worker(request: ModelRequest) -> Reply:
        found = _UNIT.search(request.prompt_text)
        title = found.group(1).strip() if found else ""
        if title not in by_title:
            return finish(f"Unknown unit {title!r}.", status="failed")
        return sessions[title](request) or finish()

    plan = {"rationale": "Small scripted plan.", "units": [u.plan_entry() for u in units]}
    return [
        Rule(name="planner", match=PLANNER, reply=json_reply(plan)),
        Rule(name="ambition", match=AMBITION,
             reply=json_reply({"score": 8, "feedback": "Substantial enough."})),
        Rule(name="architect", match=ARCHITECT,
             reply=text("Plan: create the files named in the unit and run the tests.")),
        Rule(name="worker", match=f"{WORKER}|{EDITOR}", reply=worker),
        Rule(name="fixup", match=FIXUP, reply=Turns([
            bash(test_command or "true", "Run the tests"),
            finish("Checked the branch; nothing to fix."),
        ])),
        Rule(name="reviewer", match=REVIEWER, reply=json_reply(
            {"alignment": 9, "approach": 8, "tests": 8, "feedback": "Focused and tested."})),
        Rule(name="objective", match=OBJECTIVE, reply=json_reply(
            {"met": objective_met, "confidence": 0.9,
             "feedback": "All units merged and tested." if objective_met else "Not yet."})),
        Rule(name="strategist", match=STRATEGIST, reply=json_reply(
            {"next_objective": "Add docs for the new modules.", "rationale": "Follow-up."})),
    ]


# --------------------------------------------------------------------------- other CLIs
def codex_add_file(path: str, content: str) -> Reply:
    """codex's ``apply_patch`` (a freeform custom tool) adding ``path`` (relative to its cwd)."""
    lines = "".join(f"+{line}\n" for line in content.splitlines())
    return custom_tool("apply_patch", f"*** Begin Patch\n*** Add File: {path}\n{lines}"
                                      "*** End Patch\n")


def codex_shell(command: str) -> Reply:
    """codex's ``exec_command`` function call."""
    return tool_use("exec_command", {"cmd": command})


def gemini_write(path: str, content: str) -> Reply:
    """gemini-cli's ``write_file`` (give an absolute path)."""
    return tool_use("write_file", {"file_path": path, "content": content})


def gemini_shell(command: str, description: str = "Run a command") -> Reply:
    """gemini-cli's ``run_shell_command``."""
    return tool_use("run_shell_command", {"command": command, "description": description})


def gemini_router_rule() -> Rule:
    """Answers gemini-cli's ``auto`` model router (a non-streaming ``generateContent`` whose
    ``generationConfig.responseJsonSchema`` asks for ``complexity_score``)."""
    return Rule(name="gemini-router", dialect="gemini",
                when=lambda r: "complexity_score" in json.dumps(
                    r.body.get("generationConfig") or {}),
                reply=text('{"complexity_reasoning": "A small change.", "complexity_score": 10}'))


def aider_create(path: str, content: str, *, say: str = "Creating the file.") -> Reply:
    """aider's SEARCH/REPLACE block creating ``path`` (the ``diff`` edit format)."""
    return text(f"{say}\n\n{path}\n```\n<<<<<<< SEARCH\n=======\n{content}"
                f"{'' if content.endswith(chr(10)) else chr(10)}>>>>>>> REPLACE\n```\n")


def aider_commit_rule(message: str = "feat: scripted change") -> Rule:
    """Answers aider's commit-message request (its weak model, system prompt about Git)."""
    return Rule(name="aider-commit", dialect="openai-chat",
                match=r"generates concise, one-line Git commit messages", reply=text(message))
