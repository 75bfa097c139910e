"""The file channel: decide approvals by appending lines to ``hitl.approval_file``.

One decision per line, either words::

    approve 12
    deny 12 the diff touches the billing code     # the rest of the line is the reason
    # comments and blank lines are ignored; case does not matter; "#12" is "12"

(``approved``/``yes``/``y`` and ``denied``/``no``/``n`` too) or one JSON object::

    {"id": 12, "decision": "deny", "reason": "too big"}

The engine reads only lines it has not read before (a complete line, ending in a newline):
the byte offset it reached is kept in ``<state dir>/approval-file.offset`` with a hash of
the bytes before it, so a restart goes on after the last line it handled, and a file that
was truncated or rewritten differently is read again from its start (a line for an
approval already decided changes nothing: the first decision wins). A line that is not a
decision, or names an approval that does not exist, is reported as an ``approval.malformed``
event (path, line number, text, error) and skipped; the file is never written.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from engine.config import MissionConfig
from engine.models import Event
from engine.plugins import ObserverContext, Plugin, PluginConfig
from engine.store.db import StoreError

POLL_SECONDS = 0.3
_APPROVE = {"approve", "approved", "yes", "y"}
_DENY = {"deny", "denied", "no", "n"}
_LINE = re.compile(r"^(?P<word>[a-z]+)\s+#?(?P<id>\d+)(?:\s+(?P<rest>.*))?$", re.I)


class MalformedLine(ValueError):
    """A line of the approval file that is not a decision (the message says why)."""


@dataclass(frozen=True)
class FileDecision:
    approval_id: int
    approved: bool
    reason: str = ""


def parse_line(line: str) -> FileDecision | None:
    """The decision on one line; None for a blank line or a comment.

    Raises :class:`MalformedLine` for anything else that is not a decision.
    """
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    if text[0] in "{[":
        return _parse_json(text)
    match = _LINE.match(text)
    if match is None:
        raise MalformedLine("expected `approve ID` or `deny ID [reason]`")
    word, rest = match.group("word").lower(), (match.group("rest") or "").strip()
    if word not in _APPROVE | _DENY:
        raise MalformedLine(f"unknown word {word!r}: use approve or deny")
    if rest.startswith("#"):
        rest = ""
    if word in _APPROVE and rest:
        raise MalformedLine("an approval takes no reason (only a deny does)")
    return FileDecision(int(match.group("id")), word in _APPROVE, rest)


def _parse_json(text: str) -> FileDecision:
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MalformedLine(f"invalid JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise MalformedLine("a JSON line must be an object")
    approval_id, decision = data.get("id"), str(data.get("decision", "")).lower()
    if not isinstance(approval_id, int) or isinstance(approval_id, bool):
        raise MalformedLine('"id" must be an integer')
    if decision not in _APPROVE | _DENY:
        raise MalformedLine('"decision" must be "approve" or "deny"')
    reason = data.get("reason", "")
    if not isinstance(reason, str):
        raise MalformedLine('"reason" must be a string')
    return FileDecision(approval_id, decision in _APPROVE, reason.strip())


class FileCursor:
    """How far the approval file has been handled, kept across restarts (see module doc)."""

    def __init__(self, path: Path, state: Path) -> None:
        self.path, self.state = path, state
        self.offset, self.line_no = 0, 0
        self._digest = hashlib.sha256(b"").hexdigest()
        self._seen: tuple[int, int] | None = None  # (size, mtime_ns) last read
        try:
            saved = json.loads(state.read_text())
            if saved.get("path") == str(path):
                self.offset, self.line_no = int(saved["offset"]), int(saved["line"])
                self._digest = str(saved["sha256"])
        except (OSError, ValueError, KeyError, TypeError):
            pass

    def new_lines(self) -> list[tuple[int, str]]:
        """The complete lines after the offset, numbered (1-based); advances the cursor."""
        try:
            stat = self.path.stat()
            if (stat.st_size, stat.st_mtime_ns) == self._seen:
                return []  # unchanged since the last read
            data = self.path.read_bytes()
        except OSError:
            return []  # missing or unreadable: nothing yet
        self._seen = (stat.st_size, stat.st_mtime_ns)
        if len(data) < self.offset or hashlib.sha256(data[:self.offset]).hexdigest() != self._digest:
            self.offset, self.line_no = 0, 0  # truncated or rewritten: read it again
        end = data.rfind(b"\n") + 1
        if end <= self.offset:
            return []
        lines = []
        for raw in data[self.offset:end].split(b"\n")[:-1]:
            self.line_no += 1
            lines.append((self.line_no, raw.decode(errors="replace")))
        self.offset = end
        self._digest = hashlib.sha256(data[:end]).hexdigest()
        return lines

    def save(self) -> None:
        self.state.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state.with_suffix(".tmp")
        tmp.write_text(json.dumps({"path": str(self.path), "offset": self.offset,
                                   "line": self.line_no, "sha256": self._digest}))
        tmp.replace(self.state)


class ApprovalFileChannel:
    """Observer + background task: reads new lines of the approval file and decides."""

    def __init__(self, path: Path, state: Path, poll: float = POLL_SECONDS) -> None:
        self.path, self.poll = path, poll
        self.cursor = FileCursor(path, state)

    def on_event(self, event: Event, ctx: ObserverContext) -> None:
        """Nothing to post: the file is the person's, the engine only reads it."""

    async def run(self, ctx: ObserverContext) -> None:
        last_error = ""
        while True:
            try:
                await anyio.to_thread.run_sync(self.step, ctx)
            except Exception as exc:  # the state folder unwritable, say: said once, goes on
                error = f"{type(exc).__name__}: {exc}"
                if error != last_error:
                    ctx.store.append_event("approval.channel_error", mission_id=ctx.mission_id,
                                           channel="file", error=error)
                last_error = error
            await anyio.sleep(self.poll)

    def step(self, ctx: ObserverContext) -> int:
        """Handle the lines appended since the last step; returns how many decided."""
        decided = 0
        lines = self.cursor.new_lines()
        for line_no, text in lines:
            decided += self._apply(ctx, line_no, text)
        if lines:
            self.cursor.save()
        return decided

    def _apply(self, ctx: ObserverContext, line_no: int, text: str) -> int:
        try:
            decision = parse_line(text)
        except MalformedLine as exc:
            self._malformed(ctx, line_no, text, str(exc))
            return 0
        if decision is None:
            return 0
        try:
            done = ctx.store.decide_approval(
                decision.approval_id, decision.approved,
                by=f"file:{self.path.name}:{line_no}", reason=decision.reason or None,
            )
        except StoreError as exc:
            self._malformed(ctx, line_no, text, str(exc))
            return 0
        return int(done)

    def _malformed(self, ctx: ObserverContext, line_no: int, text: str, error: str) -> None:
        ctx.store.append_event(
            "approval.malformed", mission_id=ctx.mission_id, channel="file",
            path=str(self.path), line=line_no, text=text[:500], error=error,
        )


class ApprovalFilePlugin(Plugin):
    """``hitl.approval_file``: decide approvals by appending lines to a file."""

    name = "approval_file"
    builtin = True
    order = 50

    def __init__(self, config: PluginConfig, mission: MissionConfig) -> None:
        super().__init__(config, mission)
        self.channel: ApprovalFileChannel | None = None

    def observers(self) -> list[ApprovalFileChannel]:
        hitl = self.mission.hitl
        if not hitl.enabled or hitl.approval_file is None:
            return []
        if self.channel is None:
            state = self.mission.state_dir() / "approval-file.offset"
            self.channel = ApprovalFileChannel(Path(hitl.approval_file), state)
        return [self.channel]
